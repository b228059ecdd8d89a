//! Tokenize, reveal, describe, delete, batches, duplicates, windows, rotation.

use reqwest::StatusCode;
use serde_json::{Value, json};

use strongroom_store_postgres::Store;

use crate::harness::{Harness, TestStore, code, on_each_backend, random_code};

on_each_backend! {
async fn round_trip_then_delete(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let value = random_code();
    let (status, created) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": value, "metadata": {"brand": "acme", "face_value": 25}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("sr_vc_"), "{token}");
    assert_eq!(created["tenant"], "dev");
    assert!(
        !created.to_string().contains(&value),
        "the value was echoed"
    );

    let (status, revealed) = svc.reveal(token).await;
    assert_eq!(status, StatusCode::OK, "{revealed}");
    assert_eq!(revealed["value"], value.as_str());

    let (status, meta) = svc.get(&format!("/v1/secrets/{token}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["metadata"]["brand"], "acme");
    assert_eq!(meta["revealable"], true);
    assert!(
        !meta.to_string().contains(&value),
        "metadata showed the value"
    );

    let officer = h.officer().await;
    let (status, _) = officer.delete(&format!("/v1/secrets/{token}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = svc.reveal(token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "secret.not_found");
    // Deleting frees the value: it can be stored again.
    svc.put(&value).await;
}
}

on_each_backend! {
async fn batch_keeps_order_and_reports_each_item(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let existing_value = random_code();
    let existing = svc.put(&existing_value).await;
    let fresh: Vec<String> = (0..5).map(|_| random_code()).collect();
    let items = json!([
        {"class": "voucher_code", "value": fresh[0]},
        {"class": "voucher_code", "value": existing_value},
        {"class": "no_such_class", "value": fresh[1]},
        {"class": "voucher_code", "value": fresh[2]},
        {"class": "voucher_code", "value": fresh[2]},
        {"class": "voucher_code", "value": ""},
        {"class": "generic", "value": fresh[3], "tenant": "someone-else"},
    ]);
    let (status, body) = svc.post("/v1/secrets/batch", json!({"items": items})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = body["items"].as_array().unwrap();
    assert_eq!(out.len(), 7);
    assert!(out[0]["token"].as_str().unwrap().starts_with("sr_vc_"));
    assert_eq!(code(&out[1]), "vault.duplicate");
    assert_eq!(out[1]["error"]["existing_token"], existing.as_str());
    assert_eq!(code(&out[2]), "request.invalid");
    assert!(out[3]["token"].is_string());
    assert_eq!(
        code(&out[4]),
        "vault.duplicate",
        "a value twice in one batch"
    );
    assert_eq!(out[4]["error"]["existing_token"], out[3]["token"]);
    assert_eq!(code(&out[5]), "request.invalid");
    assert_eq!(code(&out[6]), "auth.forbidden");

    // The request is audited as one record per tenant its items were for,
    // each listing its items in request order, and none holds a value.
    let records = h.server.stores.audit.read_from(1, 100_000).await.unwrap();
    let batches: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .filter(|e| e["action"] == "secret.tokenize_batch")
        .collect();
    assert_eq!(batches.len(), 2, "{batches:?}");
    let own = batches.iter().find(|b| b["tenant"] == "dev").unwrap();
    assert_eq!(own["outcome"], "allowed");
    assert_eq!(own["reason"], "2 allowed, 4 denied, 0 failed");
    assert!(
        own["actor_name"]
            .as_str()
            .unwrap()
            .starts_with("dev-service")
    );
    assert_eq!(own["client_addr"], "127.0.0.1");
    let logged = own["items"].as_array().unwrap();
    let expect = [
        (0, "allowed", out[0]["token"].clone(), Value::Null),
        (1, "denied", json!(existing), json!("vault.duplicate")),
        (2, "denied", Value::Null, json!("request.invalid")),
        (3, "allowed", out[3]["token"].clone(), Value::Null),
        (
            4,
            "denied",
            out[3]["token"].clone(),
            json!("vault.duplicate"),
        ),
        (5, "denied", Value::Null, json!("request.invalid")),
    ];
    assert_eq!(logged.len(), expect.len());
    for (entry, (item, outcome, target, reason)) in logged.iter().zip(expect) {
        assert_eq!(entry["item"], item, "{entry}");
        assert_eq!(entry["outcome"], outcome, "{entry}");
        assert_eq!(entry["target"], target, "{entry}");
        assert_eq!(entry["reason"], reason, "{entry}");
    }
    // The refused attempt on another tenant is filed under that tenant, and
    // its record, all refusals, says denied.
    let probe = batches
        .iter()
        .find(|b| b["tenant"] == "someone-else")
        .unwrap();
    assert_eq!(probe["outcome"], "denied");
    assert_eq!(
        probe["items"],
        json!([{"item": 6, "outcome": "denied", "reason": "auth.forbidden"}])
    );
    for r in &records {
        for v in fresh.iter().chain([&existing_value]) {
            assert!(
                !r.body.contains(v.as_str()),
                "an audit record holds a value"
            );
        }
    }

    // Every stored item reveals to its own value.
    for (i, v) in [(0, &fresh[0]), (3, &fresh[2])] {
        let (_, r) = svc.reveal(out[i]["token"].as_str().unwrap()).await;
        assert_eq!(r["value"], v.as_str());
    }

    // Size limits.
    let too_many: Vec<_> = (0..1001)
        .map(|i| json!({"class": "voucher_code", "value": format!("v{i}")}))
        .collect();
    let (status, body) = svc
        .post("/v1/secrets/batch", json!({"items": too_many}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "request.batch_size");
    let (status, _) = svc.post("/v1/secrets/batch", json!({"items": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
}

on_each_backend! {
async fn duplicates_are_reported_unless_asked_otherwise(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let value = random_code();
    let first = svc.put(&value).await;

    let (status, body) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": value}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "vault.duplicate");
    assert_eq!(body["error"]["existing_token"], first.as_str());

    let (status, body) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": value, "on_duplicate": "return_existing"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token"], first.as_str());
    assert_eq!(body["duplicate"], true);

    let (status, body) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": value, "on_duplicate": "allow"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(body["token"], first.as_str());

    // The same value in another class is not a duplicate.
    let (status, _) = svc
        .post("/v1/secrets", json!({"class": "generic", "value": value}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
}
}

on_each_backend! {
async fn duplicates_are_found_after_a_restart_until_every_copy_is_deleted(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let value = random_code();
    let original = svc.put(&value).await;
    let (status, body) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": value, "on_duplicate": "allow"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let copy = body["token"].as_str().unwrap().to_owned();

    // One server per embedded data directory: a second one is refused,
    // plainly. (On PostgreSQL several nodes share the stores by design.)
    if matches!(store, TestStore::Sqlite) {
        let second = strongroom::app::start(h.options()).await;
        let refused = format!("{:#}", second.err().expect("a second server started"));
        assert!(
            refused.contains("in use by another Strongroom process"),
            "{refused}"
        );
    }

    // Whatever the server keeps in memory is rebuilt from the stores.
    let h = h.restart().await;
    let svc = h.service().await;
    let officer = h.officer().await;
    let store = |value: &str| {
        svc.post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": value}),
        )
    };
    let (status, body) = store(&value).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["existing_token"], original.as_str());

    // With the original deleted, the allowed copy still holds the value.
    let (status, _) = officer.delete(&format!("/v1/secrets/{original}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = store(&value).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["existing_token"], copy.as_str());

    let (status, _) = officer.delete(&format!("/v1/secrets/{copy}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = store(&value).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, revealed) = svc.reveal(body["token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revealed["value"], value.as_str());
}
}

on_each_backend! {
async fn dormant_after_window_until_reactivated(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let value = random_code();
    let (status, body) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": value, "reveal_window_secs": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let token = body["token"].as_str().unwrap();
    assert_eq!(svc.reveal(token).await.0, StatusCode::OK);

    h.clock.advance_secs(61);
    // Tokens last 300 s, so the service's token is still good.
    let (status, body) = svc.reveal(token).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "vault.dormant");
    let (_, meta) = svc.get(&format!("/v1/secrets/{token}")).await;
    assert_eq!(meta["revealable"], false);

    // The fulfilment service cannot re-open its own window.
    let path = format!("/v1/secrets/{token}/reactivate");
    let (status, body) = svc
        .post(&path, json!({"window_secs": 600, "reason": "customer"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "auth.forbidden");

    let officer = h.officer().await;
    let (status, body) = officer
        .post(&path, json!({"window_secs": 600, "reason": ""}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a reason is required: {body}"
    );
    let (status, body) = officer
        .post(
            &path,
            json!({"window_secs": 600, "reason": "ticket 4411: customer lost email"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revealable"], true);
    let (status, body) = svc.reveal(token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], value.as_str());

    h.clock.advance_secs(601);
    let svc = h.service().await;
    assert_eq!(code(&svc.reveal(token).await.1), "vault.dormant");
}
}

on_each_backend! {
async fn another_tenants_token_looks_unknown(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let token = svc.put(&random_code()).await;
    let other = h
        .principal("shop-b", &["ingest", "fulfilment"], &["shop-b"])
        .await;

    let (s1, foreign) = other.reveal(&token).await;
    let (s2, unknown) = other.reveal("sr_vc_aaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!(s1, StatusCode::NOT_FOUND);
    assert_eq!(s2, StatusCode::NOT_FOUND);
    assert_eq!(foreign["error"]["code"], unknown["error"]["code"]);
    assert_eq!(foreign["error"]["message"], unknown["error"]["message"]);
    let (s3, _) = other.get(&format!("/v1/secrets/{token}")).await;
    assert_eq!(s3, StatusCode::NOT_FOUND);

    // The probe is recorded under the owning tenant, for its auditors.
    let records =
        strongroom_store::AuditStore::read_from(h.server.stores.audit.as_ref(), 1, 100_000)
            .await
            .unwrap();
    assert!(records.iter().any(|r| {
        let e: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        e["action"] == "secret.reveal"
            && e["outcome"] == "denied"
            && e["target"] == token.as_str()
            && e["tenant"] == "dev"
            && e["reason"] == "secret.not_found: other tenant"
    }));

    // Its own secrets live in its own tenant; naming another tenant is refused.
    let (status, body) = other
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": random_code(), "tenant": "dev"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let mine = other.put(&random_code()).await;
    assert_eq!(svc.reveal(&mine).await.0, StatusCode::NOT_FOUND);

    // The same value in two tenants is not a duplicate.
    let shared = random_code();
    svc.put(&shared).await;
    other.put(&shared).await;
}
}

on_each_backend! {
async fn rotation_keeps_old_secrets_revealable(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let officer = h.officer().await;
    let old_value = random_code();
    let old = svc.put(&old_value).await;

    let (status, body) = officer
        .post(
            "/v1/keys/rotate",
            json!({"tenant": "dev", "class": "voucher_code"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);

    let new_value = random_code();
    let (_, created) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": new_value}),
        )
        .await;
    assert_eq!(created["key_version"], 2);
    let (_, old_meta) = svc.get(&format!("/v1/secrets/{old}")).await;
    assert_eq!(old_meta["key_version"], 1);

    assert_eq!(svc.reveal(&old).await.1["value"], old_value.as_str());
    assert_eq!(
        svc.reveal(created["token"].as_str().unwrap()).await.1["value"],
        new_value.as_str()
    );
    // Duplicates are still found across key versions.
    let (status, _) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": old_value}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Rotating in a tenant the officer is not bound to is refused.
    let (status, _) = officer
        .post(
            "/v1/keys/rotate",
            json!({"tenant": "elsewhere", "class": "voucher_code"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
}

on_each_backend! {
async fn malformed_requests_get_clear_errors_and_change_nothing(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let cases = [
        json!({"class": "voucher_code"}),
        json!({"class": "voucher_code", "value": 4111111111111111u64}),
        json!({"class": "voucher_code", "value": "x", "colour": "blue"}),
        json!({"class": "voucher_code", "value": "x".repeat(5000)}),
        json!({"class": "voucher_code", "value": "x", "reveal_window_secs": 0}),
        json!({"class": "pan", "value": "4111111111111111"}),
        json!({"class": "voucher_code", "value": "x", "metadata": {"k": "v".repeat(5000)}}),
    ];
    for body in cases {
        let (status, resp) = svc.post("/v1/secrets", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {resp}");
        assert!(resp["error"]["message"].as_str().unwrap().len() > 5);
        assert!(
            !resp.to_string().contains("4111111111111111"),
            "echoed a value: {resp}"
        );
    }
    let raw = svc
        .http
        .post(format!("{}/v1/secrets", svc.url))
        .bearer_auth(svc.token.as_ref().unwrap())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let big = svc
        .http
        .post(format!("{}/v1/secrets", svc.url))
        .bearer_auth(svc.token.as_ref().unwrap())
        .body(vec![b' '; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = svc.get("/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "request.no_route");
}
}

on_each_backend! {
async fn the_same_code_stored_concurrently_is_stored_once(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    // Rounds 0-4 refuse duplicates; rounds 5-7 ask for the existing token.
    for round in 0..8 {
        let return_existing = round >= 5;
        let value = random_code();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let svc = svc.clone();
            let value = value.clone();
            let body = if return_existing {
                json!({"class": "voucher_code", "value": value, "on_duplicate": "return_existing"})
            } else {
                json!({"class": "voucher_code", "value": value})
            };
            tasks.push(tokio::spawn(async move { svc.post("/v1/secrets", body).await }));
        }
        let mut created = Vec::new();
        let mut others = Vec::new();
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                StatusCode::CREATED => created.push(body["token"].as_str().unwrap().to_owned()),
                StatusCode::CONFLICT if !return_existing => {
                    assert_eq!(code(&body), "vault.duplicate");
                    others.push(body["error"]["existing_token"].as_str().unwrap().to_owned());
                }
                StatusCode::OK if return_existing => {
                    assert_eq!(body["duplicate"], true);
                    others.push(body["token"].as_str().unwrap().to_owned());
                }
                other => panic!("round {round}: unexpected {other}: {body}"),
            }
        }
        assert_eq!(
            created.len(),
            1,
            "round {round}: stored {} times",
            created.len()
        );
        assert!(
            others.iter().all(|t| *t == created[0]),
            "round {round}: the others were given another token"
        );
        assert_eq!(svc.reveal(&created[0]).await.1["value"], value.as_str());
    }
    // Withdrawn envelopes of the losers are gone: the vault holds exactly one per live token.
    assert_eq!(h.count_rows(Store::Vault, "records").await, 8);
}
}
