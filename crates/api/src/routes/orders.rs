//! `/v1/orders`: the storefront's orders.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use strongroom_store::{OrderFilter, OrderRecord, VoucherEvent};
use strongroom_vault::{SecretBytes, VaultError, rfc3339};
use strongroom_vouchers::{Delivery, NewOrder, Orders, Placed};
use utoipa::ToSchema;

use super::json_body;
use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// Body of `POST /v1/orders`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Tenant; may be left out by a caller bound to one.
    tenant: Option<String>,
    /// Your reference for the order, unique per caller: repeating a request
    /// with it returns the original order.
    #[schema(min_length = 1, max_length = 200)]
    external_ref: String,
    /// The product.
    sku: String,
    /// Face value in minor units (2500 for 25.00).
    face_value: i64,
    /// ISO 4217 code of the face value (the product's).
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    /// Your reference of the customer.
    #[schema(min_length = 1, max_length = 200)]
    customer_ref: String,
    /// `code` (the code in the response; needs `secrets:reveal`) or `link`
    /// (a link to a page that shows the code to the customer).
    #[schema(pattern = "^(code|link)$")]
    delivery: String,
}

/// An order. The code (or link) is present only in the answer to placing
/// it (and to repeating that request).
#[derive(Serialize, ToSchema)]
pub struct Order<'a> {
    /// Id (`or_…`).
    pub id: &'a str,
    /// Tenant.
    pub tenant: &'a str,
    /// The caller's reference.
    pub external_ref: &'a str,
    /// The principal that placed it.
    pub client_id: &'a str,
    /// SKU.
    pub sku: &'a str,
    /// Face value in minor units.
    pub face_value: i64,
    /// ISO 4217 code.
    pub currency: &'a str,
    /// The customer's reference.
    pub customer_ref: &'a str,
    /// `code` or `link`.
    pub delivery: &'a str,
    /// `reserved`, `delivered` or `cancelled`.
    pub state: &'a str,
    /// The voucher allocated.
    pub voucher_id: &'a str,
    /// When the voucher's code expires (RFC 3339), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voucher_expires_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// Why it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<&'a str>,
    /// The code (`delivery: code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    /// The PIN, if the voucher has one (`delivery: code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<&'a str>,
    /// Until when the code can be revealed (RFC 3339); then it is dormant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revealable_until: Option<String>,
    /// The reveal link for the customer (`delivery: link`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// When the link stops working (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_expires_at: Option<String>,
    /// Views of the link left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_views_left: Option<i64>,
    /// The voucher's transitions (`GET /v1/orders/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Transition<'a>>>,
}

/// One change of a voucher's state.
#[derive(Serialize, ToSchema)]
pub struct Transition<'a> {
    /// RFC 3339.
    pub at: String,
    /// Who (principal id, `system:…` for the server's own jobs).
    pub actor: &'a str,
    /// State before.
    pub from: &'a str,
    /// State after.
    pub to: &'a str,
    /// Why.
    pub reason: &'a str,
}

/// `GET /v1/orders`.
#[derive(Serialize, ToSchema)]
pub struct OrderList<'a> {
    /// Newest first.
    pub orders: Vec<Order<'a>>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<&'a str>,
}

fn text(value: &SecretBytes) -> Result<&str, ApiError> {
    std::str::from_utf8(value.expose()).map_err(|_| ApiError::from(VaultError::Integrity))
}

fn view<'a>(o: &'a OrderRecord) -> Order<'a> {
    let delivered = o.state == "delivered";
    let link = delivered && o.delivery == "link";
    Order {
        id: &o.id,
        tenant: &o.tenant,
        external_ref: &o.external_ref,
        client_id: &o.client_id,
        sku: &o.sku,
        face_value: o.face_value,
        currency: &o.currency,
        customer_ref: &o.customer_ref,
        delivery: &o.delivery,
        state: &o.state,
        voucher_id: &o.voucher_id,
        voucher_expires_at: o.expires_at.map(rfc3339),
        created_at: rfc3339(o.created_at),
        delivered_at: delivered.then(|| rfc3339(o.delivered_at)),
        cancel_reason: o.cancel_reason.as_deref(),
        code: None,
        pin: None,
        revealable_until: None,
        link: None,
        link_expires_at: link.then(|| rfc3339(o.link_expires_at)),
        link_views_left: link.then_some(o.link_views_left),
        history: None,
    }
}

fn history(events: &[VoucherEvent]) -> Vec<Transition<'_>> {
    events
        .iter()
        .map(|e| Transition {
            at: rfc3339(e.at),
            actor: &e.actor,
            from: &e.from_state,
            to: &e.to_state,
            reason: &e.reason,
        })
        .collect()
}

/// A JSON body built from borrowed views (so a code is copied once, into
/// the body).
fn orders(state: &ApiState) -> Orders {
    Orders::new(state.vault.clone(), state.config.orders.clone()).with_supply(state.supply.clone())
}

/// `POST /v1/orders`: allocates a voucher (earliest code expiry first) and
/// hands its code over, as the code itself or a reveal link.
#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    request_body = PlaceOrder,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Placed and delivered (never cached)", body = Order),
        (status = 200, description = "The same request was made before with this `external_ref`: the original order, with the same voucher", body = Order),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`catalog.not_found`: no product with that SKU in the tenant", body = crate::openapi::ErrorBody),
        (status = 409, description = "`order.out_of_stock`: no voucher of that product and face value is available; `order.idempotency_conflict`: this `external_ref` was used for a different request; `vault.dormant`: repeating a request whose code can no longer be revealed", body = crate::openapi::ErrorBody)
    )
)]
pub async fn place(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<PlaceOrder>,
) -> Result<Response, ApiError> {
    let delivery = match body.delivery.as_str() {
        "code" => Delivery::Code,
        "link" => Delivery::Link,
        _ => return Err(ApiError::invalid("delivery must be \"code\" or \"link\"")),
    };
    let new = NewOrder {
        tenant: body.tenant,
        external_ref: body.external_ref,
        sku: body.sku,
        face_value: body.face_value,
        currency: body.currency,
        customer_ref: body.customer_ref,
        delivery,
    };
    let placed: Placed = orders(&state).place(&who, &ctx, new).await?;
    let status = if placed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    handed_over(&state, status, &placed)
}

/// An order with what it hands over: its code or its reveal link.
fn handed_over(
    state: &ApiState,
    status: StatusCode,
    placed: &Placed,
) -> Result<Response, ApiError> {
    let mut order = view(&placed.order);
    order.code = placed.code.as_ref().map(text).transpose()?;
    order.pin = placed.pin.as_ref().map(text).transpose()?;
    order.revealable_until = placed.revealable_until.map(rfc3339);
    order.link = placed
        .link
        .as_ref()
        .map(|l| format!("{}/v/{l}", state.config.public_url.trim_end_matches('/')));
    json_body(status, &order)
}

/// `GET /v1/orders/{id}`: one order and its voucher's history (never the code).
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "The order's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`order.not_found`: no such order for this caller", body = crate::openapi::ErrorBody)
    )
)]
pub async fn get(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let orders = orders(&state);
    let order = orders.get(&who, &ctx, &id).await?;
    let events = orders.history(&who, &ctx, &order).await?;
    let mut v = view(&order);
    v.history = Some(history(&events));
    json_body(StatusCode::OK, &v)
}

/// `GET /v1/orders`: orders of the caller's tenants, newest first.
#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "orders",
    params(
        ("tenant" = Option<String>, Query, description = "Only this tenant"),
        ("state" = Option<String>, Query, description = "`reserved`, `delivered` or `cancelled`"),
        ("customer_ref" = Option<String>, Query, description = "Only this customer's"),
        ("sku" = Option<String>, Query, description = "Only this product's"),
        ("external_ref" = Option<String>, Query, description = "Only with this reference"),
        ("since" = Option<String>, Query, description = "Placed at or after (RFC 3339)"),
        ("until" = Option<String>, Query, description = "Placed before (RFC 3339)"),
        ("before" = Option<String>, Query, description = "Orders older than this id (`next_before` of the previous page)"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 100, at most 500)")
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The orders", body = OrderList),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`catalog.not_found`: no product with that SKU", body = crate::openapi::ErrorBody)
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    // A map never fails to parse, so odd query strings get our error shape.
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        q.get(name)
            .map(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map(|d| i64::try_from(d.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
                    .map_err(|_| ApiError::invalid(format!("{name} is an RFC 3339 time")))
            })
            .transpose()
    };
    let limit = match q.get("limit") {
        None => 100,
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::invalid("limit is a number from 1 to 500"))?,
    };
    let filter = OrderFilter {
        state: q.get("state").cloned(),
        customer_ref: q.get("customer_ref").cloned(),
        product_id: None,
        external_ref: q.get("external_ref").cloned(),
        since: time("since")?,
        until: time("until")?,
        before_id: q.get("before").cloned(),
        limit,
    };
    let found = orders(&state)
        .list(
            &who,
            &ctx,
            q.get("tenant").map(String::as_str),
            q.get("sku").map(String::as_str),
            filter,
        )
        .await?;
    let full = u32::try_from(found.len()).unwrap_or(u32::MAX) >= limit;
    let list = OrderList {
        orders: found.iter().map(view).collect(),
        next_before: found.last().filter(|_| full).map(|o| o.id.as_str()),
    };
    json_body(StatusCode::OK, &list)
}

/// Body of `POST /v1/orders/{id}/cancel`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    /// Why, for the voucher's history.
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

/// `POST /v1/orders/{id}/cancel`: releases a reserved (undelivered) order's
/// voucher back to stock.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/cancel",
    tag = "orders",
    request_body = CancelOrder,
    params(("id" = String, Path, description = "The order's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled; the voucher is back in stock", body = Order),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`order.not_found`: no such order for this caller", body = crate::openapi::ErrorBody),
        (status = 409, description = "`order.state`: only a reserved order can be cancelled (a delivered code has been handed over)", body = crate::openapi::ErrorBody)
    )
)]
pub async fn cancel(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CancelOrder>,
) -> Result<Response, ApiError> {
    let order = orders(&state).cancel(&who, &ctx, &id, &body.reason).await?;
    json_body(StatusCode::OK, &view(&order))
}

/// Body of `POST /v1/orders/{id}/redeliver` and `POST /v1/orders/{id}/reopen`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reasoned {
    /// Why, for the voucher's history and the audit log.
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

/// `POST /v1/orders/{id}/redeliver`: hands a delivered order's code over
/// again (from the live vault or the archive), as the order was delivered.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/redeliver",
    tag = "orders",
    request_body = Reasoned,
    params(("id" = String, Path, description = "The order's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order with its code, or a fresh reveal link (never cached)", body = Order),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`order.not_found`: no such order for this caller", body = crate::openapi::ErrorBody),
        (status = 409, description = "`order.state`: not delivered; `vault.dormant`: the code's window closed (ask for re-opening)", body = crate::openapi::ErrorBody),
        (status = 429, description = "`order.redelivery_limit`: redelivered as often as 24 hours allow, or `request.rate_limited`", body = crate::openapi::ErrorBody)
    )
)]
pub async fn redeliver(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Reasoned>,
) -> Result<Response, ApiError> {
    let placed = orders(&state)
        .redeliver(&who, &ctx, &id, &body.reason)
        .await?;
    handed_over(&state, StatusCode::OK, &placed)
}

/// `POST /v1/orders/{id}/reopen`: asks for a delivered order's closed
/// reveal window to be re-opened; a security officer other than the asker
/// approves.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/reopen",
    tag = "orders",
    request_body = Reasoned,
    params(("id" = String, Path, description = "The order's id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Asked; waiting for a security officer", body = Order),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`order.not_found`: no such order for this caller", body = crate::openapi::ErrorBody),
        (status = 409, description = "`order.state`: not a delivered order", body = crate::openapi::ErrorBody)
    )
)]
pub async fn reopen(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Reasoned>,
) -> Result<Response, ApiError> {
    let order = orders(&state)
        .request_reopen(&who, &ctx, &id, &body.reason)
        .await?;
    json_body(StatusCode::ACCEPTED, &view(&order))
}

/// `POST /v1/orders/{id}/reopen/approve`: re-opens the code's window for
/// the delivered window (four eyes: not by whoever asked).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/reopen/approve",
    tag = "orders",
    params(("id" = String, Path, description = "The order's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Re-opened", body = Order),
        (status = 403, description = "`auth.forbidden`, or `order.same_person`: the asker cannot approve", body = crate::openapi::ErrorBody),
        (status = 404, description = "`order.not_found`: no such order for this caller", body = crate::openapi::ErrorBody),
        (status = 409, description = "`order.state`: no re-opening is waiting", body = crate::openapi::ErrorBody)
    )
)]
pub async fn approve_reopen(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order = orders(&state).approve_reopen(&who, &ctx, &id).await?;
    json_body(StatusCode::OK, &view(&order))
}

/// Body of `POST /v1/vouchers/archive`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    /// Archive vouchers delivered more than this many days ago (default:
    /// the server's `archive_after_days`).
    #[schema(minimum = 0, maximum = 3650)]
    older_than_days: Option<u32>,
    /// At most this many vouchers (default 100, at most 1000).
    #[schema(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `POST /v1/vouchers/archive`.
#[derive(Serialize, ToSchema)]
pub struct ArchiveResult {
    /// Vouchers moved to the archive vault by this call.
    pub archived: u64,
    /// Vouchers past the age still in the live vault: call again while
    /// this is above 0.
    pub remaining: i64,
}

/// `POST /v1/vouchers/archive`: moves delivered vouchers older than an age
/// to the archive vault, one batch per call.
#[utoipa::path(
    post,
    path = "/v1/vouchers/archive",
    tag = "orders",
    request_body = ArchiveRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One batch archived", body = ArchiveResult),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn archive(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<ArchiveRequest>,
) -> Result<axum::Json<ArchiveResult>, ApiError> {
    let age = match body.older_than_days {
        Some(days) if days > 3650 => {
            return Err(ApiError::invalid("older_than_days is 0 to 3650"));
        }
        Some(days) => u64::from(days) * 86_400,
        None => state.config.orders.archive_after_secs,
    };
    let limit = body.limit.unwrap_or(strongroom_vouchers::archive::BATCH);
    let batch =
        strongroom_vouchers::archive::archive_batch(&state.vault, &who, &ctx, age, limit).await?;
    Ok(axum::Json(ArchiveResult {
        archived: batch.archived,
        remaining: batch.remaining,
    }))
}
