//! The API keeps the promises of its published document, as an outside
//! tool checks them: schemathesis (from PyPI) generates requests from
//! `/v1/openapi.json` and fails on any server error (5xx) and on any
//! response whose status, content type, headers or body the document does
//! not allow. It runs as each kind of caller, so the operations are reached
//! past authentication.
//!
//! Without schemathesis on the PATH the test says it was skipped; under
//! `CI=true` it fails instead (`.ci/run` installs it).

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Harness, TestStore, test_api_config};

/// The checks that concern what the server sends back.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

fn schemathesis() -> Option<String> {
    let found = Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("schemathesis".into());
    }
    let why = "schemathesis is not installed (python3 -m pip install schemathesis)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}, and CI=true: the API conformance test cannot be skipped");
    }
    eprintln!("\nSKIPPED: the API conformance test did not run: {why}\n");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_published_document_says() {
    let Some(program) = schemathesis() else {
        return;
    };
    // Generated requests come fast from one address; the limits themselves
    // are tested elsewhere.
    let mut config = test_api_config();
    config.rate_limits.per_address = strongroom_api::ratelimit::Rate::new(100_000, 100_000);
    config.rate_limits.per_principal = strongroom_api::ratelimit::Rate::new(100_000, 100_000);
    let h = Harness::dev_with(TestStore::Sqlite, config).await;
    let ca = h.server.ca_cert_path.clone().unwrap();

    // Something to find: a secret, a pending principal, a custom role.
    let service = h.service().await;
    service.put("GIFT-CONFORMANCE-0001").await;
    let admin = h.admin().await;
    let (status, body) = admin
        .put_json(
            "/v1/roles/desk",
            json!({"permissions": ["secrets:reveal_masked"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let callers = [
        ("anonymous", None),
        ("admin", admin.token.clone()),
        ("service", service.token.clone()),
        ("security_officer", h.approver().await.token),
        (
            "auditor",
            h.principal("conformance-auditor", &["auditor"], &["dev"])
                .await
                .token,
        ),
        (
            "support",
            h.principal("conformance-support", &["support"], &["dev"])
                .await
                .token,
        ),
    ];
    let spec = format!("{}/v1/openapi.json", h.url);
    let mut failures = Vec::new();
    for (who, token) in callers {
        let mut cmd = Command::new(&program);
        cmd.args(["run", &spec, "--checks", CHECKS])
            .arg("--tls-verify")
            .arg(&ca)
            .args(["--max-examples", "25", "--workers", "1"])
            // A connection lost once is retried; one that keeps failing
            // still fails the run. What is checked is the answers.
            .args(["--request-retries", "2"])
            // Sealing would leave every later request a documented 503.
            .args(["--exclude-path", "/v1/sys/seal"])
            .env("NO_COLOR", "1");
        if let Some(token) = token {
            cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
        }
        // The server runs on this test's runtime: wait off it.
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            failures.push(format!(
                "as {who}:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
