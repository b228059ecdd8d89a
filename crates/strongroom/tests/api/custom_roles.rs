//! Custom roles: named permissions, and four-eyes on every role that can
//! reveal (defining it, changing it, granting it).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Harness, code, on_each_backend, random_code};

fn role<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("role {name} not listed in {list}"))
}

on_each_backend! {
async fn a_masked_only_role_applies_at_once_and_never_reveals_in_full(store) {
    let h = Harness::dev_on(store).await;
    let admin = h.admin().await;
    let (status, body) = admin
        .put_json(
            "/v1/roles/voucher-desk",
            json!({"permissions": ["secrets:reveal_masked", "secrets:read_metadata"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["pending_approval"], false);

    let token = h.service().await.put("GIFT-1234-5678-9012").await;
    let desk = h.principal("desk-1", &["voucher-desk"], &["dev"]).await;
    let (status, body) = desk
        .post(
            &format!("/v1/secrets/{token}/reveal"),
            json!({"purpose": "customer call", "redaction": "masked"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["value"].as_str().unwrap().ends_with("9012"), "{body}");
    assert!(!body["value"].as_str().unwrap().contains("1234"), "{body}");
    let (status, body) = desk.reveal(&token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The caller's permissions are named in whoami.
    let (_, me) = desk.get("/v1/auth/whoami").await;
    assert_eq!(me["permissions"], json!(["secrets:reveal_masked", "secrets:read_metadata"]));
}
}

on_each_backend! {
async fn a_role_that_reveals_waits_for_a_second_person(store) {
    let h = Harness::dev_on(store).await;
    let admin = h.admin().await;
    let token = h.service().await.put(&random_code()).await;

    // Defining it: accepted, but grants nothing until approved.
    let (status, body) = admin
        .put_json("/v1/roles/payouts", json!({"permissions": ["secrets:reveal"]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["pending_approval"], true);
    assert_eq!(body["permissions"], json!([]));
    assert_eq!(body["pending_permissions"], json!(["secrets:reveal"]));

    // Granting it: the principal is pending too.
    let (status, made) = admin
        .post(
            "/v1/principals",
            json!({"name": "payout-svc", "roles": ["payouts"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["pending_approval"], true, "{made}");

    // The administrator cannot approve either; an officer can, once each.
    let approval = json!({"permissions": ["secrets:reveal"]});
    let (status, body) = admin.post("/v1/roles/payouts/approve", approval.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let officer = h.approver().await;
    let (_, listed) = officer.get("/v1/roles").await;
    assert_eq!(role(&listed, "payouts")["pending_permissions"], json!(["secrets:reveal"]));
    assert_eq!(role(&listed, "fulfilment")["builtin"], true);
    // Approving something else than what waits is refused.
    let (status, body) = officer
        .post("/v1/roles/payouts/approve", json!({"permissions": ["secrets:tokenize"]}))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "role.changed"));
    let (status, body) = officer.post("/v1/roles/payouts/approve", approval.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["permissions"], json!(["secrets:reveal"]));
    let (status, body) = officer.post("/v1/roles/payouts/approve", approval).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "role.not_pending"));
    let id = made["id"].as_str().unwrap();
    let (status, body) = officer
        .post(&format!("/v1/principals/{id}/approve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let payout = h
        .login(
            made["client_id"].as_str().unwrap(),
            made["client_secret"].as_str().unwrap(),
        )
        .await;
    let (status, body) = payout.reveal(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Both decisions are in the audit log.
    let actions: Vec<String> = h
        .audit_rows()
        .await
        .iter()
        .map(|(_, body, _)| body.clone())
        .filter(|b| b.contains("\"role."))
        .collect();
    assert!(actions.iter().any(|b| b.contains("role.define") && b.contains("waiting for approval")), "{actions:?}");
    assert!(actions.iter().any(|b| b.contains("role.approve") && b.contains("allowed")), "{actions:?}");
}
}

on_each_backend! {
async fn changing_a_harmless_role_into_one_that_reveals_needs_approval(store) {
    let h = Harness::dev_on(store).await;
    let admin = h.admin().await;
    let (status, _) = admin
        .put_json("/v1/roles/lookup", json!({"permissions": ["secrets:read_metadata"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let holder = h.principal("lookup-1", &["lookup"], &["dev"]).await;
    let token = h.service().await.put(&random_code()).await;

    let (status, body) = admin
        .put_json(
            "/v1/roles/lookup",
            json!({"permissions": ["secrets:read_metadata", "secrets:reveal"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Still what it was, for the holder's next request.
    assert_eq!(holder.reveal(&token).await.0, StatusCode::FORBIDDEN);
    assert_eq!(holder.get(&format!("/v1/secrets/{token}")).await.0, StatusCode::OK);

    let (status, body) = h
        .approver()
        .await
        .post(
            "/v1/roles/lookup/approve",
            json!({"permissions": ["secrets:read_metadata", "secrets:reveal"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The same access token now reveals: roles are resolved per request.
    let (status, body) = holder.reveal(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Taking reveal away applies at once: withdrawing a power never waits.
    let (status, _) = admin
        .put_json("/v1/roles/lookup", json!({"permissions": ["secrets:read_metadata"]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(holder.reveal(&token).await.0, StatusCode::FORBIDDEN);
}
}

on_each_backend! {
async fn role_definitions_are_checked(store) {
    let h = Harness::dev_on(store).await;
    let admin = h.admin().await;
    let cases = [
        ("/v1/roles/admin", json!({"permissions": ["secrets:tokenize"]})),
        ("/v1/roles/Bad%20Name", json!({"permissions": ["secrets:tokenize"]})),
        ("/v1/roles/x", json!({"permissions": []})),
        ("/v1/roles/x", json!({"permissions": ["secrets:everything"]})),
        // One holder on both sides of dual control.
        ("/v1/roles/x", json!({"permissions": ["principals:manage", "secrets:reveal"]})),
    ];
    for (path, body) in cases {
        let (status, resp) = admin.put_json(path, body.clone()).await;
        assert_eq!(
            (status, code(&resp)),
            (StatusCode::BAD_REQUEST, "request.invalid"),
            "{path} {body}: {resp}"
        );
    }
    let (_, resp) = admin
        .put_json("/v1/roles/x", json!({"permissions": ["secrets:everything"]}))
        .await;
    assert!(resp["error"]["message"].as_str().unwrap().contains("secrets:reveal_masked"), "{resp}");

    // Only administrators define roles; granting an unknown role fails.
    let (status, _) = h
        .service()
        .await
        .put_json("/v1/roles/y", json!({"permissions": ["secrets:tokenize"]}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, resp) = admin
        .post(
            "/v1/principals",
            json!({"name": "nobody", "roles": ["no-such-role"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
}
}

on_each_backend! {
async fn an_administrator_cannot_gain_powers_through_a_role_it_holds(store) {
    let h = Harness::dev_on(store).await;
    let admin = h.admin().await;
    let (status, _) = admin
        .put_json("/v1/roles/helper", json!({"permissions": ["secrets:tokenize"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // A person who administers and also holds the harmless role.
    let (status, made) = admin
        .post(
            "/v1/principals",
            json!({"name": "ada", "kind": "user", "roles": ["admin", "helper"], "tenants": ["*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");

    // Growing the role into one that reveals, or shows masked codes, would
    // give ada both sides: refused before any approval is asked for.
    for permissions in [json!(["secrets:reveal"]), json!(["secrets:reveal_masked"])] {
        let (status, body) = admin
            .put_json("/v1/roles/helper", json!({"permissions": permissions}))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::CONFLICT, "role.conflicts_with_holder"),
            "{body}"
        );
    }

    // Adding administration to a role a service holds waits for an officer:
    // the service would become a lasting administrator's credential.
    let (status, _) = admin
        .put_json("/v1/roles/ops", json!({"permissions": ["secrets:tokenize"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let ops = h.principal("ops-svc", &["ops"], &["dev"]).await;
    let (status, body) = admin
        .put_json(
            "/v1/roles/ops",
            json!({"permissions": ["secrets:tokenize", "principals:manage"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = ops.get("/v1/principals").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
}
