//! JSON request bodies with errors that never echo submitted values.
//!
//! serde's messages can quote the offending input ("invalid type: string
//! \"4111…\""), which for this API may be a secret. Only messages that name
//! a field are passed on; the rest are reduced to their position.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use strongroom_vault::{Principal, RequestContext};

use crate::ApiState;
use crate::error::ApiError;

/// A JSON body parsed with safe error messages.
pub struct ApiJson<T>(pub T);

/// Parses JSON bytes with a message safe to return to the client.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(safe_message(&e)))
}

fn safe_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let names_a_field = ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|p| text.starts_with(p));
    if names_a_field {
        // Field names come from our schema or the caller's keys, never values.
        return format!("request body: {text}");
    }
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => format!(
            "request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ),
        _ => format!(
            "request body: a field has the wrong type or value (line {}, column {})",
            e.line(),
            e.column()
        ),
    }
}

impl<T: DeserializeOwned + Send> FromRequest<ApiState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, Self::Rejection> {
        let ctx = req
            .extensions()
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default();
        let path = req.uri().path().to_owned();
        let bearer = crate::auth::bearer_token(req.headers()).map(str::to_owned);
        let parsed = match Bytes::from_request(req, state).await {
            Ok(bytes) => parse(&bytes),
            Err(e) => Err(ApiError::new(
                e.status(),
                "request.too_large",
                "request body is too large or unreadable",
            )),
        };
        match parsed {
            Ok(value) => Ok(ApiJson(value)),
            Err(e) => {
                let who = bearer.and_then(|t| crate::auth::verify(state, &t).ok());
                record_rejection(state, &ctx, who.as_ref(), &path, e.code).await?;
                Err(e)
            }
        }
    }
}

/// Audits a request refused for its body (as its caller, when the access
/// token checks out). While sealed there is no audit key; such refusals go to
/// the operational log, like unseal attempts.
pub async fn record_rejection(
    state: &ApiState,
    ctx: &RequestContext,
    who: Option<&Principal>,
    path: &str,
    code: &str,
) -> Result<(), ApiError> {
    if !state.vault.is_unsealed() {
        tracing::info!(request_id = %ctx.request_id, path, code, "request refused while sealed");
        return Ok(());
    }
    let event = state.vault.event(
        ctx,
        who,
        "request.rejected",
        None,
        Some(path),
        strongroom_audit::Outcome::Denied,
        Some(code.to_owned()),
    );
    state.vault.record(event).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        value: String,
        n: u32,
    }

    #[test]
    fn errors_do_not_echo_values() {
        let err = parse::<Body>(br#"{"value": "ok", "n": "4111111111111111"}"#).unwrap_err();
        assert!(!err.message.contains("4111"), "{}", err.message);
        let err = parse::<Body>(br#"{"value": 12345678, "n": 1}"#).unwrap_err();
        assert!(!err.message.contains("12345678"), "{}", err.message);
        let err = parse::<Body>(br#"{"n": 1}"#).unwrap_err();
        assert!(
            err.message.contains("missing field `value`"),
            "{}",
            err.message
        );
        let err = parse::<Body>(br#"{"value": "secret-code"#).unwrap_err();
        assert!(!err.message.contains("secret-code"), "{}", err.message);
    }
}
