//! `POST /v1/risk/score`: a card payment's fraud risk, 0 to 100, with the
//! reasons.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use strongroom_vault::risk::RiskRequest;
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// Body of `POST /v1/risk/score`. Name the card by `card_token` or by
/// `fingerprint`, not both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// Tenant; may be left out when the credential is bound to one.
    tenant: Option<String>,
    /// The card's PAN token.
    card_token: Option<String>,
    /// The card's fingerprint, as tokenization returned it.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    fingerprint: Option<String>,
    /// Amount in minor units (pence, cents).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    amount: u64,
    /// ISO 4217 code, e.g. `GBP`.
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    /// Your reference for the customer.
    #[schema(min_length = 1, max_length = 200)]
    customer_ref: String,
    /// The customer's IP address, if known.
    #[schema(value_type = Option<String>, format = "ip")]
    ip: Option<std::net::IpAddr>,
}

/// One part of a score.
#[derive(Serialize, ToSchema)]
pub struct ReasonView {
    /// Stable code, e.g. `card_velocity_minute` (docs/cards.md lists them).
    pub code: String,
    /// Points it added.
    pub points: u8,
    /// The figures behind it.
    pub detail: String,
}

/// The figures a score came from (this payment included).
#[derive(Serialize, ToSchema)]
pub struct FeaturesView {
    /// The card's payments in about the last minute, hour and day.
    pub card_velocity: [f64; 3],
    /// The customer's payments in about the last minute, hour and day.
    pub customer_velocity: [f64; 3],
    /// The address's payments in about the last minute, hour and day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_velocity: Option<[f64; 3]>,
    /// The card's earlier payments seen.
    pub card_uses: u64,
    /// Distinct cards of the customer in the last day.
    pub customer_cards_day: usize,
    /// Cards new to the vault from the address in the last hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_new_cards_hour: Option<usize>,
    /// Distinct customers of the card in the last day.
    pub card_customers_day: usize,
    /// Standard deviations above the card's usual amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_z: Option<f64>,
    /// The card's usual amount in this currency, minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usual_amount: Option<u64>,
}

/// A payment's risk.
#[derive(Serialize, ToSchema)]
pub struct ScoreView {
    /// 0 (nothing unusual) to 100.
    pub score: u8,
    /// `approve`, `review` or `decline`, by the configured thresholds.
    pub decision: String,
    /// What added points, largest first.
    pub reasons: Vec<ReasonView>,
    /// The figures behind it.
    pub features: FeaturesView,
}

/// `POST /v1/risk/score`: scores a card payment from what the vault has
/// learned of its card, customer and address, then learns it. Audited as
/// `risk.score`.
#[utoipa::path(
    post,
    path = "/v1/risk/score",
    tag = "cards",
    request_body = ScoreRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The score, decision and reasons", body = ScoreView),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound)
    )
)]
pub async fn score(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    ApiJson(body): ApiJson<ScoreRequest>,
) -> Result<Response, ApiError> {
    let request = RiskRequest {
        tenant: body.tenant,
        card_token: body.card_token,
        fingerprint: body.fingerprint,
        amount: body.amount,
        currency: body.currency,
        customer_ref: body.customer_ref,
        ip: body.ip,
    };
    let a = state.vault.score_risk(&who, &ctx, request).await?;
    let f = a.features;
    super::json_body(
        StatusCode::OK,
        &ScoreView {
            score: a.score,
            decision: a.decision.as_str().into(),
            reasons: a
                .reasons
                .into_iter()
                .map(|r| ReasonView {
                    code: r.code.into(),
                    points: r.points,
                    detail: r.detail,
                })
                .collect(),
            features: FeaturesView {
                card_velocity: f.card_velocity,
                customer_velocity: f.customer_velocity,
                address_velocity: f.address_velocity,
                card_uses: f.card_uses,
                customer_cards_day: f.customer_cards_day,
                address_new_cards_hour: f.address_new_cards_hour,
                card_customers_day: f.card_customers_day,
                amount_z: f.amount_z,
                usual_amount: f.usual_amount,
            },
        },
    )
}
