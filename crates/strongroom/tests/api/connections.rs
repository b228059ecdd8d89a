//! Slow and idle clients: half-sent headers and idle connections are
//! closed after the header timeout, and one address cannot take more than
//! its share of connections, while others are still served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{Harness, TestStore, test_api_config};

/// A TCP connection to `to` from the loopback address `from`.
async fn tcp_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// A TLS connection from 127.0.0.1 that sends half a request's headers
/// and then nothing, as a slow-loris client does.
async fn slow_client(h: &Harness, to: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let ca = h.server.ca_cert_path.clone().unwrap();
    let config = Arc::new(strongroom::client::tls_client_config(Some(&ca)).unwrap());
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tcp_from(Ipv4Addr::LOCALHOST, to).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    tls
}

/// True once the server has closed the connection (within `within`).
async fn closed_within<S: AsyncReadExt + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or the like before the close is fine.
            Ok(Ok(_)) => {}
        }
    }
}

/// A client of the server whose connections start from `from`.
fn client_from(h: &Harness, from: Ipv4Addr) -> reqwest::Client {
    let ca = h.server.ca_cert_path.clone().unwrap();
    let config = strongroom::client::tls_client_config(Some(&ca)).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .local_address(IpAddr::V4(from))
        .resolve("localhost", h.server.addr)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_and_others_are_still_served() {
    let mut api = test_api_config();
    api.connections = strongroom_api::server::ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        max_per_address: 4,
        max_total: 64,
    };
    let h = Harness::dev_with(TestStore::Sqlite, api).await;
    let to = h.server.addr;
    let url = format!("https://localhost:{}/v1/sys/health", to.port());

    // One address takes its four connections and sends half a request.
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(slow_client(&h, to).await);
    }
    // A fifth from that address is closed at once, before any handshake.
    let mut fifth = tcp_from(Ipv4Addr::LOCALHOST, to).await;
    assert!(
        closed_within(&mut fifth, Duration::from_millis(500)).await,
        "a fifth connection was kept"
    );
    // Another address is served meanwhile.
    let other = client_from(&h, Ipv4Addr::new(127, 0, 0, 2));
    let resp = other.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // The slow ones are closed once the header timeout passes.
    let started = Instant::now();
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "a slow client was kept open"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(slow);

    // Their address has its places back.
    let own = client_from(&h, Ipv4Addr::LOCALHOST);
    let resp = own.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // An idle connection after a complete request is closed too: the
    // timeout starts again whenever the connection waits for a request.
    let ca = h.server.ca_cert_path.clone().unwrap();
    let config = Arc::new(strongroom::client::tls_client_config(Some(&ca)).unwrap());
    let tcp = tcp_from(Ipv4Addr::new(127, 0, 0, 3), to).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut idle = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    idle.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "an idle connection was kept open"
    );
}
