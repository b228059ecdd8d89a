//! Disabled principals, checked on every request.
//!
//! Access tokens are self-contained, so disabling a principal would otherwise
//! leave its tokens valid until they expire. Each node keeps the set of
//! disabled principal ids in memory: updated at once when this node disables
//! one, and refreshed from the central store every few seconds so that a
//! principal disabled through another node is refused here soon after.

use std::collections::HashSet;
use std::sync::RwLock;

use strongroom_store::{CentralStore, StoreError, TenantScope};
use strongroom_vault::{Row, RowSeals};

/// How often [`Revocations::refresh`] should run.
pub const REFRESH_SECS: u64 = 5;

/// The set of disabled principal ids.
#[derive(Debug, Default)]
pub struct Revocations {
    disabled: RwLock<HashSet<String>>,
}

impl Revocations {
    /// True if tokens of this principal must be refused.
    pub fn is_revoked(&self, principal_id: &str) -> bool {
        // A poisoned lock means a writer panicked; refuse rather than guess.
        self.disabled
            .read()
            .map_or(true, |set| set.contains(principal_id))
    }

    /// Refuses this principal's tokens from now on.
    pub fn revoke(&self, principal_id: &str) {
        if let Ok(mut set) = self.disabled.write() {
            set.insert(principal_id.to_owned());
        }
    }

    /// Reloads the set from the central store. With `seals` (while
    /// unsealed), a principal whose row fails its seal check counts as
    /// disabled: a `disabled` flag cleared by SQL lets nobody back in.
    pub async fn refresh(
        &self,
        central: &dyn CentralStore,
        seals: Option<&RowSeals>,
    ) -> Result<(), StoreError> {
        let disabled: HashSet<String> = central
            .list_principals(&TenantScope::All)
            .await?
            .into_iter()
            .filter(|p| p.disabled || seals.is_some_and(|s| !s.verify(Row::Principal(p))))
            .map(|p| p.id)
            .collect();
        // Merge rather than replace: a snapshot read just before a local
        // disable committed must not un-revoke it. Disabling is permanent.
        if let Ok(mut set) = self.disabled.write() {
            set.extend(disabled);
        }
        Ok(())
    }
}
