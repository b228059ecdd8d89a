//! Prometheus metrics on their own listener, behind a token: requests and
//! latency per route, reveals, denials, alerts by detector, seal state,
//! stock and the value held per currency — and no token, code or principal
//! in any of it.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Harness, METRICS_TOKEN, TestStore, random_code};

async fn scrape(h: &Harness, token: Option<&str>) -> (StatusCode, String) {
    let addr = h.server.metrics_addr.expect("test servers serve metrics");
    let mut req = h.http.get(format!("http://{addr}/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened_and_name_no_secret() {
    let h = Harness::dev_on(TestStore::Sqlite).await;
    let svc = h.service().await;
    let codes: Vec<String> = (0..3).map(|_| random_code()).collect();
    let mut tokens = Vec::new();
    for c in &codes {
        tokens.push(svc.put(c).await);
    }
    assert_eq!(svc.reveal(&tokens[0]).await.0, StatusCode::OK);
    assert_eq!(svc.reveal(&tokens[1]).await.0, StatusCode::OK);
    let support = h.principal("helpdesk", &["support"], &["dev"]).await;
    assert_eq!(support.reveal(&tokens[2]).await.0, StatusCode::FORBIDDEN);
    // A probe of another tenant's token: an alert.
    let other = h.principal("other-ingest", &["ingest"], &["other"]).await;
    let foreign = other.put(&random_code()).await;
    assert_eq!(svc.reveal(&foreign).await.0, StatusCode::NOT_FOUND);
    // Stock: three vouchers of 25.00 GBP.
    let stock = h.creds.stock_manager.clone().unwrap();
    let stock = h.login(&stock.client_id, &stock.client_secret).await;
    let (_, retailer) = stock
        .post("/v1/retailers", json!({"tenant": "dev", "name": "Acme"}))
        .await;
    let retailer = retailer["id"].as_str().unwrap();
    let (status, body) = stock
        .post(
            "/v1/products",
            json!({"tenant": "dev", "retailer": retailer, "sku": "ACME-25", "name": "Gift card",
                   "currency": "GBP", "denominations": [2500]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let voucher_codes: Vec<String> = (0..3).map(|_| random_code()).collect();
    let csv = format!(
        "sku,code,face_value,currency\n{}",
        voucher_codes
            .iter()
            .map(|c| format!("ACME-25,{c},25.00,GBP\n"))
            .collect::<String>()
    );
    let (status, body) = stock
        .call_raw(
            Method::POST,
            &format!("/v1/imports?retailer={retailer}"),
            "text/csv",
            &csv,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Only with the token, and never on the API's listener.
    assert_eq!(scrape(&h, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(&h, Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.anonymous().get("/metrics").await.0, StatusCode::NOT_FOUND);

    // The alert is raised a moment after the probe.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (status, text) = scrape(&h, Some(METRICS_TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        if text.contains("strongroom_alerts_total{detector=\"suspicious_targets\"} 1")
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let at =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        at(
            "strongroom_http_requests_total{method=\"POST\",route=\"/v1/secrets/{token}/reveal\",status=\"200\"}"
        ),
        2.0
    );
    assert_eq!(
        at(
            "strongroom_http_requests_total{method=\"POST\",route=\"/v1/secrets/{token}/reveal\",status=\"403\"}"
        ),
        1.0
    );
    assert_eq!(
        at(
            "strongroom_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/secrets/{token}/reveal\",status=\"200\"}"
        ),
        2.0
    );
    assert_eq!(at("strongroom_reveals_total"), 2.0);
    assert_eq!(
        at("strongroom_denials_total{action=\"secret.reveal\"}"),
        2.0
    );
    assert_eq!(
        at("strongroom_alerts_total{detector=\"suspicious_targets\"}"),
        1.0
    );
    assert_eq!(at("strongroom_sealed"), 0.0);
    assert_eq!(at("strongroom_frozen_principals"), 0.0);
    assert_eq!(
        at("strongroom_stock_vouchers{currency=\"GBP\",state=\"available\"}"),
        3.0
    );
    assert_eq!(
        at("strongroom_stock_value_minor_units{currency=\"GBP\"}"),
        7500.0
    );
    assert!(at("strongroom_audit_head_seq") > 10.0);

    // No token, code or principal in any label or value.
    let (_, me) = svc.get("/v1/auth/whoami").await;
    let principal = me["id"].as_str().unwrap();
    for secret in codes
        .iter()
        .chain(&voucher_codes)
        .chain(&tokens)
        .chain([&foreign])
    {
        assert!(!text.contains(secret.as_str()), "{secret} in the metrics");
    }
    assert!(!text.contains(principal), "a principal id in the metrics");
    assert!(!text.contains("sr_vc_") && !text.contains("sr_gen_"));
}
