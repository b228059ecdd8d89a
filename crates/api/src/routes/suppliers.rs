//! `/v1/suppliers` and `/v1/purchases`: buying codes from suppliers'
//! APIs, spend approvals, reconciliation. Amounts are minor units.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use strongroom_store::{PurchaseLineRecord, PurchaseRecord};
use strongroom_vault::{SecretBytes, rfc3339};
use strongroom_vouchers::supply::{PurchaseOutcome, Reconciliation, ReplenishLine, SupplierStatus};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// A supplier's state.
#[derive(Serialize, ToSchema)]
pub struct Supplier {
    /// Configured name.
    pub name: String,
    /// The tenant whose stock it fills.
    pub tenant: String,
    /// `closed` (called), `open` (failing, not called), `halfopen` (one
    /// trial call allowed).
    pub circuit: String,
    /// When its credential was set (RFC 3339), or null: it cannot be
    /// called until one is.
    pub credential_set_at: Option<String>,
    /// Spend of `today` (UTC) per currency, against the daily limit.
    pub spend: Vec<Spend>,
    /// UTC day of `spend`.
    pub today: String,
    /// SKUs it keeps in stock.
    pub products: Vec<String>,
}

/// Spend in one currency.
#[derive(Serialize, ToSchema)]
pub struct Spend {
    /// ISO 4217.
    pub currency: String,
    /// Committed today, minor units.
    pub spent: i64,
    /// The daily limit, minor units.
    pub limit: i64,
}

impl From<SupplierStatus> for Supplier {
    fn from(s: SupplierStatus) -> Self {
        Supplier {
            name: s.name,
            tenant: s.tenant,
            circuit: s.circuit,
            credential_set_at: s.credential_set_at.map(rfc3339),
            spend: s
                .spend
                .into_iter()
                .map(|(currency, spent, limit)| Spend {
                    currency,
                    spent,
                    limit,
                })
                .collect(),
            today: s.today,
            products: s.products,
        }
    }
}

/// A purchase from a supplier.
#[derive(Serialize, ToSchema)]
pub struct Purchase {
    /// Id (`pu_…`); also the source of the vouchers it stocked.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Supplier.
    pub supplier: String,
    /// Product id.
    pub product_id: String,
    /// Face value of each code, minor units.
    pub face_value: i64,
    /// ISO 4217.
    pub currency: String,
    /// Codes asked for.
    pub quantity: i64,
    /// Face value × quantity: what the spend limit counts until the
    /// supplier says what it charged.
    pub cost: i64,
    /// `replenishment` or `order`.
    pub purpose: String,
    /// `awaiting_approval`, `approved`, `buying`, `complete`, `partial`,
    /// `unsettled`, `failed` or `declined`.
    pub state: String,
    /// UTC day it counts against.
    pub day: String,
    /// Who asked.
    pub requested_by: String,
    /// Who approved it over the limit.
    pub approved_by: String,
    /// What the supplier charged, minor units.
    pub charged: i64,
    /// Codes received.
    pub codes_received: i64,
    /// The last thing worth knowing (a refusal, a supplier's error).
    pub note: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Its supplier orders (in `GET /v1/purchases/{id}` and after buying).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<PurchaseLine>>,
}

/// One supplier order of a purchase.
#[derive(Serialize, ToSchema)]
pub struct PurchaseLine {
    /// Line number.
    pub line: i64,
    /// Our client reference (the supplier's idempotency key).
    pub reference: String,
    /// The supplier's order id.
    pub supplier_order: String,
    /// `placing`, `pending`, `complete`, `failed` or `unknown`.
    pub state: String,
    /// Charged, minor units.
    pub charged: i64,
    /// Codes received.
    pub codes: i64,
    /// The supplier's error, if any.
    pub note: String,
}

impl From<PurchaseLineRecord> for PurchaseLine {
    fn from(l: PurchaseLineRecord) -> Self {
        PurchaseLine {
            line: l.line,
            reference: l.reference,
            supplier_order: l.supplier_order,
            state: l.state,
            charged: l.charged,
            codes: l.codes,
            note: l.note,
        }
    }
}

impl From<PurchaseRecord> for Purchase {
    fn from(p: PurchaseRecord) -> Self {
        Purchase {
            id: p.id,
            tenant: p.tenant,
            supplier: p.supplier,
            product_id: p.product_id,
            face_value: p.face_value,
            currency: p.currency,
            quantity: p.quantity,
            cost: p.cost,
            purpose: p.purpose,
            state: p.state,
            day: p.day,
            requested_by: p.requested_by,
            approved_by: p.approved_by,
            charged: p.charged,
            codes_received: p.codes_received,
            note: p.note,
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
            lines: None,
        }
    }
}

impl From<PurchaseOutcome> for Purchase {
    fn from(o: PurchaseOutcome) -> Self {
        let mut p = Purchase::from(o.purchase);
        p.lines = Some(o.lines.into_iter().map(PurchaseLine::from).collect());
        p
    }
}

/// `GET /v1/suppliers`: the configured suppliers and their state.
#[utoipa::path(
    get,
    path = "/v1/suppliers",
    tag = "suppliers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The suppliers of the caller's tenants", body = Vec<Supplier>),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<Json<Vec<Supplier>>, ApiError> {
    let status = state.supply.status(&who, &ctx).await?;
    Ok(Json(status.into_iter().map(Supplier::from).collect()))
}

/// Body of `PUT /v1/suppliers/{name}/credential`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    /// The API key, or for Tango Card `CLIENT_ID:CLIENT_SECRET`. Kept in
    /// the vault; never returned.
    credential: String,
}

/// `PUT /v1/suppliers/{name}/credential`: sets the credential Strongroom
/// uses with a supplier. Needs `suppliers:credentials`.
#[utoipa::path(
    put,
    path = "/v1/suppliers/{name}/credential",
    tag = "suppliers",
    params(("name" = String, Path, description = "The supplier's configured name")),
    request_body = NewCredential,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Stored in the vault; the one it replaces is deleted"),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`supplier.not_found`: no supplier of that name", body = crate::openapi::ErrorBody)
    )
)]
pub async fn set_credential(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<NewCredential>,
) -> Result<StatusCode, ApiError> {
    let value = Zeroizing::new(body.credential);
    let trimmed = value.trim();
    state
        .supply
        .set_credential(&who, &ctx, &name, SecretBytes::from_str_copy(trimmed))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A product and face value a supplier keeps in stock.
#[derive(Serialize, ToSchema)]
pub struct PlanLine {
    /// Tenant.
    pub tenant: String,
    /// SKU.
    pub sku: String,
    /// Minor units.
    pub face_value: i64,
    /// ISO 4217.
    pub currency: String,
    /// Supplier.
    pub supplier: String,
    /// Available now.
    pub available: i64,
    /// On order (being bought, unsettled, or waiting for approval).
    pub on_order: i64,
    /// Replenished below this.
    pub min_stock: i64,
    /// …up to this.
    pub target_stock: i64,
    /// Codes a replenishment would buy now.
    pub to_order: i64,
}

impl From<ReplenishLine> for PlanLine {
    fn from(l: ReplenishLine) -> Self {
        PlanLine {
            tenant: l.tenant,
            sku: l.sku,
            face_value: l.face_value,
            currency: l.currency,
            supplier: l.supplier,
            available: l.available,
            on_order: l.on_order,
            min_stock: l.min_stock,
            target_stock: l.target_stock,
            to_order: l.to_order,
        }
    }
}

/// `GET /v1/suppliers/replenishment`: what replenishing would buy now.
#[utoipa::path(
    get,
    path = "/v1/suppliers/replenishment",
    tag = "suppliers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every product and face value suppliers keep, with its shortfall", body = Vec<PlanLine>),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn plan(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<Json<Vec<PlanLine>>, ApiError> {
    super::require(
        &state,
        &ctx,
        &who,
        strongroom_vault::Permission::BuyFromSuppliers,
        "supplier.plan",
        None,
    )
    .await?;
    let plan = state.supply.plan(&who).await?;
    Ok(Json(plan.into_iter().map(PlanLine::from).collect()))
}

/// Body of `POST /v1/suppliers/replenish`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replenish {
    /// Tenant; may be left out by a caller bound to one.
    tenant: Option<String>,
    /// SKU.
    sku: String,
    /// Face value, minor units.
    face_value: i64,
}

/// What a replenishment did.
#[derive(Serialize, ToSchema)]
pub struct Replenished {
    /// The purchase made, or null when the product was not short.
    pub purchase: Option<Purchase>,
}

/// `POST /v1/suppliers/replenish`: buys what one product and face value
/// is short of its target, if it is below its minimum. Needs
/// `suppliers:buy`. Over the supplier's daily limit the purchase is
/// recorded as `awaiting_approval` and nothing is bought.
#[utoipa::path(
    post,
    path = "/v1/suppliers/replenish",
    tag = "suppliers",
    request_body = Replenish,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What was bought (see the purchase's state and lines)", body = Replenished),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`catalog.not_found`: no product of that SKU and face value kept by a supplier", body = crate::openapi::ErrorBody)
    )
)]
pub async fn replenish(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<Replenish>,
) -> Result<Json<Replenished>, ApiError> {
    let outcome = state
        .supply
        .replenish_line(
            &who,
            &ctx,
            body.tenant.as_deref(),
            &body.sku,
            body.face_value,
        )
        .await?;
    Ok(Json(Replenished {
        purchase: outcome.map(Purchase::from),
    }))
}

/// `GET /v1/purchases`: purchases, newest first.
#[utoipa::path(
    get,
    path = "/v1/purchases",
    tag = "suppliers",
    params(
        ("state" = Option<String>, Query, description = "Only in this state (`awaiting_approval`, …)"),
        ("day" = Option<String>, Query, description = "Only of this UTC day, YYYY-MM-DD"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)")
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Purchases of the caller's tenants", body = Vec<Purchase>),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn purchases(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Purchase>>, ApiError> {
    let limit = super::audit::number_param::<usize>(&q, "limit")?.unwrap_or(100);
    let list = state
        .supply
        .list(
            &who,
            &ctx,
            q.get("state").map(String::as_str),
            q.get("day").map(String::as_str),
            limit,
        )
        .await?;
    Ok(Json(list.into_iter().map(Purchase::from).collect()))
}

/// `GET /v1/purchases/{id}`: one purchase with its supplier orders.
#[utoipa::path(
    get,
    path = "/v1/purchases/{id}",
    tag = "suppliers",
    params(("id" = String, Path, description = "Purchase id (`pu_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The purchase", body = Purchase),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`purchase.not_found`", body = crate::openapi::ErrorBody)
    )
)]
pub async fn purchase(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Purchase>, ApiError> {
    Ok(Json(state.supply.get(&who, &ctx, &id).await?.into()))
}

/// `POST /v1/purchases/{id}/approve`: approves a purchase over a spend
/// limit and buys it. Needs `suppliers:approve_spend` and someone other
/// than who asked.
#[utoipa::path(
    post,
    path = "/v1/purchases/{id}/approve",
    tag = "suppliers",
    params(("id" = String, Path, description = "Purchase id (`pu_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved and bought (see its state and lines)", body = Purchase),
        (status = 403, description = "`auth.forbidden`, or `purchase.same_person`: the asker cannot approve", body = crate::openapi::ErrorBody),
        (status = 404, description = "`purchase.not_found`", body = crate::openapi::ErrorBody),
        (status = 409, description = "`purchase.state`: not awaiting approval", body = crate::openapi::ErrorBody)
    )
)]
pub async fn approve(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Purchase>, ApiError> {
    Ok(Json(state.supply.approve(&who, &ctx, &id).await?.into()))
}

/// Body of `POST /v1/purchases/{id}/decline`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decline {
    /// Why (kept in the audit log).
    reason: String,
}

/// `POST /v1/purchases/{id}/decline`: declines a purchase over a spend
/// limit. Needs `suppliers:approve_spend`.
#[utoipa::path(
    post,
    path = "/v1/purchases/{id}/decline",
    tag = "suppliers",
    params(("id" = String, Path, description = "Purchase id (`pu_…`)")),
    request_body = Decline,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Declined", body = Purchase),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`purchase.not_found`", body = crate::openapi::ErrorBody),
        (status = 409, description = "`purchase.state`: not awaiting approval", body = crate::openapi::ErrorBody)
    )
)]
pub async fn decline(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Decline>,
) -> Result<Json<Purchase>, ApiError> {
    Ok(Json(
        state
            .supply
            .decline(&who, &ctx, &id, &body.reason)
            .await?
            .into(),
    ))
}

/// Body of `POST /v1/suppliers/reconcile`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconcile {
    /// UTC day, YYYY-MM-DD.
    day: String,
}

/// One mismatch.
#[derive(Serialize, ToSchema)]
pub struct Mismatch {
    /// Purchase.
    pub purchase_id: String,
    /// Supplier.
    pub supplier: String,
    /// Line (0: the purchase as a whole).
    pub line: i64,
    /// `charged_without_codes`, `unsettled`, `received_not_in_stock`,
    /// `charged_over_face_value`, `codes_without_charge`.
    pub kind: String,
    /// For a person.
    pub detail: String,
}

/// A day's reconciliation.
#[derive(Serialize, ToSchema)]
pub struct ReconciliationReport {
    /// UTC day.
    pub day: String,
    /// Purchases compared.
    pub purchases: usize,
    /// Codes ordered.
    pub ordered: i64,
    /// Codes received.
    pub received: i64,
    /// Vouchers in the store from these purchases.
    pub in_stock: i64,
    /// Charged, per currency (minor units).
    pub charged: HashMap<String, i64>,
    /// What does not add up (each also an audit event and an alert).
    pub mismatches: Vec<Mismatch>,
}

impl From<Reconciliation> for ReconciliationReport {
    fn from(r: Reconciliation) -> Self {
        ReconciliationReport {
            day: r.day,
            purchases: r.purchases,
            ordered: r.ordered,
            received: r.received,
            in_stock: r.in_stock,
            charged: r.charged.into_iter().collect(),
            mismatches: r
                .mismatches
                .into_iter()
                .map(|m| Mismatch {
                    purchase_id: m.purchase_id,
                    supplier: m.supplier,
                    line: m.line,
                    kind: m.kind,
                    detail: m.detail,
                })
                .collect(),
        }
    }
}

/// `POST /v1/suppliers/reconcile`: compares a day's purchases — ordered,
/// charged, received, in stock — after asking suppliers about unsettled
/// orders again. Needs `suppliers:buy`.
#[utoipa::path(
    post,
    path = "/v1/suppliers/reconcile",
    tag = "suppliers",
    request_body = Reconcile,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The day's figures and mismatches", body = ReconciliationReport),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn reconcile(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<Reconcile>,
) -> Result<Json<ReconciliationReport>, ApiError> {
    Ok(Json(
        state.supply.reconcile(&who, &ctx, &body.day).await?.into(),
    ))
}
