//! The keyring: versioned data keys per tenant and data class, wrapped under
//! a key derived from the root key and unwrapped only in memory.
//!
//! * A scope is `tenant/class`. Its first key is made on first use.
//! * Rotation adds a version; new records use the newest version, and records
//!   sealed under older versions still open.
//! * Each wrapped key's associated data binds its scope and version, so a
//!   wrapped key copied to another scope or version fails to unwrap.
//! * Fingerprint keys (`tenant/fingerprint`) are never rotated: a new
//!   fingerprint key would hide every earlier duplicate.
//! * Nodes sharing a store pick up keys created elsewhere by reloading the
//!   keyring when they meet a version they do not hold, and, for new writes,
//!   at most [`REFRESH`] after another node rotated.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use strongroom_crypto::aead::{EnvelopeKey, context};
use strongroom_crypto::mac::MacKey;
use strongroom_crypto::{KeyBytes, kdf};
use strongroom_store::{RecordStore, StoreError, WrappedKey};
use tokio::sync::Mutex;

use crate::VaultError;

/// Purpose label of the key that wraps the keyring.
const WRAP_PURPOSE: &str = "keyring-wrap-v1";
/// Class name of fingerprint key scopes.
const FINGERPRINT_CLASS: &str = "fingerprint";
/// How stale the newest-version view may be before a write reloads it: a
/// rotation on one node is used for new records by every node within this.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Default)]
struct Loaded {
    data: HashMap<String, BTreeMap<u32, Arc<EnvelopeKey>>>,
    fingerprint: HashMap<String, Arc<MacKey>>,
}

/// The unwrapped keyring of an unsealed vault.
pub struct Keyring {
    wrap: EnvelopeKey,
    store: Arc<dyn RecordStore>,
    loaded: RwLock<Loaded>,
    /// Serialises key creation on this node.
    create: Mutex<()>,
    clock: Arc<dyn crate::Clock>,
    /// When the keyring was last read from the store (monotonic).
    loaded_at: std::sync::Mutex<std::time::Instant>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring([redacted])")
    }
}

fn scope_of(tenant: &str, class: &str) -> String {
    format!("{tenant}/{class}")
}

fn wrap_context(scope: &str, version: u32) -> Vec<u8> {
    context("keyring", &[scope.as_bytes(), &version.to_be_bytes()])
}

impl Keyring {
    /// Unwraps every stored key. A wrapped key that fails its integrity check
    /// stops the unseal: a tampered keyring is not something to work around.
    pub async fn load(
        root: &KeyBytes,
        store: Arc<dyn RecordStore>,
        clock: Arc<dyn crate::Clock>,
    ) -> Result<Self, VaultError> {
        let wrap = EnvelopeKey::new(&kdf::derive(root, WRAP_PURPOSE)?)?;
        let ring = Self {
            wrap,
            store,
            loaded: RwLock::new(Loaded::default()),
            create: Mutex::new(()),
            clock,
            loaded_at: std::sync::Mutex::new(std::time::Instant::now()),
        };
        ring.reload().await?;
        Ok(ring)
    }

    async fn reload(&self) -> Result<(), VaultError> {
        let wrapped = self.store.load_keyring().await?;
        let mut fresh = Loaded::default();
        for w in wrapped {
            let key = self.unwrap_key(&w)?;
            match w.scope.rsplit_once('/') {
                Some((tenant, FINGERPRINT_CLASS)) => {
                    fresh
                        .fingerprint
                        .insert(tenant.to_owned(), Arc::new(MacKey::new(&key)));
                }
                _ => {
                    fresh
                        .data
                        .entry(w.scope.clone())
                        .or_default()
                        .insert(w.version, Arc::new(EnvelopeKey::new(&key)?));
                }
            }
        }
        if let Ok(mut loaded) = self.loaded.write() {
            *loaded = fresh;
        }
        Ok(())
    }

    fn unwrap_key(&self, w: &WrappedKey) -> Result<KeyBytes, VaultError> {
        let plain = self
            .wrap
            .open(&wrap_context(&w.scope, w.version), &w.wrapped)
            .map_err(|_| VaultError::Integrity)?;
        Ok(KeyBytes::from_slice(plain.expose())?)
    }

    fn newest(&self, scope: &str) -> Option<(u32, Arc<EnvelopeKey>)> {
        let loaded = self.loaded.read().ok()?;
        loaded
            .data
            .get(scope)
            .and_then(|versions| versions.iter().next_back())
            .map(|(v, k)| (*v, k.clone()))
    }

    fn version(&self, scope: &str, version: u32) -> Option<Arc<EnvelopeKey>> {
        let loaded = self.loaded.read().ok()?;
        loaded
            .data
            .get(scope)
            .and_then(|v| v.get(&version))
            .cloned()
    }

    /// The key new records in (tenant, class) are sealed with, creating
    /// version 1 on first use.
    pub async fn current(
        &self,
        tenant: &str,
        class: &str,
    ) -> Result<(u32, Arc<EnvelopeKey>), VaultError> {
        let scope = scope_of(tenant, class);
        if self.due_for_refresh() {
            self.reload().await?;
        }
        if let Some(found) = self.newest(&scope) {
            return Ok(found);
        }
        let _guard = self.create.lock().await;
        if let Some(found) = self.newest(&scope) {
            return Ok(found);
        }
        self.add_version(&scope, 1).await?;
        self.newest(&scope).ok_or(VaultError::Integrity)
    }

    /// Whether this caller should reload: true for one caller per
    /// [`REFRESH`] period, so the others never wait for it.
    fn due_for_refresh(&self) -> bool {
        let Ok(mut at) = self.loaded_at.lock() else {
            return true;
        };
        if at.elapsed() < REFRESH {
            return false;
        }
        *at = std::time::Instant::now();
        true
    }

    /// The key of a given version, reloading the keyring once if another
    /// node created it.
    pub async fn get(
        &self,
        tenant: &str,
        class: &str,
        version: u32,
    ) -> Result<Arc<EnvelopeKey>, VaultError> {
        let scope = scope_of(tenant, class);
        if let Some(key) = self.version(&scope, version) {
            return Ok(key);
        }
        self.reload().await?;
        // A record naming a key version that does not exist was tampered with.
        self.version(&scope, version).ok_or(VaultError::Integrity)
    }

    /// Adds a new version to (tenant, class) and returns its number.
    pub async fn rotate(&self, tenant: &str, class: &str) -> Result<u32, VaultError> {
        let scope = scope_of(tenant, class);
        let _guard = self.create.lock().await;
        // Start from the store's view so rotations on other nodes count.
        self.reload().await?;
        let next = self.newest(&scope).map(|(v, _)| v + 1).unwrap_or(1);
        self.add_version(&scope, next).await?;
        Ok(next)
    }

    /// The fingerprint key of a tenant, created on first use.
    pub async fn fingerprint_key(&self, tenant: &str) -> Result<Arc<MacKey>, VaultError> {
        let lookup = |ring: &Self| {
            ring.loaded
                .read()
                .ok()
                .and_then(|l| l.fingerprint.get(tenant).cloned())
        };
        if let Some(k) = lookup(self) {
            return Ok(k);
        }
        let _guard = self.create.lock().await;
        if let Some(k) = lookup(self) {
            return Ok(k);
        }
        self.add_version(&scope_of(tenant, FINGERPRINT_CLASS), 1)
            .await?;
        lookup(self).ok_or(VaultError::Integrity)
    }

    /// Creates, wraps and stores a key version, then reloads. If another node
    /// stored the same version first, its key is used instead.
    async fn add_version(&self, scope: &str, version: u32) -> Result<(), VaultError> {
        let key = KeyBytes::generate()?;
        let wrapped = self
            .wrap
            .seal(&wrap_context(scope, version), key.expose())?;
        let added = self
            .store
            .add_key(WrappedKey {
                scope: scope.to_owned(),
                version,
                wrapped,
                created_at: self.clock.now_ms(),
            })
            .await;
        match added {
            Ok(()) | Err(StoreError::Conflict(_)) => self.reload().await,
            Err(e) => Err(e.into()),
        }
    }
}
