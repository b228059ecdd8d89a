//! Searching and exporting the audit log, and one voucher's history: what
//! an auditor sees, and what a caller without the right or the tenant does
//! not.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Caller, Harness, code, on_each_backend};

fn records(page: &Value) -> &Vec<Value> {
    page["records"].as_array().unwrap()
}

fn seqs(page: &Value) -> Vec<u64> {
    records(page)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect()
}

async fn text(caller: &Caller, path: &str) -> (StatusCode, String) {
    let resp = caller
        .http
        .get(format!("{}{path}", caller.url))
        .bearer_auth(caller.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

on_each_backend! {
async fn auditors_search_by_action_token_outcome_actor_and_time(store) {
    let h = Harness::dev_on(store).await;
    let service = h.service().await;
    let kept = service.put(&crate::harness::random_code()).await;
    let other = service.put(&crate::harness::random_code()).await;
    assert_eq!(service.reveal(&kept).await.0, StatusCode::OK);
    assert_eq!(service.reveal(&kept).await.0, StatusCode::OK);
    assert_eq!(service.reveal(&other).await.0, StatusCode::OK);
    let support = h.principal("helpdesk", &["support"], &["dev"]).await;
    assert_eq!(support.reveal(&kept).await.0, StatusCode::FORBIDDEN);
    let auditor = h.principal("auditor-1", &["auditor"], &["*"]).await;

    // By action: every reveal, newest first.
    let (status, page) = auditor.get("/v1/audit?action=secret.reveal").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(records(&page).len(), 4, "{page}");
    assert!(records(&page).iter().all(|r| r["action"] == "secret.reveal"));
    let s = seqs(&page);
    assert!(s.windows(2).all(|w| w[0] > w[1]), "{s:?}");

    // By token: its tokenization and the three attempts on it.
    let (_, page) = auditor.get(&format!("/v1/audit?token={kept}")).await;
    let actions: Vec<&str> = records(&page).iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["secret.reveal", "secret.reveal", "secret.reveal", "secret.tokenize"], "{page}");
    assert!(records(&page).iter().all(|r| r["target"] == kept.as_str()));

    // By outcome and action: the denied attempt, by whom.
    let (_, page) = auditor.get("/v1/audit?action=secret.*&outcome=denied").await;
    assert_eq!(records(&page).len(), 1, "{page}");
    assert_eq!(records(&page)[0]["actor_name"], "helpdesk");
    assert_eq!(records(&page)[0]["reason"], "auth.forbidden");

    // By actor (name or id).
    let (_, page) = auditor.get("/v1/audit?actor=helpdesk").await;
    assert!(!records(&page).is_empty());
    let id = records(&page)[0]["actor"].as_str().unwrap().to_owned();
    let (_, by_id) = auditor.get(&format!("/v1/audit?actor={id}")).await;
    assert_eq!(seqs(&page), seqs(&by_id));

    // Paging: one at a time reaches every reveal once, then stops.
    let mut seen = Vec::new();
    let mut path = "/v1/audit?action=secret.reveal&limit=1".to_owned();
    loop {
        let (status, page) = auditor.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(seqs(&page));
        match page["next_before"].as_u64() {
            Some(before) => path = format!("/v1/audit?action=secret.reveal&limit=1&before={before}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 4);

    // Time: nothing from tomorrow; everything from an hour ago; bad times refused.
    let hour = 3_600_000;
    let at = |ms: i64| strongroom_vault::rfc3339(ms).replace('+', "%2B");
    let now = crate::harness::now_ms();
    let (_, page) = auditor.get(&format!("/v1/audit?since={}", at(now + 24 * hour))).await;
    assert!(records(&page).is_empty(), "{page}");
    let (_, page) = auditor.get(&format!("/v1/audit?action=secret.reveal&since={}&until={}", at(now - hour), at(now + hour))).await;
    assert_eq!(records(&page).len(), 4, "{page}");
    let (status, body) = auditor.get("/v1/audit?since=yesterday").await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "request.invalid"));
    let (status, body) = auditor.get("/v1/audit?outcome=maybe").await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "request.invalid"));

    // Without audit:read: refused, and the refusal is itself on record.
    let (status, body) = service.get("/v1/audit").await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.forbidden"));
    let (_, page) = auditor.get("/v1/audit?action=audit.search&outcome=denied").await;
    assert_eq!(records(&page).len(), 1, "{page}");
}
}

on_each_backend! {
async fn an_auditor_of_one_tenant_sees_only_that_tenant(store) {
    let h = Harness::dev_on(store).await;
    let service = h.service().await;
    let token = service.put(&crate::harness::random_code()).await;
    assert_eq!(service.reveal(&token).await.0, StatusCode::OK);
    let outsider = h.principal("auditor-other", &["auditor"], &["other"]).await;
    let (status, page) = outsider.get(&format!("/v1/audit?token={token}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(records(&page).is_empty(), "{page}");
    let (status, page) = outsider.get("/v1/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(records(&page).iter().all(|r| r["tenant"] == "other"), "{page}");
    let (status, body) = outsider.get("/v1/audit?tenant=dev").await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.forbidden"));
    let (status, _) = text(&outsider, "/v1/audit/export?tenant=dev").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let insider = h.principal("auditor-dev", &["auditor"], &["dev"]).await;
    let (_, page) = insider.get(&format!("/v1/audit?token={token}")).await;
    assert_eq!(records(&page).len(), 2, "{page}");
}
}

on_each_backend! {
async fn exports_are_jsonl_and_cef_with_every_sequence_number(store) {
    let h = Harness::dev_on(store).await;
    let service = h.service().await;
    let token = service.put(&crate::harness::random_code()).await;
    assert_eq!(service.reveal(&token).await.0, StatusCode::OK);
    let auditor = h.principal("auditor-1", &["auditor"], &["*"]).await;

    let (status, body) = text(&auditor, "/v1/audit/export").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The whole log, in order, with no gap.
    let s: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(s, (1..=s.len() as u64).collect::<Vec<_>>());
    assert!(lines.iter().any(|l| l["action"] == "secret.reveal" && l["target"] == token.as_str()));

    let (status, body) = text(&auditor, "/v1/audit/export?format=cef&action=secret.reveal").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let line = body.lines().next().unwrap();
    assert!(line.starts_with("CEF:0|Strongroom|Strongroom|"), "{line}");
    assert!(line.contains("|secret.reveal|secret.reveal allowed|3|"), "{line}");
    assert!(line.contains(&format!("cs2Label=target cs2={token}")), "{line}");
    assert_eq!(body.lines().count(), 1);

    let (status, body) = text(&auditor, "/v1/audit/export?format=xml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
}

on_each_backend! {
async fn a_vouchers_history_tells_its_whole_story(store) {
    let h = Harness::dev_on(store).await;
    let stock = crate::orders::catalogue(&h, 0).await;
    let code_value = format!("HIST-{}", crate::harness::random_code());
    crate::orders::import(&stock, &[(code_value, "", "")]).await;
    let shop = h.principal("storefront", &["fulfilment"], &["dev"]).await;
    let (status, order) = shop
        .post("/v1/orders", json!({"external_ref": "h-1", "sku": "ACME-GIFT", "face_value": 2500,
            "currency": "GBP", "customer_ref": "c-1", "delivery": "code"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let voucher = order["voucher_id"].as_str().unwrap();
    let auditor = h.principal("auditor-1", &["auditor"], &["*"]).await;

    let (status, story) = auditor.get(&format!("/v1/vouchers/{voucher}/history")).await;
    assert_eq!(status, StatusCode::OK, "{story}");
    assert_eq!(story["state"], "delivered");
    let steps: Vec<(&str, &str)> = story["transitions"].as_array().unwrap().iter()
        .map(|t| (t["from"].as_str().unwrap(), t["to"].as_str().unwrap())).collect();
    assert_eq!(steps.last(), Some(&("reserved", "delivered")), "{story}");
    let actions: HashSet<&str> = story["audit"].as_array().unwrap().iter()
        .map(|r| r["action"].as_str().unwrap()).collect();
    for expected in ["voucher.import", "secret.tokenize_batch", "order.place", "secret.reveal"] {
        assert!(actions.contains(expected), "{expected} missing: {story}");
    }
    // The same through the search, by voucher.
    let (_, page) = auditor.get(&format!("/v1/audit?voucher={voucher}")).await;
    assert_eq!(records(&page).len(), story["audit"].as_array().unwrap().len(), "{page}");

    // Another tenant's auditor, a non-auditor, an unknown voucher.
    let outsider = h.principal("auditor-other", &["auditor"], &["other"]).await;
    let (status, body) = outsider.get(&format!("/v1/vouchers/{voucher}/history")).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "voucher.not_found"));
    let (status, body) = shop.get(&format!("/v1/vouchers/{voucher}/history")).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.forbidden"));
    let (status, _) = auditor.get("/v1/vouchers/vc_nothing/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
}
