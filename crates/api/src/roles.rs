//! What each role name grants, built-in and custom.
//!
//! Access tokens carry role names, not permissions: what a name grants is
//! looked up on every request, so an approved change to a custom role
//! applies from the next request, and a pending one never applies early.
//! Each node keeps the custom roles in memory, updated at once when this
//! node changes one and reloaded from the central store every few seconds
//! (with the list of disabled principals), so a change made through another
//! node arrives soon after.

use std::collections::HashMap;
use std::sync::RwLock;

use strongroom_store::{CentralStore, CustomRoleRecord, StoreError};
use strongroom_vault::{PermissionSet, Role};

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

/// The custom roles of the vault.
#[derive(Debug, Default)]
pub struct RoleCatalog {
    custom: RwLock<HashMap<String, CustomRole>>,
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
        let map = self.custom.read();
        roles.iter().fold(PermissionSet::EMPTY, |set, name| {
            let granted = match Role::builtin(name) {
                Some(builtin) => builtin.permissions(),
                None => map
                    .as_ref()
                    .ok()
                    .and_then(|m| m.get(name).map(&custom))
                    .unwrap_or_default(),
            };
            set.union(granted)
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

    /// Reloads every custom role from the central store.
    pub async fn refresh(&self, central: &dyn CentralStore) -> Result<(), StoreError> {
        let records = central.list_custom_roles().await?;
        // Merged by version: a snapshot read just before this node stored a
        // change must not undo it. Roles are never deleted.
        if let Ok(mut map) = self.custom.write() {
            for record in &records {
                Self::merge(&mut map, record);
            }
        }
        Ok(())
    }
}
