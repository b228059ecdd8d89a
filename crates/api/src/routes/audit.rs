//! `/v1/audit`: search, export and chain verification for auditors, and
//! one voucher's history.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use strongroom_audit::Outcome;
use strongroom_audit::export::{ExportFormat, format_record};
use strongroom_audit::search::{AuditFilter, FoundRecord, SCAN_BUDGET};
use strongroom_store::{TenantScope, VoucherEvent, VoucherIdentity};
use strongroom_vault::{MAX_SEARCH_LIMIT, Permission, Principal, VaultError, rfc3339};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;

/// The version CEF lines name.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /v1/audit/verify`: walks the chain and names the first bad record.
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The chain walked; the first bad record named", body = crate::openapi::AuditVerification),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn verify(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let report = state.vault.verify_audit(&who, &ctx).await?;
    let proven = report.proven_through();
    Ok(Json(json!({
        "intact": report.is_intact(),
        "verified": report.verified,
        "last_seq": report.last_seq,
        "last_time": report.last_time,
        "sealed_head": report.sealed_head,
        "proven_through": proven,
        "end_proven": report.is_intact() && report.sealed_head.is_some_and(|h| h >= report.last_seq),
        "first_bad": report.first_bad.map(|(seq, problem)| json!({
            "seq": seq,
            "problem": problem.to_string(),
        })),
    })))
}

/// `GET /v1/audit/checkpoint`: the chain head, signed now with the vault's
/// Ed25519 key. Keep it outside the vault: `strongroom audit verify
/// --checkpoint FILE` then proves no record up to it was removed or changed.
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoint",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A signed checkpoint of the chain head", body = crate::openapi::AuditCheckpoint),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn checkpoint(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
) -> Result<Json<strongroom_audit::checkpoint::Checkpoint>, ApiError> {
    Ok(Json(state.vault.export_checkpoint(&who, &ctx).await?))
}

/// One audit record as the API shows it: the record's fields and its
/// sequence number.
#[derive(Serialize, ToSchema)]
pub struct AuditRecordView {
    /// Place in the chain.
    pub seq: u64,
    /// RFC 3339 time.
    pub time: String,
    /// Request id.
    pub request_id: String,
    /// Principal id, or `anonymous`.
    pub actor: String,
    /// Principal name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// What was attempted (`secret.reveal`, `order.place` …).
    pub action: String,
    /// Tenant, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Token, id or principal acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `allowed`, `denied` or `failed`.
    pub outcome: String,
    /// Reason code or note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Declared purpose of a reveal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// A batch request's items: `{item, target?, outcome, reason?}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub items: Option<Value>,
}

impl AuditRecordView {
    fn of(found: FoundRecord) -> Self {
        let e = found.event;
        Self {
            seq: found.seq,
            time: e.time,
            request_id: e.request_id,
            actor: e.actor,
            actor_name: e.actor_name,
            action: e.action,
            tenant: e.tenant,
            target: e.target,
            outcome: outcome_name(e.outcome).into(),
            reason: e.reason,
            purpose: e.purpose,
            client_addr: e.client_addr,
            items: e.items.and_then(|items| serde_json::to_value(items).ok()),
        }
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Allowed => "allowed",
        Outcome::Denied => "denied",
        Outcome::Failed => "failed",
    }
}

/// A page of audit records, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Matching records, newest first.
    pub records: Vec<AuditRecordView>,
    /// Pass as `before` for the next page; absent when nothing older can
    /// match. A page may be short (even empty) and still have a next one:
    /// each search reads a bounded number of records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
    /// Records read to answer.
    pub scanned: usize,
}

type QueryMap = std::collections::HashMap<String, String>;

fn time_param(q: &QueryMap, name: &str) -> Result<Option<i64>, ApiError> {
    q.get(name)
        .map(|t| {
            strongroom_audit::search::time_ms(t)
                .ok_or_else(|| ApiError::invalid(format!("{name} is an RFC 3339 time")))
        })
        .transpose()
}

pub(crate) fn number_param<T: std::str::FromStr>(
    q: &QueryMap,
    name: &str,
) -> Result<Option<T>, ApiError> {
    q.get(name)
        .map(|n| {
            n.parse()
                .map_err(|_| ApiError::invalid(format!("{name} is a positive number")))
        })
        .transpose()
}

/// The filter of a search or export from its query parameters.
async fn filter_of(
    state: &ApiState,
    who: &Principal,
    q: &QueryMap,
) -> Result<AuditFilter, ApiError> {
    let outcome = match q.get("outcome").map(String::as_str) {
        None => None,
        Some("allowed") => Some(Outcome::Allowed),
        Some("denied") => Some(Outcome::Denied),
        Some("failed") => Some(Outcome::Failed),
        Some(_) => return Err(ApiError::invalid("outcome is allowed, denied or failed")),
    };
    let mut subjects: Vec<String> = q.get("token").into_iter().cloned().collect();
    let scope = TenantScope::of(&who.tenants);
    let central = &state.vault.stores().central;
    if let Some(order) = q.get("order") {
        subjects.push(order.clone());
    }
    if let Some(id) = q.get("voucher") {
        // Its tokens and import too; a voucher the caller cannot see
        // matches nothing (its id alone).
        subjects.push(id.clone());
        if who.require(Permission::ReadAudit).is_ok()
            && let Some(v) = central
                .voucher_identity(id, &scope)
                .await
                .map_err(VaultError::from)?
        {
            let events = central
                .voucher_events(id, &v.tenant)
                .await
                .map_err(VaultError::from)?;
            subjects.extend(voucher_subjects(v, &events));
        }
    }
    Ok(AuditFilter {
        actor: q.get("actor").cloned(),
        tenants: q.get("tenant").map(|t| vec![t.clone()]),
        subjects,
        action: q.get("action").cloned(),
        outcome,
        since_ms: time_param(q, "since")?,
        until_ms: time_param(q, "until")?,
    })
}

/// `GET /v1/audit`: searches the audit log, newest first.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(
        ("actor" = Option<String>, Query, description = "Principal id or name"),
        ("tenant" = Option<String>, Query, description = "Only this tenant's records"),
        ("token" = Option<String>, Query, description = "Records about this token (as target or batch item)"),
        ("voucher" = Option<String>, Query, description = "Records about this voucher: its id, code and PIN tokens, and its import"),
        ("order" = Option<String>, Query, description = "Records about this order"),
        ("action" = Option<String>, Query, description = "An action (`secret.reveal`) or a family (`order.*`)"),
        ("outcome" = Option<String>, Query, description = "`allowed`, `denied` or `failed`"),
        ("since" = Option<String>, Query, description = "At or after (RFC 3339)"),
        ("until" = Option<String>, Query, description = "Before (RFC 3339)"),
        ("before" = Option<u64>, Query, description = "Records before this sequence number (`next_before` of the previous page)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1,000)")
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Matching records, newest first", body = AuditPage),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn search(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Query(q): Query<QueryMap>,
) -> Result<Json<AuditPage>, ApiError> {
    let filter = filter_of(&state, &who, &q).await?;
    let before = number_param(&q, "before")?;
    let limit = number_param(&q, "limit")?.unwrap_or(100);
    let page = state
        .vault
        .search_audit(&who, &ctx, filter, before, limit)
        .await?;
    Ok(Json(AuditPage {
        records: page.records.into_iter().map(AuditRecordView::of).collect(),
        next_before: page.next_before,
        scanned: page.scanned,
    }))
}

/// `GET /v1/audit/export`: the records of a time range, oldest first, as
/// JSON Lines or CEF, streamed.
#[utoipa::path(
    get,
    path = "/v1/audit/export",
    tag = "audit",
    params(
        ("format" = Option<String>, Query, description = "`jsonl` (default) or `cef`"),
        ("since" = Option<String>, Query, description = "At or after (RFC 3339)"),
        ("until" = Option<String>, Query, description = "Before (RFC 3339)"),
        ("actor" = Option<String>, Query, description = "Principal id or name"),
        ("tenant" = Option<String>, Query, description = "Only this tenant's records"),
        ("action" = Option<String>, Query, description = "An action or a family (`order.*`)"),
        ("outcome" = Option<String>, Query, description = "`allowed`, `denied` or `failed`")
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One record per line, each with its sequence number", content_type = "application/x-ndjson", body = String),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden)
    )
)]
pub async fn export(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Query(q): Query<QueryMap>,
) -> Result<Response, ApiError> {
    let format: ExportFormat = q
        .get("format")
        .map(|f| f.parse())
        .transpose()
        .map_err(ApiError::invalid)?
        .unwrap_or(ExportFormat::Jsonl);
    let filter = filter_of(&state, &who, &q).await?;
    let cursor = state.vault.export_audit(&who, &ctx, filter).await?;
    let lines = futures_util::stream::unfold(Some(cursor), move |cursor| async move {
        let mut cursor = cursor?;
        match cursor.next_page().await {
            Ok(page) if page.is_empty() => None,
            Ok(page) => {
                let mut text = String::new();
                for found in page {
                    text.push_str(&format_record(format, found.seq, &found.event, VERSION));
                    text.push('\n');
                }
                Some((Ok::<_, std::io::Error>(text), Some(cursor)))
            }
            Err(e) => {
                // The status is sent; a cut-off body is the only signal left,
                // and the server log says why.
                tracing::error!(error = %e, "audit export stopped");
                Some((Err(std::io::Error::other("audit export stopped")), None))
            }
        }
    });
    let content_type = match format {
        ExportFormat::Jsonl => "application/x-ndjson",
        ExportFormat::Cef => "text/plain; charset=utf-8",
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(lines),
    )
        .into_response())
}

/// One voucher's story: its transitions and every audit record about it.
#[derive(Serialize, ToSchema)]
pub struct VoucherHistory {
    /// The voucher.
    pub voucher_id: String,
    /// Tenant.
    pub tenant: String,
    /// State now.
    pub state: String,
    /// Its import.
    pub import_id: String,
    /// Each change of state and each redelivery, oldest first.
    pub transitions: Vec<VoucherStep>,
    /// Audit records about it (import, tokenization, reveals, deliveries,
    /// redeliveries, denials), newest first.
    pub audit: Vec<AuditRecordView>,
    /// Pass as `before` for older audit records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// One change of a voucher's state, or a redelivery.
#[derive(Serialize, ToSchema)]
pub struct VoucherStep {
    /// `transition` or `redelivery`.
    pub kind: String,
    /// RFC 3339.
    pub at: String,
    /// Who.
    pub actor: String,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// Why.
    pub reason: String,
    /// The order concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// `GET /v1/vouchers/{id}/history`: one voucher's full story, for auditors.
#[utoipa::path(
    get,
    path = "/v1/vouchers/{id}/history",
    tag = "audit",
    params(
        ("id" = String, Path, description = "The voucher's id"),
        ("before" = Option<u64>, Query, description = "Audit records before this sequence number"),
        ("limit" = Option<usize>, Query, description = "At most this many audit records (default 100, at most 1,000)")
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The voucher's transitions and audit records", body = VoucherHistory),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`voucher.not_found`: no such voucher for this caller", body = crate::openapi::ErrorBody)
    )
)]
pub async fn voucher_history(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    Path(id): Path<String>,
    Query(q): Query<QueryMap>,
) -> Result<Json<VoucherHistory>, ApiError> {
    let before = number_param(&q, "before")?;
    let limit: usize = number_param(&q, "limit")?.unwrap_or(100);
    let mut filter = state
        .vault
        .authorize_audit_read(&who, &ctx, AuditFilter::default(), "voucher.history")
        .await?;
    let central = &state.vault.stores().central;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "voucher.not_found",
            "no voucher of that id for this caller",
        )
    };
    let voucher = central
        .voucher_identity(&id, &TenantScope::of(&who.tenants))
        .await
        .map_err(VaultError::from)?
        .ok_or_else(not_found)?;
    let events = central
        .voucher_events(&id, &voucher.tenant)
        .await
        .map_err(VaultError::from)?;
    filter.since_ms = Some(voucher.created_at);
    let (id, tenant, voucher_state, import_id) = (
        voucher.id.clone(),
        voucher.tenant.clone(),
        voucher.state.clone(),
        voucher.import_id.clone(),
    );
    filter.subjects = voucher_subjects(voucher, &events);
    let page = strongroom_audit::search::search(
        &state.vault.stores().audit,
        &filter,
        before,
        limit.clamp(1, MAX_SEARCH_LIMIT),
        SCAN_BUDGET,
    )
    .await
    .map_err(VaultError::from)?;
    Ok(Json(VoucherHistory {
        voucher_id: id,
        tenant,
        state: voucher_state,
        import_id,
        transitions: events
            .into_iter()
            .map(|e| VoucherStep {
                kind: e.kind,
                at: rfc3339(e.at),
                actor: e.actor,
                from: e.from_state,
                to: e.to_state,
                reason: e.reason,
                order_id: e.order_id,
            })
            .collect(),
        audit: page.records.into_iter().map(AuditRecordView::of).collect(),
        next_before: page.next_before,
    }))
}

/// Everything audit records name a voucher by: its id, its code's and PIN's
/// tokens, its import and the orders it went to.
fn voucher_subjects(voucher: VoucherIdentity, events: &[VoucherEvent]) -> Vec<String> {
    let mut subjects = vec![voucher.id, voucher.token, voucher.import_id];
    subjects.extend(voucher.pin_token);
    for order in events.iter().filter_map(|e| e.order_id.as_ref()) {
        if !subjects.contains(order) {
            subjects.push(order.clone());
        }
    }
    subjects
}
