//! Card numbers: validation, tokens that keep BIN and last four but fail
//! Luhn, fingerprints that recognise a returning card, reveals masked by
//! default, the whole number only for a role no built-in one is, CVVs held
//! in memory and never written down.

use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom_cards::pan::luhn_valid;

use crate::harness::{Harness, code, on_each_backend};

const VISA: &str = "4111111111111111";
const AMEX: &str = "378282246310005";

fn card(pan: &str) -> Value {
    json!({"pan": pan, "expiry_month": 12, "expiry_year": 2031, "holder": "Ada Lovelace"})
}

on_each_backend! {
async fn cards_are_validated_and_tokenized_in_their_own_shape(store) {
    let h = Harness::dev_on(store).await;
    let svc = h.service().await;
    for (pan, fragment) in [
        ("4111 1111 1111 1111", "digits only"),
        ("41111111111", "11 digits"),
        ("4111111111111112", "Luhn"),
        ("", "digits only"),
    ] {
        let (status, body) = svc.post("/v1/cards", card(pan)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pan}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(fragment), "{body}");
        assert!(pan.is_empty() || !body.to_string().contains(pan), "the number is echoed: {body}");
    }
    let (status, body) = svc
        .post("/v1/cards", json!({"pan": VISA, "expiry_month": 13, "expiry_year": 2031}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = svc
        .post("/v1/cards", json!({"pan": VISA, "expiry_month": 1, "expiry_year": 2020}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    let (status, body) = svc
        .post("/v1/cards", json!({"pan": VISA, "expiry_month": 1, "expiry_year": 2031, "cvv": "12"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Tokens keep length, BIN and last four, fail Luhn, and differ.
    let mut tokens = Vec::new();
    for pan in [VISA, VISA, AMEX] {
        let (status, t) = svc.post("/v1/cards", card(pan)).await;
        assert_eq!(status, StatusCode::CREATED, "{t}");
        let token = t["token"].as_str().unwrap();
        assert_eq!(token.len(), pan.len());
        // BIN and last four; a 15-digit card keeps five leading digits, so
        // that six stay hidden.
        let kept = strongroom_cards::pan::shown_prefix(pan.len());
        assert_eq!(kept, if pan.len() >= 16 { 6 } else { 5 });
        assert!(token.starts_with(&pan[..kept]) && token.ends_with(&pan[pan.len() - 4..]), "{t}");
        assert!(!luhn_valid(token), "{token} passes Luhn");
        assert_ne!(token, pan);
        assert_eq!(t["masked_pan"].as_str().unwrap(), strongroom_cards::pan::mask(pan));
        assert!(!t.to_string().contains(pan), "the number came back: {t}");
        tokens.push(t);
    }
    assert_ne!(tokens[0]["token"], tokens[1]["token"], "each tokenization its own token");
    assert_eq!(tokens[0]["fingerprint"], tokens[1]["fingerprint"], "a returning card is recognised");
    assert_ne!(tokens[0]["fingerprint"], tokens[2]["fingerprint"]);

    // The administrator stores nothing; support cannot store cards.
    assert_eq!(h.admin().await.post("/v1/cards", card(VISA)).await.0, StatusCode::FORBIDDEN);
}
}

on_each_backend! {
async fn a_card_is_revealed_masked_unless_a_dual_controlled_role_allows_the_whole(store) {
    let h = Harness::dev_on(store).await;
    let svc = h.service().await;
    let (_, t) = svc.post("/v1/cards", card(VISA)).await;
    let token = t["token"].as_str().unwrap().to_owned();
    let reveal = |full: bool| json!({"purpose": "chargeback 77", "full": full});

    // The storefront's service and support see BIN and last four.
    let (status, body) = svc.post(&format!("/v1/cards/{token}/reveal"), reveal(false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pan"], "411111******1111");
    assert_eq!(body["masked"], true);
    assert_eq!((body["expiry_month"].as_u64(), body["expiry_year"].as_u64()), (Some(12), Some(2031)));
    let support = h.principal("helpdesk", &["support"], &["dev"]).await;
    let (status, body) = support.post(&format!("/v1/cards/{token}/reveal"), reveal(false)).await;
    assert_eq!((status, body["pan"].as_str()), (StatusCode::OK, Some("411111******1111")));
    // No built-in role sees the whole number.
    for caller in [&svc, &support] {
        let (status, body) = caller.post(&format!("/v1/cards/{token}/reveal"), reveal(true)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(!body.to_string().contains(VISA));
    }
    // The generic reveal does not open a card.
    let (status, body) = svc.reveal(&token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(!body.to_string().contains(VISA));

    // A role with `cards:reveal_full` needs a second person's approval.
    let admin = h.admin().await;
    let (status, body) = admin
        .put_json("/v1/roles/card-relay", json!({"permissions": ["cards:reveal_full"]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = h
        .approver()
        .await
        .post("/v1/roles/card-relay/approve", json!({"permissions": ["cards:reveal_full"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let relay = h.principal("relay-svc", &["card-relay"], &["dev"]).await;
    let (status, body) = relay.post(&format!("/v1/cards/{token}/reveal"), reveal(true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["pan"].as_str(), body["masked"].as_bool()), (Some(VISA), Some(false)));
    // … and only in its tenant.
    let other = h.principal("relay-other", &["card-relay"], &["other"]).await;
    let (status, _) = other.post(&format!("/v1/cards/{token}/reveal"), reveal(true)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Each reveal is audited with the form shown, never the number.
    let auditor = h.principal("auditor-cards", &["auditor"], &["*"]).await;
    let (_, page) = auditor.get(&format!("/v1/audit?token={token}")).await;
    let reasons: Vec<&str> = page["records"].as_array().unwrap().iter().filter_map(|r| r["reason"].as_str()).collect();
    assert!(reasons.contains(&"pan=full") && reasons.contains(&"pan=masked"), "{reasons:?}");
    assert!(!page.to_string().contains(VISA));
}
}

on_each_backend! {
async fn a_cvv_is_held_in_memory_and_written_nowhere(store) {
    let h = Harness::dev_on(store).await;
    let svc = h.service().await;
    // A card number and CVV that appear nowhere else.
    let pan = "4000056655665556";
    let cvv = "8642";
    let (status, t) = svc
        .post("/v1/cards", json!({"pan": pan, "expiry_month": 3, "expiry_year": 2030, "cvv": cvv, "cvv_ttl_mins": 5}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let cvv_token = t["cvv_token"].as_str().unwrap();
    assert!(cvv_token.starts_with("cvv_"), "{t}");
    let created = time::OffsetDateTime::parse(t["created_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    let expires = time::OffsetDateTime::parse(t["cvv_expires_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!((expires - created).whole_minutes(), 5);
    let (status, body) = svc
        .post("/v1/cards", json!({"pan": pan, "expiry_month": 3, "expiry_year": 2030, "cvv": cvv, "cvv_ttl_mins": 61}))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "request.invalid"));

    // The CVV token is no secret's token: the generic reveal knows nothing of it.
    assert_eq!(svc.reveal(cvv_token).await.0, StatusCode::NOT_FOUND);
    // Neither the number nor the CVV is in the audit log …
    let rows = h.audit_rows().await;
    for (_, body, _) in &rows {
        assert!(!body.contains(pan) && !body.contains(&format!("\"{cvv}\"")), "{body}");
    }
    assert!(rows.iter().any(|(_, b, _)| b.contains("card.tokenize") && b.contains("cvv held 5 min")));
    // … nor, for the number, anywhere on disk (the CVV is four digits: a
    // search of binary files for it would find noise, so the stores are
    // checked by the row test above and by construction: it is never
    // passed to one).
    if matches!(h.store, crate::harness::TestStore::Sqlite) {
        for entry in walk(&h.data_dir()) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(pan.len()).any(|w| w == pan.as_bytes()),
                "the card number is in {}",
                entry.display()
            );
        }
    }
}
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_some_route_groups_serves_only_those() {
    use strongroom_api::groups::RouteGroup;
    let mut api = crate::harness::test_api_config();
    api.only = Some(vec![RouteGroup::Tokenize, RouteGroup::Relay]);
    let h = Harness::dev_with(crate::harness::TestStore::Sqlite, api).await;
    let svc = h.service().await;
    // Always: health, a token (above), who am I.
    assert_eq!(h.anonymous().get("/v1/sys/health").await.0, StatusCode::OK);
    assert_eq!(svc.get("/v1/auth/whoami").await.0, StatusCode::OK);
    // The groups asked for.
    let (status, t) = svc.post("/v1/cards", card(VISA)).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let token = svc.put(&crate::harness::random_code()).await;
    // Everything else is not there, for anyone.
    for (caller, path) in [
        (&svc, format!("/v1/secrets/{token}/reveal")),
        (
            &svc,
            format!("/v1/cards/{}/reveal", t["token"].as_str().unwrap()),
        ),
    ] {
        let (status, body) = caller.post(&path, json!({"purpose": "x"})).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "request.no_route"),
            "{path}"
        );
    }
    let (status, body) = h.admin().await.get("/v1/principals").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "request.no_route")
    );
    let (status, _) = svc.get(&format!("/v1/secrets/{token}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
