//! Abuse limits: a principal past its bucket, and an address hammering the
//! login endpoints, get `429` with `Retry-After`, are audited once, and
//! recover after the wait; a role can be given more.

use reqwest::StatusCode;
use serde_json::json;
use strongroom_api::ApiConfig;
use strongroom_api::ratelimit::Rate;

use crate::harness::{Harness, code, on_each_backend};

async fn raw_status(h: &Harness, path: &str, token: Option<&str>) -> (StatusCode, Option<String>) {
    let mut req = h.http.get(format!("{}{path}", h.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status(), retry)
}

on_each_backend! {
async fn a_principal_past_its_rate_waits_and_recovers(store) {
    let mut config = ApiConfig::default();
    config.rate_limits.per_principal = Rate::new(1, 5);
    config.rate_limits.per_role.insert("auditor".into(), Rate::new(1000, 1000));
    let h = Harness::dev_with(store.clone(), config).await;
    let svc = h.service().await;
    let token = svc.token.clone().unwrap();

    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let (status, retry) = raw_status(&h, "/v1/auth/whoami", Some(&token)).await;
        statuses.push(status);
        retry_after = retry_after.or(retry);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        5,
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(retry_after.as_deref(), Some("1"));
    let (_, body) = svc.get("/v1/auth/whoami").await;
    assert_eq!(code(&body), "request.rate_limited");

    // A role with more: the auditor is not held back by the service's bucket.
    let auditor = h.principal("reader", &["auditor"], &["dev"]).await;
    for _ in 0..20 {
        let (status, body) = auditor.get("/v1/auth/whoami").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // After the wait the service goes on.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(raw_status(&h, "/v1/auth/whoami", Some(&token)).await.0, StatusCode::OK);

    // Audited once for the minute, not once per refusal.
    let limited = h
        .audit_rows()
        .await
        .into_iter()
        .filter(|(_, b, _)| b.contains("request.rate_limited"))
        .count();
    assert_eq!(limited, 1);
}
}

on_each_backend! {
async fn login_endpoints_have_a_stricter_address_limit(store) {
    let mut config = ApiConfig::default();
    config.rate_limits.auth_per_address = Rate::new(1, 3);
    let h = Harness::dev_with(store.clone(), config).await;
    let anon = h.anonymous();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, _) = anon
            .post(
                "/v1/auth/login",
                json!({"username": "nobody", "password": "not a real password", "totp": "123456"}),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(&statuses[..3], &[StatusCode::UNAUTHORIZED; 3]);
    assert!(statuses[3..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    // Other endpoints from the same address are not held back.
    assert_eq!(raw_status(&h, "/v1/sys/health", None).await.0, StatusCode::OK);
}
}

on_each_backend! {
async fn with_redis_the_buckets_outlive_a_node(store) {
    let Some(url) = crate::harness::redis_url("the shared rate-limit test") else {
        return;
    };
    let mut config = ApiConfig::default();
    config.rate_limits.per_principal = Rate::new(1, 3);
    config.rate_limits.redis_url = Some(url);
    let h = Harness::dev_with(store.clone(), config).await;
    let token = h.service().await.token.clone().unwrap();
    for _ in 0..3 {
        assert_eq!(raw_status(&h, "/v1/auth/whoami", Some(&token)).await.0, StatusCode::OK);
    }
    assert_eq!(
        raw_status(&h, "/v1/auth/whoami", Some(&token)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A new node (this one restarted: its own buckets are gone) sees the
    // same bucket, so the principal is still held back.
    let h = h.restart().await;
    let token = h.service().await.token.clone().unwrap();
    let (status, retry) = raw_status(&h, "/v1/auth/whoami", Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry.as_deref(), Some("1"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(raw_status(&h, "/v1/auth/whoami", Some(&token)).await.0, StatusCode::OK);
}
}
