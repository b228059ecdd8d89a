//! Alerts POSTed to a webhook, signed so the receiver can trust them.
//!
//! # The signature
//! Each request carries `Strongroom-Signature: t=<unix seconds>,v1=<hex>`,
//! where the hex is HMAC-SHA-256 under the shared secret of
//! `"<t>.<body>"`. The receiver recomputes it, compares in constant time,
//! and refuses a `t` more than five minutes from its own clock: a captured
//! request cannot be replayed later. Within those five minutes, the
//! `Strongroom-Delivery` header (the alert id) lets it drop a repeat. The
//! timestamp is inside the MAC, so it cannot be refreshed by an attacker.
//! [`verify`] is the receiver's side, for tests and for receivers in Rust.

use std::sync::Arc;
use std::time::Duration;

use strongroom_crypto::mac::{hmac_sha256, verify_hmac_sha256};
use zeroize::Zeroizing;

use crate::WatchError;
use crate::config::WebhookConfig;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "strongroom-signature";
/// Header carrying the alert id, for de-duplication.
pub const DELIVERY_HEADER: &str = "strongroom-delivery";
/// How far a signature's time may be from the receiver's clock, seconds.
pub const TOLERANCE_SECS: i64 = 300;
/// Shortest signing secret accepted, bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Alerts waiting to be sent; past this, new ones are logged and dropped
/// from the webhook (they are stored and logged all the same).
const QUEUE: usize = 1024;
/// Attempts per alert, with waits of 1, 4, 16 … seconds between.
const ATTEMPTS: u32 = 4;

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let tag = hmac_sha256(secret, &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", data_encoding::HEXLOWER.encode(&tag))
}

/// Why a webhook request was not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is missing or not `t=…,v1=…`.
    #[error("malformed signature header")]
    Malformed,
    /// Signed too long ago (or in the future): a replay, or a wrong clock.
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// The MAC does not match: wrong secret or altered body.
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a request as a receiver should: the MAC over time and body, and
/// the time within [`TOLERANCE_SECS`] of `now_secs`.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(SignatureError::Malformed);
    };
    let timestamp: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
    let tag = data_encoding::HEXLOWER_PERMISSIVE
        .decode(v1.as_bytes())
        .map_err(|_| SignatureError::Malformed)?;
    verify_hmac_sha256(secret, &[t.as_bytes(), b".", body], &tag)
        .map_err(|_| SignatureError::Mismatch)?;
    if (now_secs - timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Sends alerts to the configured webhook from a background task.
#[derive(Clone, Debug)]
pub struct WebhookSender {
    queue: tokio::sync::mpsc::Sender<(String, Vec<u8>)>,
}

impl WebhookSender {
    /// Checks the configuration, reads the secret, and starts the sending
    /// task. Must run inside a Tokio runtime.
    pub fn start(config: &WebhookConfig) -> Result<Self, WatchError> {
        let (client, url, secret) = client_for(config)?;
        let (queue, rx) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(send_loop(client, url, Arc::new(secret), rx));
        Ok(Self { queue })
    }

    /// Queues an alert (its id and JSON body) without waiting.
    pub fn send(&self, id: String, body: Vec<u8>) {
        if self.queue.try_send((id, body)).is_err() {
            tracing::error!("alert webhook queue full; alert not sent to the webhook");
        }
    }
}

/// An HTTP client for `config.url` (TLS trusting `config.ca_file`; plain
/// HTTP only to a loopback address), the parsed URL and the signing secret
/// read from `config.secret_file`.
pub(crate) fn client_for(
    config: &WebhookConfig,
) -> Result<(reqwest::Client, reqwest::Url, Zeroizing<Vec<u8>>), WatchError> {
    let url = reqwest::Url::parse(&config.url)
        .map_err(|e| WatchError::Config(format!("webhook url '{}': {e}", config.url)))?;
    let loopback = url.host_str().is_some_and(|h| {
        h == "localhost"
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback())
    });
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("strongroom/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    match url.scheme() {
        "https" => {
            let ca = config.ca_file.as_ref().ok_or_else(|| {
                WatchError::Config(
                    "an https webhook needs ca_file: the CA certificates to trust for it".into(),
                )
            })?;
            let tls =
                crate::tls::client_config(ca).map_err(|e| WatchError::Config(e.to_string()))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        "http" if loopback => {
            let tls =
                crate::tls::trusting_nothing().map_err(|e| WatchError::Config(e.to_string()))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        _ => {
            return Err(WatchError::Config(format!(
                "webhook url must be https:// (http:// only to a loopback address), not '{}'",
                config.url
            )));
        }
    }
    let secret = Zeroizing::new(std::fs::read(&config.secret_file).map_err(|e| {
        WatchError::Config(format!(
            "webhook secret_file {}: {e}",
            config.secret_file.display()
        ))
    })?);
    let secret = Zeroizing::new(secret.trim_ascii().to_vec());
    if secret.len() < MIN_SECRET_BYTES {
        return Err(WatchError::Config(format!(
            "the webhook secret in {} is shorter than {MIN_SECRET_BYTES} characters",
            config.secret_file.display()
        )));
    }
    let client = builder
        .build()
        .map_err(|e| WatchError::Config(format!("webhook client: {e}")))?;
    Ok((client, url, secret))
}

async fn send_loop(
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Arc<Zeroizing<Vec<u8>>>,
    mut rx: tokio::sync::mpsc::Receiver<(String, Vec<u8>)>,
) {
    while let Some((id, body)) = rx.recv().await {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=ATTEMPTS {
            // Signed afresh on every attempt: the time is the sending time.
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let sent = client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, sign(&secret, now, &body))
                .header(DELIVERY_HEADER, &id)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => {
                    tracing::warn!(alert = %id, status = r.status().as_u16(), attempt, "alert webhook refused the alert")
                }
                Err(e) => {
                    tracing::warn!(alert = %id, error = %e, attempt, "alert webhook unreachable")
                }
            }
            if attempt == ATTEMPTS {
                tracing::error!(alert = %id, "alert not delivered to the webhook; it is in the alert list");
            } else {
                tokio::time::sleep(wait).await;
                wait *= 4;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let body = br#"{"id":"al_1"}"#;
        let header = sign(SECRET, 1_000, body);
        assert_eq!(verify(SECRET, &header, body, 1_010), Ok(()));
        assert_eq!(
            verify(SECRET, &header, br#"{"id":"al_2"}"#, 1_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret, of the same length", &header, body, 1_010),
            Err(SignatureError::Mismatch)
        );
        let moved = header.replace("t=1000", "t=1200");
        assert_eq!(
            verify(SECRET, &moved, body, 1_210),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, "v1=00", body, 1_000),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn an_old_request_is_a_replay() {
        let body = b"{}";
        let header = sign(SECRET, 1_000, body);
        assert_eq!(
            verify(SECRET, &header, body, 1_000 + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale)
        );
    }
}
