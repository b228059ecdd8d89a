//! What one audit record says.

use serde::{Deserialize, Serialize};

use crate::AuditError;

/// The result of an audited attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Authorised and carried out.
    Allowed,
    /// Refused by policy, authentication or state (dormant, not found …).
    Denied,
    /// Authorised, but failed for an internal reason.
    Failed,
}

/// One audit record. It never contains a secret value: only who, what, which
/// token, the outcome and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Request id, shared with the API response and the server log.
    pub request_id: String,
    /// Principal id, or `anonymous` before authentication.
    pub actor: String,
    /// The principal's name when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor_name: Option<String>,
    /// What was attempted, e.g. `secret.reveal`.
    pub action: String,
    /// Tenant acted in, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenant: Option<String>,
    /// Token acted on (for secrets) or principal acted on.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    /// Allowed, denied or failed.
    pub outcome: Outcome,
    /// Stable reason code for a denial or failure, or a short note.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Declared purpose of a reveal.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub purpose: Option<String>,
    /// The storefront's reference of the customer an order is for (its own
    /// opaque id, not a secret): lets detectors and investigators see one
    /// customer receiving many vouchers.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub customer: Option<String>,
    /// Client network address.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_addr: Option<String>,
    /// For a batch request: what happened to each item. One record per
    /// request keeps who, when and from where in one place, and keeps the
    /// log a log of requests (a batch of 1,000 is one line for a SIEM).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub items: Option<Vec<AuditItem>>,
}

/// One item of a batch request, inside the request's audit record (the
/// record names the tenant: a batch spanning tenants gets one per tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditItem {
    /// Position in the request, from 0 (as in the response).
    pub item: usize,
    /// Token stored, returned or collided with.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    /// Allowed, denied or failed.
    pub outcome: Outcome,
    /// Stable reason code for a refusal or failure, or a short note.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl AuditEvent {
    /// The canonical body: compact JSON with fields in declaration order.
    pub fn to_body(&self) -> Result<String, AuditError> {
        serde_json::to_string(self).map_err(|_| AuditError::Encode)
    }

    /// Parses a stored body.
    pub fn from_body(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}
