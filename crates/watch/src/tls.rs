//! TLS for Strongroom's outgoing connections (webhooks, log forwarding, the
//! CLI): TLS 1.2 or 1.3 with aws-lc-rs, trusting only the CAs named.

use std::path::Path;
use std::sync::Arc;

/// Why a TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The CA file could not be read.
    #[error("could not read CA certificate {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("invalid CA certificate in {0}")]
    Invalid(String),
    /// The TLS library refused the settings.
    #[error("TLS settings: {0}")]
    Settings(#[from] rustls::Error),
}

/// A client configuration that trusts no server: for clients that only
/// ever speak plain HTTP to a loopback address, but must still be built
/// with a TLS backend.
pub fn trusting_nothing() -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// A client configuration trusting exactly the certificates in `ca` (PEM).
/// There is no built-in root store: a vault's outgoing connections go to
/// receivers its operators chose, and their CA is named explicitly.
pub fn client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsSetupError> {
    let shown = ca.display().to_string();
    let pem = std::fs::read(ca).map_err(|source| TlsSetupError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|_| TlsSetupError::Invalid(shown.clone()))?;
        roots
            .add(cert)
            .map_err(|_| TlsSetupError::Invalid(shown.clone()))?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::Invalid(shown));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
