//! Importing a retailer's CSV file of codes into stock.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Caller, Harness, code, on_each_backend};

async fn upload(caller: &Caller, query: &str, csv: &str) -> (StatusCode, Value) {
    let resp = caller
        .http
        .post(format!("{}/v1/imports?{query}", caller.url))
        .bearer_auth(caller.token.as_deref().unwrap())
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A stock manager with retailer "Acme" and product ACME-GIFT (GBP 10, 25).
async fn stocked(h: &Harness) -> Caller {
    let stock = h.principal("stock-1", &["stock_manager"], &["dev"]).await;
    let (status, body) = stock.post("/v1/retailers", json!({"name": "Acme"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = stock
        .post(
            "/v1/products",
            json!({"retailer": "Acme", "sku": "ACME-GIFT", "name": "Acme gift card",
                   "currency": "GBP", "denominations": [1000, 2500]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    stock
}

fn problems(report: &Value) -> Vec<(u64, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["row"].as_u64().unwrap(),
                p["column"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

on_each_backend! {
async fn a_file_with_good_bad_and_duplicate_rows_gets_an_exact_report(store) {
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    // One code is already held, from an earlier file.
    let (status, first) = upload(&stock, "retailer=Acme", "sku,code,face_value,currency\nACME-GIFT,ACME-OLD-0001,25.00,GBP\n").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["accepted"], 1);

    let file = "\
sku,code,pin,face_value,currency,expires_at,serial
ACME-GIFT,ACME-0001-AAAA,1234,25.00,GBP,2099-12-31,S1
ACME-GIFT,ACME-0002-BBBB,,10,GBP,,
NOPE-SKU,ACME-0003-CCCC,,25.00,GBP,,
ACME-GIFT,ACME-0004-DDDD,,25.00,EUR,,
ACME-GIFT,ACME-0005-EEEE,,12.50,GBP,,
ACME-GIFT,ACME-0006-FFFF,,25.001,GBP,,
ACME-GIFT,ACME-0007-GGGG,,25.00,GBP,2020-01-01,
ACME-GIFT,ACME-0008-HHHH,,25.00,GBP,31/12/2099,
ACME-GIFT,,,25.00,GBP,,
ACME-GIFT,ACME-0001-AAAA,,25.00,GBP,,
ACME-GIFT,ACME-OLD-0001,,25.00,GBP,,
ACME-GIFT,ACME-0009-IIII,,25,GBP,2099-01-01T00:00:00Z,S9
";
    let (status, report) = upload(&stock, "retailer=Acme", file).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(report["status"], "completed");
    assert_eq!(
        (&report["rows"], &report["accepted"], &report["rejected"], &report["duplicates"]),
        (&json!(12), &json!(3), &json!(7), &json!(2)),
        "{report}"
    );
    let expected: Vec<(u64, String)> = [
        (4, "sku"),
        (5, "currency"),
        (6, "face_value"),
        (7, "face_value"),
        (8, "expires_at"),
        (9, "expires_at"),
        (10, "code"),
        (11, "code"),
        (12, "code"),
    ]
    .iter()
    .map(|(r, c)| (*r, c.to_string()))
    .collect();
    let mut got = problems(&report);
    got.sort();
    assert_eq!(got, expected, "{report}");
    // The report never repeats a code.
    assert!(!report.to_string().contains("ACME-0"), "{report}");

    // Stock is dormant: no one can reveal a code before it is delivered.
    let service = h.service().await;
    let rows = h.audit_rows().await;
    let token = rows
        .iter()
        .filter(|(_, b, _)| b.contains("secret.tokenize_batch"))
        .find_map(|(_, b, _)| {
            let v: Value = serde_json::from_str(b).ok()?;
            v["items"].as_array()?.iter().find_map(|i| i["target"].as_str().map(str::to_owned))
        })
        .unwrap();
    let (status, body) = service.reveal(&token).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "vault.dormant"), "{body}");
}
}

on_each_backend! {
async fn a_dry_run_checks_everything_and_stores_nothing(store) {
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    let file = "sku,code,face_value,currency\nACME-GIFT,ACME-DRY-0001,25.00,GBP\nACME-GIFT,ACME-DRY-0002,99.00,GBP\n";
    let (status, report) = upload(&stock, "retailer=Acme&dry_run=true", file).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["status"], "dry_run");
    assert_eq!((&report["accepted"], &report["rejected"]), (&json!(1), &json!(1)));
    // Nothing was kept: the real run accepts the same code.
    let (status, report) = upload(&stock, "retailer=Acme", file).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!((&report["accepted"], &report["duplicates"]), (&json!(1), &json!(0)));

    // A dry run finds duplicates as the import would: codes already held
    // and codes repeated within the file, by row, never by value.
    let file = "sku,code,face_value,currency\nACME-GIFT,ACME-DRY-0001,25.00,GBP\n\
                ACME-GIFT,ACME-DRY-0003,25.00,GBP\nACME-GIFT,ACME-DRY-0003,25.00,GBP\n\
                ACME-GIFT,ACME-DRY-0004,25.00,GBP\n";
    let (status, report) = upload(&stock, "retailer=Acme&dry_run=true", file).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((&report["accepted"], &report["duplicates"]), (&json!(2), &json!(2)), "{report}");
    let rows: Vec<u64> = report["problems"].as_array().unwrap().iter().map(|p| p["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, vec![2, 4], "{report}");
    assert!(!report.to_string().contains("ACME-DRY"), "{report}");
    let (status, real) = upload(&stock, "retailer=Acme", file).await;
    assert_eq!(status, StatusCode::CREATED, "{real}");
    assert_eq!((&real["accepted"], &real["duplicates"]), (&report["accepted"], &report["duplicates"]), "the dry run foretold it: {real}");
}
}

on_each_backend! {
async fn an_interrupted_import_is_finished_by_running_it_again(store) {
    use strongroom_store::ImportRecord;
    use strongroom_vault::{NewSecret, OnDuplicate, RequestContext, SecretBytes};
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    let (_, me) = stock.get("/v1/auth/whoami").await;
    let stock_id = me["id"].as_str().unwrap().to_owned();
    let (_, retailers) = stock.get("/v1/retailers").await;
    let retailer_id = retailers["retailers"][0]["id"].as_str().unwrap().to_owned();

    // As if an import by this stock manager stopped after the vault stored
    // a code and before its voucher reached stock.
    let vault = &h.server.vault;
    vault
        .stores()
        .central
        .put_import(ImportRecord {
            id: "im_interrupted".into(),
            tenant: "dev".into(),
            retailer_id,
            status: "running".into(),
            rows: 0,
            accepted: 0,
            rejected: 0,
            duplicates: 0,
            created_by: stock_id.clone(),
            created_at: 0,
            finished_at: 0,
        })
        .await
        .unwrap();
    let who = strongroom_vault::Principal {
        id: stock_id,
        name: "stock-1".into(),
        roles: vec!["stock_manager".into()],
        permissions: strongroom_vault::Role::StockManager.permissions(),
        tenants: vec!["dev".into()],
        human: false,
        mfa_recent: false,
    };
    let provenance = || {
        let mut m = serde_json::Map::new();
        m.insert("import".into(), "im_interrupted".into());
        m.insert("sku".into(), "ACME-GIFT".into());
        m
    };
    vault
        .tokenize(
            &who,
            &RequestContext::default(),
            NewSecret {
                tenant: Some("dev".into()),
                class: "voucher_code".into(),
                value: SecretBytes::new(b"ACME-HALF-0001".to_vec()),
                metadata: Some(provenance()),
                reveal_window_secs: Some(0),
                on_duplicate: OnDuplicate::Reject,
            },
        )
        .await
        .unwrap();
    // A code another principal keeps, even one claiming the same
    // provenance in its metadata, never becomes stock.
    let (status, body) = h
        .service()
        .await
        .post(
            "/v1/secrets",
            json!({"class": "voucher_code", "value": "ACME-OTHER-0001", "metadata": provenance()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let file = "sku,code,face_value,currency\nACME-GIFT,ACME-HALF-0001,25.00,GBP\nACME-GIFT,ACME-OTHER-0001,25.00,GBP\n";
    let (status, report) = upload(&stock, "retailer=Acme", file).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!((&report["accepted"], &report["duplicates"]), (&json!(1), &json!(1)), "{report}");
    assert_eq!(problems(&report), vec![(3, "code".to_owned())]);
    // Again: both are held, neither is added twice.
    let (_, again) = upload(&stock, "retailer=Acme", file).await;
    assert_eq!((&again["accepted"], &again["duplicates"]), (&json!(0), &json!(2)), "{again}");
}
}

on_each_backend! {
async fn rows_never_repeat_their_values_and_cannot_grow_without_bound(store) {
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    // A row missing its SKU shifts the code into the SKU column; the serial
    // column holding the code is refused too. Neither value comes back.
    let file = "sku,code,face_value,currency,serial\nSECRET-CODE-0001,25.00,GBP\nACME-GIFT,SECRET-CODE-0002,25.00,GBP,SECRET-CODE-0002\n";
    let (status, report) = upload(&stock, "retailer=Acme", file).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(problems(&report), vec![(2, "sku".to_owned()), (3, "serial".to_owned())]);
    assert!(!report.to_string().contains("SECRET-CODE"), "{report}");
    // A header that is really a row of codes is refused without echoing it.
    let (status, body) = upload(&stock, "retailer=Acme", "SECRET-CODE-0003,25.00,GBP\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains("SECRET-CODE"), "{body}");
    // One endless row is cut off, not held in memory.
    let endless = format!("sku,code,face_value,currency\nACME-GIFT,{},25.00,GBP\n", "X".repeat(100_000));
    let (status, body) = upload(&stock, "retailer=Acme", &endless).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "request.invalid"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("longer than"), "{body}");
}
}

on_each_backend! {
async fn imports_are_refused_clearly(store) {
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    let cases = [
        ("retailer=Acme", "code,face_value,currency\nX,25.00,GBP\n", StatusCode::BAD_REQUEST, "request.invalid"),
        ("retailer=Acme", "sku,code,face_value,currency,colour\n", StatusCode::BAD_REQUEST, "request.invalid"),
        ("retailer=Acme", "", StatusCode::BAD_REQUEST, "request.invalid"),
        ("", "sku,code,face_value,currency\n", StatusCode::BAD_REQUEST, "request.invalid"),
        ("retailer=Nobody", "sku,code,face_value,currency\n", StatusCode::NOT_FOUND, "catalog.not_found"),
    ];
    for (query, file, status, error) in cases {
        let (got, body) = upload(&stock, query, file).await;
        assert_eq!((got, code(&body)), (status, error), "{query} {file:?}: {body}");
    }
    // Storing codes needs the import permission, not only tokenize.
    let (status, _) = upload(&h.service().await, "retailer=Acme", "sku,code,face_value,currency\n").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another tenant does not see this retailer.
    let other = h.principal("stock-2", &["stock_manager"], &["elsewhere"]).await;
    let (status, _) = upload(&other, "retailer=Acme", "sku,code,face_value,currency\n").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
}

fn line<'a>(report: &'a Value, sku: &str, face_value: i64) -> &'a Value {
    report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sku"] == sku && l["face_value"] == face_value)
        .unwrap_or_else(|| panic!("no line {sku} {face_value} in {report}"))
}

on_each_backend! {
async fn the_stock_report_counts_values_expiry_and_low_stock(store) {
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    let (status, body) = stock
        .post(
            "/v1/products",
            json!({"retailer": "Acme", "sku": "ACME-BIG", "name": "Big card", "currency": "GBP",
                   "denominations": [5000], "low_stock_threshold": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let soon = time::OffsetDateTime::from_unix_timestamp(crate::harness::now_ms() / 1000 + 10 * 86_400)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let file = format!(
        "sku,code,face_value,currency,expires_at\nACME-GIFT,ST-0001,25.00,GBP,{soon}\nACME-GIFT,ST-0002,25.00,GBP,\nACME-GIFT,ST-0003,10.00,GBP,\nACME-BIG,ST-0004,50.00,GBP,\n"
    );
    let (status, report) = upload(&stock, "retailer=Acme", &file).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(report["accepted"], 4);

    let (status, r) = stock.get("/v1/stock").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let l = line(&r, "ACME-GIFT", 2500);
    assert_eq!((&l["available"], &l["expiring_soon"], &l["low"]), (&json!(2), &json!(1), &json!(false)), "{l}");
    assert_eq!(line(&r, "ACME-GIFT", 1000)["available"], 1);
    let big = line(&r, "ACME-BIG", 5000);
    assert_eq!((&big["available"], &big["low"]), (&json!(1), &json!(true)), "{big}");
    assert_eq!(r["exposure"], json!([{"currency": "GBP", "face_value_total": 11000, "display": "110.00 GBP", "vouchers": 4}]));
    // A shorter look-ahead does not see the code expiring in ten days.
    let (_, r) = stock.get("/v1/stock?expiring_within_days=5").await;
    assert_eq!(line(&r, "ACME-GIFT", 2500)["expiring_soon"], 0);

    // Eleven days on, that code is no longer stock.
    h.clock.advance_secs(11 * 86_400);
    let stock = h.principal("stock-3", &["stock_manager"], &["dev"]).await;
    let (_, r) = stock.get("/v1/stock").await;
    let l = line(&r, "ACME-GIFT", 2500);
    assert_eq!((&l["available"], &l["expired"]), (&json!(1), &json!(1)), "{l}");
    assert_eq!(r["exposure"][0]["face_value_total"], 8500);

    // Another tenant sees none of it; an administrator may not look.
    let other = h.principal("stock-2", &["stock_manager"], &["elsewhere"]).await;
    let (_, r) = other.get("/v1/stock").await;
    assert_eq!((&r["lines"], &r["exposure"]), (&json!([]), &json!([])));
    assert_eq!(h.admin().await.get("/v1/stock").await.0, StatusCode::FORBIDDEN);
    let (status, body) = stock.get("/v1/stock?expiring_within_days=lots").await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "request.invalid"));
}
}

on_each_backend! {
async fn a_file_of_several_batches_is_stored_exactly_once(store) {
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    // 2,500 rows: three batches, each going into stock while the next is
    // read and tokenized. Row 2,102 repeats the code of row 7 (two batches
    // back), row 1,102 that of row 902 (the batch before, still on its way
    // into stock), row 1,502 that of row 1,202 (the same batch).
    let mut codes: Vec<String> = (0..2500).map(|i| format!("MB-{i:06}-{}", crate::harness::random_code())).collect();
    codes[2100] = codes[5].clone();
    codes[1500] = codes[1200].clone();
    codes[1100] = codes[900].clone();
    let mut file = String::from("sku,code,face_value,currency\n");
    for c in &codes {
        file.push_str(&format!("ACME-GIFT,{c},25.00,GBP\n"));
    }
    let (status, report) = upload(&stock, "retailer=Acme", &file).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(
        (&report["rows"], &report["accepted"], &report["duplicates"], &report["rejected"]),
        (&json!(2500), &json!(2497), &json!(3), &json!(0)),
        "{report}"
    );
    let mut dup_rows: Vec<u64> = problems(&report).into_iter().map(|(r, _)| r).collect();
    dup_rows.sort();
    assert_eq!(dup_rows, vec![1102, 1502, 2102]);
    let (_, r) = stock.get("/v1/stock").await;
    assert_eq!(line(&r, "ACME-GIFT", 2500)["available"], 2497);
}
}

on_each_backend! {
async fn all_or_nothing_stocks_every_row_or_none(store) {
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    let available = |report: &Value| {
        report["lines"].as_array().unwrap().iter()
            .find(|l| l["face_value"] == 2500).unwrap()["available"].clone()
    };
    // One refused row: nothing of the file is stocked, and its codes are
    // erased from the vault (so a corrected file imports them).
    let bad = "sku,code,pin,face_value,currency\nACME-GIFT,AON-0001-AAAA,1111,25.00,GBP\n\
               ACME-GIFT,AON-0002-BBBB,,25.00,GBP\nACME-GIFT,AON-0003-CCCC,,99.00,GBP\n";
    let (status, report) = upload(&stock, "retailer=Acme&all_or_nothing=true", bad).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["status"], "discarded", "{report}");
    assert_eq!((&report["accepted"], &report["rejected"]), (&json!(0), &json!(1)), "{report}");
    let (_, stock_report) = stock.get("/v1/stock").await;
    assert_eq!(available(&stock_report), 0, "{stock_report}");
    assert!(h.audit_rows().await.iter().any(|(_, b, _)| b.contains("secret.discard_import")));

    let good = "sku,code,pin,face_value,currency\nACME-GIFT,AON-0001-AAAA,1111,25.00,GBP\n\
                ACME-GIFT,AON-0002-BBBB,,25.00,GBP\n";
    let (status, report) = upload(&stock, "retailer=Acme&all_or_nothing=true", good).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!((&report["status"], &report["accepted"], &report["duplicates"]), (&json!("completed"), &json!(2), &json!(0)), "{report}");
    let (_, stock_report) = stock.get("/v1/stock").await;
    assert_eq!(available(&stock_report), 2, "{stock_report}");

    // A duplicate is a refused row too: the new code with it is not stocked.
    let dup = "sku,code,face_value,currency\nACME-GIFT,AON-0004-DDDD,25.00,GBP\nACME-GIFT,AON-0002-BBBB,25.00,GBP\n";
    let (status, report) = upload(&stock, "retailer=Acme&all_or_nothing=true", dup).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((&report["status"], &report["duplicates"]), (&json!("discarded"), &json!(1)), "{report}");
    let (_, stock_report) = stock.get("/v1/stock").await;
    assert_eq!(available(&stock_report), 2, "{stock_report}");
    let (status, report) = upload(&stock, "retailer=Acme", "sku,code,face_value,currency\nACME-GIFT,AON-0004-DDDD,25.00,GBP\n").await;
    assert_eq!((status, &report["accepted"]), (StatusCode::CREATED, &json!(1)), "{report}");
}
}

on_each_backend! {
async fn an_interrupted_all_or_nothing_import_is_taken_over_by_running_it_again(store) {
    use strongroom_store::{ImportRecord, VoucherRecord};
    use strongroom_vault::{NewSecret, OnDuplicate, RequestContext, SecretBytes};
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    let (_, me) = stock.get("/v1/auth/whoami").await;
    let stock_id = me["id"].as_str().unwrap().to_owned();
    let (_, retailers) = stock.get("/v1/retailers").await;
    let retailer_id = retailers["retailers"][0]["id"].as_str().unwrap().to_owned();
    let (_, products) = stock.get("/v1/products").await;
    let product_id = products["products"][0]["id"].as_str().unwrap().to_owned();
    let central = h.server.vault.stores().central.clone();
    central
        .put_import(ImportRecord {
            id: "im_staging".into(), tenant: "dev".into(), retailer_id, status: "running".into(),
            rows: 0, accepted: 0, rejected: 0, duplicates: 0, created_by: stock_id.clone(),
            created_at: 0, finished_at: 0,
        })
        .await
        .unwrap();
    // It had stored one code and staged its voucher when it stopped.
    let who = strongroom_vault::Principal {
        id: stock_id, name: "stock-1".into(), roles: vec!["stock_manager".into()],
        permissions: strongroom_vault::Role::StockManager.permissions(),
        tenants: vec!["dev".into()], human: false, mfa_recent: false,
    };
    let mut provenance = serde_json::Map::new();
    provenance.insert("import".into(), "im_staging".into());
    provenance.insert("sku".into(), "ACME-GIFT".into());
    let stored = h.server.vault
        .tokenize(&who, &RequestContext::default(), NewSecret {
            tenant: Some("dev".into()), class: "voucher_code".into(),
            value: SecretBytes::new(b"ACME-STAGED-0001".to_vec()), metadata: Some(provenance),
            reveal_window_secs: Some(0), on_duplicate: OnDuplicate::Reject,
        })
        .await
        .unwrap();
    let added = central
        .insert_vouchers(vec![VoucherRecord {
            id: "vc_staged".into(), tenant: "dev".into(), product_id, face_value: 2500,
            currency: "GBP".into(), token: stored.token, pin_token: None, expires_at: None,
            serial: None, state: "staged".into(), import_id: "im_staging".into(), created_at: 0,
        }])
        .await
        .unwrap();
    assert_eq!(added, vec![true]);
    let available = || async {
        let (_, report) = stock.get("/v1/stock").await;
        report["lines"].as_array().unwrap().iter()
            .find(|l| l["face_value"] == 2500).unwrap()["available"].clone()
    };
    assert_eq!(available().await, 0, "staged is not stock");

    let file = "sku,code,face_value,currency\nACME-GIFT,ACME-STAGED-0001,25.00,GBP\nACME-GIFT,ACME-STAGED-0002,25.00,GBP\n";
    let (status, report) = upload(&stock, "retailer=Acme&all_or_nothing=true", file).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!((&report["status"], &report["accepted"], &report["duplicates"]), (&json!("completed"), &json!(2), &json!(0)), "{report}");
    assert_eq!(available().await, 2, "both codes in stock, once each");
    let (_, again) = upload(&stock, "retailer=Acme&dry_run=true", file).await;
    assert_eq!(again["duplicates"], 2, "{again}");
}
}

on_each_backend! {
async fn a_recalled_import_is_voided_out_of_stock(store) {
    let h = Harness::dev_on(store).await;
    let stock = stocked(&h).await;
    let file = "sku,code,face_value,currency\nACME-GIFT,RECALL-0001,25.00,GBP\nACME-GIFT,RECALL-0002,25.00,GBP\n";
    let (status, report) = upload(&stock, "retailer=Acme", file).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let id = report["import_id"].as_str().unwrap().to_owned();
    let support = h.principal("support-1", &["support"], &["dev"]).await;
    let (status, body) = support.post(&format!("/v1/imports/{id}/void"), json!({"reason": "recalled"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = stock.post("/v1/imports/im_nosuch/void", json!({"reason": "recalled"})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "catalog.not_found"), "{body}");
    let (status, body) = stock.post(&format!("/v1/imports/{id}/void"), json!({"reason": "recalled by Acme"})).await;
    assert_eq!((status, &body["voided"]), (StatusCode::OK, &json!(2)), "{body}");
    let (_, again) = stock.post(&format!("/v1/imports/{id}/void"), json!({"reason": "twice"})).await;
    assert_eq!(again["voided"], 0, "{again}");
    let (_, report) = stock.get("/v1/stock").await;
    let line = report["lines"].as_array().unwrap().iter().find(|l| l["face_value"] == 2500).unwrap().clone();
    assert_eq!((&line["available"], &line["voided"]), (&json!(0), &json!(2)), "{line}");
    // Voided codes are still held: importing them again is refused.
    let (_, dup) = upload(&stock, "retailer=Acme", file).await;
    assert_eq!(dup["duplicates"], 2, "{dup}");
}
}
