//! Prometheus metrics, on a listener of their own.
//!
//! The API's listener never serves them: metrics say how busy the vault is,
//! who is frozen, how much stock it holds, which helps an attacker as much
//! as an operator. They are served on `[metrics] listen` (loopback by
//! default), and off loopback only with a bearer token.
//!
//! No label ever holds a token, a secret, a principal or a customer: routes
//! are their patterns (`/v1/secrets/{token}/reveal`), actions and detectors
//! are fixed names, currencies are ISO codes. Cardinality is bounded by the
//! code, not by traffic.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strongroom_store::TenantScope;
use strongroom_vault::Vault;
use strongroom_watch::Watch;
use zeroize::Zeroizing;

/// Upper bounds of the latency histogram, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// How long stock figures are reused between scrapes (counting a large
/// stock is a query over every voucher).
const STOCK_TTL: Duration = Duration::from_secs(60);

/// Requests of one (method, route, status).
#[derive(Default)]
struct RouteStats {
    count: AtomicU64,
    micros: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
}

type RouteKey = (String, String, u16);

/// Requests and their latency, per method, route pattern and status.
#[derive(Default)]
pub struct RequestMetrics {
    routes: RwLock<HashMap<RouteKey, Arc<RouteStats>>>,
}

impl RequestMetrics {
    /// Counts one request. `route` must be a route pattern, never a path.
    /// A method outside the standard ones counts as `other`: clients
    /// choose methods, and the set of labels must not grow with them.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = match method {
            "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => method,
            _ => "other",
        };
        let key = (method.to_owned(), route.to_owned(), status);
        let found = self
            .routes
            .read()
            .ok()
            .and_then(|routes| routes.get(&key).cloned());
        let stats = match found {
            Some(s) => s,
            None => match self.routes.write() {
                Ok(mut routes) => routes.entry(key).or_default().clone(),
                Err(_) => return,
            },
        };
        let secs = elapsed.as_secs_f64();
        stats.count.fetch_add(1, Ordering::Relaxed);
        stats.micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        for (bound, bucket) in BUCKETS.iter().zip(&stats.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn render(&self, out: &mut String) {
        let Ok(routes) = self.routes.read() else {
            return;
        };
        let mut keys: Vec<&RouteKey> = routes.keys().collect();
        keys.sort();
        header(
            out,
            "strongroom_http_requests_total",
            "counter",
            "HTTP requests by method, route pattern and status.",
        );
        for key in &keys {
            if let Some(s) = routes.get(*key) {
                let _ = writeln!(
                    out,
                    "strongroom_http_requests_total{{{}}} {}",
                    route_labels(key),
                    s.count.load(Ordering::Relaxed)
                );
            }
        }
        header(
            out,
            "strongroom_http_request_duration_seconds",
            "histogram",
            "Time to answer, by method, route pattern and status.",
        );
        for key in &keys {
            let Some(s) = routes.get(*key) else { continue };
            let labels = route_labels(key);
            for (bound, bucket) in BUCKETS.iter().zip(&s.buckets) {
                let _ = writeln!(
                    out,
                    "strongroom_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    bucket.load(Ordering::Relaxed)
                );
            }
            let count = s.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "strongroom_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "strongroom_http_request_duration_seconds_sum{{{labels}}} {}",
                s.micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "strongroom_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
    }
}

fn route_labels((method, route, status): &RouteKey) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{status}\"",
        escape(method),
        escape(route)
    )
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Stock figures per currency: vouchers by state, and the face value held.
type StockFigures = (BTreeMap<(String, String), i64>, BTreeMap<String, i64>);

/// Everything the metrics listener reads.
#[derive(Clone)]
pub struct MetricsState {
    /// The vault (seal state, stores).
    pub vault: Arc<Vault>,
    /// The detectors, freezes and forwarders.
    pub watch: Arc<Watch>,
    /// Request counts and latencies.
    pub requests: Arc<RequestMetrics>,
    /// Forwarders by name (their lag is reported even before they send).
    pub forwarders: Vec<String>,
    /// The bearer token scrapers must send, if any.
    pub token: Option<Arc<Zeroizing<String>>>,
    /// Stock figures and when they were counted.
    stock: Arc<Mutex<Option<(Instant, StockFigures)>>>,
}

impl MetricsState {
    /// The state of a metrics listener.
    pub fn new(
        vault: Arc<Vault>,
        watch: Arc<Watch>,
        requests: Arc<RequestMetrics>,
        forwarders: Vec<String>,
        token: Option<Zeroizing<String>>,
    ) -> Self {
        Self {
            vault,
            watch,
            requests,
            forwarders,
            token: token.map(Arc::new),
            stock: Arc::default(),
        }
    }

    async fn stock(&self) -> Option<StockFigures> {
        if let Ok(cached) = self.stock.lock()
            && let Some((at, figures)) = cached.as_ref()
            && at.elapsed() < STOCK_TTL
        {
            return Some(figures.clone());
        }
        let now = self.vault.clock().now_ms();
        let counts = self
            .vault
            .stores()
            .central
            .stock_counts(&TenantScope::All, now, now)
            .await
            .ok()?;
        let mut by_state: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut held: BTreeMap<String, i64> = BTreeMap::new();
        for c in counts {
            *by_state
                .entry((c.currency.clone(), c.state.clone()))
                .or_default() += c.count;
            if c.state == "available" || c.state == "reserved" {
                *held.entry(c.currency).or_default() += c.face_value.saturating_mul(c.count);
            }
        }
        let figures = (by_state, held);
        if let Ok(mut cached) = self.stock.lock() {
            *cached = Some((Instant::now(), figures.clone()));
        }
        Some(figures)
    }
}

/// The metrics listener's router: `GET /metrics`.
pub fn router(state: MetricsState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.token {
        let given = crate::auth::bearer_token(&headers).unwrap_or("");
        let same: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into();
        if !same {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "send the metrics token as 'Authorization: Bearer <token>'\n",
            )
                .into_response();
        }
    }
    let mut out = String::with_capacity(16 * 1024);
    state.requests.render(&mut out);
    render_vault(&state, &mut out).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn render_vault(state: &MetricsState, out: &mut String) {
    let stats = state.watch.stats();
    header(
        out,
        "strongroom_sealed",
        "gauge",
        "1 while the vault is sealed.",
    );
    let _ = writeln!(
        out,
        "strongroom_sealed {}",
        u8::from(!state.vault.is_unsealed())
    );

    let events = stats.events_by_action();
    header(
        out,
        "strongroom_audit_events_total",
        "counter",
        "Audit records written, by action and outcome.",
    );
    for ((action, outcome), n) in &events {
        let _ = writeln!(
            out,
            "strongroom_audit_events_total{{action=\"{}\",outcome=\"{outcome}\"}} {n}",
            escape(action)
        );
    }
    header(
        out,
        "strongroom_reveals_total",
        "counter",
        "Secrets revealed (allowed secret.reveal records).",
    );
    let reveals = events
        .get(&("secret.reveal".to_owned(), "allowed"))
        .copied()
        .unwrap_or(0);
    let _ = writeln!(out, "strongroom_reveals_total {reveals}");
    header(
        out,
        "strongroom_denials_total",
        "counter",
        "Refused attempts, by action.",
    );
    for ((action, outcome), n) in &events {
        if *outcome == "denied" {
            let _ = writeln!(
                out,
                "strongroom_denials_total{{action=\"{}\"}} {n}",
                escape(action)
            );
        }
    }

    header(
        out,
        "strongroom_alerts_total",
        "counter",
        "Alerts raised by this node, by detector.",
    );
    for (detector, n) in stats.alerts_by_detector() {
        let _ = writeln!(
            out,
            "strongroom_alerts_total{{detector=\"{detector}\"}} {n}"
        );
    }
    header(
        out,
        "strongroom_frozen_principals",
        "gauge",
        "Principals frozen now.",
    );
    let _ = writeln!(
        out,
        "strongroom_frozen_principals {}",
        state.watch.freezes().count()
    );
    header(
        out,
        "strongroom_watch_missed_records_total",
        "counter",
        "Audit records the detectors could not judge (they fell behind).",
    );
    let _ = writeln!(
        out,
        "strongroom_watch_missed_records_total {}",
        stats.missed.load(Ordering::Relaxed)
    );
    header(
        out,
        "strongroom_audit_append_failures_total",
        "counter",
        "Audit appends that failed (operations refused).",
    );
    let _ = writeln!(
        out,
        "strongroom_audit_append_failures_total {}",
        stats.audit_failures.load(Ordering::Relaxed)
    );

    let head = state
        .vault
        .stores()
        .audit
        .read_back(u64::MAX, 1)
        .await
        .ok()
        .and_then(|mut r| r.pop())
        .map_or(0, |r| r.seq);
    header(
        out,
        "strongroom_audit_head_seq",
        "gauge",
        "Sequence number of the newest audit record.",
    );
    let _ = writeln!(out, "strongroom_audit_head_seq {head}");
    header(
        out,
        "strongroom_audit_forwarder_lag_records",
        "gauge",
        "Audit records not yet delivered, by forwarder.",
    );
    let cursors = stats
        .forwarder_cursors
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    for name in &state.forwarders {
        let delivered = cursors.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "strongroom_audit_forwarder_lag_records{{forwarder=\"{}\"}} {}",
            escape(name),
            head.saturating_sub(delivered)
        );
    }

    if let Some((by_state, held)) = state.stock().await {
        header(
            out,
            "strongroom_stock_vouchers",
            "gauge",
            "Vouchers by currency and state.",
        );
        for ((currency, voucher_state), n) in &by_state {
            let _ = writeln!(
                out,
                "strongroom_stock_vouchers{{currency=\"{}\",state=\"{}\"}} {n}",
                escape(currency),
                escape(voucher_state)
            );
        }
        header(
            out,
            "strongroom_stock_value_minor_units",
            "gauge",
            "Face value held (available and reserved vouchers), in minor units, by currency: the exposure if the vault were emptied.",
        );
        for (currency, value) in &held {
            let _ = writeln!(
                out,
                "strongroom_stock_value_minor_units{{currency=\"{}\"}} {value}",
                escape(currency)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_every_bucket_at_or_above_it() {
        let m = RequestMetrics::default();
        m.record("GET", "/v1/x/{id}", 200, Duration::from_millis(3));
        m.record("GET", "/v1/x/{id}", 200, Duration::from_millis(30));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "strongroom_http_requests_total{method=\"GET\",route=\"/v1/x/{id}\",status=\"200\"} 2"
        ));
        assert!(out.contains("le=\"0.0025\"} 0"), "{out}");
        assert!(out.contains("le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("le=\"0.05\"} 2"), "{out}");
        assert!(out.contains("le=\"+Inf\"} 2"), "{out}");
    }

    #[test]
    fn invented_methods_share_one_label() {
        let m = RequestMetrics::default();
        for i in 0..100 {
            m.record(&format!("X{i}"), "unmatched", 404, Duration::from_millis(1));
        }
        assert_eq!(m.routes.read().unwrap().len(), 1);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("method=\"other\",route=\"unmatched\",status=\"404\"} 100"),
            "{out}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
