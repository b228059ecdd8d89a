//! Sealed vaults refuse work; shares unseal; sealing forgets the keys.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Harness, code, on_each_backend, random_code};

on_each_backend! {
async fn sealed_vault_refuses_work_until_unsealed_with_shares(store) {
    let (h, shares) = Harness::shamir_on(store.clone(), 3, 5).await;
    let anon = h.anonymous();
    let (status, body) = anon.get("/v1/sys/seal-status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sealed"], true);
    assert_eq!(body["threshold"], 3);
    assert_eq!(body["shares"], 5);
    assert_eq!(body["progress"], 0);

    // No token can be issued, and no request served, while sealed.
    let (status, body) = anon
        .post(
            "/v1/auth/token",
            json!({"grant_type": "client_credentials", "client_id": h.creds.service.client_id, "client_secret": h.creds.service.client_secret}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&body), "vault.sealed");
    let (status, body) = anon
        .with_token("eyJhbGciOiJIUzI1NiJ9.e30.x")
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&body), "vault.sealed");

    // Malformed and mistyped shares are refused without counting.
    for bad in ["hello", "", "srs1-abc-1-zzzz-00000000"] {
        let (status, body) = anon.post("/v1/sys/unseal", json!({"share": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(code(&body), "unseal.invalid_share");
    }
    let mut typo = shares[0].clone();
    typo.replace_range(20..21, if &typo[20..21] == "a" { "b" } else { "a" });
    let (status, body) = anon.post("/v1/sys/unseal", json!({"share": typo})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checksum"),
        "{body}"
    );

    // A share from another vault is named as such.
    let (_other, other_shares) = Harness::shamir_on(store.another().await, 2, 2).await;
    let (status, body) = anon
        .post("/v1/sys/unseal", json!({"share": other_shares[0]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("belongs to vault"),
        "{body}"
    );

    // Progress, a repeated share, then the threshold.
    let (_, body) = anon
        .post("/v1/sys/unseal", json!({"share": shares[4]}))
        .await;
    assert_eq!(body["progress"], 1);
    assert_eq!(body["sealed"], true);
    let (status, body) = anon
        .post("/v1/sys/unseal", json!({"share": shares[4]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already given")
    );
    anon.post("/v1/sys/unseal", json!({"share": shares[1]}))
        .await;
    let (_, body) = anon
        .post("/v1/sys/unseal", json!({"share": shares[2]}))
        .await;
    assert_eq!(body["sealed"], false, "{body}");

    // Works now.
    let svc = h.service().await;
    let value = random_code();
    let token = svc.put(&value).await;
    assert_eq!(svc.reveal(&token).await.1["value"], value.as_str());

    // Only a principal with the seal permission may seal.
    assert_eq!(
        svc.post("/v1/sys/seal", json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    let admin = h.admin().await;
    assert_eq!(
        admin
            .call(reqwest::Method::POST, "/v1/sys/seal", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );

    // Sealed again: outstanding access tokens are worthless.
    let (status, body) = svc.reveal(&token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&body), "vault.sealed");

    // A reset forgets shares given so far.
    let (_, body) = anon
        .post("/v1/sys/unseal", json!({"share": shares[1]}))
        .await;
    assert_eq!(body["progress"], 1);
    let (_, body) = anon.post("/v1/sys/unseal", json!({"reset": true})).await;
    assert_eq!(body["progress"], 0);
    let (status, _) = anon.post("/v1/sys/unseal", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Shares of another split carrying this vault's id rebuild a wrong key:
    // refused, and progress is reset.
    let vault_id = anon.get("/v1/sys/seal-status").await.1["vault_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let impostor = strongroom_crypto::shamir::split(
        &strongroom_crypto::KeyBytes::generate().unwrap(),
        3,
        5,
        &vault_id,
    )
    .unwrap();
    anon.post("/v1/sys/unseal", json!({"share": impostor[0].as_str()}))
        .await;
    anon.post("/v1/sys/unseal", json!({"share": impostor[1].as_str()}))
        .await;
    let (status, body) = anon
        .post("/v1/sys/unseal", json!({"share": impostor[2].as_str()}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "unseal.failed");
    assert_eq!(anon.get("/v1/sys/seal-status").await.1["progress"], 0);

    // Any three shares unseal it; tokens from before the seal stay retired.
    h.clock.advance_secs(2);
    h.unseal(&[shares[3].clone(), shares[0].clone(), shares[2].clone()])
        .await;
    let (status, _) = svc.reveal(&token).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a token issued before the seal must not come back to life"
    );
    let svc = h.service().await;
    assert_eq!(svc.reveal(&token).await.1["value"], value.as_str());
}
}

on_each_backend! {
async fn stalled_unseal_progress_expires(store) {
    let (h, shares) = Harness::shamir_on(store.clone(), 2, 3).await;
    let anon = h.anonymous();
    let (_, body) = anon
        .post("/v1/sys/unseal", json!({"share": shares[0]}))
        .await;
    assert_eq!(body["progress"], 1);
    h.clock.advance_secs(9 * 60);
    assert_eq!(anon.get("/v1/sys/seal-status").await.1["progress"], 1);
    h.clock.advance_secs(2 * 60);
    assert_eq!(
        anon.get("/v1/sys/seal-status").await.1["progress"],
        0,
        "the share must be forgotten"
    );
    // The old share no longer counts: one more share is not enough...
    let (_, body) = anon
        .post("/v1/sys/unseal", json!({"share": shares[1]}))
        .await;
    assert_eq!(body["sealed"], true);
    assert_eq!(body["progress"], 1);
    // ...and a second one completes a fresh attempt.
    let (_, body) = anon
        .post("/v1/sys/unseal", json!({"share": shares[2]}))
        .await;
    assert_eq!(body["sealed"], false, "{body}");
}
}
