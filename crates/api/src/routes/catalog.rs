//! `/v1/retailers` and `/v1/products`: the voucher catalogue.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use strongroom_store::{ProductRecord, RetailerRecord};
use strongroom_vault::rfc3339;
use strongroom_vouchers::{Catalog, NewProduct, VoucherError};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

impl From<VoucherError> for ApiError {
    fn from(e: VoucherError) -> Self {
        let code = e.code();
        match e {
            VoucherError::Vault(v) => ApiError::from(v),
            VoucherError::Invalid(message) => ApiError::invalid(message),
            VoucherError::Exists(message) => {
                ApiError::new(StatusCode::CONFLICT, "catalog.exists", message)
            }
            VoucherError::NotFound(message) => {
                ApiError::new(StatusCode::NOT_FOUND, "catalog.not_found", message)
            }
            VoucherError::SamePerson | VoucherError::SpendSamePerson => {
                ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
            }
            VoucherError::SupplierNotFound | VoucherError::PurchaseNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, code, e.to_string())
            }
            VoucherError::RedeliveryLimit => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, e.to_string())
            }
            VoucherError::OrderNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, code, e.to_string())
            }
            VoucherError::OutOfStock
            | VoucherError::IdempotencyConflict
            | VoucherError::OrderState(_)
            | VoucherError::PurchaseState(_) => {
                ApiError::new(StatusCode::CONFLICT, code, e.to_string())
            }
        }
    }
}

/// Body of `POST /v1/retailers`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRetailer {
    /// Tenant; may be left out by a caller bound to one.
    tenant: Option<String>,
    /// Unique within the tenant.
    name: String,
}

/// A retailer.
#[derive(Serialize, ToSchema)]
pub struct Retailer {
    /// Id (`rt_…`).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// Principal id that added it.
    pub created_by: String,
}

impl From<RetailerRecord> for Retailer {
    fn from(r: RetailerRecord) -> Self {
        Retailer {
            id: r.id,
            tenant: r.tenant,
            name: r.name,
            created_at: rfc3339(r.created_at),
            created_by: r.created_by,
        }
    }
}

/// `GET /v1/retailers`.
#[derive(Serialize, ToSchema)]
pub struct RetailerList {
    /// The retailers of the caller's tenants.
    pub retailers: Vec<Retailer>,
}

/// Body of `POST /v1/products`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductRequest {
    /// Tenant; may be left out by a caller bound to one.
    tenant: Option<String>,
    /// The retailer, by id or name.
    retailer: String,
    /// Unique within the tenant: 1-64 of `A-Z a-z 0-9 . _ -`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    /// Display name.
    name: String,
    /// ISO 4217 code, e.g. `GBP`.
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    /// Face values in minor units (2500 for 25.00).
    #[schema(min_items = 1, max_items = 50)]
    denominations: Vec<i64>,
    /// Fewer available vouchers of a denomination than this is low stock (default 0: never).
    #[schema(minimum = 0, maximum = 1000000)]
    low_stock_threshold: Option<i64>,
}

/// A product.
#[derive(Serialize, ToSchema)]
pub struct Product {
    /// Id (`pr_…`).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// The retailer's id.
    pub retailer_id: String,
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Face values in minor units, ascending.
    pub denominations: Vec<i64>,
    /// Low-stock threshold per denomination (0: never low).
    pub low_stock_threshold: i64,
    /// RFC 3339.
    pub created_at: String,
    /// Principal id that added it.
    pub created_by: String,
}

impl From<ProductRecord> for Product {
    fn from(p: ProductRecord) -> Self {
        Product {
            id: p.id,
            tenant: p.tenant,
            retailer_id: p.retailer_id,
            sku: p.sku,
            name: p.name,
            currency: p.currency,
            denominations: p.denominations,
            low_stock_threshold: p.low_stock_threshold,
            created_at: rfc3339(p.created_at),
            created_by: p.created_by,
        }
    }
}

/// `GET /v1/products`.
#[derive(Serialize, ToSchema)]
pub struct ProductList {
    /// The products of the caller's tenants.
    pub products: Vec<Product>,
}

/// `POST /v1/retailers`: adds a retailer.
#[utoipa::path(
    post,
    path = "/v1/retailers",
    tag = "catalog",
    request_body = NewRetailer,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Added", body = Retailer),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 409, description = "`catalog.exists`: the tenant has a retailer of that name", body = crate::openapi::ErrorBody)
    )
)]
pub async fn add_retailer(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<NewRetailer>,
) -> Result<(StatusCode, Json<Retailer>), ApiError> {
    let made = Catalog::new(state.vault.clone())
        .add_retailer(&who, &ctx, body.tenant.as_deref(), &body.name)
        .await?;
    Ok((StatusCode::CREATED, Json(made.into())))
}

/// `GET /v1/retailers`: the retailers of the caller's tenants.
#[utoipa::path(
    get,
    path = "/v1/retailers",
    tag = "catalog",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The retailers", body = RetailerList),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn retailers(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<Json<RetailerList>, ApiError> {
    let all = Catalog::new(state.vault.clone())
        .retailers(&who, &ctx)
        .await?;
    Ok(Json(RetailerList {
        retailers: all.into_iter().map(Retailer::from).collect(),
    }))
}

/// `POST /v1/products`: adds a product (SKU) with its face values.
#[utoipa::path(
    post,
    path = "/v1/products",
    tag = "catalog",
    request_body = NewProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Added", body = Product),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`catalog.not_found`: no such retailer in the tenant", body = crate::openapi::ErrorBody),
        (status = 409, description = "`catalog.exists`: the tenant has a product with that SKU", body = crate::openapi::ErrorBody)
    )
)]
pub async fn add_product(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<NewProductRequest>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let new = NewProduct {
        tenant: body.tenant,
        retailer: body.retailer,
        sku: body.sku,
        name: body.name,
        currency: body.currency,
        denominations: body.denominations,
        low_stock_threshold: body.low_stock_threshold,
    };
    let made = Catalog::new(state.vault.clone())
        .add_product(&who, &ctx, new)
        .await?;
    Ok((StatusCode::CREATED, Json(made.into())))
}

/// `GET /v1/products`: the products of the caller's tenants.
#[utoipa::path(
    get,
    path = "/v1/products",
    tag = "catalog",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The products", body = ProductList),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn products(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<Json<ProductList>, ApiError> {
    let all = Catalog::new(state.vault.clone())
        .products(&who, &ctx)
        .await?;
    Ok(Json(ProductList {
        products: all.into_iter().map(Product::from).collect(),
    }))
}

/// `GET /v1/products/{sku}`: one product.
#[utoipa::path(
    get,
    path = "/v1/products/{sku}",
    tag = "catalog",
    params(
        ("sku" = String, Path, description = "The product's SKU"),
        ("tenant" = Option<String>, Query, description = "Tenant; may be left out by a caller bound to one")
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`catalog.not_found`: no product with that SKU in the caller's tenants", body = crate::openapi::ErrorBody)
    )
)]
pub async fn product(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(sku): Path<String>,
    // A map never fails to parse, so odd query strings get our error shape.
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Product>, ApiError> {
    let found = Catalog::new(state.vault.clone())
        .product(&who, &ctx, query.get("tenant").map(String::as_str), &sku)
        .await?;
    Ok(Json(found.into()))
}

/// Stock of one product and face value.
#[derive(Serialize, ToSchema)]
pub struct StockLine {
    /// Tenant.
    pub tenant: String,
    /// SKU.
    pub sku: String,
    /// Product name.
    pub name: String,
    /// Face value in minor units.
    pub face_value: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Vouchers available (an available code past its expiry counts as expired).
    pub available: i64,
    /// Reserved for an order.
    pub reserved: i64,
    /// Delivered.
    pub delivered: i64,
    /// Archived after delivery.
    pub archived: i64,
    /// Past their code's expiry.
    pub expired: i64,
    /// Voided.
    pub voided: i64,
    /// Available, with a code expiring within the look-ahead.
    pub expiring_soon: i64,
    /// The product's low-stock threshold (0: never low).
    pub low_stock_threshold: i64,
    /// Fewer available than the threshold.
    pub low: bool,
}

/// Value held in one currency.
#[derive(Serialize, ToSchema)]
pub struct Exposure {
    /// ISO 4217 code.
    pub currency: String,
    /// Sum of the face values of available and reserved vouchers, minor units.
    pub face_value_total: i64,
    /// The same, for people (`1250.00 GBP`).
    pub display: String,
    /// Vouchers counted.
    pub vouchers: i64,
}

/// `GET /v1/stock`.
#[derive(Serialize, ToSchema)]
pub struct StockReport {
    /// One line per face value of every product of the caller's tenants.
    pub lines: Vec<StockLine>,
    /// Value held per currency.
    pub exposure: Vec<Exposure>,
    /// The look-ahead of `expiring_soon`, days.
    pub expiring_within_days: u32,
}

/// `GET /v1/stock`: what is held, what it is worth, what expires soon, what
/// runs low.
#[utoipa::path(
    get,
    path = "/v1/stock",
    tag = "catalog",
    params(("expiring_within_days" = Option<u32>, Query, description = "Look-ahead for codes about to expire, days (default 30, at most 3650)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stock report", body = StockReport),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn stock(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<StockReport>, ApiError> {
    let days = match query.get("expiring_within_days") {
        None => 30,
        Some(d) => d
            .parse()
            .map_err(|_| ApiError::invalid("expiring_within_days is a number of days"))?,
    };
    let r = strongroom_vouchers::stock::report(&state.vault, &who, &ctx, days).await?;
    let count = |c: &[i64; 6], i: usize| c.get(i).copied().unwrap_or(0);
    Ok(Json(StockReport {
        lines: r
            .lines
            .into_iter()
            .map(|l| StockLine {
                available: count(&l.counts, 0),
                reserved: count(&l.counts, 1),
                delivered: count(&l.counts, 2),
                archived: count(&l.counts, 3),
                expired: count(&l.counts, 4),
                voided: count(&l.counts, 5),
                tenant: l.tenant,
                sku: l.sku,
                name: l.name,
                face_value: l.face_value,
                currency: l.currency,
                expiring_soon: l.expiring_soon,
                low_stock_threshold: l.low_stock_threshold,
                low: l.low,
            })
            .collect(),
        exposure: r
            .exposure
            .into_iter()
            .map(|e| Exposure {
                display: strongroom_vouchers::money::display(e.face_value_total, &e.currency),
                currency: e.currency,
                face_value_total: e.face_value_total,
                vouchers: e.vouchers,
            })
            .collect(),
        expiring_within_days: r.expiring_within_days,
    }))
}
