//! Buying codes from suppliers, against local HTTPS servers that behave as
//! Runa's and Tango Card's documentation says: idempotency by client
//! reference, errors inside HTTP 200s, 429 with Retry-After, answers lost
//! after the order was taken, payouts fetched later, OAuth tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode as Status};
use axum::response::{IntoResponse, Response};
use figment::providers::Format;
use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom::suppliers::SuppliersSettings;
use strongroom_vault::Clock;

use crate::harness::{Caller, Harness, on_each_backend};

pub(crate) const RUNA_KEY: &str = "runa-live-key-0f1e2d3c4b5a69788796a5b4";
const TANGO_SECRET: &str = "tango-client-secret-9a8b7c6d5e4f";
const REST_KEY: &str = "shop-api-key-5566778899";

/// What the Runa model does next, and what it saw.
#[derive(Default)]
pub(crate) struct Runa {
    port: u16,
    /// Idempotency key → (request body, order).
    pub(crate) orders: HashMap<String, (Value, Value)>,
    /// Orders created (not repeats).
    placed: u32,
    /// Codes handed out by payout, every one.
    pub(crate) codes: Vec<String>,
    /// Answer 429 (Retry-After: 1) this many times.
    rate_limited: u32,
    /// Take this many orders and then answer too late.
    lose_answers: u32,
    /// Answer orders with HTTP 200 carrying this error code.
    refuse_with: Option<String>,
    /// Payouts cannot be fetched.
    payouts_down: bool,
    /// Everything answers 503.
    down: bool,
    /// Balance calls seen.
    balance_calls: u32,
}

pub(crate) type Shared = Arc<Mutex<Runa>>;

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(RUNA_KEY)
}

async fn runa_order(
    State(m): State<Shared>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let lose = {
        let mut m = m.lock().unwrap();
        if m.down {
            return Status::SERVICE_UNAVAILABLE.into_response();
        }
        if !authorised(&headers) {
            return (
                Status::UNAUTHORIZED,
                axum::Json(json!({"code": "unauthorized"})),
            )
                .into_response();
        }
        if m.rate_limited > 0 {
            m.rate_limited -= 1;
            return (Status::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
        }
        if let Some(code) = &m.refuse_with {
            return axum::Json(json!({"code": code, "message": "product out of stock"}))
                .into_response();
        }
        let key = headers
            .get("x-idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if let Some((seen, order)) = m.orders.get(&key) {
            if *seen != body.0 {
                return (
                    Status::BAD_REQUEST,
                    axum::Json(json!({"code": "idempotency_validation_error"})),
                )
                    .into_response();
            }
            return axum::Json(order.clone()).into_response();
        }
        m.placed += 1;
        let id = format!("ord_{}", m.placed);
        let item = &body.0["items"][0];
        let asynchronous = headers
            .get("x-execution-mode")
            .and_then(|v| v.to_str().ok())
            == Some("async");
        let order = json!({
            "id": id,
            "status": if asynchronous { "PROCESSING" } else { "COMPLETED" },
            "external_ref": key,
            "payment": {"currency": body.0["payment_method"]["currency"], "total_price": item["face_value"]},
            "items": [{"id": format!("{id}-1"), "face_value": item["face_value"],
                       "payout": {"url": format!("https://localhost:{}/payout/{id}-{}", m.port, strongroom_crypto::random::hex_id::<8>().unwrap())}}],
        });
        m.orders.insert(key, (body.0.clone(), order.clone()));
        let lose = m.lose_answers > 0;
        if lose {
            m.lose_answers -= 1;
        }
        if !lose {
            return axum::Json(order).into_response();
        }
        order
    };
    // Taken, but the answer comes after the client stopped waiting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    axum::Json(lose).into_response()
}

async fn runa_get_order(
    State(m): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut m = m.lock().unwrap();
    if !authorised(&headers) {
        return Status::UNAUTHORIZED.into_response();
    }
    // An asynchronous order completes by the time it is asked about.
    match m.orders.values_mut().find(|(_, o)| o["id"] == id.as_str()) {
        Some((_, o)) => {
            o["status"] = json!("COMPLETED");
            axum::Json(o.clone()).into_response()
        }
        None => Status::NOT_FOUND.into_response(),
    }
}

async fn runa_payout(
    State(m): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut m = m.lock().unwrap();
    if m.payouts_down || q.get("format").map(String::as_str) != Some("json") {
        return Status::BAD_GATEWAY.into_response();
    }
    let code = format!("RUNA-{}", id.to_uppercase());
    m.codes.push(code.clone());
    axum::Json(
        json!({"e_code": {"code": code, "pin": "4321", "url": "", "expiry_date": "2030-06-30"}}),
    )
    .into_response()
}

async fn runa_balance(State(m): State<Shared>, headers: HeaderMap) -> Response {
    let mut m = m.lock().unwrap();
    if m.down {
        return Status::SERVICE_UNAVAILABLE.into_response();
    }
    if !authorised(&headers) {
        return (
            Status::UNAUTHORIZED,
            axum::Json(json!({"code": "unauthorized", "message": "bad key"})),
        )
            .into_response();
    }
    m.balance_calls += 1;
    if m.rate_limited > 0 {
        m.rate_limited -= 1;
        return (Status::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
    }
    axum::Json(json!({"balances": [{"currency": "GBP", "balance": "10000.00"}]})).into_response()
}

/// Tango Card's model: tokens issued, orders by externalRefID.
#[derive(Default)]
pub(crate) struct Tango {
    tokens_issued: u32,
    orders: HashMap<String, Value>,
}

async fn tango_token(State(t): State<Arc<Mutex<Tango>>>, body: String) -> Response {
    let form: HashMap<String, String> = url_decode(&body);
    if form.get("client_secret").map(String::as_str) != Some(TANGO_SECRET)
        || form.get("client_id").map(String::as_str) != Some("strongroom")
    {
        return (
            Status::UNAUTHORIZED,
            axum::Json(json!({"code": "invalid_client"})),
        )
            .into_response();
    }
    let mut t = t.lock().unwrap();
    t.tokens_issued += 1;
    axum::Json(json!({"access_token": format!("tok-{}", t.tokens_issued), "expires_in": 86400}))
        .into_response()
}

fn url_decode(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3A", ":")))
        .collect()
}

fn bearer_ok(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer tok-"))
}

async fn tango_order(
    State(t): State<Arc<Mutex<Tango>>>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    if !bearer_ok(&headers) {
        return Status::UNAUTHORIZED.into_response();
    }
    let mut t = t.lock().unwrap();
    let reference = body.0["externalRefID"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Some(o) = t.orders.get(&reference) {
        return axum::Json(o.clone()).into_response();
    }
    let n = t.orders.len() + 1;
    let order = json!({
        "referenceOrderID": format!("RA-{n:06}"),
        "externalRefID": reference,
        "amountCharged": {"value": body.0["amount"], "currencyCode": "GBP", "total": body.0["amount"]},
        "status": "COMPLETE",
        "reward": {"credentialList": [
            {"label": "Card Number", "value": format!("TANGO-CODE-{n:04}-{}", strongroom_crypto::random::hex_id::<6>().unwrap()), "type": "text"},
            {"label": "PIN", "value": "9876", "type": "text"},
            {"label": "Redemption URL", "value": format!("https://claim.example/{n}-{}", strongroom_crypto::random::hex_id::<6>().unwrap()), "type": "url"},
            {"label": "Expiration Date", "value": "2031-01-31", "type": "date"}
        ], "redemptionInstructions": "Use online."}
    });
    t.orders.insert(reference, order.clone());
    axum::Json(order).into_response()
}

async fn tango_find(
    State(t): State<Arc<Mutex<Tango>>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !bearer_ok(&headers) {
        return Status::UNAUTHORIZED.into_response();
    }
    let t = t.lock().unwrap();
    let found: Vec<Value> = q
        .get("externalRefID")
        .and_then(|r| t.orders.get(r))
        .cloned()
        .into_iter()
        .collect();
    axum::Json(json!({"orders": found})).into_response()
}

async fn tango_account(headers: HeaderMap) -> Response {
    if !bearer_ok(&headers) {
        return Status::UNAUTHORIZED.into_response();
    }
    axum::Json(json!({"accountIdentifier": "main", "currencyCode": "GBP", "currentBalance": 120.5}))
        .into_response()
}

/// A retailer's own API (the REST connector's configuration describes it).
#[derive(Default)]
pub(crate) struct Retailer {
    /// Reference → answer.
    orders: HashMap<String, Value>,
    /// Answer with an error inside a 200.
    refuse: bool,
}

async fn rest_order(
    State(r): State<Arc<Mutex<Retailer>>>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let expected = format!("Bearer {REST_KEY}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Status::UNAUTHORIZED.into_response();
    }
    let mut r = r.lock().unwrap();
    if r.refuse {
        return axum::Json(
            json!({"ok": false, "error": {"code": "NO_STOCK", "message": "sold out"}}),
        )
        .into_response();
    }
    if body.0["sku"] != "SHOE-10" || body.0["amount"] != "10.00" {
        return (
            Status::BAD_REQUEST,
            axum::Json(json!({"error": {"code": "BAD_BODY"}})),
        )
            .into_response();
    }
    let reference = body.0["ref"].as_str().unwrap_or_default().to_owned();
    let n = r.orders.len() + 1;
    let answer = r.orders.entry(reference).or_insert_with(|| {
        json!({
            "ok": true,
            "data": {"id": format!("R{n}"),
                     "code": format!("SHOE-{n}-{}", strongroom_crypto::random::hex_id::<6>().unwrap()),
                     "pin": "1111", "expires": "2029-12-31"},
            "price": "9.50"
        })
    });
    axum::Json(answer.clone()).into_response()
}

async fn rest_find(
    State(r): State<Arc<Mutex<Retailer>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = r.lock().unwrap();
    match q.get("ref").and_then(|x| r.orders.get(x)) {
        Some(a) => axum::Json(a.clone()).into_response(),
        None => Status::NOT_FOUND.into_response(),
    }
}

/// Starts the models on one local HTTPS server; returns its port.
pub(crate) async fn suppliers_server(
    cert: Vec<u8>,
    key: Vec<u8>,
    runa: Shared,
    tango: Arc<Mutex<Tango>>,
    retailer: Arc<Mutex<Retailer>>,
) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    runa.lock().unwrap().port = port;
    let runa_routes = axum::Router::new()
        .route("/v2/order", axum::routing::post(runa_order))
        .route("/v2/order/{id}", axum::routing::get(runa_get_order))
        .route("/v2/balance", axum::routing::get(runa_balance))
        .route("/payout/{id}", axum::routing::get(runa_payout))
        .with_state(runa);
    let tango_routes = axum::Router::new()
        .route("/tango/oauth/token", axum::routing::post(tango_token))
        .route(
            "/tango/raas/v2/orders",
            axum::routing::post(tango_order).get(tango_find),
        )
        .route(
            "/tango/raas/v2/accounts/main",
            axum::routing::get(tango_account),
        )
        .with_state(tango);
    let rest_routes = axum::Router::new()
        .route(
            "/shop/codes",
            axum::routing::post(rest_order).get(rest_find),
        )
        .with_state(retailer);
    let tls = strongroom_api::server::tls_config(&cert, &key).unwrap();
    tokio::spawn(strongroom_api::server::serve_tls(
        listener,
        runa_routes.merge(tango_routes).merge(rest_routes),
        tls,
        axum_server::Handle::new(),
    ));
    port
}

fn settings(port: u16, ca: &std::path::Path) -> SuppliersSettings {
    let ca = ca.display().to_string().replace('\\', "/");
    let text = format!(
        r#"
replenish_every_secs = 0
reconcile_daily = false
collect_within_secs = 1

[[supplier]]
name = "runa"
kind = "runa"
tenant = "dev"
base_url = "https://localhost:{port}"
ca_file = "{ca}"
timeout_secs = 1
requests_per_sec = 50
daily_limit = ["100000.00 GBP"]
low_balance = ["50.00 GBP"]
  [[supplier.product]]
  sku = "AMZ-25"
  supplier_product = "AMZ-UK"
  min_stock = 2
  target_stock = 5
  [[supplier.product]]
  sku = "EMPTY-10"
  supplier_product = "GONE-UK"
  min_stock = 1
  target_stock = 2
  [[supplier.product]]
  sku = "PAYOUT-5"
  supplier_product = "PAY-UK"
  min_stock = 1
  target_stock = 1
  [[supplier.product]]
  sku = "NOW-15"
  supplier_product = "NOW-UK"
  on_demand = true
  min_stock = 0
  target_stock = 0

[[supplier]]
name = "runa-async"
kind = "runa"
tenant = "dev"
base_url = "https://localhost:{port}"
ca_file = "{ca}"
requests_per_sec = 50
daily_limit = ["1000.00 GBP"]
  [supplier.runa]
  execution_mode = "async"
  [[supplier.product]]
  sku = "LATER-30"
  supplier_product = "LATER"
  min_stock = 1
  target_stock = 2

[[supplier]]
name = "shop"
kind = "rest"
tenant = "dev"
base_url = "https://localhost:{port}/shop"
ca_file = "{ca}"
requests_per_sec = 50
daily_limit = ["1000.00 GBP"]
  [supplier.rest]
  order_path = "/codes"
  order_body = {{ ref = "{{reference}}", sku = "{{product}}", amount = "{{face_value}}" }}
  find_path = "/codes?ref={{reference}}"
  code_pointer = "/data/code"
  pin_pointer = "/data/pin"
  expiry_pointer = "/data/expires"
  order_id_pointer = "/data/id"
  charged_pointer = "/price"
  error_pointer = "/error/code"
  error_message_pointer = "/error/message"
  [[supplier.product]]
  sku = "REST-10"
  supplier_product = "SHOE-10"
  min_stock = 1
  target_stock = 2

[[supplier]]
name = "runa-tight"
kind = "runa"
tenant = "dev"
base_url = "https://localhost:{port}"
ca_file = "{ca}"
timeout_secs = 5
requests_per_sec = 50
daily_limit = ["100.00 GBP"]
  [[supplier.product]]
  sku = "LIMIT-A"
  supplier_product = "LIM-A"
  min_stock = 1
  target_stock = 3
  [[supplier.product]]
  sku = "LIMIT-B"
  supplier_product = "LIM-B"
  min_stock = 1
  target_stock = 3
  [[supplier.product]]
  sku = "LIMIT-C"
  supplier_product = "LIM-C"
  min_stock = 1
  target_stock = 1

[[supplier]]
name = "flaky"
kind = "runa"
tenant = "dev"
base_url = "https://localhost:{port}"
ca_file = "{ca}"
timeout_secs = 2
requests_per_sec = 50
breaker_failures = 2
breaker_cool_down_secs = 1
daily_limit = ["1000.00 GBP"]
  [[supplier.product]]
  sku = "FLAKY-20"
  supplier_product = "FLK"
  min_stock = 1
  target_stock = 1

[[supplier]]
name = "tango"
kind = "tango"
tenant = "dev"
base_url = "https://localhost:{port}/tango"
ca_file = "{ca}"
timeout_secs = 5
requests_per_sec = 20
daily_limit = ["1000.00 GBP"]
low_balance = ["200.00 GBP"]
  [supplier.tango]
  customer = "acme"
  account = "main"
  [[supplier.product]]
  sku = "TANGO-50"
  supplier_product = "U123456"
  face_values = ["50.00"]
  min_stock = 1
  target_stock = 2
  [[supplier.product]]
  sku = "TANGO-500"
  supplier_product = "U999999"
  min_stock = 1
  target_stock = 1
"#
    );
    let parsed: SuppliersSettings = figment::Figment::new()
        .merge(figment::providers::Toml::string(&text))
        .extract()
        .unwrap();
    parsed.check().unwrap();
    parsed
}

async fn product(stock: &Caller, sku: &str, face: i64) {
    let (status, body) = stock
        .post(
            "/v1/products",
            json!({"retailer": "Supplied", "sku": sku, "name": sku, "currency": "GBP", "denominations": [face]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn replenish(stock: &Caller, sku: &str, face_value: i64) -> Value {
    let (status, body) = stock
        .post(
            "/v1/suppliers/replenish",
            json!({"sku": sku, "face_value": face_value}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["purchase"].clone()
}

async fn plan_line(stock: &Caller, sku: &str) -> Value {
    let (status, plan) = stock.get("/v1/suppliers/replenishment").await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    plan.as_array()
        .unwrap()
        .iter()
        .find(|l| l["sku"] == sku)
        .cloned()
        .unwrap()
}

on_each_backend! {
async fn codes_are_bought_once_into_stock_within_limits_and_reconciled(store) {
    let dir = tempfile::TempDir::new().unwrap();
    let (cert, key, ca) = strongroom::devtls::ensure(&strongroom::datadir::DataDir::new(dir.path())).unwrap();
    let runa = Shared::default();
    let tango = Arc::new(Mutex::new(Tango::default()));
    let retailer = Arc::new(Mutex::new(Retailer::default()));
    let port = suppliers_server(cert, key, runa.clone(), tango.clone(), retailer.clone()).await;
    let h = Harness::dev_suppliers(store, settings(port, &ca)).await;
    let stock = h.principal("buyer", &["stock_manager"], &["dev"]).await;
    let officer = h.officer().await;
    let (status, body) = stock.post("/v1/retailers", json!({"name": "Supplied"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (sku, face) in [
        ("AMZ-25", 2500),
        ("EMPTY-10", 1000),
        ("PAYOUT-5", 500),
        ("LIMIT-A", 2500),
        ("LIMIT-B", 2500),
        ("LIMIT-C", 2500),
        ("FLAKY-20", 2000),
        ("TANGO-50", 5000),
        ("TANGO-500", 50_000),
        ("NOW-15", 1500),
        ("LATER-30", 3000),
        ("REST-10", 1000),
    ] {
        product(&stock, sku, face).await;
    }

    // Without a credential nothing is bought; only a security officer sets
    // one, and nobody reads it back.
    let purchase = replenish(&stock, "AMZ-25", 2500).await;
    assert_eq!(purchase["state"], "failed", "{purchase}");
    assert!(purchase["note"].as_str().unwrap().contains("no credential"), "{purchase}");
    let (status, _) = stock
        .put_json("/v1/suppliers/runa/credential", json!({"credential": RUNA_KEY}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for name in ["runa", "runa-tight", "flaky", "runa-async"] {
        let (status, body) = officer
            .put_json(&format!("/v1/suppliers/{name}/credential"), json!({"credential": RUNA_KEY}))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (status, body) = officer
        .put_json("/v1/suppliers/shop/credential", json!({"credential": REST_KEY}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // An officer of another tenant cannot touch this tenant's suppliers.
    let elsewhere = h.principal("officer-elsewhere", &["security_officer"], &["other"]).await;
    let (status, body) = elsewhere
        .put_json("/v1/suppliers/runa/credential", json!({"credential": "attacker-key"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = officer
        .put_json("/v1/suppliers/tango/credential", json!({"credential": format!("strongroom:{TANGO_SECRET}")}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, listed) = stock.get("/v1/suppliers").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert!(!listed.to_string().contains(RUNA_KEY) && !listed.to_string().contains(TANGO_SECRET));
    assert!(listed.as_array().unwrap().iter().all(|s| s["credential_set_at"].is_string()), "{listed}");

    // Replenished to target through a 429 (Retry-After honoured) and an
    // answer lost after the order was taken (found by its reference, not
    // bought again).
    {
        let mut m = runa.lock().unwrap();
        m.rate_limited = 1;
        m.lose_answers = 1;
    }
    let line = plan_line(&stock, "AMZ-25").await;
    assert_eq!((line["available"].as_i64(), line["to_order"].as_i64()), (Some(0), Some(5)), "{line}");
    let purchase = replenish(&stock, "AMZ-25", 2500).await;
    assert_eq!(purchase["state"], "complete", "{purchase}");
    assert_eq!(purchase["codes_received"], 5);
    assert_eq!(purchase["charged"], 12_500);
    {
        let m = runa.lock().unwrap();
        assert_eq!(m.placed, 5, "five codes, five orders: the lost answer was not bought twice");
        assert!(m.balance_calls >= 2, "the 429 was retried");
    }
    let refs: Vec<&str> = purchase["lines"].as_array().unwrap().iter().map(|l| l["reference"].as_str().unwrap()).collect();
    assert_eq!(refs.len(), 5);
    assert!(refs.iter().all(|r| r.starts_with("sr-r-pu_")), "{refs:?}");
    let line = plan_line(&stock, "AMZ-25").await;
    assert_eq!((line["available"].as_i64(), line["to_order"].as_i64()), (Some(5), Some(0)), "{line}");
    // The codes are in the vault: a fulfilment order delivers one.
    let fulfil = h.principal("storefront", &["fulfilment"], &["dev"]).await;
    let (status, order) = fulfil
        .post("/v1/orders", json!({"external_ref": "o-1", "sku": "AMZ-25", "face_value": 2500, "currency": "GBP",
                "customer_ref": "c-1", "delivery": "code"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let delivered = order["code"].as_str().unwrap_or_default().to_owned();
    assert!(runa.lock().unwrap().codes.contains(&delivered), "{order}");

    // An error inside an HTTP 200 buys nothing and is reported.
    runa.lock().unwrap().refuse_with = Some("RE006".into());
    let placed_before = runa.lock().unwrap().placed;
    let purchase = replenish(&stock, "EMPTY-10", 1000).await;
    assert_eq!(purchase["state"], "failed", "{purchase}");
    assert_eq!(purchase["codes_received"], 0);
    assert!(purchase["note"].as_str().unwrap().contains("RE006"), "{purchase}");
    assert_eq!(runa.lock().unwrap().placed, placed_before);
    runa.lock().unwrap().refuse_with = None;

    // Spend limits hold under concurrent replenishment: 75.00 each against
    // 100.00 a day; one waits for a security officer, who is not the asker.
    let (a, b) = tokio::join!(replenish(&stock, "LIMIT-A", 2500), replenish(&stock, "LIMIT-B", 2500));
    let mut states = [a["state"].as_str().unwrap().to_owned(), b["state"].as_str().unwrap().to_owned()];
    states.sort();
    assert_eq!(states, ["awaiting_approval".to_owned(), "complete".to_owned()], "{a} {b}");
    let waiting = if a["state"] == "awaiting_approval" { a } else { b };
    // While it waits, replenishing again buys nothing more of either.
    for sku in ["LIMIT-A", "LIMIT-B"] {
        assert!(replenish(&stock, sku, 2500).await.is_null(), "{sku}");
    }
    let (_, listed) = stock.get("/v1/suppliers").await;
    let tight = listed.as_array().unwrap().iter().find(|s| s["name"] == "runa-tight").unwrap().clone();
    assert!(tight["spend"][0]["spent"].as_i64().unwrap() <= 10_000, "{tight}");
    let id = waiting["id"].as_str().unwrap();
    let (status, _) = stock.post(&format!("/v1/purchases/{id}/approve"), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, approved) = officer.post(&format!("/v1/purchases/{id}/approve"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["state"], "complete", "{approved}");
    assert!(!approved["approved_by"].as_str().unwrap().is_empty());
    // Four eyes: whoever asked cannot approve, even holding both powers.
    let (status, body) = h.admin().await
        .put_json("/v1/roles/buyer-approver", json!({"permissions": ["suppliers:buy", "suppliers:approve_spend"]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = h.approver().await
        .post("/v1/roles/buyer-approver/approve", json!({"permissions": ["suppliers:buy", "suppliers:approve_spend"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let both = h.principal("buyer-approver", &["buyer-approver"], &["dev"]).await;
    let over = replenish(&both, "LIMIT-C", 2500).await;
    assert_eq!(over["state"], "awaiting_approval", "{over}");
    let over_id = over["id"].as_str().unwrap();
    let (status, body) = both.post(&format!("/v1/purchases/{over_id}/approve"), json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("purchase.same_person")), "{body}");
    let (status, body) = officer.post(&format!("/v1/purchases/{over_id}/decline"), json!({"reason": "not this week"})).await;
    assert_eq!((status, body["state"].as_str()), (StatusCode::OK, Some("declined")), "{body}");
    let (status, again) = officer.post(&format!("/v1/purchases/{id}/approve"), json!({})).await;
    assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("purchase.state")));

    // The circuit opens on a failing supplier and closes when it recovers.
    runa.lock().unwrap().down = true;
    let purchase = replenish(&stock, "FLAKY-20", 2000).await;
    assert_eq!(purchase["state"], "failed", "{purchase}");
    let circuit = |listed: &Value| listed.as_array().unwrap().iter().find(|s| s["name"] == "flaky").unwrap()["circuit"].clone();
    let (_, listed) = stock.get("/v1/suppliers").await;
    assert_eq!(circuit(&listed), "open", "{listed}");
    runa.lock().unwrap().down = false;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let purchase = replenish(&stock, "FLAKY-20", 2000).await;
    assert_eq!(purchase["state"], "complete", "{purchase}");
    let (_, listed) = stock.get("/v1/suppliers").await;
    assert_eq!(circuit(&listed), "closed", "{listed}");

    // Tango Card: one OAuth token for several calls; code, PIN, claim URL.
    let purchase = replenish(&stock, "TANGO-50", 5000).await;
    assert_eq!(purchase["state"], "complete", "{purchase}");
    assert_eq!(purchase["codes_received"], 2);
    assert_eq!(purchase["charged"], 10_000);
    assert_eq!(tango.lock().unwrap().tokens_issued, 1);
    assert_eq!(tango.lock().unwrap().orders.len(), 2);
    // The balance is checked first: 500.00 is more than the 120.50 left,
    // so nothing is ordered; a balance under 200.00 raises an alert.
    let purchase = replenish(&stock, "TANGO-500", 50_000).await;
    assert_eq!(purchase["state"], "failed", "{purchase}");
    assert!(purchase["note"].as_str().unwrap().contains("insufficient balance"), "{purchase}");
    assert_eq!(tango.lock().unwrap().orders.len(), 2);
    let mut alerted = Value::Null;
    for _ in 0..50 {
        let (status, alerts) = officer.get("/v1/alerts?detector=suppliers").await;
        assert_eq!(status, StatusCode::OK, "{alerts}");
        if alerts.to_string().contains("balance is low") {
            alerted = alerts;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(alerted.to_string().contains("supplier:tango"), "no low-balance alert: {alerted}");

    // Runa's asynchronous mode: accepted at once, collected once complete.
    let purchase = replenish(&stock, "LATER-30", 3000).await;
    assert_eq!(purchase["state"], "complete", "{purchase}");
    assert_eq!(purchase["codes_received"], 2);

    // A retailer's own API through the REST connector: an error inside a
    // 200 is a refusal; then two codes, charged at the retailer's price.
    retailer.lock().unwrap().refuse = true;
    let purchase = replenish(&stock, "REST-10", 1000).await;
    assert_eq!(purchase["state"], "failed", "{purchase}");
    assert!(purchase["note"].as_str().unwrap().contains("NO_STOCK"), "{purchase}");
    retailer.lock().unwrap().refuse = false;
    let purchase = replenish(&stock, "REST-10", 1000).await;
    assert_eq!(purchase["state"], "complete", "{purchase}");
    assert_eq!((purchase["codes_received"].as_i64(), purchase["charged"].as_i64()), (Some(2), Some(1900)), "{purchase}");

    // On demand: an order that finds no stock buys one code and gets it.
    let (status, order) = fulfil
        .post("/v1/orders", json!({"external_ref": "o-now", "sku": "NOW-15", "face_value": 1500, "currency": "GBP",
                "customer_ref": "c-2", "delivery": "code"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let delivered = order["code"].as_str().unwrap_or_default().to_owned();
    assert!(runa.lock().unwrap().codes.contains(&delivered), "{order}");

    // Supplier credentials are read by the server only: their token is in
    // the audit log, but revealing it is refused to anyone.
    let auditor = h.principal("auditor", &["auditor"], &["*"]).await;
    let (status, reads) = auditor.get("/v1/audit?action=supplier.credential_read").await;
    assert_eq!(status, StatusCode::OK, "{reads}");
    let text = reads.to_string();
    let at = text.find("sr_sup_").expect("a credential read is audited");
    let token: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let (status, body) = fulfil.post(&format!("/v1/secrets/{token}/reveal"), json!({"purpose": "curious"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("request.invalid")), "{body}");
    assert!(!body.to_string().contains(RUNA_KEY));
    // Nor deletes it (only replacing it does), while its keys rotate.
    let (status, body) = officer.delete(&format!("/v1/secrets/{token}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = officer
        .post("/v1/keys/rotate", json!({"tenant": "dev", "class": "supplier_credential"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // …and nobody stores one through the secrets API either.
    let (status, body) = stock
        .post("/v1/secrets", json!({"tenant": "dev", "class": "supplier_credential", "value": "planted"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A seeded mismatch: an order placed and charged whose code never
    // arrives. Reconciliation lists it and records it as an event.
    runa.lock().unwrap().payouts_down = true;
    let purchase = replenish(&stock, "PAYOUT-5", 500).await;
    assert_eq!(purchase["state"], "unsettled", "{purchase}");
    assert_eq!(purchase["charged"], 500);
    assert_eq!(purchase["codes_received"], 0);
    let today = strongroom_vouchers::supply::day_of(h.clock.now_ms());
    let (status, report) = stock.post("/v1/suppliers/reconcile", json!({"day": today})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let mismatches = report["mismatches"].as_array().unwrap();
    assert!(
        mismatches.iter().any(|m| m["kind"] == "charged_without_codes" && m["purchase_id"] == purchase["id"]),
        "{report}"
    );
    assert!(mismatches.iter().all(|m| m["purchase_id"] == purchase["id"]), "only the seeded one: {report}");
    assert_eq!(report["received"], report["in_stock"], "{report}");
    let (status, found) = auditor.get("/v1/audit?action=supplier.reconcile_mismatch").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert!(found.to_string().contains(purchase["id"].as_str().unwrap()), "{found}");
    // …and once the payout is back, reconciling again collects the code.
    runa.lock().unwrap().payouts_down = false;
    let (_, report) = stock.post("/v1/suppliers/reconcile", json!({"day": today})).await;
    assert!(report["mismatches"].as_array().unwrap().is_empty(), "{report}");
    let (_, settled) = stock.get(&format!("/v1/purchases/{}", purchase["id"].as_str().unwrap())).await;
    assert_eq!(settled["state"], "complete", "{settled}");
}
}

/// `strongroom suppliers` at the command line: a dry run buys nothing,
/// replenishing prints each purchase, reconciliation exits 3 on a mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppliers_at_the_command_line() {
    let dir = tempfile::TempDir::new().unwrap();
    let (cert, key, ca) =
        strongroom::devtls::ensure(&strongroom::datadir::DataDir::new(dir.path())).unwrap();
    let runa = Shared::default();
    let port = suppliers_server(
        cert,
        key,
        runa.clone(),
        Default::default(),
        Default::default(),
    )
    .await;
    let mut config = settings(port, &ca);
    config.supplier.retain(|s| s.name == "runa");
    let h = Harness::dev_suppliers(crate::harness::TestStore::Sqlite, config).await;
    let stock = h.creds.stock_manager.clone().expect("dev stock manager");
    let caller = h.login(&stock.client_id, &stock.client_secret).await;
    let (status, body) = caller
        .post("/v1/retailers", json!({"name": "Supplied"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    product(&caller, "AMZ-25", 2500).await;
    let (status, body) = h
        .officer()
        .await
        .put_json(
            "/v1/suppliers/runa/credential",
            json!({"credential": RUNA_KEY}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let out = crate::cli::cli_as(&h, &stock, &["suppliers", "replenish", "--dry-run"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("AMZ-25 25.00 GBP from runa: 0 available, 0 on order, buying 5"),
        "{}",
        text(&out)
    );
    assert_eq!(runa.lock().unwrap().placed, 0, "a dry run buys nothing");

    let out = crate::cli::cli_as(&h, &stock, &["suppliers", "replenish"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("complete") && text(&out).contains("5/5 codes"),
        "{}",
        text(&out)
    );
    assert_eq!(runa.lock().unwrap().placed, 5);
    let out = crate::cli::cli_as(&h, &stock, &["suppliers", "replenish"]).await;
    assert!(
        text(&out).contains("nothing is below its minimum"),
        "{}",
        text(&out)
    );

    let out = crate::cli::cli_as(&h, &stock, &["suppliers", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("runa") && text(&out).contains("closed"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(RUNA_KEY));

    let today = strongroom_vouchers::supply::day_of(h.clock.now_ms());
    let out = crate::cli::cli_as(&h, &stock, &["suppliers", "reconcile", "--date", &today]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("5 codes ordered, 5 received, 5 in stock"),
        "{}",
        text(&out)
    );

    // Seed a mismatch: a voucher of the purchase removed behind the vault's back.
    let (_, listed) = caller.get("/v1/purchases").await;
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    h.tamper(
        strongroom_store_postgres::Store::Central,
        "DELETE FROM vouchers WHERE id = (SELECT id FROM vouchers WHERE import_id = $1 LIMIT 1)",
        &[&id],
    )
    .await;
    let out = crate::cli::cli_as(&h, &stock, &["suppliers", "reconcile", "--date", &today]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("received_not_in_stock"),
        "{}",
        text(&out)
    );
    let out = crate::cli::cli_as(
        &h,
        &stock,
        &["suppliers", "reconcile", "--date", "30-11-2026"],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out).contains("YYYY-MM-DD"), "{}", text(&out));
}
