//! Live forwarding of the audit log to a syslog receiver over TCP and to an
//! HTTPS receiver: every record arrives, in order of sequence number, after
//! server restarts and a receiver's outage, with nothing skipped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use strongroom_watch::WatchConfig;
use strongroom_watch::forward::{ForwardKind, ForwarderConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::harness::{Harness, on_each_backend, random_code, test_api_config};

type Seen = Arc<Mutex<BTreeSet<u64>>>;

/// A syslog receiver on `port` (0: any) that reads octet-counted RFC 5424
/// frames, checks each, and notes its sequence number. Aborting the task
/// closes the listener and every connection.
async fn syslog_receiver(port: u16, seen: Seen) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            connections.spawn(async move {
                let mut reader = BufReader::new(socket);
                loop {
                    let mut length = Vec::new();
                    if reader.read_until(b' ', &mut length).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let length: usize = std::str::from_utf8(&length)
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    let mut frame = vec![0u8; length];
                    reader.read_exact(&mut frame).await.unwrap();
                    let frame = String::from_utf8(frame).unwrap();
                    // <PRI>1 TIME HOST strongroom - MSGID [meta sequenceId="N"] JSON
                    let pri: u32 = frame[1..frame.find('>').unwrap()].parse().unwrap();
                    assert!(
                        (104..=111).contains(&pri),
                        "facility 13 (log audit): {frame}"
                    );
                    assert!(
                        frame[frame.find('>').unwrap() + 1..].starts_with("1 "),
                        "{frame}"
                    );
                    let (_, rest) = frame.split_once("[meta sequenceId=\"").unwrap();
                    let (seq, json) = rest.split_once("\"] ").unwrap();
                    let seq: u64 = seq.parse().unwrap();
                    let record: serde_json::Value = serde_json::from_str(json).unwrap();
                    assert_eq!(record["seq"], seq, "{frame}");
                    seen.lock().unwrap().insert(seq);
                }
            });
        }
    });
    (port, task)
}

/// An HTTPS receiver that checks each batch's signature and notes the
/// sequence numbers of its JSON lines.
async fn https_receiver(cert: Vec<u8>, key: Vec<u8>, secret: &'static str, seen: Seen) -> String {
    let app = axum::Router::new().route(
        "/audit",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let signature = headers
                        .get(strongroom_watch::webhook::SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    if strongroom_watch::webhook::verify(secret.as_bytes(), signature, &body, now)
                        .is_err()
                    {
                        return StatusCode::UNAUTHORIZED;
                    }
                    for line in std::str::from_utf8(&body).unwrap().lines() {
                        let record: serde_json::Value = serde_json::from_str(line).unwrap();
                        seen.lock().unwrap().insert(record["seq"].as_u64().unwrap());
                    }
                    StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = strongroom_api::server::tls_config(&cert, &key).unwrap();
    tokio::spawn(strongroom_api::server::serve_tls(
        listener,
        app,
        tls,
        axum_server::Handle::new(),
    ));
    format!("https://localhost:{port}/audit")
}

/// Some audited work.
async fn work(h: &Harness) {
    let svc = h.service().await;
    for _ in 0..5 {
        let token = svc.put(&random_code()).await;
        svc.reveal(&token).await;
    }
}

async fn head(h: &Harness) -> u64 {
    h.audit_rows().await.last().unwrap().0
}

/// Waits until `seen` holds every number from 1 to `head`.
async fn all_arrive(seen: &Seen, head: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<u64> = {
            let seen = seen.lock().unwrap();
            (1..=head).filter(|s| !seen.contains(s)).collect()
        };
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: records {missing:?} never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_each_backend! {
async fn forwarding_resumes_after_restarts_and_outages_with_nothing_skipped(store) {
    let syslog_seen = Seen::default();
    let https_seen = Seen::default();
    let (syslog_port, syslog) = syslog_receiver(0, syslog_seen.clone()).await;
    let tls = tempfile::TempDir::new().unwrap();
    let (cert, key, ca) = strongroom::devtls::ensure(&strongroom::datadir::DataDir::new(tls.path())).unwrap();
    const SECRET: &str = "forwarding-secret-0123456789abcdef";
    let secret_file = tls.path().join("forward.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let https_url = https_receiver(cert, key, SECRET, https_seen.clone()).await;
    let forwarders = vec![
        ForwarderConfig {
            name: "siem-syslog".into(),
            kind: ForwardKind::Syslog,
            target: format!("127.0.0.1:{syslog_port}"),
            tls: false,
            ca_file: None,
            secret_file: None,
            batch: 7,
        },
        ForwarderConfig {
            name: "siem-https".into(),
            kind: ForwardKind::Https,
            target: https_url,
            tls: false,
            ca_file: Some(ca),
            secret_file: Some(secret_file),
            batch: 7,
        },
    ];
    let h = Harness::dev_settings(store, (test_api_config(), WatchConfig::default(), forwarders)).await;
    work(&h).await;
    let first = head(&h).await;
    all_arrive(&syslog_seen, first, "syslog").await;
    all_arrive(&https_seen, first, "https").await;

    // A restart: both resume from their stored cursors.
    let h = h.restart().await;
    work(&h).await;
    let second = head(&h).await;
    all_arrive(&syslog_seen, second, "syslog after a restart").await;
    all_arrive(&https_seen, second, "https after a restart").await;

    // The syslog receiver goes away; records wait, and an alert says so.
    syslog.abort();
    let _ = syslog.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    work(&h).await;
    let officer = h.approver().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = officer.get("/v1/alerts?detector=forwarder_failure").await;
        let alerts = body["alerts"].as_array().unwrap();
        if let Some(a) = alerts.first() {
            assert_eq!(a["subject"], "component:forwarder:siem-syslog", "{a}");
            break;
        }
        assert!(Instant::now() < deadline, "no forwarder_failure alert");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // … the server restarts meanwhile, and the receiver comes back.
    let h = h.restart().await;
    work(&h).await;
    let (_, _back) = syslog_receiver(syslog_port, syslog_seen.clone()).await;
    let third = head(&h).await;
    all_arrive(&syslog_seen, third, "syslog after its outage").await;
    all_arrive(&https_seen, third, "https").await;
}
}
