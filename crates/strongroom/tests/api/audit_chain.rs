//! The audit log records every attempt and any tampering is named.

use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom_store::sqlite::rusqlite::params;
use strongroom_store::{AuditStore, StoreError};

use crate::harness::{Harness, random_code};

async fn rows(h: &Harness) -> Vec<(u64, String, Vec<u8>)> {
    h.server
        .stores
        .audit
        .read_from(1, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, r.body, r.mac))
        .collect()
}

async fn exec(
    h: &Harness,
    f: impl FnOnce(&strongroom_store::sqlite::rusqlite::Connection) + Send + 'static,
) {
    h.server
        .stores
        .audit
        .database()
        .write(move |c| {
            f(c);
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
}

async fn restore(h: &Harness, original: Vec<(u64, String, Vec<u8>)>) {
    exec(h, move |c| {
        c.execute("DELETE FROM audit_log", []).unwrap();
        for (seq, body, mac) in &original {
            c.execute(
                "INSERT INTO audit_log (seq, body, mac) VALUES (?1, ?2, ?3)",
                params![seq, body, mac],
            )
            .unwrap();
        }
    })
    .await;
}

fn cli_verify(h: &Harness) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["audit", "verify", "--data-dir"])
        .arg(h.data_dir())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_recorded_without_values() {
    let h = Harness::dev().await;
    let svc = h.service().await;
    let value = random_code();
    let token = svc.put(&value).await;
    svc.reveal(&token).await;
    h.admin().await.reveal(&token).await;
    svc.reveal("sr_vc_unknown").await;
    svc.with_token("forged").get("/v1/auth/whoami").await;

    // A malformed body is refused, and the refusal recorded against its caller.
    let (status, _) = svc
        .post(
            &format!("/v1/secrets/{token}/reveal"),
            json!({"purpose": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let service_id = h
        .server
        .vault
        .stores()
        .central
        .principal_by_client_id(&h.creds.service.client_id)
        .await
        .unwrap()
        .unwrap()
        .id;
    let all = rows(&h).await;
    let events: Vec<Value> = all
        .iter()
        .map(|(_, b, _)| serde_json::from_str(b).unwrap())
        .collect();
    let find = |action: &str, outcome: &str, target: &str| {
        events
            .iter()
            .any(|e| e["action"] == action && e["outcome"] == outcome && e["target"] == target)
    };
    assert!(find("secret.tokenize", "allowed", &token));
    assert!(find("secret.reveal", "allowed", &token));
    assert!(
        find("secret.reveal", "denied", &token),
        "the admin's refused reveal"
    );
    assert!(find("secret.reveal", "denied", "sr_vc_unknown"));
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "auth.authenticate" && e["outcome"] == "denied")
    );
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "auth.token" && e["outcome"] == "allowed")
    );
    assert!(events.iter().any(|e| e["action"] == "request.rejected"
        && e["actor"] == service_id.as_str()
        && e["reason"] == "request.invalid"));
    let reveal = events
        .iter()
        .find(|e| e["action"] == "secret.reveal" && e["outcome"] == "allowed")
        .unwrap();
    assert_eq!(reveal["purpose"], "test");
    assert!(reveal["request_id"].as_str().unwrap().len() == 24);
    assert_eq!(reveal["client_addr"], "127.0.0.1");
    for (_, body, _) in &all {
        assert!(!body.contains(&value), "an audit record holds the value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletions_and_reorders_are_named() {
    let h = Harness::dev().await;
    let svc = h.service().await;
    for _ in 0..8 {
        let t = svc.put(&random_code()).await;
        svc.reveal(&t).await;
    }
    let auditor = h.principal("auditor-1", &["auditor"], &["dev"]).await;
    let (status, report) = auditor.get("/v1/audit/verify").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["intact"], true, "{report}");
    assert!(report["verified"].as_u64().unwrap() > 20);
    let (ok, out) = cli_verify(&h);
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");

    let original = rows(&h).await;
    assert!(original.len() > 20);

    // Edit: turn a denial into an allowance.
    exec(&h, |c| {
        c.execute(
            "UPDATE audit_log SET body = replace(body, '\"allowed\"', '\"denied\"') WHERE seq = 12",
            [],
        )
        .unwrap();
    })
    .await;
    let (_, report) = auditor.get("/v1/audit/verify").await;
    assert_eq!(report["first_bad"]["seq"], 12, "{report}");
    let (ok, out) = cli_verify(&h);
    assert!(!ok);
    assert!(out.contains("record 12"), "{out}");
    restore(&h, original.clone()).await;

    // Delete one record.
    exec(&h, |c| {
        c.execute("DELETE FROM audit_log WHERE seq = 7", [])
            .unwrap();
    })
    .await;
    let (_, report) = auditor.get("/v1/audit/verify").await;
    assert_eq!(report["first_bad"]["seq"], 7, "{report}");
    assert!(
        report["first_bad"]["problem"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
    let (ok, out) = cli_verify(&h);
    assert!(!ok && out.contains("record 7"), "{out}");
    restore(&h, original.clone()).await;

    // Delete one record and renumber the rest to hide the gap.
    exec(&h, |c| {
        c.execute("DELETE FROM audit_log WHERE seq = 5", [])
            .unwrap();
        c.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 5", [])
            .unwrap();
    })
    .await;
    let (_, report) = auditor.get("/v1/audit/verify").await;
    assert_eq!(report["first_bad"]["seq"], 5, "{report}");
    restore(&h, original.clone()).await;

    // Reorder: swap records 9 and 10.
    let (_, b9, m9) = original[8].clone();
    let (_, b10, m10) = original[9].clone();
    exec(&h, move |c| {
        c.execute(
            "UPDATE audit_log SET body = ?2, mac = ?3 WHERE seq = ?1",
            params![9, b10, m10],
        )
        .unwrap();
        c.execute(
            "UPDATE audit_log SET body = ?2, mac = ?3 WHERE seq = ?1",
            params![10, b9, m9],
        )
        .unwrap();
    })
    .await;
    let (_, report) = auditor.get("/v1/audit/verify").await;
    assert_eq!(report["first_bad"]["seq"], 9, "{report}");
    let (ok, out) = cli_verify(&h);
    assert!(!ok && out.contains("record 9"), "{out}");
    restore(&h, original).await;

    let (_, report) = auditor.get("/v1/audit/verify").await;
    assert_eq!(report["intact"], true, "{report}");
    let _ = json!({});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_audit_record_means_no_operation() {
    let h = Harness::dev().await;
    let svc = h.service().await;
    let kept = random_code();
    let token = svc.put(&kept).await;

    // The audit store breaks (here: its table disappears).
    exec(&h, |c| {
        c.execute("ALTER TABLE audit_log RENAME TO audit_log_away", [])
            .unwrap();
    })
    .await;

    let lost = random_code();
    let (status, body) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": lost}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "audit.unavailable");
    let (status, body) = svc.reveal(&token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "audit.unavailable");
    assert!(
        !body.to_string().contains(&kept),
        "a value left without its audit record"
    );
    let (status, _) = svc.reveal("sr_vc_unknown").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "denials are audited too, so they fail closed"
    );

    // Back again: the refused secret was never stored, the old one still reveals.
    exec(&h, |c| {
        c.execute("ALTER TABLE audit_log_away RENAME TO audit_log", [])
            .unwrap();
    })
    .await;
    let (status, _) = svc
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": lost}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the failed attempt must not have stored the value"
    );
    assert_eq!(svc.reveal(&token).await.1["value"], kept.as_str());
    let auditor = h.principal("auditor-2", &["auditor"], &["dev"]).await;
    assert_eq!(auditor.get("/v1/audit/verify").await.1["intact"], true);
}
