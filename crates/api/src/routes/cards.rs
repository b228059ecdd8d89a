//! `/v1/cards`: card numbers behind format-keeping tokens, CVVs held in
//! memory for one use, and a reveal masked to BIN and last four.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use strongroom_vault::cards::NewCard;
use strongroom_vault::rfc3339;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// Body of `POST /v1/cards`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardRequest {
    /// Tenant; may be left out when the credential is bound to one.
    tenant: Option<String>,
    /// The card number: 12 to 19 digits, no spaces, passing Luhn.
    #[schema(value_type = String, pattern = "^[0-9]{12,19}$")]
    pan: Zeroizing<String>,
    /// 1 to 12.
    #[schema(minimum = 1, maximum = 12)]
    expiry_month: u32,
    /// Four digits.
    #[schema(minimum = 1000, maximum = 9999)]
    expiry_year: u32,
    /// The CVV (3 or 4 digits): held in memory only, for one use.
    #[schema(value_type = Option<String>, pattern = "^[0-9]{3,4}$")]
    cvv: Option<Zeroizing<String>>,
    /// Minutes the CVV is kept (1 to 60, default 10).
    #[schema(minimum = 1, maximum = 60)]
    cvv_ttl_mins: Option<u32>,
    /// Cardholder name (at most 100 characters).
    #[schema(max_length = 100)]
    holder: Option<String>,
}

/// A tokenized card.
#[derive(Serialize, ToSchema)]
pub struct CardTokensView {
    /// The PAN token: the card's length, BIN and last four, failing Luhn.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// BIN and last four.
    pub masked_pan: String,
    /// Keyed fingerprint of the card number (hex): equal for the same card
    /// in a tenant, to recognise a returning card.
    pub fingerprint: String,
    /// Expiry month.
    pub expiry_month: u32,
    /// Expiry year.
    pub expiry_year: u32,
    /// The CVV's single-use token, if a CVV was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvv_token: Option<String>,
    /// When the CVV is forgotten (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvv_expires_at: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
}

/// `POST /v1/cards`: tokenizes a card (and holds its CVV for one use).
#[utoipa::path(
    post,
    path = "/v1/cards",
    tag = "cards",
    request_body = CardRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Tokenized; the card number is never returned", body = CardTokensView),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn tokenize(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<CardRequest>,
) -> Result<Response, ApiError> {
    let card = NewCard {
        tenant: body.tenant,
        pan: body.pan,
        expiry_month: body.expiry_month,
        expiry_year: body.expiry_year,
        cvv: body.cvv,
        cvv_ttl_mins: body.cvv_ttl_mins,
        holder: body.holder,
    };
    let t = state.vault.tokenize_card(&who, &ctx, card).await?;
    super::json_body(
        StatusCode::CREATED,
        &CardTokensView {
            token: t.token,
            tenant: t.tenant,
            masked_pan: t.masked,
            fingerprint: t.fingerprint,
            expiry_month: t.expiry_month,
            expiry_year: t.expiry_year,
            cvv_token: t.cvv_token,
            cvv_expires_at: t.cvv_expires_at.map(rfc3339),
            created_at: rfc3339(t.created_at),
        },
    )
}

/// Body of `POST /v1/cards/{token}/reveal`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardRevealRequest {
    /// Why, for the audit log.
    #[schema(min_length = 1, max_length = 200)]
    purpose: String,
    /// The whole number (needs `cards:reveal_full`, which no built-in role
    /// has); otherwise BIN and last four.
    #[serde(default)]
    full: bool,
}

/// A revealed card.
#[derive(Serialize, ToSchema)]
pub struct RevealedCardView {
    /// The token.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// The card number: BIN and last four unless the whole was asked for
    /// and allowed.
    pub pan: String,
    /// Whether `pan` is masked.
    pub masked: bool,
    /// Expiry month.
    pub expiry_month: u32,
    /// Expiry year.
    pub expiry_year: u32,
    /// Cardholder name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

/// `POST /v1/cards/{token}/reveal`: a card, masked to BIN and last four
/// unless the caller may see and asks for the whole number.
#[utoipa::path(
    post,
    path = "/v1/cards/{token}/reveal",
    tag = "cards",
    request_body = CardRevealRequest,
    params(("token" = String, Path, description = "The PAN token")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The card (never cached)", body = RevealedCardView),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "`vault.dormant`: the reveal window closed", body = crate::openapi::ErrorBody)
    )
)]
pub async fn reveal(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<CardRevealRequest>,
) -> Result<Response, ApiError> {
    let card = state
        .vault
        .reveal_card(&who, &ctx, &token, &body.purpose, body.full)
        .await?;
    super::json_body(
        StatusCode::OK,
        &RevealedCardView {
            token: card.token,
            tenant: card.tenant,
            pan: card.pan.to_string(),
            masked: card.masked,
            expiry_month: card.expiry_month,
            expiry_year: card.expiry_year,
            holder: card.holder,
        },
    )
}
