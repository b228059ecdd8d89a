//! Reading the audit log: searches and exports, for auditors, within the
//! tenants they may see.
//!
//! A principal bound to tenants sees only records of those tenants (records
//! of no tenant, such as logins, are for auditors of the whole vault). Every
//! search and export is itself audited, with the names of the filters used.

use strongroom_audit::Outcome;
use strongroom_audit::search::{self, AuditFilter, ExportCursor, SCAN_BUDGET, SearchPage};

use strongroom_audit::checkpoint::Checkpoint;

use crate::policy::{ALL_TENANTS, Permission, Principal};
use crate::{RequestContext, Vault, VaultError, VaultIdentity, rfc3339};

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

/// The actor of the periodic checkpoint records.
pub const CHECKPOINT_ACTOR: &str = "system:checkpoint";
/// The action of the periodic checkpoint records.
pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";

impl Vault {
    /// Signs the chain head as it is now; `None` for an empty log.
    async fn sign_head(&self) -> Result<Option<Checkpoint>, VaultError> {
        let u = self.unsealed()?;
        let Some(head) = self.stores.audit.read_back(u64::MAX, 1).await?.pop() else {
            return Ok(None);
        };
        let vault_id = VaultIdentity::load(&self.stores.vault)
            .await?
            .ok_or(VaultError::NotInitialized)?
            .vault_id;
        Ok(Some(Checkpoint::sign(
            &u.checkpoint_key,
            &vault_id,
            head.seq,
            &head.mac,
            &rfc3339(self.clock.now_ms()),
        )))
    }

    /// The periodic checkpoint: signs the chain head and writes the
    /// checkpoint into the log itself (`audit.checkpoint`, the checkpoint as
    /// its `reason`), so that forwarders carry it off-site with the records
    /// it vouches for. Nothing is written when the only record since the
    /// last checkpoint is that checkpoint: an idle log does not grow.
    pub async fn record_checkpoint(&self) -> Result<Option<Checkpoint>, VaultError> {
        let u = self.unsealed()?;
        if let Some(head) = self.stores.audit.read_back(u64::MAX, 1).await?.pop()
            && search::parse_record(&head)
                .is_some_and(|(e, _)| e.action == CHECKPOINT_ACTION && e.actor == CHECKPOINT_ACTOR)
        {
            return Ok(None);
        }
        let Some(checkpoint) = self.sign_head().await? else {
            return Ok(None);
        };
        let body = serde_json::to_string(&checkpoint)
            .map_err(|_| VaultError::Invalid("checkpoint could not be encoded".into()))?;
        let mut event = self.event(
            &RequestContext::default(),
            None,
            CHECKPOINT_ACTION,
            None,
            Some(&checkpoint.seq.to_string()),
            Outcome::Allowed,
            Some(body),
        );
        event.actor = CHECKPOINT_ACTOR.into();
        u.audit.append_one(event).await?;
        Ok(Some(checkpoint))
    }

    /// A checkpoint of the chain head, signed now, for an auditor to keep
    /// outside the vault (needs `audit:read`; audited).
    pub async fn export_checkpoint(
        &self,
        who: &Principal,
        ctx: &RequestContext,
    ) -> Result<Checkpoint, VaultError> {
        let u = self.unsealed()?;
        self.audited_permission(
            &u,
            who,
            ctx,
            Permission::ReadAudit,
            "audit.export_checkpoint",
        )
        .await?;
        // The record of this request is in the log: the head is never empty.
        self.sign_head().await?.ok_or(VaultError::Integrity)
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
