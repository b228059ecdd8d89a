//! What each role name grants, built-in and custom.
//!
//! Access tokens carry role names, not permissions: what a name grants is
//! looked up on every request, so an approved change to a custom role
//! applies from the next request, and a pending one never applies early.
//! Each node keeps the custom roles in memory, updated at once when this
//! node changes one and reloaded from the central store every few seconds
//! (with the list of disabled principals), so a change made through another
//! node arrives soon after. If those reloads keep failing, custom roles stop
//! granting anything after [`STALE_AFTER`]: a node that cannot learn that a
//! power was withdrawn must not keep granting it.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use strongroom_store::{CentralStore, CustomRoleRecord, StoreError};
use strongroom_vault::{PermissionSet, Role, RowSeals};

/// A custom role as the node holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomRole {
    /// What it grants now.
    pub active: PermissionSet,
    /// What it will grant once a second person approves.
    pub pending: Option<PermissionSet>,
    /// The stored version this was read at.
    pub version: i64,
}

impl CustomRole {
    /// The role as stored. Unknown permission names (from a newer version)
    /// grant nothing rather than failing every request.
    pub fn of(record: &CustomRoleRecord) -> Self {
        let parse = |names: &[String]| {
            names
                .iter()
                .filter_map(|n| strongroom_vault::Permission::parse(n).ok())
                .collect::<PermissionSet>()
        };
        CustomRole {
            active: parse(&record.permissions),
            pending: record.pending.as_deref().map(parse),
            version: record.version,
        }
    }
}

/// How long custom roles are trusted without a successful reload: six
/// reload periods.
pub const STALE_AFTER: Duration = Duration::from_secs(6 * crate::revocation::REFRESH_SECS);

/// The custom roles of the vault.
#[derive(Debug, Default)]
pub struct RoleCatalog {
    custom: RwLock<HashMap<String, CustomRole>>,
    /// When the last reload from the central store succeeded (never, for a
    /// catalog that is only ever told of changes, as in tools and tests).
    refreshed: Mutex<Option<Instant>>,
}

impl RoleCatalog {
    /// What `roles` grant together now. Unknown names grant nothing.
    pub fn permissions(&self, roles: &[String]) -> PermissionSet {
        self.fold(roles, |role| role.active)
    }

    /// What `roles` would grant once every pending change is approved: the
    /// set a grant is judged by, so a role cannot be granted while harmless
    /// and then changed into one that reveals without a second person
    /// seeing both.
    pub fn permissions_if_approved(&self, roles: &[String]) -> PermissionSet {
        self.fold(roles, |role| {
            role.active.union(role.pending.unwrap_or_default())
        })
    }

    fn fold(
        &self,
        roles: &[String],
        custom: impl Fn(&CustomRole) -> PermissionSet,
    ) -> PermissionSet {
        let (builtin, named_custom): (Vec<_>, Vec<_>) =
            roles.iter().partition(|name| Role::builtin(name).is_some());
        let set = builtin
            .iter()
            .filter_map(|name| Role::builtin(name))
            .fold(PermissionSet::EMPTY, |set, r| set.union(r.permissions()));
        // Built-in roles, the common case on every request, need no lock.
        if named_custom.is_empty() {
            return set;
        }
        let stale = self
            .refreshed
            .lock()
            .map_or(true, |at| at.is_some_and(|t| t.elapsed() > STALE_AFTER));
        let Some(map) = self.custom.read().ok().filter(|_| !stale) else {
            return set;
        };
        named_custom.iter().fold(set, |set, name| {
            set.union(map.get(name.as_str()).map(&custom).unwrap_or_default())
        })
    }

    /// True if `name` is a built-in role or a known custom role.
    pub fn exists(&self, name: &str) -> bool {
        Role::builtin(name).is_some() || self.custom.read().is_ok_and(|m| m.contains_key(name))
    }

    /// Records one custom role's state, unless a newer one is known.
    pub fn put(&self, record: &CustomRoleRecord) {
        if let Ok(mut map) = self.custom.write() {
            Self::merge(&mut map, record);
        }
    }

    fn merge(map: &mut HashMap<String, CustomRole>, record: &CustomRoleRecord) {
        let role = CustomRole::of(record);
        match map.get(&record.name) {
            Some(known) if known.version > role.version => {}
            _ => {
                map.insert(record.name.clone(), role);
            }
        }
    }

    /// Reloads every custom role from the central store. Only rows that
    /// carry their seal count: a role widened by SQL grants nothing (its
    /// last good version stays), and while the vault is sealed (`seals` is
    /// `None`) nothing can be checked, so nothing is loaded.
    pub async fn refresh(
        &self,
        central: &dyn CentralStore,
        seals: Option<&RowSeals>,
    ) -> Result<(), StoreError> {
        let Some(seals) = seals else {
            return Ok(());
        };
        let mut records = central.list_custom_roles().await?;
        records.retain(|r| {
            let sealed = seals.verify(strongroom_vault::Row::Role(r));
            if !sealed {
                tracing::error!(role = %r.name, "a custom role failed its seal check: ignored");
            }
            sealed
        });
        // Merged by version: a snapshot read just before this node stored a
        // change must not undo it. Roles are never deleted.
        if let Ok(mut map) = self.custom.write() {
            for record in &records {
                Self::merge(&mut map, record);
            }
        }
        if let Ok(mut at) = self.refreshed.lock() {
            *at = Some(Instant::now());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, permissions: &[&str]) -> CustomRoleRecord {
        CustomRoleRecord {
            name: name.into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            pending: None,
            requested_by: "p".into(),
            created_by: "p".into(),
            created_at: 0,
            updated_at: 0,
            version: 1,
            seal: Vec::new(),
        }
    }

    #[test]
    fn custom_roles_grant_nothing_once_the_catalog_is_stale() {
        let catalog = RoleCatalog::default();
        catalog.put(&record("desk", &["secrets:reveal_masked"]));
        let roles = ["desk".to_owned(), "ingest".to_owned()];
        *catalog.refreshed.lock().unwrap() = Some(Instant::now());
        assert!(
            catalog
                .permissions(&roles)
                .contains(strongroom_vault::Permission::RevealMasked)
        );

        let long_ago = Instant::now().checked_sub(STALE_AFTER + Duration::from_secs(1));
        *catalog.refreshed.lock().unwrap() = long_ago;
        let granted = catalog.permissions(&roles);
        assert!(!granted.contains(strongroom_vault::Permission::RevealMasked));
        // Built-in roles do not depend on the store.
        assert!(granted.contains(strongroom_vault::Permission::Tokenize));
    }

    #[test]
    fn an_older_snapshot_does_not_undo_a_newer_change() {
        let catalog = RoleCatalog::default();
        let mut newer = record("desk", &["secrets:read_metadata"]);
        newer.version = 3;
        catalog.put(&newer);
        catalog.put(&record("desk", &["secrets:reveal_masked"]));
        let granted = catalog.permissions(&["desk".to_owned()]);
        assert_eq!(granted.names(), ["secrets:read_metadata"]);
    }
}
