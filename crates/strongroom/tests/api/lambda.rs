//! The router as an AWS Lambda function, invoked in-process the way the
//! Lambda runtime does: API Gateway HTTP API (payload 2.0) events in, API
//! Gateway responses out. Rate limits key on the gateway's `sourceIp`, not
//! on a header a caller can write; the audit log names that address; the
//! function unseals from a key-share file only it can read.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::{Value, json};
use strongroom::app::{Assembled, StartOptions, TlsSource, assemble};
use strongroom::datadir::DataDir;
use strongroom_api::ratelimit::Rate;
use strongroom_vault::{SystemClock, VaultConfig};

use crate::harness::test_api_config;

fn options(data_dir: &std::path::Path, dev: bool) -> StartOptions {
    let mut api = test_api_config();
    api.rate_limits.auth_per_address = Rate::new(1, 3);
    StartOptions {
        data_dir: data_dir.to_owned(),
        listen: String::new(),
        tls: TlsSource::InsecureHttp,
        dev,
        vault_config: VaultConfig::default(),
        api_config: api,
        clock: Arc::new(SystemClock),
        backend: strongroom::storage::Backend::Sqlite,
        watch: Default::default(),
        checkpoint_every: None,
        forwarders: Vec::new(),
        metrics: None,
        suppliers: Default::default(),
    }
}

/// An API Gateway HTTP API event, as the gateway sends it.
fn event(method: &str, path: &str, source_ip: &str, headers: Value, body: Option<Value>) -> Value {
    let mut all = json!({"content-type": "application/json", "host": "pay.example.com"});
    for (k, v) in headers.as_object().unwrap() {
        all[k] = v.clone();
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": all,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "r3pmxmplak",
            "domainName": "pay.example.com",
            "domainPrefix": "pay",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": "gateway-test"},
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "30/Nov/2026:19:00:00 +0000",
            "timeEpoch": 1_796_065_200_000_i64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

/// Invokes the function with `event`; returns the gateway response (JSON).
async fn invoke(router: &axum::Router, event: Value) -> Value {
    let request: LambdaRequest = serde_json::from_value(event).unwrap();
    let mut function = lambda_http::Adapter::from(router.clone());
    let response = function
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(response).unwrap()
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_router_answers_api_gateway_events_and_limits_by_source_ip() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = DataDir::new(dir.path().join("data"));
    let opts = options(&data.root, true);
    data.create().unwrap();
    let Assembled {
        router,
        state,
        stores,
        dev_credentials,
        background,
        ..
    } = assemble(&opts, &data, "https://pay.example.com", None)
        .await
        .unwrap();
    let creds = dev_credentials.unwrap();
    // Lists reloaded before every request here (after every sleep in
    // production), so a freeze made elsewhere is seen at once.
    let router = strongroom::lambda::gateway_router_with(router, state, std::time::Duration::ZERO);

    let health = invoke(
        &router,
        event("GET", "/v1/sys/health", "198.51.100.7", json!({}), None),
    )
    .await;
    assert_eq!(health["statusCode"], 200, "{health}");
    assert!(health["headers"]["x-request-id"].is_string(), "{health}");
    assert_eq!(health["headers"]["cache-control"], "no-store");

    let login = json!({"grant_type": "client_credentials",
                       "client_id": creds.service.client_id, "client_secret": creds.service.client_secret});
    let token = invoke(
        &router,
        event(
            "POST",
            "/v1/auth/token",
            "198.51.100.7",
            json!({}),
            Some(login),
        ),
    )
    .await;
    assert_eq!(token["statusCode"], 200, "{token}");
    let access = body(&token)["access_token"].as_str().unwrap().to_owned();

    let card =
        json!({"pan": "4111111111111111", "expiry_month": 12, "expiry_year": 2031, "cvv": "123"});
    let stored = invoke(
        &router,
        event(
            "POST",
            "/v1/cards",
            "198.51.100.7",
            json!({"authorization": format!("Bearer {access}")}),
            Some(card),
        ),
    )
    .await;
    assert_eq!(stored["statusCode"], 201, "{stored}");
    let text = stored["body"].as_str().unwrap();
    assert!(
        !text.contains("4111111111111111") && text.contains("cvv_token"),
        "{text}"
    );
    assert_eq!(body(&stored)["masked_pan"], "411111******1111");

    // The address limit (burst 3 here) keys on the gateway's sourceIp: a
    // header the caller writes changes nothing.
    let wrong = json!({"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "wrong"});
    let mut statuses = Vec::new();
    for forwarded in [
        "203.0.113.10",
        "203.0.113.11",
        "203.0.113.12",
        "203.0.113.13",
    ] {
        let r = invoke(
            &router,
            event(
                "POST",
                "/v1/auth/token",
                "203.0.113.5",
                json!({"x-forwarded-for": forwarded}),
                Some(wrong.clone()),
            ),
        )
        .await;
        statuses.push(r["statusCode"].as_u64().unwrap());
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 429],
        "the fourth from one source is held back"
    );
    let other = invoke(
        &router,
        event(
            "POST",
            "/v1/auth/token",
            "203.0.113.6",
            json!({}),
            Some(wrong.clone()),
        ),
    )
    .await;
    assert_eq!(
        other["statusCode"], 401,
        "another source has its own bucket: {other}"
    );
    // An event without a source address (a direct invocation) does not
    // escape the limit: such events share one bucket.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let mut e = event("POST", "/v1/auth/token", "", json!({}), Some(wrong.clone()));
        e["requestContext"]["http"]
            .as_object_mut()
            .unwrap()
            .remove("sourceIp");
        statuses.push(invoke(&router, e).await["statusCode"].as_u64().unwrap());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);

    // Frozen by another instance (straight into the central store): this
    // one refuses the principal's next request, its token still valid.
    let service = stores
        .central
        .principal_by_client_id(&creds.service.client_id)
        .await
        .unwrap()
        .unwrap();
    let froze = stores
        .central
        .freeze_principal(strongroom_store::FreezeRecord {
            principal_id: service.id.clone(),
            frozen_at: 0,
            alert_id: String::new(),
            frozen_by: "another-instance".into(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    assert!(froze);
    let refused = invoke(
        &router,
        event(
            "GET",
            "/v1/auth/whoami",
            "198.51.100.7",
            json!({"authorization": format!("Bearer {access}")}),
            None,
        ),
    )
    .await;
    assert_eq!(refused["statusCode"], 403, "{refused}");
    assert_eq!(body(&refused)["error"]["code"], "auth.principal_frozen");

    // The audit log names the caller's address as the gateway saw it.
    let rows = stores.audit.read_from(1, 1_000_000).await.unwrap();
    let tokenized = rows
        .iter()
        .map(|r| r.body.clone())
        .find(|b| b.contains("\"card.tokenize\""))
        .unwrap();
    assert!(tokenized.contains("198.51.100.7"), "{tokenized}");
    drop(background);
}

#[tokio::test]
async fn a_function_unseals_from_a_share_file_only_it_can_read() {
    let dir = tempfile::TempDir::new().unwrap();
    let data_path = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["init", "--shares", "3", "--threshold", "2", "--data-dir"])
        .arg(&data_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shares = crate::harness::printed_shares(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(shares.len(), 3);
    let file = dir.path().join("shares");

    // Readable by others: refused before anything is read into the vault.
    std::fs::write(&file, format!("{}\n{}\n", shares[0], shares[1])).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = strongroom::lambda::read_shares(&file)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("other users can read it"), "{refused}");

    let data = DataDir::new(&data_path);
    let app = assemble(&options(&data_path, false), &data, "", None)
        .await
        .unwrap();
    assert!(app.vault.seal_status().await.unwrap().sealed);
    // Too few shares: the function says so and stays sealed.
    std::fs::write(&file, format!("# one share only\n{}\n", shares[2])).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let few = strongroom::lambda::read_shares(&file).unwrap();
    assert!(!file.exists());
    let err = strongroom::lambda::unseal(&app.vault, &few)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("too few shares"), "{err}");
    // The threshold: unsealed, and the sealed function's 503 is gone.
    std::fs::write(&file, format!("{}\n\n{}\n", shares[0], shares[2])).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let two = strongroom::lambda::read_shares(&file).unwrap();
    assert!(
        !file.exists(),
        "the shares are on disk no longer than it takes to read them"
    );
    strongroom::lambda::unseal(&app.vault, &two).await.unwrap();
    assert!(!app.vault.seal_status().await.unwrap().sealed);
    let health = invoke(
        &strongroom::lambda::gateway_router(app.router.clone(), app.state.clone()),
        event(
            "GET",
            "/v1/sys/seal-status",
            "198.51.100.7",
            json!({}),
            None,
        ),
    )
    .await;
    assert_eq!(body(&health)["sealed"], false, "{health}");
}

#[test]
fn the_lambda_command_refuses_stores_that_die_with_the_instance() {
    let dir = tempfile::TempDir::new().unwrap();
    let config = dir.path().join("fn.toml");
    std::fs::write(
        &config,
        format!("data_dir = \"{}\"\n", dir.path().join("data").display()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["lambda", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must be PostgreSQL"), "{stderr}");
}
