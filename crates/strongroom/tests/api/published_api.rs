//! The published API: the served OpenAPI document is the checked-in one,
//! and every operation documents its errors.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::Harness;

const CHECKED_IN: &str = include_str!("../../../../docs/openapi.json");
const REGENERATE: &str = "docs/openapi.json is out of date: run `cargo run -- openapi > docs/openapi.json` and commit it";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_checked_in_one() {
    let generated = strongroom_api::openapi::to_json(&strongroom_api::openapi());
    assert!(generated == CHECKED_IN, "{REGENERATE}");

    let h = Harness::dev_on(crate::harness::TestStore::Sqlite).await;
    let resp = h
        .anonymous()
        .http
        .get(format!("{}/v1/openapi.json", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served = resp.text().await.unwrap();
    assert!(
        served == CHECKED_IN,
        "the served document differs from {REGENERATE}"
    );
}

/// Every operation of the document, as (method, path, operation).
pub fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

#[test]
fn every_operation_documents_its_errors() {
    let doc: Value = serde_json::from_str(CHECKED_IN).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert!(ops.len() >= 28, "{}", ops.len());
    for (method, path, op) in ops {
        let responses = op["responses"].as_object().unwrap();
        let statuses: Vec<&String> = responses.keys().collect();
        let name = format!("{method} {path}");
        assert!(
            statuses.iter().any(|s| s.starts_with('2')),
            "{name}: no success response"
        );
        // Every route is rate limited.
        assert!(responses.contains_key("429"), "{name}: 429 not documented");
        let needs_token = op.get("security").is_some();
        if needs_token {
            assert!(responses.contains_key("401"), "{name}: 401 not documented");
        }
        if op.get("requestBody").is_some() {
            assert!(responses.contains_key("400"), "{name}: 400 not documented");
            assert!(responses.contains_key("413"), "{name}: 413 not documented");
        }
        // Each documented response says what it means.
        for (status, response) in responses {
            let described = response.get("description").is_some()
                || response
                    .get("$ref")
                    .and_then(Value::as_str)
                    .is_some_and(|r| {
                        let name = r.trim_start_matches("#/components/responses/");
                        doc["components"]["responses"][name]["description"].is_string()
                    });
            assert!(described, "{name} {status}: no description");
        }
        assert!(
            op["summary"].is_string() || op["description"].is_string(),
            "{name}: undocumented"
        );
    }
}
