//! Reading the audit log: searches and exports, for auditors, within the
//! tenants they may see.
//!
//! A principal bound to tenants sees only records of those tenants (records
//! of no tenant, such as logins, are for auditors of the whole vault). Every
//! search and export is itself audited, with the names of the filters used.

use strongroom_audit::Outcome;
use strongroom_audit::search::{self, AuditFilter, ExportCursor, SCAN_BUDGET, SearchPage};

use crate::policy::{ALL_TENANTS, Permission, Principal};
use crate::{RequestContext, Vault, VaultError};

/// Most records one search page returns.
pub const MAX_SEARCH_LIMIT: usize = 1_000;

impl Vault {
    /// Up to `limit` records matching `filter`, newest first, from before
    /// `before` (see [`search::search`] for the bounded scan and where to go
    /// on from). Needs `audit:read`.
    pub async fn search_audit(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        filter: AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<SearchPage, VaultError> {
        let filter = self
            .authorize_audit_read(who, ctx, filter, "audit.search")
            .await?;
        let limit = limit.clamp(1, MAX_SEARCH_LIMIT);
        Ok(search::search(&self.stores.audit, &filter, before, limit, SCAN_BUDGET).await?)
    }

    /// The records matching `filter`, oldest first, a page at a time. Needs
    /// `audit:read`.
    pub async fn export_audit(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        filter: AuditFilter,
    ) -> Result<ExportCursor, VaultError> {
        let filter = self
            .authorize_audit_read(who, ctx, filter, "audit.export")
            .await?;
        Ok(ExportCursor::start(self.stores.audit.clone(), filter).await?)
    }

    /// Checks `audit:read` and the tenants asked for, narrows the filter
    /// to the caller's tenants, and audits the attempt.
    pub async fn authorize_audit_read(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        mut filter: AuditFilter,
        action: &str,
    ) -> Result<AuditFilter, VaultError> {
        let u = self.unsealed()?;
        let allowed = who
            .require(Permission::ReadAudit)
            .and_then(|()| narrow_to_tenants(who, &mut filter));
        let (outcome, reason) = match &allowed {
            Ok(()) => (Outcome::Allowed, Some(describe(&filter))),
            Err(e) => (Outcome::Denied, Some(e.code().to_owned())),
        };
        u.audit
            .append_one(self.event(ctx, Some(who), action, None, None, outcome, reason))
            .await?;
        allowed.map(|()| filter)
    }
}

/// A principal bound to tenants reads only their records; naming a tenant
/// it may not act in is refused, not silently emptied.
fn narrow_to_tenants(who: &Principal, filter: &mut AuditFilter) -> Result<(), VaultError> {
    let whole_vault = who.tenants.iter().any(|t| t == ALL_TENANTS);
    match &filter.tenants {
        Some(named) if named.iter().any(|t| !who.may_act_in(t)) => {
            return Err(VaultError::Forbidden("reading that tenant's audit records"));
        }
        Some(_) => {}
        None if !whole_vault => filter.tenants = Some(who.tenants.clone()),
        None => {}
    }
    Ok(())
}

/// The filters used, by name: enough to see what an auditor looked for.
fn describe(filter: &AuditFilter) -> String {
    let mut used = Vec::new();
    if filter.actor.is_some() {
        used.push("actor");
    }
    if filter.tenants.is_some() {
        used.push("tenant");
    }
    if !filter.subjects.is_empty() {
        used.push("subject");
    }
    if filter.action.is_some() {
        used.push("action");
    }
    if filter.outcome.is_some() {
        used.push("outcome");
    }
    if filter.since_ms.is_some() || filter.until_ms.is_some() {
        used.push("time");
    }
    if used.is_empty() {
        "no filter".into()
    } else {
        format!("filters: {}", used.join(", "))
    }
}
