//! The storefront's orders: atomic allocation, idempotency, delivery by code
//! and by reveal link, cancellation and stale reservations.

use std::collections::HashSet;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom_vault::{Clock, RequestContext};

use crate::harness::{Caller, Harness, code, on_each_backend};

/// A stock manager with retailer "Acme" and product ACME-GIFT (GBP 10, 25),
/// low-stock threshold `threshold`.
pub async fn catalogue(h: &Harness, threshold: i64) -> Caller {
    let stock = h.principal("stock-1", &["stock_manager"], &["dev"]).await;
    let (status, body) = stock.post("/v1/retailers", json!({"name": "Acme"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = stock
        .post(
            "/v1/products",
            json!({"retailer": "Acme", "sku": "ACME-GIFT", "name": "Acme gift card",
                   "currency": "GBP", "denominations": [1000, 2500],
                   "low_stock_threshold": threshold}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    stock
}

/// Imports `rows` (`code,expires_at,pin`) of ACME-GIFT at 25.00.
pub async fn import(stock: &Caller, rows: &[(String, &str, &str)]) {
    let mut csv = String::from("sku,code,face_value,currency,expires_at,pin\n");
    for (c, expires, pin) in rows {
        csv.push_str(&format!("ACME-GIFT,{c},25.00,GBP,{expires},{pin}\n"));
    }
    let resp = stock
        .http
        .post(format!("{}/v1/imports?retailer=Acme", stock.url))
        .bearer_auth(stock.token.as_deref().unwrap())
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let report: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(report["accepted"], rows.len(), "{report}");
}

fn codes(n: usize, prefix: &str) -> Vec<(String, &'static str, &'static str)> {
    (0..n)
        .map(|i| {
            (
                format!("{prefix}-{i:04}-{}", crate::harness::random_code()),
                "",
                "",
            )
        })
        .collect()
}

fn order(external_ref: &str, delivery: &str) -> Value {
    json!({"external_ref": external_ref, "sku": "ACME-GIFT", "face_value": 2500,
           "currency": "GBP", "customer_ref": "cust-1", "delivery": delivery})
}

/// The storefront: places orders in tenant `dev`.
async fn storefront(h: &Harness) -> Caller {
    storefront_login(h).await.0
}

/// The storefront and its credentials, to log in again after the clock moves.
async fn storefront_login(h: &Harness) -> (Caller, String, String) {
    let (status, made) = h
        .admin()
        .await
        .post(
            "/v1/principals",
            json!({"name": "storefront", "roles": ["fulfilment"], "tenants": ["dev"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap();
    let (status, body) = h
        .approver()
        .await
        .post(&format!("/v1/principals/{id}/approve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (client_id, secret) = (
        made["client_id"].as_str().unwrap().to_owned(),
        made["client_secret"].as_str().unwrap().to_owned(),
    );
    (h.login(&client_id, &secret).await, client_id, secret)
}

on_each_backend! {
async fn five_hundred_concurrent_orders_for_a_hundred_vouchers(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    let held = codes(100, "CONC");
    import(&stock, &held).await;
    let shop = Arc::new(storefront(&h).await);

    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let shop = shop.clone();
            tokio::spawn(async move { shop.post("/v1/orders", order(&format!("conc-{i}"), "code")).await })
        })
        .collect();
    let mut delivered = Vec::new();
    let mut out_of_stock = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => delivered.push(body),
            StatusCode::CONFLICT if code(&body) == "order.out_of_stock" => out_of_stock += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((delivered.len(), out_of_stock), (100, 400));
    let vouchers: HashSet<&str> = delivered.iter().map(|o| o["voucher_id"].as_str().unwrap()).collect();
    let got: HashSet<&str> = delivered.iter().map(|o| o["code"].as_str().unwrap()).collect();
    let expected: HashSet<&str> = held.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(vouchers.len(), 100, "a voucher went to two orders");
    assert_eq!(got, expected, "every code delivered exactly once");
    assert!(delivered.iter().all(|o| o["state"] == "delivered"));

    let (_, report) = stock.get("/v1/stock").await;
    let line = report["lines"].as_array().unwrap().iter()
        .find(|l| l["face_value"] == 2500).unwrap().clone();
    assert_eq!((&line["available"], &line["delivered"], &line["reserved"]), (&json!(0), &json!(100), &json!(0)), "{line}");
}
}

on_each_backend! {
async fn orders_take_the_code_that_expires_first(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    import(&stock, &[
        ("LATE-CODE-0001".into(), "2099-01-01", ""),
        ("UNDATED-CODE-01".into(), "", ""),
        ("SOON-CODE-00001".into(), "2030-06-01", "4321"),
        ("SOONER-CODE-001".into(), "2029-01-01", ""),
    ]).await;
    let shop = storefront(&h).await;
    let mut got = Vec::new();
    for i in 0..4 {
        let (status, o) = shop.post("/v1/orders", order(&format!("exp-{i}"), "code")).await;
        assert_eq!(status, StatusCode::CREATED, "{o}");
        got.push((o["code"].as_str().unwrap().to_owned(), o["pin"].as_str().map(str::to_owned)));
    }
    assert_eq!(got, vec![
        ("SOONER-CODE-001".to_owned(), None),
        ("SOON-CODE-00001".to_owned(), Some("4321".to_owned())),
        ("LATE-CODE-0001".to_owned(), None),
        ("UNDATED-CODE-01".to_owned(), None),
    ]);
    let (status, body) = shop.post("/v1/orders", order("exp-4", "code")).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "order.out_of_stock"));
}
}

on_each_backend! {
async fn a_repeated_order_returns_the_original_and_a_changed_one_is_refused(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    import(&stock, &codes(30, "IDEM")).await;
    let shop = Arc::new(storefront(&h).await);

    let (status, first) = shop.post("/v1/orders", order("idem-1", "code")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = shop.post("/v1/orders", order("idem-1", "code")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!((&again["id"], &again["voucher_id"], &again["code"]), (&first["id"], &first["voucher_id"], &first["code"]));

    let mut changed = order("idem-1", "code");
    changed["customer_ref"] = json!("someone-else");
    let (status, body) = shop.post("/v1/orders", changed).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "order.idempotency_conflict"), "{body}");
    let (status, body) = shop.post("/v1/orders", order("idem-1", "link")).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "order.idempotency_conflict"), "{body}");

    // The same request fired 20 times at once: one order, one voucher.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let shop = shop.clone();
            tokio::spawn(async move { shop.post("/v1/orders", order("idem-2", "code")).await })
        })
        .collect();
    let mut created = 0;
    let mut seen = HashSet::new();
    for t in tasks {
        let (status, o) = t.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}: {o}"),
        }
        seen.insert((o["id"].as_str().unwrap().to_owned(), o["voucher_id"].as_str().unwrap().to_owned(), o["code"].as_str().unwrap().to_owned()));
    }
    assert_eq!((created, seen.len()), (1, 1), "{seen:?}");

    // Different bodies fired at once under one reference: exactly one wins.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let shop = shop.clone();
            let mut body = order("idem-3", "code");
            body["customer_ref"] = json!(format!("cust-{i}"));
            tokio::spawn(async move { shop.post("/v1/orders", body).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        let (status, o) = t.await.unwrap();
        outcomes.push((status, code(&o).to_owned()));
    }
    assert_eq!(outcomes.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|(s, c)| *s == StatusCode::CREATED || c == "order.idempotency_conflict"), "{outcomes:?}");

    // 1 + 1 + 1 vouchers taken, whatever the retries.
    let (_, report) = stock.get("/v1/stock").await;
    let line = report["lines"].as_array().unwrap().iter().find(|l| l["face_value"] == 2500).unwrap().clone();
    assert_eq!((&line["available"], &line["delivered"]), (&json!(27), &json!(3)), "{line}");

    // Another client may use the same reference: keys are per client.
    let other = h.principal("storefront-2", &["fulfilment"], &["dev"]).await;
    let (status, o) = other.post("/v1/orders", order("idem-1", "code")).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    assert_ne!(o["voucher_id"], first["voucher_id"]);
}
}

on_each_backend! {
async fn a_delivered_code_is_revealable_for_its_window_then_dormant(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    import(&stock, &codes(2, "WIN")).await;
    let (shop, client_id, secret) = storefront_login(&h).await;
    let (status, o) = shop.post("/v1/orders", order("win-1", "code")).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    let closes = time::OffsetDateTime::parse(o["revealable_until"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    let hours = (closes - time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(h.clock.now_ms()) * 1_000_000).unwrap()).whole_hours();
    assert_eq!(hours, 72, "{o}");
    // Within the window a repeat returns the code again.
    h.clock.advance_secs(71 * 3600);
    let shop = h.login(&client_id, &secret).await;
    let (status, again) = shop.post("/v1/orders", order("win-1", "code")).await;
    assert_eq!((status, &again["code"]), (StatusCode::OK, &o["code"]));
    // After it, the code is dormant.
    h.clock.advance_secs(2 * 3600);
    let shop = h.login(&client_id, &secret).await;
    let (status, body) = shop.post("/v1/orders", order("win-1", "code")).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "vault.dormant"), "{body}");

    // The order itself stays readable (without its code), with its history.
    let (status, got) = shop.get(&format!("/v1/orders/{}", o["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert!(got.get("code").is_none(), "{got}");
    let history: Vec<(&str, &str)> = got["history"].as_array().unwrap().iter()
        .map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap())).collect();
    assert_eq!(history, vec![("available", "reserved"), ("reserved", "delivered")]);
}
}

on_each_backend! {
async fn who_may_order_and_see_orders(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    import(&stock, &codes(3, "WHO")).await;
    // Placing orders is not the stock manager's job, nor support's.
    let (status, body) = stock.post("/v1/orders", order("who-1", "link")).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.forbidden"), "{body}");
    // A custom role that may order by link only cannot take the code itself.
    let admin = h.admin().await;
    let (status, body) = admin.put_json("/v1/roles/link-shop", json!({"permissions": ["orders:place", "orders:read"]})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let officer = h.approver().await;
    let (status, body) = officer.post("/v1/roles/link-shop/approve", json!({"permissions": ["orders:place", "orders:read"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let linker = h.principal("linker", &["link-shop"], &["dev"]).await;
    let (status, body) = linker.post("/v1/orders", order("who-2", "code")).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.forbidden"), "{body}");
    let (status, body) = linker.post("/v1/orders", order("who-3", "link")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("code").is_none(), "{body}");

    // Another tenant's storefront neither orders here nor sees these orders.
    let foreign = h.principal("shop-b", &["fulfilment"], &["other"]).await;
    let mut here = order("who-4", "code");
    here["tenant"] = json!("dev");
    let (status, body) = foreign.post("/v1/orders", here).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.forbidden"), "{body}");
    let (status, list) = linker.get("/v1/orders?external_ref=who-3").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let id = list["orders"][0]["id"].as_str().unwrap();
    let (status, body) = foreign.get(&format!("/v1/orders/{id}")).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "order.not_found"), "{body}");
    let (status, list) = foreign.get("/v1/orders").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["orders"], json!([]));

    // Support reads orders (to help customers), never a code.
    let support = h.principal("support-1", &["support"], &["dev"]).await;
    let (status, list) = support.get("/v1/orders?customer_ref=cust-1").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["orders"].as_array().unwrap().len(), 1, "{list}");
    assert!(!list.to_string().contains("WHO-"), "{list}");
}
}

on_each_backend! {
async fn falling_below_the_threshold_records_one_stock_low_event(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 2).await;
    import(&stock, &codes(4, "LOW")).await;
    let shop = storefront(&h).await;
    let lows = |rows: &[(u64, String, Vec<u8>)]| rows.iter().filter(|(_, b, _)| b.contains("\"stock.low\"")).count();
    for i in 0..2 {
        let (status, o) = shop.post("/v1/orders", order(&format!("low-{i}"), "code")).await;
        assert_eq!(status, StatusCode::CREATED, "{o}");
    }
    assert_eq!(lows(&h.audit_rows().await), 0, "2 left is not below 2");
    let (status, _) = shop.post("/v1/orders", order("low-2", "code")).await;
    assert_eq!(status, StatusCode::CREATED);
    let rows = h.audit_rows().await;
    assert_eq!(lows(&rows), 1);
    let event = rows.iter().find(|(_, b, _)| b.contains("\"stock.low\"")).unwrap();
    assert!(event.1.contains("ACME-GIFT/2500") && event.1.contains("1 available"), "{}", event.1);
    let (status, _) = shop.post("/v1/orders", order("low-3", "code")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(lows(&h.audit_rows().await), 1, "one event per crossing");
    let (_, report) = stock.get("/v1/stock").await;
    assert!(report["lines"].as_array().unwrap().iter().any(|l| l["face_value"] == 2500 && l["low"] == true));
}
}

on_each_backend! {
async fn reservations_are_cancelled_or_released_back_to_stock(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    import(&stock, &codes(2, "RES")).await;
    let shop = storefront(&h).await;

    // A delivered order cannot be cancelled: the code has been handed over.
    let (status, delivered) = shop.post("/v1/orders", order("res-1", "code")).await;
    assert_eq!(status, StatusCode::CREATED, "{delivered}");
    let id = delivered["id"].as_str().unwrap();
    let (status, body) = shop.post(&format!("/v1/orders/{id}/cancel"), json!({"reason": "customer changed mind"})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "order.state"), "{body}");

    // A request that died between reserving and delivering leaves a
    // reservation: placed here straight in the store, as that request did.
    let central = h.server.stores.central.clone();
    let (_, products) = stock.get("/v1/products").await;
    let product_id = products["products"][0]["id"].as_str().unwrap().to_owned();
    let now = h.clock.now_ms();
    let stuck = |id: &str, external_ref: &str| strongroom_store::OrderRecord {
        id: id.into(), tenant: "dev".into(), client_id: "svc-x".into(), external_ref: external_ref.into(),
        request_hash: "h".into(), product_id: product_id.clone(), sku: "ACME-GIFT".into(), face_value: 2500,
        currency: "GBP".into(), customer_ref: "c".into(), delivery: "code".into(), state: "reserved".into(),
        voucher_id: String::new(), token: String::new(), pin_token: None, expires_at: None, created_at: now,
        reserved_until: now + 120_000, delivered_at: 0, updated_at: now, link_views_left: 0, link_expires_at: 0,
        cancel_reason: None, reopen_requested_by: String::new(), reopen_reason: String::new(),
    };
    let placed = central.place_order(stuck("or_stuck1", "stuck-1"), 0).await.unwrap();
    assert!(matches!(placed, strongroom_store::PlaceOutcome::Placed { .. }), "{placed:?}");
    let (status, body) = shop.post("/v1/orders", order("res-2", "code")).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "order.out_of_stock"), "the reservation holds the last voucher");

    let orders = strongroom_vouchers::Orders::new(h.server.vault.clone(), Default::default());
    let ctx = RequestContext { request_id: "test".into(), client_addr: None };
    assert_eq!(orders.release_stale(&ctx).await.unwrap(), 0, "not stale yet");
    h.clock.advance_secs(121);
    assert_eq!(orders.release_stale(&ctx).await.unwrap(), 1);
    let (status, body) = shop.post("/v1/orders", order("res-2", "code")).await;
    assert_eq!(status, StatusCode::CREATED, "the released voucher is sold again: {body}");
    let events = central.voucher_events(body["voucher_id"].as_str().unwrap(), "dev").await.unwrap();
    let steps: Vec<(&str, &str, &str)> = events.iter().map(|e| (e.from_state.as_str(), e.to_state.as_str(), e.actor.as_str())).collect();
    assert_eq!(steps[1], ("reserved", "available", "system:reservations"), "{events:?}");
    assert!(events[1].reason.contains("reservation expired"), "{events:?}");

    // A reserved order can be cancelled by the caller, with a reason.
    import(&stock, &codes(1, "RES2")).await;
    central.place_order(stuck("or_stuck2", "stuck-2"), 0).await.unwrap();
    let another_shop = h.principal("storefront-all", &["fulfilment"], &["dev"]).await;
    let (status, cancelled) = another_shop.post("/v1/orders/or_stuck2/cancel", json!({"reason": "payment failed"})).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!((&cancelled["state"], &cancelled["cancel_reason"]), (&json!("cancelled"), &json!("payment failed")));
    let (status, body) = shop.post("/v1/orders", order("res-3", "code")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
}

/// Fetches a reveal link as a browser would (no token).
async fn open_link(h: &Harness, link: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let resp = h.http.get(link).send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

on_each_backend! {
async fn a_reveal_link_shows_the_code_within_its_limits_then_refuses(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    import(&stock, &[("LINK-CODE-<&>-01".into(), "", "9876"), ("LINK-CODE-0002".into(), "", "")]).await;
    let shop = storefront(&h).await;
    let (status, o) = shop.post("/v1/orders", order("link-1", "link")).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    assert!(o.get("code").is_none(), "{o}");
    assert_eq!(o["link_views_left"], 3);
    let link = o["link"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&format!("{}/v/or_", h.url)), "{link}");

    // A preview (HEAD) shows nothing and uses no view.
    let head = h.http.head(&link).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let (status, headers, page) = open_link(&h, &link).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("LINK-CODE-&lt;&amp;&gt;-01") && page.contains("9876"), "{page}");
    assert!(!page.contains("<&>"), "the code is escaped");
    assert!(page.contains("2 more time(s)"), "{page}");
    assert!(headers["cache-control"].to_str().unwrap().contains("no-store"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    for _ in 0..2 {
        let (status, _, _) = open_link(&h, &link).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, page) = open_link(&h, &link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("used up") && !page.contains("LINK-CODE"), "{page}");

    // An altered link is not valid; the storefront's repeat returns the same link.
    let (status, again) = shop.post("/v1/orders", order("link-1", "link")).await;
    assert_eq!((status, &again["link"]), (StatusCode::OK, &o["link"]));
    let forged = link.replacen("or_", "or_x", 1);
    let (status, _, page) = open_link(&h, &forged).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("not valid"), "{page}");
    let later = {
        let (head, tail) = link.rsplit_once('.').unwrap();
        let (base, expiry) = head.rsplit_once('.').unwrap();
        format!("{base}.{}.{tail}", expiry.parse::<i64>().unwrap() + 86_400_000)
    };
    let (status, _, _) = open_link(&h, &later).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a longer expiry breaks the MAC");

    // A second order's link expires with time.
    let (status, o2) = shop.post("/v1/orders", order("link-2", "link")).await;
    assert_eq!(status, StatusCode::CREATED, "{o2}");
    h.clock.advance_secs(73 * 3600);
    let (status, _, page) = open_link(&h, o2["link"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("expired") && !page.contains("LINK-CODE"), "{page}");

    // Every view and refusal is in the audit log, never the code.
    let rows = h.audit_rows().await;
    let by_link = rows.iter().filter(|(_, b, _)| b.contains("\"secret.reveal\"") && b.contains("link:or_") && b.contains("allowed")).count();
    assert_eq!(by_link, 6, "three views, code and PIN each");
    assert!(rows.iter().any(|(_, b, _)| b.contains("link.used_up")));
    assert!(rows.iter().any(|(_, b, _)| b.contains("link.invalid")));
    assert!(rows.iter().any(|(_, b, _)| b.contains("link.expired")));
    assert!(!rows.iter().any(|(_, b, _)| b.contains("LINK-CODE")));
}
}

on_each_backend! {
async fn archive_then_redeliver_returns_the_same_code_after_four_eyes(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    import(&stock, &[("ARCH-CODE-0001-XYZ".into(), "", "2468")]).await;
    let (shop, client_id, secret) = storefront_login(&h).await;
    let (status, o) = shop.post("/v1/orders", order("arch-1", "code")).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    let id = o["id"].as_str().unwrap().to_owned();
    let events = h.server.stores.central.voucher_events(o["voucher_id"].as_str().unwrap(), "dev").await.unwrap();
    assert_eq!(events.len(), 2);

    // A month on, the archive job moves it (only operators bound to * may).
    h.clock.advance_secs(31 * 86_400);
    let (status, body) = h.principal("archivist-dev", &["stock_manager"], &["dev"]).await
        .post("/v1/vouchers/archive", json!({})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.forbidden"), "{body}");
    let archivist = h.principal("archivist", &["stock_manager"], &["*"]).await;
    let (status, run) = archivist.post("/v1/vouchers/archive", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!((&run["archived"], &run["remaining"]), (&json!(1), &json!(0)), "{run}");
    let (_, again) = archivist.post("/v1/vouchers/archive", json!({})).await;
    assert_eq!(again["archived"], 0, "{again}");

    // The code left the live vault; the archive holds it sealed.
    let rows = h.audit_rows().await;
    let token = rows.iter().find_map(|(_, b, _)| {
        let v: Value = serde_json::from_str(b).ok()?;
        (v["action"] == "secret.archive" && v["outcome"] == "allowed").then(|| v["target"].as_str().unwrap().to_owned())
    }).unwrap();
    assert!(h.server.stores.vault.get(&token).await.unwrap().is_none(), "still in the live vault");
    let sealed = h.server.stores.archive.get(&token).await.unwrap().expect("in the archive");
    assert!(!sealed.windows(8).any(|w| w == b"ARCH-COD"), "archived in clear");
    let (_, report) = archivist.get("/v1/stock").await;
    let line = report["lines"].as_array().unwrap().iter().find(|l| l["face_value"] == 2500).unwrap().clone();
    assert_eq!((&line["archived"], &line["delivered"]), (&json!(1), &json!(0)), "{line}");

    // Its window closed long ago: redelivery waits for four eyes.
    let shop = h.login(&client_id, &secret).await;
    let redeliver = |c: Caller, r: &'static str| {
        let path = format!("/v1/orders/{id}/redeliver");
        async move { c.post(&path, json!({"reason": r})).await }
    };
    let (status, body) = redeliver(shop.clone(), "customer lost the email").await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "vault.dormant"), "{body}");
    let support = h.principal("support-1", &["support"], &["dev"]).await;
    let (status, body) = support.post(&format!("/v1/orders/{id}/reopen/approve"), json!({})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.forbidden"), "{body}");
    let (status, body) = support.post(&format!("/v1/orders/{id}/reopen"), json!({"reason": "ticket 4411: never received"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // One person on both sides is refused.
    let both = h.principal("both", &["support", "security_officer"], &["dev"]).await;
    let (status, body) = both.post(&format!("/v1/orders/{id}/reopen"), json!({"reason": "self-serve"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = both.post(&format!("/v1/orders/{id}/reopen/approve"), json!({})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "order.same_person"), "{body}");
    let (status, body) = support.post(&format!("/v1/orders/{id}/reopen"), json!({"reason": "ticket 4411: never received"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let officer = h.approver().await;
    // An officer alone cannot re-open a voucher's code around the order.
    let (status, body) = officer.post(&format!("/v1/secrets/{token}/reactivate"), json!({"window_secs": 600, "reason": "alone"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "auth.forbidden"), "{body}");
    let (status, body) = officer.post(&format!("/v1/orders/{id}/reopen/approve"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = officer.post(&format!("/v1/orders/{id}/reopen/approve"), json!({})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "order.state"), "approved once: {body}");

    // Redelivered from the archive: the same code and PIN.
    let (status, body) = redeliver(shop.clone(), "customer lost the email").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((&body["code"], &body["pin"]), (&json!("ARCH-CODE-0001-XYZ"), &json!("2468")), "{body}");
    for _ in 0..2 {
        let (status, _) = redeliver(shop.clone(), "again").await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = redeliver(shop.clone(), "a fourth time").await;
    assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "order.redelivery_limit"), "{body}");

    // The voucher's whole story, with who and why.
    let (_, got) = shop.get(&format!("/v1/orders/{id}")).await;
    let history: Vec<(&str, &str)> = got["history"].as_array().unwrap().iter()
        .map(|e| (e["to"].as_str().unwrap(), e["reason"].as_str().unwrap())).collect();
    assert_eq!(history.iter().filter(|(_, r)| r.starts_with("redelivered")).count(), 3, "{history:?}");
    assert!(history.iter().any(|(to, r)| *to == "archived" && r.contains("archive")), "{history:?}");
    let rows = h.audit_rows().await;
    for action in ["order.reopen_request", "order.reopen_approve", "secret.reactivate", "order.redeliver"] {
        assert!(rows.iter().any(|(_, b, _)| b.contains(&format!("\"{action}\""))), "{action} not audited");
    }
    assert!(!rows.iter().any(|(_, b, _)| b.contains("ARCH-CODE")));
}
}

on_each_backend! {
async fn a_link_order_is_redelivered_with_a_fresh_link(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    import(&stock, &[("RELINK-CODE-0001".into(), "", "")]).await;
    let shop = storefront(&h).await;
    let (status, o) = shop.post("/v1/orders", order("relink-1", "link")).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    let link = o["link"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(h.http.get(&link).send().await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(h.http.get(&link).send().await.unwrap().status(), StatusCode::GONE);
    let id = o["id"].as_str().unwrap();
    let (status, again) = shop.post(&format!("/v1/orders/{id}/redeliver"), json!({"reason": "customer asked"})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["link_views_left"], 3, "{again}");
    let fresh = again["link"].as_str().unwrap();
    assert_ne!(fresh, link);
    let page = h.http.get(fresh).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("RELINK-CODE-0001"), "{page}");
    // The old link is not revived by the redelivery's fresh views.
    let old = h.http.get(&link).send().await.unwrap();
    assert_eq!(old.status(), StatusCode::GONE);
    let page = old.text().await.unwrap();
    assert!(page.contains("replaced") && !page.contains("RELINK-CODE"), "{page}");
}
}

on_each_backend! {
async fn stock_past_its_expiry_is_marked_expired_and_never_sold(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    let tomorrow = time::OffsetDateTime::from_unix_timestamp(h.clock.now_ms() / 1000 + 86_400)
        .unwrap()
        .date()
        .to_string();
    import(&stock, &[("EXPIRING-CODE-001".into(), &tomorrow, ""), ("LASTING-CODE-0001".into(), "2099-01-01", "")]).await;
    h.clock.advance_secs(3 * 86_400);
    let orders = strongroom_vouchers::Orders::new(h.server.vault.clone(), Default::default());
    let ctx = RequestContext { request_id: "test".into(), client_addr: None };
    assert_eq!(orders.expire_stock(&ctx).await.unwrap(), 1);
    assert_eq!(orders.expire_stock(&ctx).await.unwrap(), 0, "once");
    // The order gets the code that has not expired, though the other expired first.
    let shop = storefront(&h).await;
    let (status, o) = shop.post("/v1/orders", order("exp-x", "code")).await;
    assert_eq!((status, &o["code"]), (StatusCode::CREATED, &json!("LASTING-CODE-0001")), "{o}");
    let (status, body) = shop.post("/v1/orders", order("exp-y", "code")).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "order.out_of_stock"), "{body}");
    let stock = h.principal("stock-2", &["stock_manager"], &["dev"]).await;
    let (_, report) = stock.get("/v1/stock").await;
    let line = report["lines"].as_array().unwrap().iter().find(|l| l["face_value"] == 2500).unwrap().clone();
    assert_eq!((&line["expired"], &line["available"], &line["delivered"]), (&json!(1), &json!(0), &json!(1)), "{line}");
    let rows = h.audit_rows().await;
    assert!(rows.iter().any(|(_, b, _)| b.contains("\"voucher.expire\"") && b.contains("system:expiry")));
}
}

on_each_backend! {
async fn the_links_of_a_frozen_storefront_are_held_until_it_is_unfrozen(store) {
    let h = Harness::dev_on(store).await;
    let stock = catalogue(&h, 0).await;
    import(&stock, &[("HELD-CODE-0001".into(), "", "")]).await;
    let shop = storefront(&h).await;
    let (status, o) = shop.post("/v1/orders", order("held-1", "link")).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    let link = o["link"].as_str().unwrap().to_owned();
    let (_, me) = shop.get("/v1/auth/whoami").await;
    let shop_id = me["id"].as_str().unwrap().to_owned();

    // A stolen storefront credential is frozen: its links show nothing,
    // and cost the customer no view.
    let officer = h.officer().await;
    let (status, body) = officer
        .post(&format!("/v1/principals/{shop_id}/freeze"), json!({"reason": "credential leaked"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for _ in 0..4 {
        let (status, _, page) = open_link(&h, &link).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!page.contains("HELD-CODE"), "{page}");
    }
    let auditor = h.principal("auditor-held", &["auditor"], &["*"]).await;
    let (_, page) = auditor.get("/v1/audit?action=order.link_view&outcome=denied").await;
    assert!(
        page["records"].as_array().unwrap().iter().all(|r| r["reason"] == "link.held"),
        "{page}"
    );

    let (status, _) = officer
        .post(&format!("/v1/principals/{shop_id}/unfreeze"), json!({"reason": "rotated, all clear"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, page) = open_link(&h, &link).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("HELD-CODE-0001") && page.contains("2 more time(s)"), "{page}");
}
}
