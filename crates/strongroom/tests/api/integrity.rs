//! Stored ciphertexts that are moved, altered or lost never reveal, and
//! never reveal the wrong value.

use reqwest::StatusCode;
use serde_json::json;
use strongroom_store::sqlite::rusqlite::params;

use crate::harness::{Harness, code, random_code};

async fn sql(h: &Harness, statement: &'static str, args: Vec<String>) {
    h.server
        .stores
        .vault
        .database()
        .write(move |conn| {
            conn.execute(
                statement,
                strongroom_store::sqlite::rusqlite::params_from_iter(args.iter()),
            )
            .map_err(|e| strongroom_store::StoreError::Backend {
                op: "test",
                detail: e.to_string(),
            })
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_ciphertexts_fail_with_an_integrity_error() {
    let h = Harness::dev().await;
    let svc = h.service().await;
    let (va, vb) = (random_code(), random_code());
    let (a, b) = (svc.put(&va).await, svc.put(&vb).await);

    // Swap the two rows' envelopes in the vault store.
    h.server
        .stores
        .vault
        .database()
        .write({
            let (a, b) = (a.clone(), b.clone());
            move |conn| {
                let get = |t: &str| -> Vec<u8> {
                    conn.query_row("SELECT envelope FROM records WHERE token = ?1", [t], |r| {
                        r.get(0)
                    })
                    .unwrap()
                };
                let (ea, eb) = (get(&a), get(&b));
                conn.execute(
                    "UPDATE records SET envelope = ?2 WHERE token = ?1",
                    params![a, eb],
                )
                .unwrap();
                conn.execute(
                    "UPDATE records SET envelope = ?2 WHERE token = ?1",
                    params![b, ea],
                )
                .unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_lost_or_misattributed_records_do_not_reveal() {
    let h = Harness::dev().await;
    let svc = h.service().await;
    let flipped = svc.put(&random_code()).await;
    let lost = svc.put(&random_code()).await;
    let relabelled = svc.put(&random_code()).await;

    // One flipped bit in the middle of the ciphertext.
    h.server
        .stores
        .vault
        .database()
        .write({
            let t = flipped.clone();
            move |conn| {
                let mut env: Vec<u8> = conn
                    .query_row("SELECT envelope FROM records WHERE token = ?1", [&t], |r| {
                        r.get(0)
                    })
                    .unwrap();
                env[20] ^= 0x01;
                conn.execute(
                    "UPDATE records SET envelope = ?2 WHERE token = ?1",
                    params![t, env],
                )
                .unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    // The sealed record deleted from the vault store.
    sql(
        &h,
        "DELETE FROM records WHERE token = ?1",
        vec![lost.clone()],
    )
    .await;
    // The central store edited to claim another key version.
    h.server
        .stores
        .central
        .database()
        .write({
            let t = relabelled.clone();
            move |conn| {
                conn.execute("UPDATE secrets SET key_version = 2 WHERE token = ?1", [t])
                    .unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    let officer = h.officer().await;
    officer
        .post(
            "/v1/keys/rotate",
            json!({"tenant": "dev", "class": "voucher_code"}),
        )
        .await;

    for token in [&flipped, &lost, &relabelled] {
        let (status, body) = svc.reveal(token).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{token}: {body}");
        assert_eq!(code(&body), "vault.integrity");
    }
}
