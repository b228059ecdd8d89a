//! Access tokens: expired, forged, `alg: none`, wrong key; client credentials.

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Harness, code, on_each_backend};

fn b64(v: &serde_json::Value) -> String {
    BASE64URL_NOPAD.encode(v.to_string().as_bytes())
}

on_each_backend! {
async fn bad_tokens_are_refused(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let good = svc.token.clone().unwrap();
    assert_eq!(svc.get("/v1/auth/whoami").await.0, StatusCode::OK);

    let parts: Vec<&str> = good.split('.').collect();
    let claims: serde_json::Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();

    // alg: none with the same claims and no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    // Claims altered (more roles, other tenant) under the original signature.
    let mut elevated = claims.clone();
    elevated["roles"] = json!(["admin", "fulfilment", "security_officer"]);
    elevated["tenants"] = json!(["*"]);
    let forged = format!("{}.{}.{}", parts[0], b64(&elevated), parts[2]);
    // Properly signed, but with a key that is not the vault's.
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &elevated,
        &EncodingKey::from_secret(b"not the vault's signing key, 32b"),
    )
    .unwrap();
    // A flipped bit in the signature.
    let mut sig = parts[2].to_owned();
    let last = sig.pop().unwrap();
    sig.push(if last == 'A' { 'B' } else { 'A' });
    let bad_sig = format!("{}.{}.{sig}", parts[0], parts[1]);

    for (name, token) in [
        ("alg none", none.as_str()),
        ("forged claims", forged.as_str()),
        ("wrong key", wrong_key.as_str()),
        ("bad signature", bad_sig.as_str()),
        ("garbage", "not-a-jwt"),
        ("empty", ""),
    ] {
        let (status, body) = svc.with_token(token).get("/v1/auth/whoami").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert_eq!(code(&body), "auth.unauthenticated", "{name}");
    }
    let (status, body) = h.anonymous().get("/v1/auth/whoami").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );

    // Expiry follows the vault's clock: 300 s lifetime.
    h.clock.advance_secs(299);
    assert_eq!(svc.get("/v1/auth/whoami").await.0, StatusCode::OK);
    h.clock.advance_secs(2);
    let (status, body) = svc.get("/v1/auth/whoami").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}
}

on_each_backend! {
async fn client_credentials_as_json_and_form(store) {
    let h = Harness::dev_on(store.clone()).await;
    let id = &h.creds.service.client_id;
    let secret = &h.creds.service.client_secret;
    let form = h
        .http
        .post(format!("{}/v1/auth/token", h.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={id}&client_secret={secret}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let body: serde_json::Value = form.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);

    let anon = h.anonymous();
    let wrong_secret = anon
        .post("/v1/auth/token", json!({"grant_type": "client_credentials", "client_id": id, "client_secret": "srcs_wrong"}))
        .await;
    let unknown_id = anon
        .post("/v1/auth/token", json!({"grant_type": "client_credentials", "client_id": "srci_nobody", "client_secret": secret}))
        .await;
    assert_eq!(wrong_secret.0, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_id.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_secret.1["error"]["message"],
        unknown_id.1["error"]["message"]
    );
    let (status, body) = anon
        .post(
            "/v1/auth/token",
            json!({"grant_type": "password", "client_id": id, "client_secret": secret}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "auth.unsupported_grant_type");
}
}

on_each_backend! {
async fn every_response_forbids_caching(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let token = svc.put(&crate::harness::random_code()).await;
    let resp = svc
        .http
        .post(format!("{}/v1/secrets/{token}/reveal", h.url))
        .bearer_auth(svc.token.as_ref().unwrap())
        .json(&json!({"purpose": "headers"}))
        .send()
        .await
        .unwrap();
    let headers = resp.headers();
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    assert_eq!(headers["x-request-id"].len(), 24);
}
}

on_each_backend! {
async fn rotated_client_secrets_overlap_then_the_old_one_stops(store) {
    let h = Harness::dev_on(store.clone()).await;
    let admin = h.admin().await;
    let (status, made) = admin
        .post(
            "/v1/principals",
            json!({"name": "storefront", "roles": ["ingest"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap();
    let client_id = made["client_id"].as_str().unwrap();
    let old = made["client_secret"].as_str().unwrap().to_owned();
    let token_with = |secret: String| {
        let anon = h.anonymous();
        let client_id = client_id.to_owned();
        async move {
            anon.post(
                "/v1/auth/token",
                json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}),
            )
            .await
            .0
        }
    };

    // Only an administrator rotates.
    let (status, _) = h
        .service()
        .await
        .post(&format!("/v1/principals/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, rotated) = admin
        .post(
            &format!("/v1/principals/{id}/rotate-secret"),
            json!({"overlap_secs": 600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    // Both work during the overlap, only the new one after it.
    assert_eq!(token_with(old.clone()).await, StatusCode::OK);
    assert_eq!(token_with(new.clone()).await, StatusCode::OK);
    h.clock.advance_secs(601);
    assert_eq!(token_with(old.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(token_with(new.clone()).await, StatusCode::OK);

    // A leaked secret can be cut off at once (a fresh admin token: the
    // first one expired with the clock).
    let admin = h.admin().await;
    let (status, again) = admin
        .post(
            &format!("/v1/principals/{id}/rotate-secret"),
            json!({"overlap_secs": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(token_with(new).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        token_with(again["client_secret"].as_str().unwrap().to_owned()).await,
        StatusCode::OK
    );
    let (status, _) = admin
        .post(
            "/v1/principals/p_nonexistent/rotate-secret",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(again["pending_approval"], false);

    // A credential that reveals is not reissued by an administrator alone:
    // after the rotation no secret of it gets a token until an officer
    // approves again.
    let (status, made) = admin
        .post(
            "/v1/principals",
            json!({"name": "fulfiller", "roles": ["fulfilment"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let fid = made["id"].as_str().unwrap();
    let officer = h.approver().await;
    let approve = |officer: crate::harness::Caller| async move {
        officer
            .post(&format!("/v1/principals/{fid}/approve"), json!({}))
            .await
            .0
    };
    assert_eq!(approve(officer.clone()).await, StatusCode::NO_CONTENT);
    let (status, rotated) = admin
        .post(&format!("/v1/principals/{fid}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["pending_approval"], true);
    let fulfiller_token = |secret: String| {
        let anon = h.anonymous();
        let client_id = made["client_id"].as_str().unwrap().to_owned();
        async move {
            anon.post(
                "/v1/auth/token",
                json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}),
            )
            .await
            .1
        }
    };
    let new = rotated["client_secret"].as_str().unwrap().to_owned();
    let refused = fulfiller_token(new.clone()).await;
    assert_eq!(code(&refused), "auth.pending_approval", "{refused}");
    assert_eq!(approve(officer).await, StatusCode::NO_CONTENT);
    let granted = fulfiller_token(new).await;
    assert!(granted["access_token"].is_string(), "{granted}");
}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_without_a_token_gets_a_401_not_a_reset() {
    let h = Harness::dev_on(crate::harness::TestStore::Sqlite).await;
    // A 4 MiB batch: far more than the socket buffers hold, so a server that
    // answered before reading it would close the connection mid-upload.
    let item = serde_json::json!({"class": "voucher_code", "value": "X".repeat(4000)});
    let body = serde_json::json!({"items": vec![item; 1000]}).to_string();
    for _ in 0..3 {
        let resp = h
            .http
            .post(format!("{}/v1/secrets/batch", h.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("the server must answer, not reset the connection");
        assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(code(&answer), "auth.unauthenticated");
    }
    // A caller refused for its permissions is answered as well.
    let admin = h.admin().await;
    for _ in 0..3 {
        let resp = h
            .http
            .post(format!("{}/v1/secrets/batch", h.url))
            .bearer_auth(admin.token.as_deref().unwrap())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("the server must answer, not reset the connection");
        assert_eq!(resp.status(), reqwest::StatusCode::FORBIDDEN);
    }
}

on_each_backend! {
async fn tokens_signed_with_the_real_key_but_out_of_bounds_are_refused(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let good = svc.token.clone().unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let claims: serde_json::Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();
    // The attacker holds the vault's signing key itself (a leaked key, or
    // a token minted by another deployment): only the claims stop them.
    let root = strongroom::datadir::DataDir::new(h.data_dir())
        .read_dev_key()
        .unwrap()
        .unwrap();
    let key = strongroom_crypto::kdf::derive(&root, strongroom_vault::TOKEN_SIGNING_PURPOSE).unwrap();
    let sign = |claims: &serde_json::Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(key.expose()),
        )
        .unwrap()
    };
    let (iat, iat_ms) = (claims["iat"].as_i64().unwrap(), claims["iat_ms"].as_i64().unwrap());
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims.clone();
        change(&mut c);
        sign(&c)
    };
    // The key is the right one: the same claims, signed again, are accepted.
    let same = sign(&claims);
    assert_eq!(svc.with_token(&same).get("/v1/auth/whoami").await.0, StatusCode::OK);

    for (name, token) in [
        ("ten years of life", with(&|c| c["exp"] = json!(iat + 10 * 365 * 86_400))),
        ("an hour longer than configured", with(&|c| c["exp"] = json!(iat + 3_600 + 300))),
        ("issued an hour from now", with(&|c| {
            c["iat"] = json!(iat + 3_600);
            c["iat_ms"] = json!(iat_ms + 3_600_000);
            c["exp"] = json!(iat + 3_900);
        })),
        ("iat and iat_ms disagree", with(&|c| c["iat_ms"] = json!(iat_ms + 3_600_000))),
        ("not valid before an hour from now", with(&|c| c["nbf"] = json!(iat + 3_600))),
        ("a system subject", with(&|c| c["sub"] = json!("system:watch"))),
        ("no principal id", with(&|c| c["sub"] = json!("anonymous"))),
    ] {
        let (status, body) = svc.with_token(&token).get("/v1/auth/whoami").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert_eq!(code(&body), "auth.unauthenticated", "{name}");
    }
    // A not-before already past is fine.
    let past = with(&|c| c["nbf"] = json!(iat - 10));
    assert_eq!(svc.with_token(&past).get("/v1/auth/whoami").await.0, StatusCode::OK);
}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_from_many_addresses_back_off_per_client_id() {
    let h = Harness::dev_on(crate::harness::TestStore::Sqlite).await;
    let service = h.creds.service.clone();
    let ca = h.server.ca_cert_path.clone().unwrap();
    let url = format!("https://localhost:{}/v1/auth/token", h.server.addr.port());
    // Eight source addresses, so the per-address limits never see much.
    let clients: Vec<reqwest::Client> = (0..8u8)
        .map(|i| {
            let config = strongroom::client::tls_client_config(Some(&ca)).unwrap();
            reqwest::Client::builder()
                .tls_backend_preconfigured(config)
                .local_address(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                    127,
                    0,
                    0,
                    10 + i,
                )))
                .resolve("localhost", h.server.addr)
                .build()
                .unwrap()
        })
        .collect();
    let attempt = |i: usize, secret: &str| {
        clients[i % clients.len()]
            .post(&url)
            .json(&json!({"grant_type": "client_credentials", "client_id": service.client_id, "client_secret": secret}))
            .send()
    };
    let free = strongroom_api::client_backoff::FREE_FAILURES as usize;
    for i in 0..free {
        assert_eq!(
            attempt(i, "sr_cs_wrong").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now every attempt for this client id waits, from any address, a right
    // secret too.
    let held = attempt(free + 1, &service.client_secret).await.unwrap();
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(held.headers()["retry-after"], "1");
    let held = attempt(free + 2, "sr_cs_wrong").await.unwrap();
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS);
    // A back-off, not a lock-out: after the wait the right secret works,
    // and the count starts again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        attempt(0, &service.client_secret).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        attempt(1, "sr_cs_wrong").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt(2, &service.client_secret).await.unwrap().status(),
        StatusCode::OK
    );

    // Audited, once: the first refusal of the minute.
    let auditor = h.creds.auditor.clone().unwrap();
    let auditor = h.login(&auditor.client_id, &auditor.client_secret).await;
    let (_, page) = auditor
        .get("/v1/audit?action=auth.token&outcome=denied")
        .await;
    let backed_off = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("request.rate_limited")
        })
        .count();
    assert_eq!(backed_off, 1, "{page}");
}
