//! One HTTPS client per supplier, and the reading of every answer into what
//! to do next ([`SupplierError`]'s classes).
//!
//! Whether a failed call may have reached the supplier decides everything:
//! a refused connection never did (retry), while a timeout or a 5xx after an
//! order was sent may have bought something (look it up by reference, never
//! retry blindly). Reads are always safe to retry.

use std::time::Duration;

use serde_json::Value;
use strongroom_suppliers::SupplierError;
use zeroize::Zeroizing;

/// The largest answer read from a supplier.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Whether a call can buy something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// It places an order: an unclear outcome is ambiguous.
    Order,
    /// It only reads: an unclear outcome is worth a retry.
    Read,
}

/// How connectors reach their supplier.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// The supplier's configured name (in errors and logs).
    pub name: String,
    /// Base URL, `https://…` (plain `http://` only to a loopback address).
    pub base_url: String,
    /// Certificates to trust instead of the public web roots (PEM), for a
    /// supplier behind a private CA.
    pub tls: Option<rustls::ClientConfig>,
    /// Time allowed for one request, answer included.
    pub timeout: Duration,
}

/// A supplier's HTTP client.
#[derive(Debug, Clone)]
pub struct Transport {
    name: String,
    base: reqwest::Url,
    client: reqwest::Client,
}

/// Why a connector could not be built.
#[derive(Debug, thiserror::Error)]
#[error("supplier {supplier}: {why}")]
pub struct SetupError {
    /// The supplier.
    pub supplier: String,
    /// What is wrong.
    pub why: String,
}

/// The public web's roots (Mozilla's list), for suppliers on the internet.
fn public_roots() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Transport {
    /// A client for `settings`. Redirects are not followed (a redirected
    /// order could be sent twice, or a credential to another host), and no
    /// proxy is taken from the environment.
    pub fn new(settings: TransportSettings) -> Result<Self, SetupError> {
        let fail = |why: String| SetupError {
            supplier: settings.name.clone(),
            why,
        };
        let base = reqwest::Url::parse(settings.base_url.trim_end_matches('/'))
            .map_err(|e| fail(format!("base_url '{}': {e}", settings.base_url)))?;
        let loopback = base.host_str().is_some_and(|h| {
            h == "localhost"
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback())
        });
        if base.scheme() != "https" && !(base.scheme() == "http" && loopback) {
            return Err(fail(
                "base_url must be https:// (http:// only to a loopback address)".into(),
            ));
        }
        let tls = match settings.tls {
            Some(tls) => tls,
            None => public_roots().map_err(|e| fail(format!("TLS: {e}")))?,
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("strongroom/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| fail(format!("client: {e}")))?;
        Ok(Self {
            name: settings.name,
            base,
            client,
        })
    }

    /// The supplier's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `path` (starting with `/`) under the base URL.
    pub fn url(&self, path: &str) -> Result<reqwest::Url, SupplierError> {
        let mut url = self.base.clone();
        let joined = format!("{}{path}", self.base.path().trim_end_matches('/'));
        let (path, query) = joined.split_once('?').unwrap_or((&joined, ""));
        url.set_path(path);
        url.set_query((!query.is_empty()).then_some(query));
        Ok(url)
    }

    /// The client, to build a request with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A transient failure of this supplier.
    pub fn transient(
        &self,
        why: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> SupplierError {
        SupplierError::Transient {
            supplier: self.name.clone(),
            why: why.into(),
            retry_after,
        }
    }

    /// An outcome that may have bought something.
    pub fn ambiguous(&self, why: impl Into<String>) -> SupplierError {
        SupplierError::Ambiguous {
            supplier: self.name.clone(),
            why: why.into(),
        }
    }

    /// A business refusal.
    pub fn rejected(&self, code: impl Into<String>, why: impl Into<String>) -> SupplierError {
        SupplierError::Rejected {
            supplier: self.name.clone(),
            code: code.into(),
            why: why.into(),
        }
    }

    /// Sends `request` and reads the answer. 2xx gives its JSON body (an
    /// empty body is `null`); every other outcome is classified. `refusal`
    /// reads a supplier's error code and message from a 4xx body.
    pub async fn send(
        &self,
        call: Call,
        request: reqwest::RequestBuilder,
        refusal: fn(&Value) -> Option<(String, String)>,
    ) -> Result<(u16, Value), SupplierError> {
        let unclear = |why: String| match call {
            Call::Order => self.ambiguous(why),
            Call::Read => self.transient(why, None),
        };
        let mut response = match request.send().await {
            Ok(r) => r,
            // Never connected: nothing was sent.
            Err(e) if e.is_connect() => return Err(self.transient("could not connect", None)),
            Err(e) if e.is_timeout() => return Err(unclear("timed out".into())),
            Err(_) => return Err(unclear("the connection failed".into())),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // The body may hold codes: read into memory that is zeroed after.
        let mut body = Zeroizing::new(Vec::new());
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(unclear(format!("answer over {MAX_ANSWER_BYTES} bytes")));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(unclear("timed out reading".into())),
                Err(_) => return Err(unclear("the connection failed while reading".into())),
            }
        }
        let json: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) if (200..300).contains(&status) => {
                    return Err(unclear(format!(
                        "HTTP {status} with a body that is not JSON"
                    )));
                }
                Err(_) => Value::Null,
            }
        };
        match status {
            200..=299 => Ok((status, json)),
            // A request with this idempotency key is still being processed.
            102 => Err(unclear("HTTP 102: still in progress".into())),
            429 => Err(self.transient("rate limited (HTTP 429)", retry_after)),
            408 => Err(unclear("HTTP 408".into())),
            500..=599 => match call {
                Call::Order => Err(self.ambiguous(format!("HTTP {status}"))),
                Call::Read => Err(self.transient(format!("HTTP {status}"), retry_after)),
            },
            _ => {
                let (code, why) =
                    refusal(&json).unwrap_or_else(|| (format!("http_{status}"), String::new()));
                Err(self.rejected(code, why))
            }
        }
    }
}

/// A string field of a JSON object, if present.
pub fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// The array at `pointer`, or none.
pub fn array<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A field that suppliers send either as a number or a decimal string, as
/// text (`25`, `25.5`, `25.00`).
pub fn decimal_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.trim().to_owned()),
        _ => None,
    }
}
