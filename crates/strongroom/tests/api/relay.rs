//! The detokenizing relay against a local HTTPS processor: the processor
//! gets the real card, CVV and API key; the caller sends and sees tokens and
//! masked data only; a CVV works once; unconfigured routes, paths outside a
//! route, redirects and private addresses are refused.

use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom_api::relay::RelayRoute;

use crate::harness::{Caller, Harness, code, on_each_backend, test_api_config};

const PAN: &str = "5555555555554444";
const CVV: &str = "7316";
const API_KEY: &str = "sk_test_processor_key_0123456789";

/// What the processor received: the API key header and the body.
pub(crate) type Received = Arc<Mutex<Vec<(String, Value)>>>;

pub(crate) async fn processor(cert: Vec<u8>, key: Vec<u8>, got: Received) -> u16 {
    let app = axum::Router::new()
        .route(
            "/v1/charges",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
                    let got = got.clone();
                    async move {
                        let api_key = headers
                            .get("x-api-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let number = body["source"]["number"].as_str().unwrap_or("").to_owned();
                        got.lock().unwrap().push((api_key, body.0));
                        // Processors echo the card: the relay must mask it.
                        axum::Json(json!({"id": "ch_1", "status": "succeeded", "card": number}))
                    }
                },
            ),
        )
        .route(
            "/v1/echo",
            // Echoes the card in the shapes testers found getting through:
            // other groupings, dots, JSON escapes, the holder and expiry.
            axum::routing::post(|body: axum::Json<Value>| async move {
                let n = body["source"]["number"].as_str().unwrap_or("").to_owned();
                let dotted: Vec<String> = n.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
                let escaped: String = n.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
                let text = format!(
                    r#"{{"dotted":"{}","spaced":"{} {} {}","escaped":"{escaped}","holder":{},"expiry":{},"{}":true}}"#,
                    dotted.join("."),
                    &n[..4], &n[4..10], &n[10..],
                    body["source"]["name"], body["source"]["exp"], dotted.join("-"),
                );
                ([(axum::http::header::CONTENT_TYPE, "application/json")], text)
            }),
        )
        .route(
            "/v1/echo-xml",
            axum::routing::post(|body: axum::Json<Value>| async move {
                let n = body["source"]["number"].as_str().unwrap_or("").to_owned();
                let encoded: String = n.chars().map(|c| format!("&#{};", c as u32)).collect();
                ([(axum::http::header::CONTENT_TYPE, "application/xml")], format!("<card>{encoded}</card>"))
            }),
        )
        .route(
            "/v1/redirect",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [(
                        axum::http::header::LOCATION,
                        "https://collector.example/steal",
                    )],
                )
            }),
        );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = strongroom_api::server::tls_config(&cert, &key).unwrap();
    tokio::spawn(strongroom_api::server::serve_tls(
        listener,
        app,
        tls,
        axum_server::Handle::new(),
    ));
    port
}

async fn relay_caller(h: &Harness) -> Caller {
    let admin = h.admin().await;
    let (status, body) = admin
        .put_json(
            "/v1/roles/payments-relay",
            json!({"permissions": ["cards:relay"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = h
        .approver()
        .await
        .post(
            "/v1/roles/payments-relay/approve",
            json!({"permissions": ["cards:relay"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.principal("charge-fn", &["payments-relay"], &["dev"])
        .await
}

on_each_backend! {
async fn the_processor_gets_the_card_and_the_caller_only_tokens(store) {
    let got = Received::default();
    let dir = tempfile::TempDir::new().unwrap();
    let (cert, key, ca) = strongroom::devtls::ensure(&strongroom::datadir::DataDir::new(dir.path())).unwrap();
    let port = processor(cert, key, got.clone()).await;
    let key_file = dir.path().join("processor.key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    let route = |name: &str, allow_private: bool| RelayRoute {
        name: name.into(),
        upstream: format!("https://localhost:{port}"),
        paths: vec!["/v1/charges".into(), "/v1/redirect".into(), "/v1/echo".into(), "/v1/echo-xml".into()],
        methods: vec!["POST".into()],
        headers: [("x-processor-version".to_owned(), "2026-11".to_owned())].into(),
        header_files: [("x-api-key".to_owned(), key_file.clone())].into(),
        ca_file: ca.clone(),
        allow_private,
        timeout_secs: 10,
        tenants: vec![if name == "other-tenants" { "other".into() } else { "dev".into() }],
    };
    let mut api = test_api_config();
    api.relay_routes = vec![
        route("processor", true),
        route("public-only", false),
        route("other-tenants", true),
    ];
    let h = Harness::dev_with(store, api).await;

    let svc = h.service().await;
    let (status, card) = svc
        .post("/v1/cards", json!({"pan": PAN, "expiry_month": 4, "expiry_year": 2031, "cvv": CVV,
            "holder": "Grace Hopper"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{card}");
    let card_token = card["token"].as_str().unwrap().to_owned();
    let cvv_token = card["cvv_token"].as_str().unwrap().to_owned();
    let charge = |cvv: Option<&str>| {
        json!({"card_token": card_token, "cvv_token": cvv, "body": {
            "amount": 1999, "currency": "GBP",
            "source": {"number": "{{ card.pan }}", "cvc": "{{ card.cvv }}", "exp": "{{ card.expiry }}"}}})
    };

    // Only a principal with `cards:relay` (a dual-controlled custom role).
    let (status, _) = svc.post("/v1/relay/processor/v1/charges", charge(Some(&cvv_token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let gateway = relay_caller(&h).await;

    let resp = gateway
        .http
        .post(format!("{}/v1/relay/processor/v1/charges", gateway.url))
        .bearer_auth(gateway.token.as_deref().unwrap())
        .json(&charge(Some(&cvv_token)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(PAN) && !text.contains(CVV), "card data came back: {text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["upstream_status"], 200);
    assert_eq!(answer["body"]["card"], "555555******4444");

    // The processor got the real values and the key, in the process's hands only.
    {
        let got = got.lock().unwrap();
        let (api_key, body) = got.last().unwrap();
        assert_eq!(api_key, API_KEY);
        assert_eq!(body["source"]["number"], PAN);
        assert_eq!(body["source"]["cvc"], CVV);
        assert_eq!(body["source"]["exp"], "04/31");
        assert_eq!(body["amount"], 1999);
    }

    // Echoed in other groupings, dotted, as JSON escapes, as a key, with the
    // holder and expiry: decoded first, then masked. An answer the relay
    // cannot decode (XML, whose character references could spell the
    // number) is withheld.
    let echo = |path: &str| {
        let (gateway, card_token) = (&gateway, &card_token);
        let path = path.to_owned();
        async move {
            gateway
                .post(
                    &format!("/v1/relay/processor{path}"),
                    json!({"card_token": card_token, "body": {"source": {
                        "number": "{{ card.pan }}", "name": "{{ card.holder }}", "exp": "{{ card.expiry }}"}}}),
                )
                .await
        }
    };
    let (status, answer) = echo("/v1/echo").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let body = &answer["body"];
    for field in ["dotted", "spaced", "escaped"] {
        assert_eq!(body[field], "555555******4444", "{field}: {answer}");
    }
    assert_eq!(body["holder"], "***", "{answer}");
    assert_eq!(body["expiry"], "**/**", "{answer}");
    assert_eq!(body["555555******4444"], true, "{answer}");
    let digits: String = answer.to_string().chars().filter(char::is_ascii_digit).collect();
    assert!(!digits.contains(PAN), "{answer}");
    let (status, answer) = echo("/v1/echo-xml").await;
    assert_eq!((status, code(&answer)), (StatusCode::BAD_GATEWAY, "relay.upstream"), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("content type the relay cannot decode"), "{answer}");

    // The CVV was used: a second charge with it is refused, and nothing is sent.
    let sent_before = got.lock().unwrap().len();
    let (status, body) = gateway.post("/v1/relay/processor/v1/charges", charge(Some(&cvv_token))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("CVV"), "{body}");
    assert_eq!(got.lock().unwrap().len(), sent_before);

    // Only configured routes and their paths; no traversal.
    let plain = json!({"card_token": card_token, "body": {"number": "{{ card.pan }}"}});
    let (status, body) = gateway.post("/v1/relay/elsewhere/v1/charges", plain.clone()).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "relay.no_route"));
    for path in ["v1/refunds", "v1/charges/../admin", "v1/charges/extra"] {
        let (status, body) = gateway.post(&format!("/v1/relay/processor/{path}"), plain.clone()).await;
        assert!(
            status == StatusCode::FORBIDDEN && code(&body) == "relay.path_not_allowed"
                || status == StatusCode::NOT_FOUND,
            "{path}: {status} {body}"
        );
    }
    // A redirect is not followed, to the other host or anywhere.
    let (status, body) = gateway.post("/v1/relay/processor/v1/redirect", plain.clone()).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_GATEWAY, "relay.upstream"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("redirect"), "{body}");
    // A route not allowed private addresses does not reach localhost.
    let sent_before = got.lock().unwrap().len();
    let (status, body) = gateway.post("/v1/relay/public-only/v1/charges", plain.clone()).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_GATEWAY, "relay.upstream"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("private"), "{body}");
    assert_eq!(got.lock().unwrap().len(), sent_before, "the private upstream was reached");
    // A route serves its tenants only: a dev card goes nowhere on another's.
    let (status, body) = gateway.post("/v1/relay/other-tenants/v1/charges", plain.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(got.lock().unwrap().len(), sent_before);
    // Percent-encoded dots and control characters do not leave the route.
    for path in ["v1/charges/%252e%252e/v1/payouts", "v1/charges/.%0A./x", "v1/charges%2F..%2Fpayouts"] {
        let (status, _) = gateway.post(&format!("/v1/relay/processor/{path}"), plain.clone()).await;
        assert!(status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND, "{path}: {status}");
    }
    assert_eq!(got.lock().unwrap().len(), sent_before);
    // A placeholder glued to other text could come back unmasked: refused.
    let (status, _) = gateway
        .post("/v1/relay/processor/v1/charges", json!({"card_token": card_token, "body": {"description": "card {{ card.pan }}"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // An unknown placeholder is refused before anything is sent.
    let (status, _) = gateway
        .post("/v1/relay/processor/v1/charges", json!({"card_token": card_token, "body": {"x": "{{ card.track2 }}"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Only the route's methods (here POST): refused before the card is opened.
    let mut delete = plain.clone();
    delete["method"] = json!("DELETE");
    let (status, body) = gateway.post("/v1/relay/processor/v1/charges", delete).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "relay.method_not_allowed"), "{body}");
    assert_eq!(got.lock().unwrap().len(), sent_before);

    // A CVV past its minutes is gone: refused, nothing sent.
    let (status, late) = svc
        .post("/v1/cards", json!({"pan": PAN, "expiry_month": 4, "expiry_year": 2031, "cvv": CVV, "cvv_ttl_mins": 1}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{late}");
    h.clock.advance_secs(61);
    let sent_before = got.lock().unwrap().len();
    let (status, body) = gateway
        .post("/v1/relay/processor/v1/charges", json!({"card_token": late["token"], "cvv_token": late["cvv_token"],
            "body": {"cvc": "{{ card.cvv }}"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    assert_eq!(got.lock().unwrap().len(), sent_before);

    // A development vault's gateway relays with no further set-up; its role
    // says it was defined without a second person.
    let gw = h.creds.gateway.clone().unwrap();
    let dev_gateway = h.login(&gw.client_id, &gw.client_secret).await;
    let (status, body) = dev_gateway.post("/v1/relay/processor/v1/charges", plain.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Every call audited with route and upstream status, never a value.
    let rows = h.audit_rows().await;
    assert!(rows.iter().any(|(_, b, _)| b.contains("\"role.define\"") && b.contains("without a second person")));
    let relayed: Vec<&String> = rows.iter().map(|(_, b, _)| b).filter(|b| b.contains("card.relay")).collect();
    assert!(relayed.iter().any(|b| b.contains("route processor: POST upstream 200")), "{relayed:?}");
    assert!(relayed.iter().any(|b| b.contains(&format!("cvv {cvv_token} used"))));
    for (_, body, _) in &rows {
        assert!(!body.contains(PAN) && !body.contains(API_KEY) && !body.contains(&format!("\"{CVV}\"")), "{body}");
    }
}
}

on_each_backend! {
async fn with_redis_any_node_relays_a_cvv_another_took_once(store) {
    let Some(redis_url) = crate::harness::redis_url("the shared CVV test") else {
        return;
    };
    let got = Received::default();
    let dir = tempfile::TempDir::new().unwrap();
    let (cert, key, ca) = strongroom::devtls::ensure(&strongroom::datadir::DataDir::new(dir.path())).unwrap();
    let port = processor(cert, key, got.clone()).await;
    let mut api = test_api_config();
    api.cvv_redis_url = Some(redis_url.clone());
    api.relay_routes = vec![RelayRoute {
        name: "processor".into(),
        upstream: format!("https://localhost:{port}"),
        paths: vec!["/v1/charges".into()],
        methods: vec!["POST".into()],
        ca_file: ca,
        allow_private: true,
        timeout_secs: 10,
        tenants: vec!["dev".into()],
        headers: Default::default(),
        header_files: Default::default(),
    }];
    let h = Harness::dev_with(store, api).await;
    let (_, status) = h.service().await.get("/v1/sys/seal-status").await;
    let vault_id = status["vault_id"].as_str().unwrap().to_owned();

    let svc = h.service().await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (status, card) = svc
            .post("/v1/cards", json!({"pan": PAN, "expiry_month": 4, "expiry_year": 2031, "cvv": CVV, "cvv_ttl_mins": 5}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{card}");
        tokens.push((card["token"].as_str().unwrap().to_owned(), card["cvv_token"].as_str().unwrap().to_owned()));
    }
    let (card_a, cvv_a) = tokens[0].clone();
    let (card_b, _) = tokens[1].clone();

    // Redis holds ciphertext under opaque names, with the CVV's time to live.
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("strongroom:{vault_id}:cvv:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        assert!(!key.contains(&cvv_a) && !key.contains(&card_a), "{key}");
        let value: Vec<u8> = redis::cmd("GET").arg(key).query_async(&mut redis).await.unwrap();
        assert!(
            !value.windows(CVV.len()).any(|w| w == CVV.as_bytes()),
            "the CVV is in Redis in clear"
        );
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut redis).await.unwrap();
        assert!((1..=5 * 60_000).contains(&ttl), "{ttl}");
    }

    // Another node (this one restarted: its memory is gone) relays the CVV.
    let h = h.restart().await;
    let gateway = relay_caller(&h).await;
    let charge = |card: &str, cvv: &str| {
        json!({"card_token": card, "cvv_token": cvv, "body": {
            "source": {"number": "{{ card.pan }}", "cvc": "{{ card.cvv }}"}}})
    };
    // Named with another card, the CVV is not found, and stays for its own.
    let (status, body) = gateway.post("/v1/relay/processor/v1/charges", charge(&card_b, &cvv_a)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(got.lock().unwrap().is_empty());
    let (status, body) = gateway.post("/v1/relay/processor/v1/charges", charge(&card_a, &cvv_a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(got.lock().unwrap().last().unwrap().1["source"]["cvc"], CVV);
    // Once: taken from Redis, so no node has it any more.
    let (status, body) = gateway.post("/v1/relay/processor/v1/charges", charge(&card_a, &cvv_a)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(got.lock().unwrap().len(), 1);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("strongroom:{vault_id}:cvv:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "only the second card's CVV is left");
}
}

/// A TCP relay to Redis that the test can cut, as a network failure would.
struct CuttableRedis {
    port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableRedis {
    async fn start(redis_url: &str) -> Self {
        let target = redis_url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                spawned.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { port, tasks }
    }

    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

on_each_backend! {
async fn with_its_redis_gone_no_card_is_kept_without_its_cvv(store) {
    let Some(redis_url) = crate::harness::redis_url("the CVV store failure test") else {
        return;
    };
    let redis = CuttableRedis::start(&redis_url).await;
    let mut api = test_api_config();
    api.cvv_redis_url = Some(format!("redis://127.0.0.1:{}", redis.port));
    let h = Harness::dev_with(store, api).await;
    let svc = h.service().await;
    let card = json!({"pan": PAN, "expiry_month": 4, "expiry_year": 2031, "cvv": CVV});
    let (status, first) = svc.post("/v1/cards", card.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");

    redis.cut();
    let (status, body) = svc.post("/v1/cards", card).await;
    assert_eq!((status, code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "card.cvv_store_unavailable"), "{body}");
    // Nothing was stored for the refused card, and the failure is on record.
    let rows = h.audit_rows().await;
    let tokenized: Vec<&String> = rows.iter().map(|(_, b, _)| b).filter(|b| b.contains("\"card.tokenize\"")).collect();
    assert_eq!(tokenized.iter().filter(|b| b.contains("\"allowed\"")).count(), 1, "{tokenized:?}");
    assert!(tokenized.iter().any(|b| b.contains("\"failed\"") && b.contains("card.cvv_store_unavailable")));
}
}
