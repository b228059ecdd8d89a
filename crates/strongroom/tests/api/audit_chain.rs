//! The audit log records every attempt and any tampering is named.

use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom_store_postgres::Store;

use crate::harness::{Harness, on_each_backend, random_code};

on_each_backend! {
async fn every_attempt_is_recorded_without_values(store) {
    let h = Harness::dev_on(store.clone()).await;
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
    let all = h.audit_rows().await;
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
}

on_each_backend! {
async fn edits_deletions_and_reorders_are_named(store) {
    let h = Harness::dev_on(store.clone()).await;
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
    h.settled_audit_head().await;
    let (ok, out) = h.cli_verify();
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");

    let original = h.audit_rows().await;
    assert!(original.len() > 20);

    // Edit: turn a denial into an allowance. The log keeps its length, so
    // the server goes on appending and its own check names the record.
    let mut edited = original.clone();
    edited[11].1 = edited[11].1.replace("\"allowed\"", "\"denied\"");
    assert_ne!(edited[11].1, original[11].1);
    h.replace_audit_log(edited).await;
    let (_, report) = auditor.get("/v1/audit/verify").await;
    assert_eq!(report["first_bad"]["seq"], 12, "{report}");
    assert_eq!(report["intact"], false, "{report}");
    let (ok, out) = h.cli_verify();
    assert!(!ok);
    assert!(out.contains("record 12"), "{out}");

    // Delete one record: the offline check names it.
    let mut deleted = original.clone();
    deleted.remove(6);
    h.replace_audit_log(deleted).await;
    let (ok, out) = h.cli_verify();
    assert!(!ok && out.contains("record 7") && out.contains("missing"), "{out}");

    // Delete one record and renumber the rest to hide the gap.
    let mut renumbered = original.clone();
    renumbered.remove(4);
    for row in renumbered.iter_mut().skip(4) {
        row.0 -= 1;
    }
    h.replace_audit_log(renumbered).await;
    let (ok, out) = h.cli_verify();
    assert!(!ok && out.contains("record 5"), "{out}");
    // The log now ends below what the server already made durable: it
    // appends nothing more (its own verification included).
    let (status, body) = auditor.get("/v1/audit/verify").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "audit.cut", "{body}");

    // Reorder: swap the contents of records 9 and 10.
    let mut swapped = original.clone();
    let (b9, m9) = (swapped[8].1.clone(), swapped[8].2.clone());
    swapped[8].1 = swapped[9].1.clone();
    swapped[8].2 = swapped[9].2.clone();
    swapped[9].1 = b9;
    swapped[9].2 = m9;
    h.replace_audit_log(swapped).await;
    let (ok, out) = h.cli_verify();
    assert!(!ok && out.contains("record 9"), "{out}");
}
}

/// The log's last record, past the vault.
async fn last_seq(h: &Harness) -> u64 {
    h.audit_rows().await.last().map_or(0, |r| r.0)
}

/// Alerts of `detector` stored in the central store (read past the API,
/// which cannot audit its reads while the log is cut).
async fn stored_alerts(h: &Harness, detector: &str) -> i64 {
    h.count_rows(
        Store::Central,
        &format!("alerts WHERE detector = '{detector}'"),
    )
    .await
}

on_each_backend! {
async fn a_tail_cut_from_the_audit_log_is_named_and_nothing_is_appended_after_it(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    for _ in 0..5 {
        let t = svc.put(&random_code()).await;
        svc.reveal(&t).await;
    }
    let head = h.settled_audit_head().await;
    assert_eq!(head, last_seq(&h).await);
    let (ok, out) = h.cli_verify();
    assert!(ok && out.contains("none was cut from the end"), "{out}");

    // Someone with the audit store cuts the last five records.
    let keep = head - 5;
    h.tamper(Store::Audit, &format!("DELETE FROM audit_log WHERE seq > {keep}"), &[]).await;

    // The chain up to the cut still verifies, but the vault sealed a later
    // head: verify says where the log falls short, and fails.
    let (ok, out) = h.cli_verify();
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("BROKEN at record {}", keep + 1)), "{out}");
    assert!(out.contains(&format!("sealed record {head} as written")), "{out}");
    assert!(out.contains("cut off the end"), "{out}");

    // The running server will not number on from the cut.
    let (status, body) = svc
        .post("/v1/secrets", json!({"class": "voucher_code", "value": random_code()}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "audit.cut", "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stored_alerts(&h, "audit_chain_cut").await == 0 {
        assert!(std::time::Instant::now() < deadline, "no audit_chain_cut alert");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Nor will a restarted one: it refuses to unseal, naming the records
    // that are missing.
    let opts = h.options();
    let (sealed, last) = (h.sealed_head_seq().await, last_seq(&h).await);
    h.server.shutdown().await.unwrap();
    let refused = strongroom::app::start(opts).await;
    let refused = format!("{:#}", refused.err().unwrap_or_else(|| panic!("a server started on a cut log: sealed {sealed}, last {last}")));
    assert!(refused.contains("the audit log was cut"), "{sealed} {last} {refused}");
    // The refused attempt's own record was written where the cut left off.
    assert!(refused.contains(&format!("..={head} are missing")), "{refused}");
}
}

on_each_backend! {
async fn an_emptied_audit_log_is_not_started_again_from_one(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    svc.put(&random_code()).await;
    let head = h.settled_audit_head().await;
    h.tamper(Store::Audit, "DELETE FROM audit_log", &[]).await;
    let (ok, out) = h.cli_verify();
    assert!(!ok && out.contains("BROKEN at record 1"), "{out}");
    let opts = h.options();
    h.server.shutdown().await.unwrap();
    let refused = strongroom::app::start(opts).await;
    let refused = format!("{:#}", refused.err().expect("a server started on an emptied log"));
    assert!(
        refused.contains(&format!("it ends at record 0, but the vault sealed record {head}")),
        "{refused}"
    );
}
}

on_each_backend! {
async fn no_audit_record_means_no_operation(store) {
    let h = Harness::dev_on(store.clone()).await;
    let svc = h.service().await;
    let kept = random_code();
    let token = svc.put(&kept).await;

    // The audit store breaks (here: its table disappears).
    h.tamper(Store::Audit, "ALTER TABLE audit_log RENAME TO audit_log_away", &[])
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
    h.tamper(Store::Audit, "ALTER TABLE audit_log_away RENAME TO audit_log", &[])
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

    // The outage itself was raised as an alert (PCI DSS 10.7.2), kept in
    // the central store while the audit store was down.
    let officer = h.approver().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let alerts = loop {
        let (status, body) = officer.get("/v1/alerts?detector=audit_store_failure").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let alerts = body["alerts"].as_array().unwrap().clone();
        if !alerts.is_empty() || std::time::Instant::now() > deadline {
            break alerts;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[0]["subject"], "component:audit_store");
}
}

on_each_backend! {
async fn a_signed_checkpoint_catches_a_log_rewritten_with_the_chain_key_or_cut(store) {
    let h = Harness::dev_on(store).await;
    let svc = h.service().await;
    for _ in 0..8 {
        let t = svc.put(&random_code()).await;
        svc.reveal(&t).await;
    }
    // Auditors take checkpoints; others may not.
    assert_eq!(svc.get("/v1/audit/checkpoint").await.0, StatusCode::FORBIDDEN);
    let auditor = h.principal("auditor-cp", &["auditor"], &["*"]).await;
    let (status, checkpoint) = auditor.get("/v1/audit/checkpoint").await;
    assert_eq!(status, StatusCode::OK, "{checkpoint}");
    let seq = checkpoint["seq"].as_u64().unwrap();
    assert!(seq > 20, "{checkpoint}");
    let file = h.dir.path().join("checkpoint.json");
    std::fs::write(&file, checkpoint.to_string()).unwrap();
    let with_checkpoint = [std::ffi::OsStr::new("--checkpoint"), file.as_os_str()];

    // The log grows after it; the checkpoint still vouches for its prefix.
    for _ in 0..3 {
        let t = svc.put(&random_code()).await;
        svc.reveal(&t).await;
    }
    let (ok, out) = h.cli_verify_with(&with_checkpoint);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("checkpoint of record {seq}")), "{out}");

    // Someone with the chain key (a compromised node holds it in memory)
    // removes record 5 and re-chains the rest: the chain checks out on its
    // own, the checkpoint does not.
    let root = strongroom::datadir::DataDir::new(h.data_dir()).read_dev_key().unwrap().unwrap();
    let key = strongroom_vault::audit_key(&root).unwrap();
    let chain = strongroom_audit::chain_fn(std::sync::Arc::new(strongroom_crypto::mac::MacKey::new(&key)));
    let original = h.audit_rows().await;
    let mut rewritten = original.clone();
    rewritten.remove(4);
    let mut prev = Vec::new();
    for (i, row) in rewritten.iter_mut().enumerate() {
        row.0 = i as u64 + 1;
        row.2 = chain(&prev, row.0, &row.1);
        prev = row.2.clone();
    }
    h.replace_audit_log(rewritten).await;
    // The chain alone is fooled, but the log is now a record short of the
    // head the vault sealed into the vault store.
    let (ok, out) = h.cli_verify();
    assert!(!ok && out.contains("cut off the end"), "{out}");
    let (ok, out) = h.cli_verify_with(&with_checkpoint);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("record {seq} differs")) && out.contains("rewritten"), "{out}");

    // Cut off before the checkpoint: a shorter, valid chain, caught by the
    // sealed head and by the checkpoint alike.
    h.replace_audit_log(original[..10].to_vec()).await;
    let (ok, out) = h.cli_verify();
    assert!(!ok && out.contains("cut off the end"), "{out}");
    let (ok, out) = h.cli_verify_with(&with_checkpoint);
    assert!(!ok && out.contains("missing") && out.contains("cut"), "{out}");

    // Back as it was, but the checkpoint file edited to vouch for less.
    h.replace_audit_log(original).await;
    let mut edited = checkpoint.clone();
    edited["seq"] = json!(seq - 1);
    std::fs::write(&file, edited.to_string()).unwrap();
    let (ok, out) = h.cli_verify_with(&with_checkpoint);
    assert!(!ok && out.contains("signature does not match"), "{out}");
    std::fs::write(&file, checkpoint.to_string()).unwrap();
    let (ok, out) = h.cli_verify_with(&with_checkpoint);
    assert!(ok, "{out}");
}
}
