//! `POST /v1/relay/{route}/{path}`: the vault puts the card into the
//! request and calls the processor; the caller sees tokens and masked data
//! only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strongroom_audit::Outcome;
use utoipa::ToSchema;

use super::audit as record;
use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// Body of a relay call.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    /// The PAN token of the card the placeholders refer to.
    card_token: String,
    /// A CVV token, for `{{ card.cvv }}`: used up by this call.
    cvv_token: Option<String>,
    /// The upstream method (default `POST`): one the route allows.
    #[schema(value_type = Option<String>, pattern = "^(POST|PUT|PATCH|GET|DELETE)$")]
    method: Option<String>,
    /// The JSON to send, with `{{ card.pan }}`, `{{ card.cvv }}`,
    /// `{{ card.expiry }}`, `{{ card.expiry_month }}`,
    /// `{{ card.expiry_year }}`, `{{ card.holder }}` where the values go.
    #[schema(value_type = Object)]
    body: Value,
}

/// What the processor answered, with any card number masked.
#[derive(Serialize, ToSchema)]
pub struct RelayAnswer {
    /// The upstream's HTTP status.
    pub upstream_status: u16,
    /// Its body: JSON when it was JSON, else text.
    #[schema(value_type = Object)]
    pub body: Value,
}

/// `POST /v1/relay/{route}/{path}`: sends a JSON body with the card's real
/// values to a configured processor, returns its answer masked.
#[utoipa::path(
    post,
    path = "/v1/relay/{route}/{path}",
    tag = "cards",
    request_body = RelayRequest,
    params(
        ("route" = String, Path, description = "A configured relay route"),
        ("path" = String, Path, description = "The path under the route's upstream, one the route allows")
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The upstream's answer, card numbers masked", body = RelayAnswer),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, description = "`auth.forbidden`, `relay.path_not_allowed` or `relay.method_not_allowed`", body = crate::openapi::ErrorBody),
        (status = 404, description = "`relay.no_route`, or `secret.not_found` for the card token", body = crate::openapi::ErrorBody),
        (status = 409, description = "`vault.dormant`: the card's window closed", body = crate::openapi::ErrorBody),
        (status = 502, description = "`relay.upstream`: unreachable, a redirect (never followed), a private address, or an answer over 1 MiB", body = crate::openapi::ErrorBody)
    )
)]
pub async fn relay(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path((route_name, path)): Path<(String, String)>,
    ApiJson(request): ApiJson<RelayRequest>,
) -> Result<Response, ApiError> {
    const ACTION: &str = "card.relay";
    super::require(
        &state,
        &ctx,
        &who,
        strongroom_vault::Permission::RelayCards,
        ACTION,
        Some(&request.card_token),
    )
    .await?;
    let refuse = |status, code: &'static str, message: &'static str| {
        let (state, ctx, who) = (&state, &ctx, &who);
        let target = request.card_token.clone();
        async move {
            record(
                state,
                ctx,
                Some(who),
                ACTION,
                Some(&target),
                Outcome::Denied,
                Some(code.into()),
            )
            .await?;
            Err::<Response, ApiError>(ApiError::new(status, code, message))
        }
    };
    let Some(route) = state.relay.route(&route_name) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "relay.no_route",
            "no relay route of that name",
        )
        .await;
    };
    let method = request.method.as_deref().unwrap_or("POST").to_owned();
    if !route.allows_method(&method) {
        return refuse(
            StatusCode::FORBIDDEN,
            "relay.method_not_allowed",
            "that method is not one this route allows",
        )
        .await;
    }
    let path = format!("/{path}");
    if !route.allows(&path) {
        return refuse(
            StatusCode::FORBIDDEN,
            "relay.path_not_allowed",
            "that path is not one this route allows",
        )
        .await;
    }
    let card = state
        .vault
        .card_for_relay(
            &who,
            &ctx,
            &request.card_token,
            request.cvv_token.as_deref(),
            (&route_name, &route.route.tenants),
        )
        .await?;
    let mut body = request.body;
    if let Err(why) = crate::relay::substitute(&mut body, &card) {
        crate::relay::zeroize_strings(&mut body);
        return Err(ApiError::invalid(format!("body: {why}")));
    }
    let sent = route.send(&method, &path, &body).await;
    // The filled-in body held the card: zeroed before anything else happens.
    crate::relay::zeroize_strings(&mut body);
    drop(body);
    let (outcome, note, answer) = match sent {
        Ok(upstream) => {
            let status = upstream.status;
            // Decoded by its content type, then scrubbed of the card; an
            // answer the relay cannot decode is not passed back at all.
            match crate::relay_mask::redact_answer(
                &upstream.body,
                upstream.content_type.as_deref(),
                &card,
            ) {
                Ok(body) => (
                    Outcome::Allowed,
                    format!("route {route_name}: {method} upstream {status}"),
                    Ok(RelayAnswer {
                        upstream_status: status,
                        body,
                    }),
                ),
                Err(crate::relay_mask::Unreadable(why)) => (
                    Outcome::Failed,
                    format!("route {route_name}: {method} upstream {status}: answer withheld"),
                    Err(why),
                ),
            }
        }
        Err(why) => (
            Outcome::Failed,
            format!("route {route_name}: {method}: {why}"),
            Err(why),
        ),
    };
    record(
        &state,
        &ctx,
        Some(&who),
        ACTION,
        Some(&request.card_token),
        outcome,
        Some(note),
    )
    .await?;
    match answer {
        Ok(answer) => super::json_body(StatusCode::OK, &answer),
        Err(why) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "relay.upstream",
            why,
        )),
    }
}
