//! The load generator: N keep-alive HTTPS connections, each sending requests
//! back to back for a fixed time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::server::Server;

/// What each request does.
pub enum Scenario {
    /// `GET /v1/auth/whoami`: authentication only.
    Noop,
    /// `POST /v1/secrets` with a fresh value.
    Tokenize,
    /// `POST /v1/secrets/batch` with this many fresh values.
    Batch(usize),
    /// `POST /v1/secrets/{token}/reveal` over these tokens.
    Reveal(Arc<Vec<String>>),
    /// `POST /v1/orders` for a voucher of this SKU at 25.00, its code in
    /// the answer.
    Order(Arc<str>),
    /// `POST /v1/cards` with a fresh valid card number.
    Cards,
    /// `POST /v1/relay/bench/v1/charges` for this card token: the vault
    /// fills in the number and expiry and calls the upstream.
    Relay(Arc<str>),
    /// `POST /v1/charges` straight to the upstream with this card number:
    /// the baseline the relay is compared with.
    Direct(Arc<str>),
}

impl Scenario {
    fn share(&self) -> Scenario {
        match self {
            Scenario::Noop => Scenario::Noop,
            Scenario::Tokenize => Scenario::Tokenize,
            Scenario::Batch(n) => Scenario::Batch(*n),
            Scenario::Reveal(t) => Scenario::Reveal(t.clone()),
            Scenario::Order(sku) => Scenario::Order(sku.clone()),
            Scenario::Cards => Scenario::Cards,
            Scenario::Relay(t) => Scenario::Relay(t.clone()),
            Scenario::Direct(p) => Scenario::Direct(p.clone()),
        }
    }
}

/// A card number that passes Luhn, different for every call.
pub fn fresh_pan() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let body = format!("4{:05}{n:09}", std::process::id() % 100_000);
    (0..10)
        .map(|check| format!("{body}{check}"))
        .find(|pan| strongroom_cards::pan::luhn_valid(pan))
        .unwrap_or(body)
}

/// A TLS client for one server.
pub struct Client {
    connector: TlsConnector,
    addr: String,
    host: String,
    credentials: Value,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_value() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("BENCH-{}-{n:012}", std::process::id())
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

impl Client {
    pub async fn new(server: &Server) -> Result<Self> {
        let ca = server.credentials["ca_cert_path"]
            .as_str()
            .context("no CA in credentials")?;
        let authority = server.url.trim_start_matches("https://").to_owned();
        Self::to(
            &authority,
            std::path::Path::new(ca),
            server.credentials.clone(),
        )
    }

    /// A client of the local upstream (no credentials).
    pub fn upstream(upstream: &crate::upstream::Upstream) -> Result<Self> {
        Self::to(
            &format!("localhost:{}", upstream.port),
            &upstream.ca_file,
            Value::Null,
        )
    }

    fn to(authority: &str, ca: &std::path::Path, credentials: Value) -> Result<Self> {
        let pem = std::fs::read(ca)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let port = authority.rsplit(':').next().unwrap_or("8443");
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            addr: format!("127.0.0.1:{port}"),
            host: authority.to_owned(),
            credentials,
        })
    }

    async fn connect(&self) -> Result<Sender> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").map_err(|e| anyhow!("{e}"))?;
        let tls = self.connector.connect(name, tcp).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    async fn send(
        &self,
        sender: &mut Sender,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Result<(u16, Bytes)> {
        self.send_as(sender, method, path, token, "application/json", body)
            .await
    }

    async fn send_as(
        &self,
        sender: &mut Sender,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", content_type);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// An access token for the dev service principal.
    pub async fn login(&self) -> Result<String> {
        self.login_as("service").await
    }

    /// An access token for one of the dev principals.
    pub async fn login_as(&self, who: &str) -> Result<String> {
        let mut s = self.connect().await?;
        let body = json!({
            "grant_type": "client_credentials",
            "client_id": self.credentials[who]["client_id"],
            "client_secret": self.credentials[who]["client_secret"],
        });
        let (status, bytes) = self
            .send(
                &mut s,
                Method::POST,
                "/v1/auth/token",
                None,
                Some(body.to_string()),
            )
            .await?;
        let v: Value = serde_json::from_slice(&bytes)?;
        if status != 200 {
            anyhow::bail!("login failed: {v}");
        }
        Ok(v["access_token"].as_str().context("no token")?.to_owned())
    }

    /// Tokenizes one card as the dev gateway; returns its token.
    pub async fn card(&self, pan: &str) -> Result<String> {
        let token = self.login_as("gateway").await?;
        let mut s = self.connect().await?;
        let body = json!({"pan": pan, "expiry_month": 12, "expiry_year": 2031});
        let (status, bytes) = self
            .send(
                &mut s,
                Method::POST,
                "/v1/cards",
                Some(&token),
                Some(body.to_string()),
            )
            .await?;
        let v: Value = serde_json::from_slice(&bytes)?;
        if status != 201 {
            anyhow::bail!("card not stored: {v}");
        }
        Ok(v["token"].as_str().context("no token")?.to_owned())
    }

    /// Stores `n` secrets (in batches) and returns their tokens.
    pub async fn populate(&self, n: usize) -> Result<Vec<String>> {
        let token = self.login().await?;
        let mut s = self.connect().await?;
        let mut tokens = Vec::with_capacity(n);
        while tokens.len() < n {
            let items: Vec<Value> = (0..(n - tokens.len()).min(1000))
                .map(|_| json!({"class": "voucher_code", "value": unique_value()}))
                .collect();
            let (status, bytes) = self
                .send(
                    &mut s,
                    Method::POST,
                    "/v1/secrets/batch",
                    Some(&token),
                    Some(json!({"items": items}).to_string()),
                )
                .await?;
            let v: Value = serde_json::from_slice(&bytes)?;
            if status != 200 {
                anyhow::bail!("populate failed: {v}");
            }
            for item in v["items"].as_array().into_iter().flatten() {
                tokens.push(
                    item["token"]
                        .as_str()
                        .context("item not stored")?
                        .to_owned(),
                );
            }
        }
        Ok(tokens)
    }
}

/// Imports a CSV file of `rows` fresh codes as the dev stock manager, in one
/// upload, into a new product, and returns the report, the time it took and
/// the product's SKU.
pub async fn import(client: &Client, rows: usize) -> Result<(Value, Duration, String)> {
    let token = client.login_as("stock_manager").await?;
    let mut s = client.connect().await?;
    let suffix = unique_value();
    for (path, body) in [
        ("/v1/retailers", json!({"name": format!("Bench {suffix}")})),
        (
            "/v1/products",
            json!({"retailer": format!("Bench {suffix}"), "sku": format!("SKU-{suffix}"),
                   "name": "Bench card", "currency": "GBP", "denominations": [2500]}),
        ),
    ] {
        let (status, bytes) = client
            .send(
                &mut s,
                Method::POST,
                path,
                Some(&token),
                Some(body.to_string()),
            )
            .await?;
        if status != 201 {
            anyhow::bail!("{path}: {}", String::from_utf8_lossy(&bytes));
        }
    }
    let mut csv = String::with_capacity(rows * 60);
    csv.push_str("sku,code,face_value,currency,expires_at\n");
    for _ in 0..rows {
        csv.push_str(&format!(
            "SKU-{suffix},{},25.00,GBP,2099-12-31\n",
            unique_value()
        ));
    }
    let path = format!("/v1/imports?retailer=Bench%20{suffix}");
    let started = Instant::now();
    let (status, bytes) = client
        .send_as(
            &mut s,
            Method::POST,
            &path,
            Some(&token),
            "text/csv",
            Some(csv),
        )
        .await?;
    let took = started.elapsed();
    let report: Value = serde_json::from_slice(&bytes)?;
    if status != 201 || report["accepted"].as_u64() != Some(rows as u64) {
        anyhow::bail!("import failed: {report}");
    }
    Ok((report, took, format!("SKU-{suffix}")))
}

/// Measured results of one scenario.
pub struct Report {
    requests: u64,
    values: u64,
    errors: u64,
    elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Report {
    pub fn line(&self, name: &str, (rss, peak): (f64, f64)) -> String {
        let secs = self.elapsed.as_secs_f64();
        format!(
            "{name:<9} {:>9.0} req/s {:>10.0} values/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  errors {}  server RSS {rss:.0} MiB (peak {peak:.0})",
            self.requests as f64 / secs,
            self.values as f64 / secs,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3,
            self.errors,
        )
    }

    pub fn json(&self, name: &str, (rss, peak): (f64, f64)) -> Value {
        let secs = self.elapsed.as_secs_f64();
        json!({
            "scenario": name,
            "requests_per_sec": self.requests as f64 / secs,
            "values_per_sec": self.values as f64 / secs,
            "p50_ms": self.p50.as_secs_f64() * 1e3,
            "p99_ms": self.p99.as_secs_f64() * 1e3,
            "max_ms": self.max.as_secs_f64() * 1e3,
            "errors": self.errors,
            "requests": self.requests,
            "server_rss_mib": rss,
            "server_peak_rss_mib": peak,
        })
    }
}

/// Runs a scenario: 2 s of warm-up, then `measure` of measurement.
pub async fn run(
    client: &Client,
    scenario: &Scenario,
    token: &str,
    connections: usize,
    measure: Duration,
) -> Result<Report> {
    let client = Arc::new(Client {
        connector: client.connector.clone(),
        addr: client.addr.clone(),
        host: client.host.clone(),
        credentials: client.credentials.clone(),
    });
    let start = Instant::now();
    let warm_until = start + Duration::from_secs(2);
    let stop_at = warm_until + measure;
    let mut tasks = Vec::with_capacity(connections);
    for worker in 0..connections {
        let client = client.clone();
        let token = token.to_owned();
        let scenario = scenario.share();
        tasks.push(tokio::spawn(async move {
            let mut sender = client.connect().await?;
            let mut latencies: Vec<u32> = Vec::with_capacity(100_000);
            let (mut values, mut errors) = (0u64, 0u64);
            let mut i = worker;
            loop {
                let now = Instant::now();
                if now >= stop_at {
                    break;
                }
                let (method, path, body, per_request) = match &scenario {
                    Scenario::Noop => (Method::GET, "/v1/auth/whoami".to_owned(), None, 1),
                    Scenario::Tokenize => (
                        Method::POST,
                        "/v1/secrets".to_owned(),
                        Some(format!(
                            r#"{{"class":"voucher_code","value":"{}"}}"#,
                            unique_value()
                        )),
                        1,
                    ),
                    Scenario::Batch(n) => {
                        let mut body = String::with_capacity(n * 60 + 16);
                        body.push_str(r#"{"items":["#);
                        for k in 0..*n {
                            if k > 0 {
                                body.push(',');
                            }
                            body.push_str(r#"{"class":"voucher_code","value":""#);
                            body.push_str(&unique_value());
                            body.push_str(r#""}"#);
                        }
                        body.push_str("]}");
                        (
                            Method::POST,
                            "/v1/secrets/batch".to_owned(),
                            Some(body),
                            *n as u64,
                        )
                    }
                    Scenario::Reveal(tokens) => {
                        i = (i + connections) % tokens.len().max(1);
                        let t = tokens.get(i).cloned().unwrap_or_default();
                        (
                            Method::POST,
                            format!("/v1/secrets/{t}/reveal"),
                            Some(r#"{"purpose":"benchmark"}"#.to_owned()),
                            1,
                        )
                    }
                    Scenario::Order(sku) => (
                        Method::POST,
                        "/v1/orders".to_owned(),
                        Some(format!(
                            r#"{{"external_ref":"{}","sku":"{sku}","face_value":2500,"currency":"GBP","customer_ref":"bench","delivery":"code"}}"#,
                            unique_value()
                        )),
                        1,
                    ),
                    Scenario::Cards => (
                        Method::POST,
                        "/v1/cards".to_owned(),
                        Some(format!(
                            r#"{{"pan":"{}","expiry_month":12,"expiry_year":2031}}"#,
                            fresh_pan()
                        )),
                        1,
                    ),
                    Scenario::Relay(card) => (
                        Method::POST,
                        "/v1/relay/bench/v1/charges".to_owned(),
                        Some(format!(
                            r#"{{"card_token":"{card}","body":{{"amount":1999,"currency":"GBP","source":{{"number":"{{{{ card.pan }}}}","exp":"{{{{ card.expiry }}}}"}}}}}}"#
                        )),
                        1,
                    ),
                    Scenario::Direct(pan) => (
                        Method::POST,
                        "/v1/charges".to_owned(),
                        Some(format!(
                            r#"{{"amount":1999,"currency":"GBP","source":{{"number":"{pan}","exp":"12/31"}}}}"#
                        )),
                        1,
                    ),
                };
                let bearer = match &scenario {
                    Scenario::Direct(_) => None,
                    _ => Some(token.as_str()),
                };
                let sent = Instant::now();
                let outcome = client.send(&mut sender, method, &path, bearer, body).await;
                let took = sent.elapsed();
                if sent < warm_until {
                    if outcome.is_err() {
                        sender = client.connect().await?;
                    }
                    continue;
                }
                match outcome {
                    Ok((status, _)) if (200..300).contains(&status) => {
                        values += per_request;
                        latencies.push(took.as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    Ok(_) => {
                        errors += 1;
                        latencies.push(took.as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    Err(_) => {
                        errors += 1;
                        sender = client.connect().await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>((latencies, values, errors))
        }));
    }
    let mut all: Vec<u32> = Vec::new();
    let (mut values, mut errors) = (0, 0);
    for t in tasks {
        let (lat, v, e) = t.await??;
        all.extend(lat);
        values += v;
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| -> Duration {
        if all.is_empty() {
            return Duration::ZERO;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_micros(u64::from(all[idx.min(all.len() - 1)]))
    };
    Ok(Report {
        requests: all.len() as u64,
        values,
        errors,
        elapsed: measure,
        p50: pct(0.50),
        p99: pct(0.99),
        max: pct(1.0),
    })
}
