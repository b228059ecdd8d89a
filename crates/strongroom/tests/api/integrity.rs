//! Stored ciphertexts that are moved, altered or lost never reveal, and
//! never reveal the wrong value.

use reqwest::StatusCode;
use serde_json::json;
use strongroom_store_postgres::Store;

use crate::harness::{Harness, code, on_each_backend, random_code};

on_each_backend! {
async fn swapped_ciphertexts_fail_with_an_integrity_error(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let (va, vb) = (random_code(), random_code());
    let (a, b) = (svc.put(&va).await, svc.put(&vb).await);

    // Swap the two rows' envelopes in the vault store.
    let (ea, eb) = (h.raw_envelope(&a).await, h.raw_envelope(&b).await);
    h.set_raw_envelope(&a, eb).await;
    h.set_raw_envelope(&b, ea).await;

    for (token, other_value) in [(&a, &vb), (&b, &va)] {
        let (status, body) = svc.reveal(token).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(code(&body), "vault.integrity");
        assert!(
            !body.to_string().contains(other_value.as_str()),
            "revealed the wrong value"
        );
    }
}
}

on_each_backend! {
async fn altered_lost_or_misattributed_records_do_not_reveal(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let flipped = svc.put(&random_code()).await;
    let lost = svc.put(&random_code()).await;
    let relabelled = svc.put(&random_code()).await;

    // One flipped bit in the middle of the ciphertext.
    let mut env = h.raw_envelope(&flipped).await;
    env[20] ^= 0x01;
    h.set_raw_envelope(&flipped, env).await;
    // The sealed record deleted from the vault store.
    h.tamper(Store::Vault, "DELETE FROM records WHERE token = $1", &[&lost]).await;
    // The central store edited to claim another key version.
    h.tamper(Store::Central, "UPDATE secrets SET key_version = 2 WHERE token = $1", &[&relabelled])
        .await;
    let officer = h.officer().await;
    officer
        .post(
            "/v1/keys/rotate",
            json!({"tenant": "dev", "class": "voucher_code"}),
        )
        .await;

    for token in [&flipped, &lost] {
        let (status, body) = svc.reveal(token).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{token}: {body}");
        assert_eq!(code(&body), "vault.integrity");
    }
    // The central row's key version is bound by its seal: the edit is
    // caught before the envelope is even read.
    let (status, body) = svc.reveal(&relabelled).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(code(&body), "store.tampered");
}
}
