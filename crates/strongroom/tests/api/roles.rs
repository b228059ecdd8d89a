//! Every built-in role is refused what it lacks.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Caller, Harness, code, on_each_backend, random_code};

struct Outcomes {
    tokenize: StatusCode,
    reveal: StatusCode,
    describe: StatusCode,
    reactivate: StatusCode,
    rotate: StatusCode,
    delete: StatusCode,
    create_principal: StatusCode,
    verify_audit: StatusCode,
}

async fn try_everything(h: &Harness, who: &Caller, name: &str) -> Outcomes {
    let token = h.service().await.put(&random_code()).await;
    let tokenize = who
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": random_code()}),
        )
        .await
        .0;
    let reveal = who.reveal(&token).await.0;
    let describe = who.get(&format!("/v1/secrets/{token}")).await.0;
    let reactivate = who
        .post(
            &format!("/v1/secrets/{token}/reactivate"),
            json!({"window_secs": 60, "reason": "test"}),
        )
        .await
        .0;
    let rotate = who
        .post(
            "/v1/keys/rotate",
            json!({"tenant": "dev", "class": "generic"}),
        )
        .await
        .0;
    let create_principal = who
        .post(
            "/v1/principals",
            json!({"name": format!("made-by-{name}"), "roles": ["ingest"], "tenants": ["dev"]}),
        )
        .await
        .0;
    let verify_audit = who.get("/v1/audit/verify").await.0;
    let delete = who.delete(&format!("/v1/secrets/{token}")).await.0;
    Outcomes {
        tokenize,
        reveal,
        describe,
        reactivate,
        rotate,
        delete,
        create_principal,
        verify_audit,
    }
}

on_each_backend! {
async fn each_role_gets_exactly_its_permissions(store) {
    use StatusCode as S;
    let h = Harness::dev_on(store.clone()).await;
    let f = S::FORBIDDEN;
    // (role, tokenize, reveal, describe, reactivate, rotate, delete, principal, audit)
    let table = [
        ("ingest", S::CREATED, f, S::OK, f, f, f, f, f),
        ("fulfilment", f, S::OK, S::OK, f, f, f, f, f),
        (
            "security_officer",
            f,
            f,
            S::OK,
            S::OK,
            S::OK,
            S::NO_CONTENT,
            f,
            f,
        ),
        ("admin", f, f, f, f, f, f, S::CREATED, f),
        ("auditor", f, f, S::OK, f, f, f, f, S::OK),
        ("support", f, f, S::OK, f, f, f, f, f),
    ];
    for (role, tokenize, reveal, describe, reactivate, rotate, delete, principal, audit) in table {
        let who = h
            .principal(&format!("only-{role}"), &[role], &["dev"])
            .await;
        let got = try_everything(&h, &who, role).await;
        let row = [
            ("tokenize", got.tokenize, tokenize),
            ("reveal", got.reveal, reveal),
            ("describe", got.describe, describe),
            ("reactivate", got.reactivate, reactivate),
            ("rotate", got.rotate, rotate),
            ("delete", got.delete, delete),
            ("create principal", got.create_principal, principal),
            ("verify audit", got.verify_audit, audit),
        ];
        for (action, actual, expected) in row {
            assert_eq!(actual, expected, "role {role}, action {action}");
        }
    }
}
}

on_each_backend! {
async fn admin_manages_principals_but_never_reveals(store) {
    let h = Harness::dev_on(store.clone()).await;
    let admin = h.admin().await;
    let token = h.service().await.put(&random_code()).await;
    let (status, body) = admin.reveal(&token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "auth.forbidden");
    // Nor can it hand itself the power: it can create a fulfilment principal,
    // but the creation is audited and the secret is shown only to that principal.
    let (status, list) = admin.get("/v1/principals").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list["principals"].as_array().unwrap().len() >= 3);
    assert!(
        !list.to_string().contains("argon2"),
        "hashes must not be listed"
    );

    // A disabled principal cannot get a token.
    let (_, created) = admin
        .post(
            "/v1/principals",
            json!({"name": "temp", "roles": ["ingest"], "tenants": ["dev"]}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        admin.delete(&format!("/v1/principals/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = h
        .anonymous()
        .post(
            "/v1/auth/token",
            json!({"grant_type": "client_credentials", "client_id": created["client_id"], "client_secret": created["client_secret"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "auth.invalid_client");

    // Weak requests are refused with reasons.
    let (status, body) = admin
        .post(
            "/v1/principals",
            json!({"name": "x", "roles": ["superuser"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown role")
    );
    let (status, body) = admin
        .post(
            "/v1/principals",
            json!({"name": "temp", "roles": ["ingest"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}
}

on_each_backend! {
async fn tenant_bound_admin_cannot_grant_other_tenants(store) {
    let h = Harness::dev_on(store.clone()).await;
    let shop_admin = h.principal("shop-admin", &["admin"], &["shop-a"]).await;
    let (status, _) = shop_admin
        .post(
            "/v1/principals",
            json!({"name": "a1", "roles": ["ingest"], "tenants": ["shop-a"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for tenants in [json!(["shop-b"]), json!(["*"])] {
        let (status, _) = shop_admin
            .post(
                "/v1/principals",
                json!({"name": "a2", "roles": ["fulfilment"], "tenants": tenants}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
}

on_each_backend! {
async fn an_admin_alone_cannot_create_a_principal_that_reveals(store) {
    let h = Harness::dev_on(store.clone()).await;
    let admin = h.admin().await;
    let token = h.service().await.put(&random_code()).await;
    let (status, created) = admin
        .post(
            "/v1/principals",
            json!({"name": "backdoor", "roles": ["fulfilment"], "tenants": ["*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["pending_approval"], true);
    let (id, client_id, secret) = (
        created["id"].as_str().unwrap().to_owned(),
        created["client_id"].as_str().unwrap().to_owned(),
        created["client_secret"].as_str().unwrap().to_owned(),
    );
    let anon = h.anonymous();
    let request = json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret});
    let login = || anon.post("/v1/auth/token", request.clone());
    // Pending: no token, and the admin cannot approve it.
    let (status, body) = login().await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "auth.pending_approval");
    let path = format!("/v1/principals/{id}/approve");
    assert_eq!(admin.post(&path, json!({})).await.0, StatusCode::FORBIDDEN);
    // A security officer bound to fewer tenants cannot approve a '*' principal.
    assert_eq!(
        h.officer().await.post(&path, json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    // A second person can; then it works, and approving twice is refused.
    let approver = h.approver().await;
    assert_eq!(
        approver.post(&path, json!({})).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        approver.post(&path, json!({})).await.1["error"]["code"],
        "principal.not_pending"
    );
    let (status, body) = login().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let backdoor = h
        .anonymous()
        .with_token(body["access_token"].as_str().unwrap());
    assert_eq!(backdoor.reveal(&token).await.0, StatusCode::OK);

    // One principal may not both manage principals and approve them.
    for roles in [
        json!(["admin", "security_officer"]),
        json!(["admin", "fulfilment"]),
    ] {
        let (status, body) = admin
            .post(
                "/v1/principals",
                json!({"name": "both", "roles": roles, "tenants": ["dev"]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot also reveal")
        );
    }

    // Roles without reveal or key powers need no approval.
    let (_, plain) = admin
        .post(
            "/v1/principals",
            json!({"name": "loader", "roles": ["ingest"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(plain["pending_approval"], false);
}
}

on_each_backend! {
async fn masked_reveal_shows_the_last_characters_and_support_never_more(store) {
    let h = Harness::dev_on(store.clone()).await;
    let token = h.service().await.put("GIFT-AAAA-1111").await;
    let support = h.principal("helpdesk", &["support"], &["dev"]).await;
    let fulfilment = h.principal("shipper", &["fulfilment"], &["dev"]).await;
    let reveal = |who: &Caller, redaction: Option<&str>| {
        let mut body = json!({"purpose": "customer asks which code they hold"});
        if let Some(r) = redaction {
            body["redaction"] = json!(r);
        }
        let who = who.clone();
        let path = format!("/v1/secrets/{token}/reveal");
        async move { who.post(&path, body).await }
    };

    let (status, body) = reveal(&support, Some("masked")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], "**********1111");
    assert_eq!(body["redaction"], "masked");
    for asked in [None, Some("none")] {
        let (status, body) = reveal(&support, asked).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{asked:?}: {body}");
        assert!(body.get("value").is_none());
    }
    let (status, body) = reveal(&support, Some("everything")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A full revealer may ask for less.
    let (status, body) = reveal(&fulfilment, Some("masked")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], "**********1111");
    let (status, body) = reveal(&fulfilment, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], "GIFT-AAAA-1111");
    assert_eq!(body["redaction"], "none");

    let audit = h.audit_rows().await;
    assert!(audit.iter().any(|(_, b, _)| b.contains("redaction=masked")));
    assert!(audit.iter().all(|(_, b, _)| !b.contains("GIFT-AAAA-1111")));
}
}

on_each_backend! {
async fn a_service_that_manages_principals_needs_a_second_person(store) {
    let h = Harness::dev_on(store.clone()).await;
    let (status, body) = h
        .admin()
        .await
        .post(
            "/v1/principals",
            json!({"name": "robot-admin", "roles": ["admin"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // It never proves a second factor, so it waits for a security officer.
    assert_eq!(body["pending_approval"], true);
    let (status, refused) = h
        .anonymous()
        .post(
            "/v1/auth/token",
            json!({"grant_type": "client_credentials",
                   "client_id": body["client_id"], "client_secret": body["client_secret"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&refused), "auth.pending_approval");
}
}
