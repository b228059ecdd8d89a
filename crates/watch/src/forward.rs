//! Live forwarding of the audit log to a SIEM: syslog (RFC 5424 over TCP,
//! octet-counted frames per RFC 6587, TLS optional) or an HTTPS endpoint
//! taking JSON Lines.
//!
//! # Nothing skipped, nothing lost on restart
//! Each forwarder reads the log in order from its **cursor**, the last
//! sequence number it delivered, kept in the central store. It moves the
//! cursor only after a batch was written (syslog) or acknowledged with a
//! 2xx (HTTPS), so after a crash, a restart or an outage of the receiver it
//! resumes where it stopped. Delivery is at-least-once: a batch sent just
//! before a crash is sent again, and every record carries its sequence
//! number (`seq` in the JSON, `sequenceId` in syslog) for the receiver to
//! drop repeats. Syslog over TCP has no acknowledgement of its own: the
//! forwarder checks before each write that the receiver has not closed the
//! connection, but a receiver that dies holding unread data can lose it;
//! where that matters, use HTTPS, which is acknowledged. A receiver that
//! stays unreachable raises one
//! `forwarder_failure` alert (PCI DSS 10.7.2) per outage; the log itself is
//! unaffected, and forwarding catches up when the receiver is back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use strongroom_audit::AuditEvent;
use strongroom_audit::export::jsonl;
use strongroom_audit::search::parse_record;
use strongroom_store::{AuditStore, CentralStore, StoredAuditRecord};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::detect::Finding;
use crate::{Severity, Subject, Watch, WatchError};

/// How long an idle forwarder waits before looking for new records.
const POLL: Duration = Duration::from_millis(500);
/// Longest wait between attempts while a receiver is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long connecting or sending may take.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// One `[[audit.forward]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwarderConfig {
    /// Unique name: the key of its cursor (letters, digits, `-`, `_`).
    pub name: String,
    /// `syslog` or `https`.
    pub kind: ForwardKind,
    /// `host:port` of a syslog receiver, or the `https://` URL of an HTTPS
    /// one (`http://` only to a loopback address).
    pub target: String,
    /// Syslog over TLS (RFC 5425 framing is the same octet counting).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CAs trusted for the receiver (needed for TLS).
    pub ca_file: Option<PathBuf>,
    /// HTTPS: file holding the secret each batch is signed with (as the
    /// alert webhook signs; at least 32 characters).
    pub secret_file: Option<PathBuf>,
    /// Records per write (1 to 5,000).
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_batch() -> usize {
    500
}

/// Where a forwarder sends.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForwardKind {
    /// RFC 5424 messages over TCP.
    Syslog,
    /// JSON Lines POSTed over HTTPS.
    Https,
}

impl ForwarderConfig {
    /// Checks what can be checked before starting.
    pub fn check(&self) -> Result<(), WatchError> {
        let bad = |why: String| {
            Err(WatchError::Config(format!(
                "forwarder '{}': {why}",
                self.name
            )))
        };
        if self.name.is_empty()
            || self.name.len() > 40
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("name must be 1 to 40 letters, digits, '-' or '_'".into());
        }
        if !(1..=5_000).contains(&self.batch) {
            return bad("batch must be 1 to 5,000".into());
        }
        if self.tls && self.ca_file.is_none() {
            return bad("tls needs ca_file: the CA certificates to trust".into());
        }
        if self.kind == ForwardKind::Syslog && !self.tls {
            if self.ca_file.is_some() {
                return bad("ca_file is set but tls is not: records would go in clear".into());
            }
            // Audit records name tokens, principals and addresses: they
            // cross a network only encrypted.
            let host = self
                .target
                .rsplit_once(':')
                .map_or(self.target.as_str(), |(h, _)| h)
                .trim_matches(['[', ']']);
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            if !loopback {
                return bad(
                    "syslog to another host needs tls = true (plain TCP only to loopback)".into(),
                );
            }
        }
        if self.kind == ForwardKind::Https && self.secret_file.is_none() {
            return bad("an https forwarder needs secret_file to sign its batches".into());
        }
        Ok(())
    }
}

/// Starts one task per forwarder. Each reads the log from its cursor and
/// reports outages to `watch`. Must run inside a Tokio runtime.
pub fn start(
    configs: &[ForwarderConfig],
    audit: Arc<dyn AuditStore>,
    central: Arc<dyn CentralStore>,
    watch: Arc<Watch>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, WatchError> {
    let mut names = std::collections::HashSet::new();
    let mut tasks = Vec::new();
    for config in configs {
        config.check()?;
        if !names.insert(config.name.clone()) {
            return Err(WatchError::Config(format!(
                "two forwarders are named '{}'",
                config.name
            )));
        }
        let sink = Sink::new(config)?;
        let forwarder = Forwarder {
            name: config.name.clone(),
            batch: config.batch,
            sink,
            audit: audit.clone(),
            central: central.clone(),
            watch: watch.clone(),
        };
        tasks.push(tokio::spawn(forwarder.run()));
    }
    Ok(tasks)
}

struct Forwarder {
    name: String,
    batch: usize,
    sink: Sink,
    audit: Arc<dyn AuditStore>,
    central: Arc<dyn CentralStore>,
    watch: Arc<Watch>,
}

impl Forwarder {
    async fn run(mut self) {
        let mut cursor = loop {
            match self.central.forwarder_cursor(&self.name).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(forwarder = %self.name, error = %e, "cannot read the forwarding cursor; retrying");
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
            }
        };
        let mut backoff = Duration::from_secs(1);
        let mut failing = false;
        let mut rewound = false;
        loop {
            let page = match self
                .audit
                .read_from(cursor.saturating_add(1), self.batch)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(forwarder = %self.name, error = %e, "cannot read the audit log");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            self.watch.note_forwarder_cursor(&self.name, cursor);
            let Some(last) = page.last().map(|r| r.seq) else {
                if !rewound && self.log_shorter_than(cursor).await {
                    // Restored from an older copy or cut: what follows would
                    // reuse numbers already sent. Say so, loudly, once.
                    rewound = self.watch.report(Finding {
                        detector: "audit_log_rewound",
                        severity: Severity::Critical,
                        subject: Subject::Component(format!("forwarder:{}", self.name)),
                        tenant: None,
                        summary: format!(
                            "the audit log ends before record {cursor}, which forwarder '{}' already delivered: it was cut or restored from an older copy",
                            self.name
                        ),
                        details: json!({ "forwarder": self.name, "delivered_up_to": cursor }),
                    });
                }
                tokio::time::sleep(POLL).await;
                continue;
            };
            match self.sink.send(&page).await {
                Ok(()) => {
                    cursor = last;
                    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
                    if let Err(e) = self
                        .central
                        .set_forwarder_cursor(&self.name, cursor, now)
                        .await
                    {
                        // Sent again after a restart: at-least-once.
                        tracing::warn!(forwarder = %self.name, error = %e, "cannot store the forwarding cursor");
                    }
                    self.watch.note_forwarder_cursor(&self.name, cursor);
                    if failing {
                        tracing::info!(forwarder = %self.name, from = cursor, "audit forwarding resumed");
                        failing = false;
                    }
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    if !failing {
                        // Until the alert is queued, try again next time.
                        failing = self.watch.report(Finding {
                            detector: "forwarder_failure",
                            severity: Severity::High,
                            subject: Subject::Component(format!("forwarder:{}", self.name)),
                            tenant: None,
                            summary: format!(
                                "audit forwarder '{}' cannot deliver ({e}); records from {} on wait in the log and will follow",
                                self.name,
                                cursor + 1
                            ),
                            details: json!({ "forwarder": self.name, "next_seq": cursor + 1 }),
                        });
                    }
                    tracing::warn!(forwarder = %self.name, error = %e, "audit forwarding failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

impl Forwarder {
    /// Whether the log's newest record is older than `cursor`.
    async fn log_shorter_than(&self, cursor: u64) -> bool {
        match self.audit.read_back(u64::MAX, 1).await {
            Ok(head) => head.first().map_or(0, |r| r.seq) < cursor,
            Err(_) => false,
        }
    }
}

/// A forwarder's receiver.
enum Sink {
    Syslog(SyslogSink),
    Https(HttpsSink),
}

impl Sink {
    fn new(config: &ForwarderConfig) -> Result<Self, WatchError> {
        Ok(match config.kind {
            ForwardKind::Syslog => Sink::Syslog(SyslogSink::new(config)?),
            ForwardKind::Https => Sink::Https(HttpsSink::new(config)?),
        })
    }

    async fn send(&mut self, records: &[StoredAuditRecord]) -> Result<(), String> {
        match self {
            Sink::Syslog(s) => s.send(records).await,
            Sink::Https(s) => s.send(records).await,
        }
    }
}

/// A record as one JSON line with its sequence number; a body that does not
/// parse (the chain check will name it) goes as it is.
fn json_line(record: &StoredAuditRecord) -> (String, Option<AuditEvent>) {
    match parse_record(record) {
        Some((event, _)) => (jsonl(record.seq, &event), Some(event)),
        None => (
            json!({ "seq": record.seq, "unparsed": record.body }).to_string(),
            None,
        ),
    }
}

/// A syslog connection, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}
type Connection = Box<dyn Stream>;

/// Whether a kept connection is still open. Syslog over TCP has no
/// acknowledgement: a write to a connection the receiver has closed can
/// still succeed locally, and the batch would be lost. A receiver that
/// closed has sent its FIN by now, which reads as end-of-stream here.
async fn still_open(conn: &mut Connection) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::ZERO, conn.read(&mut buf)).await {
        Err(_) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}

struct SyslogSink {
    target: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    hostname: String,
    conn: Option<Connection>,
}

impl SyslogSink {
    fn new(config: &ForwarderConfig) -> Result<Self, WatchError> {
        let tls = match (&config.ca_file, config.tls) {
            (Some(ca), true) => {
                let client =
                    crate::tls::client_config(ca).map_err(|e| WatchError::Config(e.to_string()))?;
                let host = config
                    .target
                    .rsplit_once(':')
                    .map_or(config.target.as_str(), |(h, _)| h)
                    .trim_matches(['[', ']'])
                    .to_owned();
                let name = rustls::pki_types::ServerName::try_from(host).map_err(|_| {
                    WatchError::Config(format!("'{}' is no host:port", config.target))
                })?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(client)), name))
            }
            _ => None,
        };
        Ok(Self {
            target: config.target.clone(),
            tls,
            hostname: std::env::var("HOSTNAME")
                .ok()
                .filter(|h| {
                    !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic())
                })
                .unwrap_or_else(|| "-".into()),
            conn: None,
        })
    }

    async fn connect(&self) -> Result<Connection, String> {
        let tcp = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(&self.target))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        Ok(match &self.tls {
            Some((connector, name)) => Box::new(
                tokio::time::timeout(IO_TIMEOUT, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| "TLS handshake timed out".to_owned())?
                    .map_err(|e| format!("TLS: {e}"))?,
            ),
            None => Box::new(tcp),
        })
    }

    async fn send(&mut self, records: &[StoredAuditRecord]) -> Result<(), String> {
        let mut frames = Vec::new();
        for record in records {
            let message = syslog_message(record, &self.hostname);
            frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
            frames.extend_from_slice(message.as_bytes());
        }
        let mut conn = match self.conn.take() {
            Some(mut c) => {
                if still_open(&mut c).await {
                    c
                } else {
                    self.connect().await?
                }
            }
            None => self.connect().await?,
        };
        let written = tokio::time::timeout(IO_TIMEOUT, async {
            conn.write_all(&frames).await?;
            conn.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {
                self.conn = Some(conn);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("write: {e}")),
            Err(_) => Err("write timed out".into()),
        }
    }
}

/// One record as an RFC 5424 message: facility "log audit" (13), severity
/// informational for an allowed attempt, warning for a denied one, error
/// for a failed one; the action as MSGID; the sequence number in the
/// standard `meta` element; the JSON line as the message.
pub fn syslog_message(record: &StoredAuditRecord, hostname: &str) -> String {
    let (line, event) = json_line(record);
    let severity = match event.as_ref().map(|e| e.outcome) {
        Some(strongroom_audit::Outcome::Allowed) => 6,
        Some(strongroom_audit::Outcome::Denied) => 4,
        _ => 3,
    };
    let (time, msgid) = match &event {
        Some(e) => (
            e.time.clone(),
            e.action
                .chars()
                .filter(char::is_ascii_graphic)
                .take(32)
                .collect::<String>(),
        ),
        None => ("-".into(), "-".into()),
    };
    let msgid = if msgid.is_empty() { "-".into() } else { msgid };
    format!(
        "<{}>1 {time} {hostname} strongroom - {msgid} [meta sequenceId=\"{}\"] {line}",
        13 * 8 + severity,
        record.seq
    )
}

struct HttpsSink {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Zeroizing<Vec<u8>>,
}

impl HttpsSink {
    fn new(config: &ForwarderConfig) -> Result<Self, WatchError> {
        let webhook = crate::config::WebhookConfig {
            url: config.target.clone(),
            secret_file: config.secret_file.clone().unwrap_or_default(),
            ca_file: config.ca_file.clone(),
        };
        let (client, url, secret) = crate::webhook::client_for(&webhook)?;
        Ok(Self {
            client,
            url,
            secret,
        })
    }

    async fn send(&mut self, records: &[StoredAuditRecord]) -> Result<(), String> {
        let mut body = String::new();
        for record in records {
            body.push_str(&json_line(record).0);
            body.push('\n');
        }
        let first = records.first().map_or(0, |r| r.seq);
        let last = records.last().map_or(0, |r| r.seq);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .header(
                crate::webhook::SIGNATURE_HEADER,
                crate::webhook::sign(&self.secret, now, body.as_bytes()),
            )
            .header(crate::webhook::DELIVERY_HEADER, format!("{first}-{last}"))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("send: {}", e.without_url()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {}", response.status()))
        }
    }
}
