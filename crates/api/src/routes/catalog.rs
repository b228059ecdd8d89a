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
        match e {
            VoucherError::Vault(v) => ApiError::from(v),
            VoucherError::Invalid(message) => ApiError::invalid(message),
            VoucherError::Exists(message) => {
                ApiError::new(StatusCode::CONFLICT, "catalog.exists", message)
            }
            VoucherError::NotFound(message) => {
                ApiError::new(StatusCode::NOT_FOUND, "catalog.not_found", message)
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
