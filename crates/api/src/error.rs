//! The one error shape every endpoint returns:
//! `{"error": {"code": "...", "message": "...", "request_id": "..."}}`.
//!
//! Codes are stable and greppable. Messages are written for a person and
//! never contain a secret, a database message, or a hint about whether a
//! token exists in another tenant.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use strongroom_vault::VaultError;

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Extra fields (for example the existing token of a duplicate).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds to wait, sent as `Retry-After` (rate limits).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
            retry_after: None,
        }
    }

    /// 429 `request.rate_limited`, with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "request.rate_limited",
            format!("too many requests: try again in {retry_after_secs} s"),
        );
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// The response, with the request id filled in.
    pub fn response(&self, request_id: &str) -> Response {
        let mut response = (self.status, Json(self.body(request_id))).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }

    /// 400 `request.invalid`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "request.invalid", message)
    }

    /// 401 `auth.unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "auth.unauthenticated", message)
    }

    /// The JSON body, with the request id filled in.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
        });
        if let (Some(extra), Some(obj)) = (&self.extra, error.as_object_mut()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        json!({ "error": error })
    }
}

/// The status code for a vault error.
pub fn status_of(e: &VaultError) -> StatusCode {
    match e {
        VaultError::Sealed
        | VaultError::AuditUnavailable
        | VaultError::AuditCut(_)
        | VaultError::Store(_)
        | VaultError::CvvStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        VaultError::NotInitialized => StatusCode::SERVICE_UNAVAILABLE,
        VaultError::AlreadyInitialized | VaultError::Conflict(_) => StatusCode::CONFLICT,
        VaultError::InvalidShare(_) | VaultError::UnsealFailed => StatusCode::BAD_REQUEST,
        VaultError::Forbidden(_) => StatusCode::FORBIDDEN,
        VaultError::MfaRequired => StatusCode::UNAUTHORIZED,
        VaultError::NotFound => StatusCode::NOT_FOUND,
        VaultError::Dormant | VaultError::Duplicate { .. } => StatusCode::CONFLICT,
        VaultError::Invalid(_) | VaultError::TenantRequired => StatusCode::BAD_REQUEST,
        VaultError::Integrity | VaultError::Crypto(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        ApiError::from(&e)
    }
}

impl From<&VaultError> for ApiError {
    fn from(e: &VaultError) -> Self {
        if let VaultError::Store(inner) = &e {
            // The detail goes to the operator's log, never to the client.
            tracing::error!(error = %inner, "store error");
        }
        let mut out = ApiError::new(status_of(e), e.code(), e.to_string());
        if let VaultError::Duplicate { existing } = e {
            let mut extra = serde_json::Map::new();
            extra.insert("existing_token".into(), existing.clone().into());
            out.extra = Some(extra);
        }
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The request id is filled in by the request-context layer, which
        // finds this marker in the response extensions.
        let mut response = self.response("");
        response.extensions_mut().insert(ErrorMarker(self));
        response
    }
}

/// Carries the error to the request-context layer so it can add the request id.
#[derive(Debug, Clone)]
pub(crate) struct ErrorMarker(pub ApiError);
