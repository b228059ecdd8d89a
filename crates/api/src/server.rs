//! Serving the router over TLS (rustls, TLS 1.2 and 1.3 only, aws-lc-rs).
//!
//! # Slow and idle clients
//! A client that opens connections and then sends nothing, or part of a
//! request's headers, must not hold them for ever: every connection gets
//! [`ConnectionLimits::header_read_timeout`] to finish its TLS handshake and
//! then each request's headers (hyper's timer starts again whenever the
//! connection goes idle between requests, so it is the idle timeout too),
//! and connections are capped per client address and in all. A connection
//! over a cap is closed at once, before its handshake.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

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

/// How long and how many connections a server keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to finish the TLS handshake, then each request's headers (and
    /// most a connection may sit idle between requests).
    pub header_read_timeout: Duration,
    /// Open connections from one client address.
    pub max_per_address: usize,
    /// Open connections in all.
    pub max_total: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_per_address: 128,
            max_total: 4096,
        }
    }
}

/// Serves `router` over TLS on an already bound listener until `handle`
/// shuts it down.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    router: Router,
    tls: Arc<ServerConfig>,
    handle: Handle<SocketAddr>,
) -> std::io::Result<()> {
    serve_tls_with(listener, router, tls, handle, ConnectionLimits::default()).await
}

/// [`serve_tls`] with these connection limits.
pub async fn serve_tls_with(
    listener: std::net::TcpListener,
    router: Router,
    tls: Arc<ServerConfig>,
    handle: Handle<SocketAddr>,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(RustlsConfig::from_config(tls))
        .handshake_timeout(limits.header_read_timeout)
        .acceptor(Guard::new(limits));
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .http1_only();
    timeouts(&mut server, limits);
    server
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
    serve_plain_with(listener, router, handle, ConnectionLimits::default()).await
}

/// [`serve_plain`] with these connection limits.
pub async fn serve_plain_with(
    listener: std::net::TcpListener,
    router: Router,
    handle: Handle<SocketAddr>,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(Guard::new(limits))
        .http1_only();
    timeouts(&mut server, limits);
    server
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

/// HTTP/1 only (ALPN offers nothing else): the protocol sniffing of an
/// HTTP/1-or-2 server waits for a connection's first bytes with no timer,
/// which a client sending nothing after its handshake would hold for ever.
fn timeouts<A: axum_server::Address, Acc>(
    server: &mut axum_server::Server<A, Acc>,
    limits: ConnectionLimits,
) {
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
}

/// Counts open connections per client address and in all, refusing those
/// over a cap before any work is done for them.
#[derive(Debug, Clone)]
struct Guard {
    limits: ConnectionLimits,
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Guard {
    fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            open: Arc::default(),
        }
    }

    /// A ticket for one more connection from `ip`, if the caps allow it.
    fn admit(&self, ip: IpAddr) -> Option<Ticket> {
        let mut open = self.open.lock().ok()?;
        let from_ip = open.by_address.get(&ip).copied().unwrap_or(0);
        if open.total >= self.limits.max_total || from_ip >= self.limits.max_per_address {
            return None;
        }
        open.total += 1;
        open.by_address.insert(ip, from_ip + 1);
        Some(Ticket {
            ip,
            open: self.open.clone(),
        })
    }
}

/// One admitted connection; its place is given back when it is dropped.
#[derive(Debug)]
struct Ticket {
    ip: IpAddr,
    open: Arc<Mutex<Open>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            open.total = open.total.saturating_sub(1);
            if let Some(n) = open.by_address.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.by_address.remove(&self.ip);
                }
            }
        }
    }
}

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for Guard {
    type Stream = Guarded;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Guarded, S)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let admitted = stream
            .peer_addr()
            .ok()
            .and_then(|peer| self.admit(peer.ip()));
        std::future::ready(match admitted {
            Some(ticket) => Ok((
                Guarded {
                    stream,
                    _ticket: ticket,
                },
                service,
            )),
            None => {
                tracing::warn!(peer = ?stream.peer_addr().ok(), "connection refused: over the connection caps");
                // Dropping the stream closes it.
                Err(std::io::Error::other("over the connection caps"))
            }
        })
    }
}

/// A connection that holds its place under the caps while open.
#[derive(Debug)]
pub struct Guarded {
    stream: tokio::net::TcpStream,
    _ticket: Ticket,
}

impl tokio::io::AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
