//! The voucher catalogue: retailers and products, per tenant.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Harness, code, on_each_backend};

on_each_backend! {
async fn a_stock_manager_keeps_the_catalogue_of_its_tenant(store) {
    let h = Harness::dev_on(store).await;
    let stock = h.principal("stock-1", &["stock_manager"], &["dev"]).await;
    let (status, retailer) = stock
        .post("/v1/retailers", json!({"name": "Acme Books"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{retailer}");
    assert_eq!(retailer["tenant"], "dev");
    let (status, body) = stock.post("/v1/retailers", json!({"name": "Acme Books"})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "catalog.exists"));

    let product = json!({
        "retailer": "Acme Books", "sku": "ACME-GIFT", "name": "Acme gift card",
        "currency": "GBP", "denominations": [5000, 1000, 2500, 1000], "low_stock_threshold": 20
    });
    let (status, made) = stock.post("/v1/products", product.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["denominations"], json!([1000, 2500, 5000]));
    assert_eq!(made["retailer_id"], retailer["id"]);
    let (status, body) = stock.post("/v1/products", product.clone()).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "catalog.exists"));

    let (status, found) = stock.get("/v1/products/ACME-GIFT").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["low_stock_threshold"], 20);
    let (_, listed) = stock.get("/v1/products").await;
    assert_eq!(listed["products"].as_array().unwrap().len(), 1);

    // Support may look, not change; an administrator neither.
    let support = h.principal("support-1", &["support"], &["dev"]).await;
    assert_eq!(support.get("/v1/products/ACME-GIFT").await.0, StatusCode::OK);
    assert_eq!(
        support.post("/v1/retailers", json!({"name": "Other"})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.admin().await.get("/v1/products").await.0, StatusCode::FORBIDDEN);

    // Another tenant's stock manager sees nothing of it.
    let other = h.principal("stock-2", &["stock_manager"], &["elsewhere"]).await;
    let (_, listed) = other.get("/v1/retailers").await;
    assert_eq!(listed["retailers"], json!([]));
    let (status, body) = other.get("/v1/products/ACME-GIFT").await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "catalog.not_found"));
    let (status, _) = other
        .post("/v1/retailers", json!({"tenant": "dev", "name": "Sneaky"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Its own retailer of the same name is its own business.
    let (status, _) = other.post("/v1/retailers", json!({"name": "Acme Books"})).await;
    assert_eq!(status, StatusCode::CREATED);

    // Every change is audited.
    let rows = h.audit_rows().await;
    assert!(rows.iter().any(|(_, b, _)| b.contains("catalog.add_product") && b.contains("sku=ACME-GIFT")));
}
}

on_each_backend! {
async fn products_are_checked_before_anything_is_stored(store) {
    let h = Harness::dev_on(store).await;
    let stock = h.principal("stock-1", &["stock_manager"], &["dev"]).await;
    let (status, _) = stock.post("/v1/retailers", json!({"name": "Acme"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let base = json!({"retailer": "Acme", "sku": "A-1", "name": "Card", "currency": "GBP", "denominations": [2500]});
    let cases = [
        ("currency", json!("POUNDS"), "ISO 4217"),
        ("currency", json!("XAU"), "ISO 4217"),
        ("denominations", json!([]), "face values"),
        ("denominations", json!([0]), "minor units"),
        ("denominations", json!([100_000_001]), "minor units"),
        ("sku", json!("has space"), "SKU"),
        ("name", json!(""), "product name"),
        ("low_stock_threshold", json!(-1), "low_stock_threshold"),
    ];
    for (field, value, says) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let (status, resp) = stock.post("/v1/products", body).await;
        assert_eq!((status, code(&resp)), (StatusCode::BAD_REQUEST, "request.invalid"), "{field}={value}: {resp}");
        assert!(resp["error"]["message"].as_str().unwrap().contains(says), "{field}={value}: {resp}");
    }
    let mut body = base.clone();
    body["retailer"] = json!("Nobody");
    let (status, resp) = stock.post("/v1/products", body).await;
    assert_eq!((status, code(&resp)), (StatusCode::NOT_FOUND, "catalog.not_found"), "{resp}");
    let (_, listed) = stock.get("/v1/products").await;
    assert_eq!(listed["products"], json!([]));
}
}
