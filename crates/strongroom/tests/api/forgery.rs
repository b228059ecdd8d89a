//! Writing to the central store grants nothing: each attack is made with
//! plain SQL on the store, as someone holding `central.db` (or the central
//! role on PostgreSQL, with that role's rights only) would make it, and each
//! is refused as `store.tampered`, audited and raised as a critical alert.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom_store_postgres::Store;

use crate::harness::{Caller, Harness, code, on_each_backend, random_code};
use crate::people::{PASSWORD, enrolled};

/// The token endpoint's answer for these credentials.
async fn token_for(h: &Harness, client_id: &str, secret: &str) -> (StatusCode, Value) {
    h.anonymous()
        .post(
            "/v1/auth/token",
            json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}),
        )
        .await
}

/// A new ingest-only service of the dev tenant, as the admin's answer
/// (id, client id and the client secret, shown once).
async fn new_service(h: &Harness, name: &str) -> Value {
    let (status, body) = h
        .admin()
        .await
        .post(
            "/v1/principals",
            json!({"name": name, "roles": ["ingest"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The dev auditor, bound to every tenant: alerts about a store belong to
/// no tenant, so only such a principal sees them.
async fn auditor(h: &Harness) -> Caller {
    let auditor = h.creds.auditor.clone().expect("dev auditor");
    h.login(&auditor.client_id, &auditor.client_secret).await
}

/// The `store.tampered` audit records, newest first.
async fn tamper_records(h: &Harness) -> Vec<Value> {
    let auditor = auditor(h).await;
    let (status, page) = auditor.get("/v1/audit?action=store.tampered").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["records"].as_array().cloned().unwrap_or_default()
}

/// The critical `store_tampered` alert about `row`, once raised.
async fn tamper_alert(reader: &Caller, row: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = reader.get("/v1/alerts?detector=store_tampered").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let found = body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["details"]["row"] == row)
            .cloned();
        if let Some(alert) = found {
            return alert;
        }
        assert!(
            Instant::now() < deadline,
            "no store_tampered alert for {row}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks the refusal a forged row gets, its audit record and its alert.
async fn refused_as_tampered(h: &Harness, answer: (StatusCode, Value), row: &str) {
    let (status, body) = answer;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(code(&body), "store.tampered", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(row),
        "{body}"
    );
    let records = tamper_records(h).await;
    assert!(
        records
            .iter()
            .any(|r| r["target"] == row && r["outcome"] == "denied"),
        "no store.tampered record for {row}: {records:?}"
    );
    let alert = tamper_alert(&auditor(h).await, row).await;
    assert_eq!(alert["severity"], "critical", "{alert}");
}

on_each_backend! {
async fn a_principal_inserted_by_sql_gets_no_token(store) {
    let h = Harness::dev_on(store.clone()).await;
    // The attacker's own principal: a secret they chose, hashed as the
    // server would, with roles that reveal in every tenant.
    let secret = "sr_cs_attacker-chosen-secret-0123456789";
    let hash = strongroom_api::identity::hash_secret(zeroize::Zeroizing::new(secret.to_owned()))
        .await
        .unwrap();
    h.tamper_as_store_role(
        Store::Central,
        "INSERT INTO principals (id, client_id, name, roles, tenants, secret_hash, created_at, \
         disabled, created_by, pending_approval, kind, previous_secret_hash, previous_valid_until) \
         VALUES ($1, $2, $3, 'fulfilment,ingest', '*', $4, 1, FALSE, '', FALSE, 'service', '', 0)",
        &["p_forged", "sr_ci_forged", "forged-service", &hash],
    )
    .await;
    let answer = token_for(&h, "sr_ci_forged", secret).await;
    refused_as_tampered(&h, answer, "principals/p_forged").await;
    // The genuine principals still work.
    let svc = h.service().await;
    let token = svc.put(&random_code()).await;
    assert_eq!(svc.reveal(&token).await.0, StatusCode::OK);
}
}

on_each_backend! {
async fn a_principal_widened_by_sql_gets_no_token(store) {
    let h = Harness::dev_on(store.clone()).await;
    // An ingest-only service of one tenant, widened to reveal everywhere.
    let clerk = new_service(&h, "clerk").await;
    let (id, client_id, secret) = (
        clerk["id"].as_str().unwrap(),
        clerk["client_id"].as_str().unwrap(),
        clerk["client_secret"].as_str().unwrap(),
    );
    assert_eq!(token_for(&h, client_id, secret).await.0, StatusCode::OK);
    h.tamper_as_store_role(
        Store::Central,
        "UPDATE principals SET roles = 'fulfilment,ingest', tenants = '*' WHERE id = $1",
        &[id],
    )
    .await;
    let answer = token_for(&h, client_id, secret).await;
    refused_as_tampered(&h, answer, &format!("principals/{id}")).await;

    // A disabled principal re-enabled by SQL stays refused, too.
    let gone = new_service(&h, "leaver").await;
    let gone_id = gone["id"].as_str().unwrap();
    let (status, body) = h.admin().await.delete(&format!("/v1/principals/{gone_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    h.tamper_as_store_role(
        Store::Central,
        "UPDATE principals SET disabled = FALSE WHERE id = $1",
        &[gone_id],
    )
    .await;
    let (gone_client, gone_secret) = (
        gone["client_id"].as_str().unwrap(),
        gone["client_secret"].as_str().unwrap(),
    );
    let answer = token_for(&h, gone_client, gone_secret).await;
    refused_as_tampered(&h, answer, &format!("principals/{gone_id}")).await;
}
}

on_each_backend! {
async fn a_row_copied_onto_another_principal_is_refused(store) {
    let h = Harness::dev_on(store.clone()).await;
    let service = h.creds.service.clone();
    let clerk = new_service(&h, "clerk").await;
    let clerk_id = clerk["id"].as_str().unwrap();
    // Every field and the seal of the dev service (which reveals) copied
    // onto the clerk's row: the same row, under another id.
    h.tamper_as_store_role(
        Store::Central,
        "UPDATE principals SET \
             roles = (SELECT roles FROM principals WHERE client_id = $1), \
             tenants = (SELECT tenants FROM principals WHERE client_id = $1), \
             secret_hash = (SELECT secret_hash FROM principals WHERE client_id = $1), \
             created_by = (SELECT created_by FROM principals WHERE client_id = $1), \
             created_at = (SELECT created_at FROM principals WHERE client_id = $1), \
             seal = (SELECT seal FROM principals WHERE client_id = $1) \
         WHERE id = $2",
        &[&service.client_id, clerk_id],
    )
    .await;
    let clerk_client = clerk["client_id"].as_str().unwrap();
    let answer = token_for(&h, clerk_client, &service.client_secret).await;
    refused_as_tampered(&h, answer, &format!("principals/{clerk_id}")).await;
    // The original keeps working.
    assert_eq!(
        token_for(&h, &service.client_id, &service.client_secret).await.0,
        StatusCode::OK
    );
}
}

on_each_backend! {
async fn a_reveal_window_reopened_by_sql_reveals_nothing(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    // A code whose window has closed: dormant, like stock never ordered.
    let value = random_code();
    let (status, body) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": value, "reveal_window_secs": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    h.clock.advance_secs(120);
    let svc = h.service().await;
    let (status, body) = svc.reveal(&token).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "vault.dormant"), "{body}");

    h.tamper_as_store_role(
        Store::Central,
        "UPDATE secrets SET window_closes_at = 4102444800000 WHERE token = $1",
        &[&token],
    )
    .await;
    let answer = svc.reveal(&token).await;
    assert!(!answer.1.to_string().contains(&value), "revealed: {}", answer.1);
    refused_as_tampered(&h, answer, &format!("secrets/{token}")).await;
}
}

on_each_backend! {
async fn a_persons_login_state_changed_by_sql_logs_nobody_in(store) {
    let h = Harness::dev_on(store.clone()).await;
    let person = enrolled(&h, "dora", &["auditor"]).await;
    let attacker_code = "abcd-efgh-ijkl-mnop";
    let hash = strongroom_api::identity::hash_secret(zeroize::Zeroizing::new(
        attacker_code.to_owned(),
    ))
    .await
    .unwrap();
    // Someone who learnt dora's password adds a recovery code of their own
    // instead of proving her authenticator.
    h.tamper_as_store_role(
        Store::Central,
        "INSERT INTO recovery_codes (principal_id, code_id, hash) VALUES ($1, 'abcd', $2)",
        &[&person.id, &hash],
    )
    .await;
    let answer = h
        .anonymous()
        .post(
            "/v1/auth/login",
            json!({"username": "dora", "password": PASSWORD, "recovery_code": attacker_code}),
        )
        .await;
    refused_as_tampered(&h, answer, &format!("recovery_codes/{}", person.id)).await;

    // Or resets her enrolment to a code of their own, to choose her
    // password and authenticator.
    h.tamper_as_store_role(
        Store::Central,
        "UPDATE operators SET enrolled = FALSE, enrolment_hash = $1 WHERE principal_id = $2",
        &[&hash, &person.id],
    )
    .await;
    let answer = h
        .anonymous()
        .post(
            "/v1/auth/enrol",
            json!({"username": "dora", "enrolment_code": attacker_code, "password": "a new password of the attacker"}),
        )
        .await;
    refused_as_tampered(&h, answer, &format!("operators/{}", person.id)).await;
    // Her genuine login is refused as well: the row cannot be trusted.
    let answer = h
        .anonymous()
        .post(
            "/v1/auth/login",
            json!({"username": "dora", "password": PASSWORD, "totp": person.code_at(&h)}),
        )
        .await;
    assert_eq!(code(&answer.1), "store.tampered", "{}", answer.1);
}
}

on_each_backend! {
async fn a_custom_role_widened_by_sql_grants_nothing(store) {
    let h = Harness::dev_on(store.clone()).await;
    let admin = h.admin().await;
    let (status, body) = admin
        .put_json("/v1/roles/desk", json!({"permissions": ["secrets:read_metadata"]}))
        .await;
    assert!(status.is_success(), "{body}");
    h.tamper_as_store_role(
        Store::Central,
        "UPDATE custom_roles SET permissions = 'secrets:reveal,secrets:reveal_masked', \
         version = version + 1 WHERE name = 'desk'",
        &[],
    )
    .await;
    // The next change reads the role to decide on it: refused.
    let answer = admin
        .put_json("/v1/roles/desk", json!({"permissions": ["secrets:tokenize"]}))
        .await;
    refused_as_tampered(&h, answer, "custom_roles/desk").await;
}
}

on_each_backend! {
async fn rows_from_before_row_seals_are_sealed_once_and_keep_working(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let value = random_code();
    let token = svc.put(&value).await;
    let person = enrolled(&h, "erin", &["auditor"]).await;

    // The stores as an earlier version left them: no seal on any row, no
    // marker in the vault store.
    for table in ["secrets", "principals", "custom_roles", "operators", "recovery_codes"] {
        // An empty value of the column's own type on both stores.
        let clear = format!("UPDATE {table} SET seal = substr(seal, 1, 0)");
        h.tamper(Store::Central, &clear, &[]).await;
    }
    h.tamper(Store::Vault, "DELETE FROM meta WHERE name = 'rows_sealed_v1'", &[]).await;
    let h = h.restart().await;

    // Everything that worked before works after the upgrade's unseal.
    let svc = h.service().await;
    let (status, body) = svc.reveal(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], value.as_str());
    let (status, body) = h
        .anonymous()
        .post(
            "/v1/auth/login",
            json!({"username": "erin", "password": PASSWORD, "totp": person.code_at(&h)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let records = tamper_records(&h).await;
    assert!(records.is_empty(), "{records:?}");

    // Once sealed, a row without a seal is tampering, not history.
    let clear = "UPDATE secrets SET seal = substr(seal, 1, 0) WHERE token = $1";
    h.tamper(Store::Central, clear, &[&token]).await;
    let h = h.restart().await;
    let answer = h.service().await.reveal(&token).await;
    refused_as_tampered(&h, answer, &format!("secrets/{token}")).await;
}
}
