//! Frozen principals, checked on every request.
//!
//! The central store holds the freezes; each node keeps them in memory,
//! changed at once when this node freezes or unfreezes, and reloaded from
//! the store every few seconds (with the disabled principals) for changes
//! made through other nodes. Local
//! changes and reloads are serialised, so a reload that read the store just
//! before a local change committed cannot undo it.

use std::collections::HashMap;
use std::sync::RwLock;

use strongroom_store::{CentralStore, FreezeRecord, StoreError};

/// What a freeze or unfreeze did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeOutcome {
    /// The state changed.
    Changed,
    /// It already was so.
    Unchanged,
}

/// The frozen principals, by id.
#[derive(Debug, Default)]
pub struct Freezes {
    frozen: RwLock<HashMap<String, FreezeRecord>>,
    changes: tokio::sync::Mutex<()>,
}

impl Freezes {
    /// True if requests of this principal must be refused. A poisoned lock
    /// (a writer panicked) refuses rather than guesses.
    pub fn is_frozen(&self, principal_id: &str) -> bool {
        self.frozen
            .read()
            .map_or(true, |set| set.contains_key(principal_id))
    }

    /// The freeze of a principal, if any.
    pub fn get(&self, principal_id: &str) -> Option<FreezeRecord> {
        self.frozen
            .read()
            .ok()
            .and_then(|set| set.get(principal_id).cloned())
    }

    /// Freezes a principal: refused here from this moment, stored for the
    /// other nodes (and restarts) next.
    pub async fn freeze(
        &self,
        central: &dyn CentralStore,
        freeze: FreezeRecord,
    ) -> Result<FreezeOutcome, StoreError> {
        let _serial = self.changes.lock().await;
        if let Ok(mut set) = self.frozen.write() {
            set.insert(freeze.principal_id.clone(), freeze.clone());
        }
        Ok(if central.freeze_principal(freeze).await? {
            FreezeOutcome::Changed
        } else {
            FreezeOutcome::Unchanged
        })
    }

    /// Lifts a freeze.
    pub async fn unfreeze(
        &self,
        central: &dyn CentralStore,
        principal_id: &str,
    ) -> Result<FreezeOutcome, StoreError> {
        let _serial = self.changes.lock().await;
        let lifted = central.unfreeze_principal(principal_id).await?;
        if let Ok(mut set) = self.frozen.write() {
            set.remove(principal_id);
        }
        Ok(if lifted {
            FreezeOutcome::Changed
        } else {
            FreezeOutcome::Unchanged
        })
    }

    /// Reloads the freezes from the central store.
    pub async fn refresh(&self, central: &dyn CentralStore) -> Result<(), StoreError> {
        let _serial = self.changes.lock().await;
        let stored: HashMap<String, FreezeRecord> = central
            .frozen_principals()
            .await?
            .into_iter()
            .map(|f| (f.principal_id.clone(), f))
            .collect();
        if let Ok(mut set) = self.frozen.write() {
            *set = stored;
        }
        Ok(())
    }

    /// How many principals are frozen.
    pub fn count(&self) -> usize {
        self.frozen.read().map_or(0, |set| set.len())
    }
}
