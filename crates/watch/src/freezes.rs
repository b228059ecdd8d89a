//! Frozen principals, checked on every request.
//!
//! The central store holds the freezes; each node keeps them in memory,
//! changed at once when this node freezes or unfreezes, and reloaded from
//! the store every few seconds (with the disabled principals) for changes
//! made through other nodes. Local changes and reloads are serialised, so a
//! reload that read the store just before a local change committed cannot
//! undo it; a freeze the store failed to take stays in force here and is
//! stored again at each reload.

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
    /// Freezes in force here that the store has not taken yet (it failed):
    /// kept through refreshes, and stored again at each one. Its lock also
    /// serialises local changes with refreshes.
    unsaved: tokio::sync::Mutex<HashMap<String, FreezeRecord>>,
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
        let mut unsaved = self.unsaved.lock().await;
        if let Ok(mut set) = self.frozen.write() {
            set.insert(freeze.principal_id.clone(), freeze.clone());
        }
        match central.freeze_principal(freeze.clone()).await {
            Ok(true) => Ok(FreezeOutcome::Changed),
            Ok(false) => Ok(FreezeOutcome::Unchanged),
            Err(e) => {
                unsaved.insert(freeze.principal_id.clone(), freeze);
                Err(e)
            }
        }
    }

    /// Lifts a freeze.
    pub async fn unfreeze(
        &self,
        central: &dyn CentralStore,
        principal_id: &str,
    ) -> Result<FreezeOutcome, StoreError> {
        let mut unsaved = self.unsaved.lock().await;
        let lifted = central.unfreeze_principal(principal_id).await?;
        let was_unsaved = unsaved.remove(principal_id).is_some();
        if let Ok(mut set) = self.frozen.write() {
            set.remove(principal_id);
        }
        Ok(if lifted || was_unsaved {
            FreezeOutcome::Changed
        } else {
            FreezeOutcome::Unchanged
        })
    }

    /// Reloads the freezes from the central store.
    pub async fn refresh(&self, central: &dyn CentralStore) -> Result<(), StoreError> {
        let mut unsaved = self.unsaved.lock().await;
        let mut saved = Vec::new();
        for (id, freeze) in unsaved.iter() {
            if central.freeze_principal(freeze.clone()).await.is_ok() {
                saved.push(id.clone());
            }
        }
        for id in saved {
            unsaved.remove(&id);
        }
        let mut frozen: HashMap<String, FreezeRecord> = central
            .frozen_principals()
            .await?
            .into_iter()
            .map(|f| (f.principal_id.clone(), f))
            .collect();
        frozen.extend(unsaved.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Ok(mut set) = self.frozen.write() {
            *set = frozen;
        }
        Ok(())
    }

    /// How many principals are frozen.
    pub fn count(&self) -> usize {
        self.frozen.read().map_or(0, |set| set.len())
    }
}
