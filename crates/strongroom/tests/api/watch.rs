//! Watching the vault: a stolen credential revealing far above its usual
//! rate is frozen within the second while steady traffic raises nothing;
//! freezes hold on every request and across restarts until a security
//! officer lifts them; alerts are listed, acknowledged and sent signed to a
//! webhook.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom_watch::WatchConfig;

use crate::harness::{Caller, Harness, code, on_each_backend, test_api_config};

/// A service principal made directly in the stores, with its credentials.
async fn service_with_secret(h: &Harness, name: &str) -> (Caller, String, String, String) {
    let made = strongroom::bootstrap::create_principal(
        &h.server.vault,
        name,
        &["ingest", "fulfilment"],
        &["dev"],
        "test",
    )
    .await
    .unwrap();
    let caller = h.login(&made.record.client_id, &made.client_secret).await;
    (
        caller,
        made.record.id.clone(),
        made.record.client_id.clone(),
        made.client_secret.to_string(),
    )
}

async fn alerts(officer: &Caller, query: &str) -> Vec<Value> {
    let (status, body) = officer.get(&format!("/v1/alerts{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["alerts"].as_array().unwrap().clone()
}

/// The alerts of `query`, once there are at least `n`: the freeze comes
/// first, the stored alert a moment later.
async fn alerts_eventually(officer: &Caller, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = alerts(officer, query).await;
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_each_backend! {
async fn a_service_jumping_from_5_to_200_reveals_a_second_is_frozen_and_steady_traffic_is_not(store) {
    // Tokens that outlive the simulated quarter of an hour; detectors as
    // shipped.
    let mut api = test_api_config();
    api.token_ttl_secs = 3600;
    let h = Harness::dev_with(store, api).await;
    let (thief, thief_id, thief_client, thief_secret) = service_with_secret(&h, "payments-a").await;
    let (steady, steady_id, _, _) = service_with_secret(&h, "payments-b").await;
    let a = thief.put(&crate::harness::random_code()).await;
    let b = steady.put(&crate::harness::random_code()).await;

    // Six minutes of normal work, five reveals a second each: past the
    // five minutes the baseline needs to be trusted.
    for _second in 0..360 {
        for _ in 0..5 {
            assert_eq!(thief.reveal(&a).await.0, StatusCode::OK);
            assert_eq!(steady.reveal(&b).await.0, StatusCode::OK);
        }
        h.clock.advance_secs(1);
    }
    let officer = h.officer().await;
    assert!(alerts(&officer, "").await.is_empty(), "normal traffic raised an alert");

    // The credential is stolen: 200 reveals a second. The other service
    // goes on as before, in the same second.
    let started = Instant::now();
    let mut refused_at = None;
    for i in 0..200 {
        if i % 40 == 0 {
            assert_eq!(steady.reveal(&b).await.0, StatusCode::OK);
        }
        let (status, body) = thief.reveal(&a).await;
        if status != StatusCode::OK {
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            assert_eq!(code(&body), "auth.principal_frozen");
            refused_at = Some(i);
            break;
        }
    }
    let refused_at = refused_at.expect("the principal was frozen within the burst");
    let took = started.elapsed();
    assert!(refused_at < 200 && took < Duration::from_secs(5), "frozen after {refused_at} reveals, {took:?}");

    // One alert, about the thief, which froze it; none about the other.
    let raised = alerts_eventually(&officer, "", 1).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let alert = &raised[0];
    assert_eq!(alert["detector"], "reveal_rate");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["subject"], thief_id.as_str());
    assert_eq!(alert["froze_subject"], true);
    assert_eq!(alert["status"], "open");
    assert!(alert["details"]["reveals"].as_u64().unwrap() >= 100, "{alert}");
    assert!(alerts(&officer, &format!("?subject={steady_id}")).await.is_empty());
    assert_eq!(steady.reveal(&b).await.0, StatusCode::OK);

    // Frozen everywhere: any request, and a new token from the credentials.
    let (status, body) = thief.get("/v1/auth/whoami").await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.principal_frozen"));
    let (status, body) = h
        .anonymous()
        .post(
            "/v1/auth/token",
            json!({"grant_type": "client_credentials", "client_id": thief_client, "client_secret": thief_secret}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.principal_frozen"));

    // The audit log says what happened and that the refusals were refusals.
    let auditor = h.principal("auditor-w", &["auditor"], &["*"]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let actions = loop {
        let (_, page) = auditor.get("/v1/audit?actor=watch").await;
        let actions: Vec<String> = page["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap().to_owned()).collect();
        if actions.len() >= 2 || Instant::now() > deadline {
            break actions;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(actions, ["principal.freeze", "alert.raised"]);
    let (_, page) = auditor.get(&format!("/v1/audit?actor={thief_id}&outcome=denied")).await;
    let reasons: Vec<&str> = page["records"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert!(reasons.len() >= 3 && reasons.iter().all(|r| *r == "auth.principal_frozen"), "{reasons:?}");

    // Only a security officer lifts it, with a reason; then it works again.
    let (status, _) = auditor.post(&format!("/v1/principals/{thief_id}/unfreeze"), json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = officer.post(&format!("/v1/principals/{thief_id}/unfreeze"), json!({"reason": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = officer
        .post(&format!("/v1/principals/{thief_id}/unfreeze"), json!({"reason": "load test by the payments team, ticket 4411"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = officer.post(&format!("/v1/principals/{thief_id}/unfreeze"), json!({"reason": "again"})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "principal.not_frozen"));
    assert_eq!(thief.reveal(&a).await.0, StatusCode::OK);

    // Acknowledged with a note, once.
    let id = alert["id"].as_str().unwrap();
    let (status, body) = officer
        .post(&format!("/v1/alerts/{id}/acknowledge"), json!({"note": "confirmed with the payments team"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "acknowledged");
    assert_eq!(body["acknowledged"]["note"], "confirmed with the payments team");
    let (status, body) = officer.post(&format!("/v1/alerts/{id}/acknowledge"), json!({"note": "again"})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "alert.not_open"));
    assert!(alerts(&officer, "?status=open").await.is_empty());
    assert_eq!(alerts(&officer, "?status=acknowledged").await.len(), 1);
}
}

on_each_backend! {
async fn a_freeze_by_hand_holds_across_a_restart_until_lifted(store) {
    let h = Harness::dev_on(store).await;
    let (service, id, client_id, secret) = service_with_secret(&h, "shop-1").await;
    let officer = h.officer().await;
    let (status, body) = officer.post(&format!("/v1/principals/{id}/freeze"), json!({"reason": "laptop stolen"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = officer.post(&format!("/v1/principals/{id}/freeze"), json!({"reason": "again"})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "principal.frozen"));
    let (status, body) = service.get("/v1/auth/whoami").await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.principal_frozen"));
    // Nobody else is touched, and unknown principals are not found.
    assert_eq!(h.service().await.get("/v1/auth/whoami").await.0, StatusCode::OK);
    let (status, _) = officer.post("/v1/principals/pr_nosuch/freeze", json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An administrator manages principals but does not contain them.
    let (status, _) = h.admin().await.post(&format!("/v1/principals/{id}/unfreeze"), json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let h = h.restart().await;
    let again = h
        .anonymous()
        .post("/v1/auth/token", json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}))
        .await;
    assert_eq!((again.0, code(&again.1)), (StatusCode::FORBIDDEN, "auth.principal_frozen"));
    let officer = h.officer().await;
    let (status, _) = officer.post(&format!("/v1/principals/{id}/unfreeze"), json!({"reason": "laptop found"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.login(&client_id, &secret).await.get("/v1/auth/whoami").await.0, StatusCode::OK);
}
}

on_each_backend! {
async fn alerts_are_for_those_who_may_see_them_in_their_tenants(store) {
    let h = Harness::dev_on(store).await;
    let service = h.service().await;
    // One probe of another tenant's token is an alert.
    let other = h.principal("other-ingest", &["ingest"], &["other"]).await;
    let foreign = other.put(&crate::harness::random_code()).await;
    let (status, _) = service.reveal(&foreign).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A security officer of every tenant.
    let officer = h.approver().await;
    let found = alerts_eventually(&officer, "?detector=suspicious_targets", 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["details"]["kind"], "foreign_tenant");
    assert_eq!(found[0]["froze_subject"], false, "high, not critical: no freeze");
    assert_eq!(service.get("/v1/auth/whoami").await.0, StatusCode::OK);

    // The alert is of tenant `other` (whose token was probed).
    let theirs = h.principal("auditor-other", &["auditor"], &["other"]).await;
    assert_eq!(alerts(&theirs, "").await.len(), 1);
    let ours = h.principal("auditor-dev", &["auditor"], &["dev"]).await;
    assert!(alerts(&ours, "").await.is_empty());
    // Auditors read; they do not acknowledge. Support does neither.
    let id = found[0]["id"].as_str().unwrap();
    let (status, _) = theirs.post(&format!("/v1/alerts/{id}/acknowledge"), json!({"note": "n"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let support = h.principal("helpdesk", &["support"], &["dev"]).await;
    assert_eq!(support.get("/v1/alerts").await.0, StatusCode::FORBIDDEN);
    let (status, body) = officer.get("/v1/alerts?status=closed").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
}

/// What a webhook receiver got: each request's signature header, delivery
/// id and body.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                got.lock().unwrap().push((
                    h(strongroom_watch::webhook::SIGNATURE_HEADER),
                    h(strongroom_watch::webhook::DELIVERY_HEADER),
                    body.to_vec(),
                ));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn alerts_reach_the_webhook_signed_and_a_changed_body_fails_the_check() {
    let (url, got) = receiver().await;
    let secrets = tempfile::TempDir::new().unwrap();
    let secret = "whsec-0123456789abcdef0123456789abcdef";
    let secret_file = secrets.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let watch = WatchConfig {
        webhook: Some(strongroom_watch::config::WebhookConfig {
            url,
            secret_file,
            ca_file: None,
        }),
        ..WatchConfig::default()
    };
    let h = Harness::dev_watched(crate::harness::TestStore::Sqlite, test_api_config(), watch).await;
    let service = h.service().await;
    let other = h.principal("other-ingest", &["ingest"], &["other"]).await;
    let foreign = other.put(&crate::harness::random_code()).await;
    assert_eq!(service.reveal(&foreign).await.0, StatusCode::NOT_FOUND);

    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (signature, delivery, body) = got
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("the webhook was called");
    let alert: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(alert["detector"], "suspicious_targets");
    assert_eq!(alert["id"].as_str().unwrap(), delivery);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let check = |body: &[u8], at: i64| {
        strongroom_watch::webhook::verify(secret.as_bytes(), &signature, body, at)
    };
    assert_eq!(check(&body, now), Ok(()));
    let mut changed = body.clone();
    changed.extend_from_slice(b" ");
    assert!(
        check(&changed, now).is_err(),
        "a changed body must not verify"
    );
    assert!(
        check(&body, now + 3600).is_err(),
        "an hour later it is a replay"
    );
    // Neither the webhook nor the alert carries a secret value.
    assert!(!String::from_utf8_lossy(&body).contains("GC-"));
}
