//! Serving the router over TLS (rustls, TLS 1.2 and 1.3 only, aws-lc-rs).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The certificate file held no PEM certificate.
    #[error("no certificate found in the certificate PEM")]
    NoCertificate,
    /// The key file held no PEM private key.
    #[error("no private key found in the key PEM")]
    NoKey,
    /// The PEM could not be read.
    #[error("could not read PEM: {0}")]
    Pem(#[from] std::io::Error),
    /// rustls refused the certificate or key.
    #[error("certificate and key were refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls server configuration from PEM certificate chain and key.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate);
    }
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut &key_pem[..])?.ok_or(TlsSetupError::NoKey)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS on an already bound listener until `handle`
/// shuts it down.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    router: Router,
    tls: Arc<ServerConfig>,
    handle: Handle<SocketAddr>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls))?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

/// Serves `router` over plain HTTP. The caller must only allow this on a
/// loopback address.
pub async fn serve_plain(
    listener: std::net::TcpListener,
    router: Router,
    handle: Handle<SocketAddr>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    axum_server::from_tcp(listener)?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
