//! The archive job: delivered vouchers older than a configured age move to
//! the archive vault (see `strongroom_vault` for how the code is sealed
//! again and removed from the live vault). Their tokens, fingerprints and
//! histories stay, so an archived code is still a duplicate on import and
//! can be redelivered.

use std::sync::Arc;

use strongroom_audit::Outcome;
use strongroom_vault::{Permission, Principal, RequestContext, Vault, VaultError};

use crate::{VoucherError, guard};

/// Orders archived per batch (one store read, then each voucher).
pub const BATCH: u32 = 100;

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveBatch {
    /// Vouchers moved to the archive.
    pub archived: u64,
    /// Delivered vouchers past the age still in the live vault.
    pub remaining: i64,
}

/// Archives up to `limit` vouchers delivered more than `older_than_secs`
/// ago. The archive spans every tenant, so the caller must be bound to `*`
/// and hold `vouchers:archive`.
pub async fn archive_batch(
    vault: &Arc<Vault>,
    who: &Principal,
    ctx: &RequestContext,
    older_than_secs: u64,
    limit: u32,
) -> Result<ArchiveBatch, VoucherError> {
    const ACTION: &str = "voucher.archive";
    guard::require(vault, ctx, who, ACTION, Permission::ArchiveVouchers).await?;
    if !who.tenants.iter().any(|t| t == "*") {
        let e = VaultError::Forbidden("archiving, which spans every tenant (bind to *)");
        let reason = Some(e.code().to_owned());
        guard::record(
            vault,
            ctx,
            Some(who),
            ACTION,
            None,
            None,
            Outcome::Denied,
            reason,
        )
        .await?;
        return Err(e.into());
    }
    if limit == 0 || limit > 1000 {
        return Err(VoucherError::Invalid("limit is 1 to 1000".into()));
    }
    let now = vault.clock().now_ms();
    let age = i64::try_from(older_than_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let before = now.saturating_sub(age);
    let central = &vault.stores().central;
    let due = central.archivable(before, limit).await?;
    let mut archived = 0;
    'orders: for order in &due {
        let tokens = std::iter::once(&order.token).chain(order.pin_token.as_ref());
        for token in tokens {
            // One voucher that cannot be archived (its code deleted, say)
            // must not hold up the others; it is logged and stays delivered.
            if let Err(e) = vault.archive(who, ctx, &order.tenant, token).await {
                if matches!(
                    e,
                    VaultError::Sealed | VaultError::AuditUnavailable | VaultError::Store(_)
                ) {
                    return Err(e.into());
                }
                tracing::error!(order = %order.id, code = e.code(), "could not archive a voucher");
                continue 'orders;
            }
        }
        let at = vault.clock().now_ms();
        if central
            .mark_archived(&order.voucher_id, &order.tenant, &who.id, at)
            .await?
        {
            archived += 1;
        }
    }
    if archived > 0 {
        let reason = Some(format!("{archived} vouchers delivered before {before}"));
        guard::record(
            vault,
            ctx,
            Some(who),
            ACTION,
            None,
            None,
            Outcome::Allowed,
            reason,
        )
        .await?;
    }
    let remaining = central.count_archivable(before).await?;
    Ok(ArchiveBatch {
        archived,
        remaining,
    })
}
