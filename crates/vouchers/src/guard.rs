//! What every voucher operation starts with: check the caller's permission
//! and record the decision in the audit log (fail-closed: an operation
//! whose record cannot be written does not happen).

use strongroom_audit::Outcome;
use strongroom_store::{ProductRecord, TenantScope};
use strongroom_vault::{Permission, Principal, RequestContext, Vault};

use crate::VoucherError;

/// Appends one audit record, as [`Vault::event`] builds it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record(
    vault: &Vault,
    ctx: &RequestContext,
    who: Option<&Principal>,
    action: &str,
    tenant: Option<&str>,
    target: Option<&str>,
    outcome: Outcome,
    reason: Option<String>,
) -> Result<(), VoucherError> {
    let event = vault.event(ctx, who, action, tenant, target, outcome, reason);
    Ok(vault.record(event).await?)
}

/// Refuses (and records the refusal) unless `who` holds `permission`.
pub(crate) async fn require(
    vault: &Vault,
    ctx: &RequestContext,
    who: &Principal,
    action: &str,
    permission: Permission,
) -> Result<(), VoucherError> {
    if let Err(e) = who.require(permission) {
        let reason = Some(e.code().to_owned());
        record(
            vault,
            ctx,
            Some(who),
            action,
            None,
            None,
            Outcome::Denied,
            reason,
        )
        .await?;
        return Err(e.into());
    }
    Ok(())
}

/// The product of `tenant` that `matches` (by SKU or id), if any.
pub(crate) async fn product_of(
    vault: &Vault,
    tenant: &str,
    matches: impl Fn(&ProductRecord) -> bool,
) -> Result<Option<ProductRecord>, VoucherError> {
    Ok(vault
        .stores()
        .central
        .list_products(&TenantScope::one(tenant))
        .await?
        .into_iter()
        .find(|p| matches(p)))
}

/// A reason a person gives for a change (kept in a voucher's history and
/// the audit log): 1 to 500 characters, no control characters. Trimmed.
pub(crate) fn check_reason(reason: &str) -> Result<&str, VoucherError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(VoucherError::Invalid(
            "reason is required (1 to 500 characters, without control characters)".into(),
        ));
    }
    Ok(reason)
}
