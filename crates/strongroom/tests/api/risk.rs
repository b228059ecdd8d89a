//! Risk scoring through the API: a first payment is unremarkable, a burst
//! and card testing are flagged with their reasons, the card can be named by
//! token or fingerprint, another tenant's card is not found, and every
//! decision is audited without the amount or the customer's address.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Harness, code, on_each_backend};

fn reasons(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

on_each_backend! {
async fn payments_are_scored_with_their_reasons_and_audited(store) {
    let h = Harness::dev_on(store).await;
    let svc = h.service().await;
    let (status, card) = svc
        .post("/v1/cards", json!({"pan": "4111111111111111", "expiry_month": 12, "expiry_year": 2031}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{card}");
    let token = card["token"].as_str().unwrap().to_owned();
    let fingerprint = card["fingerprint"].as_str().unwrap().to_owned();
    let pay = |amount: u64| {
        json!({"card_token": token, "amount": amount, "currency": "GBP",
               "customer_ref": "cust-42", "ip": "203.0.113.7"})
    };

    // First use: a few points, approved, and said why.
    let (status, first) = svc.post("/v1/risk/score", pay(2_500)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["decision"], "approve");
    assert_eq!(reasons(&first), ["first_use"]);
    assert_eq!(first["score"], 10);
    assert_eq!(first["features"]["card_uses"], 0);

    // The same card by its fingerprint is the same card; then a burst
    // within a minute climbs to review and decline.
    let mut last = Value::Null;
    for i in 0..5 {
        let body = json!({"fingerprint": fingerprint, "amount": 2_500, "currency": "GBP",
                          "customer_ref": "cust-42", "ip": "203.0.113.7"});
        let (status, b) = svc.post("/v1/risk/score", body).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(b["features"]["card_uses"], i + 1);
        h.clock.advance_secs(5);
        last = b;
    }
    assert!(reasons(&last).contains(&"card_velocity_minute".to_owned()), "{last}");
    assert!(last["score"].as_u64().unwrap() >= 50, "{last}");
    assert_ne!(last["decision"], "approve");
    assert!(last["reasons"][0]["detail"].as_str().unwrap().contains("last minute"), "{last}");

    // Card testing: many cards never seen before from one address.
    let mut testing = Value::Null;
    for i in 0..5 {
        let body = json!({"fingerprint": format!("{i:064x}"), "amount": 100, "currency": "GBP",
                          "customer_ref": format!("guest-{i}"), "ip": "198.51.100.9"});
        let (status, b) = svc.post("/v1/risk/score", body).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        testing = b;
    }
    assert!(reasons(&testing).contains(&"address_many_new_cards".to_owned()), "{testing}");
    assert_ne!(testing["decision"], "approve", "{testing}");

    // Malformed requests are refused and say what is wrong.
    for (body, fragment) in [
        (json!({"amount": 1, "currency": "GBP", "customer_ref": "c"}), "card_token or by fingerprint"),
        (json!({"card_token": token, "fingerprint": fingerprint, "amount": 1, "currency": "GBP", "customer_ref": "c"}), "one of them"),
        (json!({"fingerprint": "abc", "amount": 1, "currency": "GBP", "customer_ref": "c"}), "64 hex"),
        (json!({"card_token": token, "amount": 0, "currency": "GBP", "customer_ref": "c"}), "minor units"),
        (json!({"card_token": token, "amount": 1, "currency": "pounds", "customer_ref": "c"}), "ISO 4217"),
        (json!({"card_token": token, "amount": 1, "currency": "GBP", "customer_ref": ""}), "customer_ref"),
    ] {
        let (status, b) = svc.post("/v1/risk/score", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
        assert!(b["error"]["message"].as_str().unwrap().contains(fragment), "{fragment}: {b}");
    }

    // Only with `risk:score`; another tenant's card is not found.
    let support = h.principal("helpdesk", &["support"], &["dev"]).await;
    let (status, _) = support.post("/v1/risk/score", pay(100)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = h.principal("other-gateway", &["ingest"], &["other"]).await;
    let (status, b) = other.post("/v1/risk/score", pay(100)).await;
    assert_eq!((status, code(&b)), (StatusCode::NOT_FOUND, "secret.not_found"), "{b}");
    // A secret that is not a card is not scored.
    let (status, secret) = svc
        .post("/v1/secrets", json!({"class": "generic", "value": "not a card"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{secret}");
    let body = json!({"card_token": secret["token"], "amount": 1, "currency": "GBP", "customer_ref": "c"});
    let (status, b) = svc.post("/v1/risk/score", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("not a card"), "{b}");

    // Every decision audited: score, decision and reason codes, the
    // customer, the card token; not the amount or the customer's address.
    let rows = h.audit_rows().await;
    let scored: Vec<&String> = rows
        .iter()
        .map(|(_, b, _)| b)
        .filter(|b| b.contains("\"risk.score\"") && b.contains("\"allowed\""))
        .collect();
    assert_eq!(scored.len(), 11, "{scored:?}");
    assert!(scored.iter().any(|b| b.contains("score 10 approve: first_use") && b.contains("cust-42") && b.contains(&token)));
    assert!(rows.iter().any(|(_, b, _)| b.contains("\"risk.score\"") && b.contains("\"denied\"")));
    for (_, body, _) in &rows {
        assert!(!body.contains("203.0.113.7") && !body.contains("198.51.100.9"), "{body}");
    }
}
}
