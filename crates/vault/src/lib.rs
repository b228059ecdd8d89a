//! The vault: the only place in Strongroom where secret plaintext exists.
//!
//! Everything above this crate handles tokens. Here a secret is sealed into
//! an envelope whose associated data binds tenant, class, token and key
//! version; the envelope goes to the vault store and the token with its
//! metadata to the central store. A reveal checks role, tenant and reveal
//! window, opens the envelope, and writes an audit record before the value
//! leaves this crate. Every attempt, allowed or denied, is audited, and an
//! operation whose audit record cannot be written does not happen.
#![forbid(unsafe_code)]
// Tests may panic: a failed unwrap is a failed test, which is the point.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod archive;
mod audit_access;
pub mod cards;
mod class;
mod clock;
mod delivery;
mod error;
pub mod keyring;
pub mod mfa;
pub mod policy;
pub mod risk;
pub mod rows;
mod seal;
mod secrets;

use std::sync::{Arc, RwLock};

use strongroom_audit::{AuditEvent, Outcome};
use strongroom_crypto::KeyBytes;
use strongroom_crypto::shamir::Share;
use strongroom_store::StoreSet;
use tokio::sync::Mutex;

pub use audit_access::{CHECKPOINT_ACTION, CHECKPOINT_ACTOR, MAX_SEARCH_LIMIT};
pub use class::DataClass;
pub use clock::{Clock, ManualClock, SystemClock, rfc3339};
pub use delivery::{DELIVERY_NOTE, LinkClaim, WindowGrant};
pub use error::VaultError;
pub use policy::{Permission, PermissionSet, Principal, Role};
pub use rows::{Row, RowSeals, SealedRow};
pub use seal::{
    Initialized, SealMethod, SealStatus, TOKEN_SIGNING_PURPOSE, VaultIdentity, audit_key,
    checkpoint_key, initialize,
};
pub use secrets::{NewSecret, OnDuplicate, Redaction, Revealed, SecretInfo, Tokenized};
pub use strongroom_crypto::SecretBytes;

use seal::Unsealed;

/// Tunable limits of a vault.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// Reveal window given to a secret stored without one.
    pub default_reveal_window_secs: u64,
    /// Longest reveal window a caller may ask for.
    pub max_reveal_window_secs: u64,
    /// Largest secret value, in bytes.
    pub max_value_bytes: usize,
    /// Largest metadata object, in bytes of JSON.
    pub max_metadata_bytes: usize,
    /// Risk scoring thresholds (`[risk]`).
    pub risk: strongroom_risk::RiskConfig,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            default_reveal_window_secs: 90 * 24 * 3600,
            max_reveal_window_secs: 5 * 366 * 24 * 3600,
            max_value_bytes: 4096,
            max_metadata_bytes: 4096,
            risk: strongroom_risk::RiskConfig::default(),
        }
    }
}

/// Who is asking and from where; carried into every audit record.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Request id, returned to the client and written to the audit log.
    pub request_id: String,
    /// The client's network address.
    pub client_addr: Option<String>,
}

/// Shares given in an unseal attempt are forgotten after this long, so that
/// partial progress (up to threshold − 1 real shares) does not sit in memory
/// indefinitely and a stalled attempt does not block the next one.
pub const UNSEAL_PROGRESS_TTL_MS: i64 = 10 * 60 * 1000;

enum State {
    Sealed {
        progress: Vec<Share>,
        /// When the first share of this attempt arrived (Unix ms).
        started_ms: i64,
    },
    Unsealed(Arc<Unsealed>),
}

/// A vault over a set of stores.
pub struct Vault {
    stores: StoreSet,
    clock: Arc<dyn Clock>,
    config: VaultConfig,
    state: RwLock<State>,
    /// Serialises unseal attempts.
    unsealing: Mutex<()>,
    /// Shown every audit record once durable (detectors, metrics).
    live_tap: std::sync::OnceLock<Arc<dyn strongroom_audit::LiveTap>>,
    /// CVVs, in this process's memory only (see `cards`).
    cvvs: strongroom_cards::CvvVault,
    /// CVVs, sealed, in a store shared by several nodes, when one is set.
    shared_cvvs: std::sync::OnceLock<Arc<dyn strongroom_cards::SharedCvvStore>>,
    /// What risk scoring has learned of cards, customers and addresses.
    risk: strongroom_risk::RiskEngine,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault")
    }
}

impl Vault {
    /// A sealed vault over `stores`.
    pub fn new(stores: StoreSet, clock: Arc<dyn Clock>, config: VaultConfig) -> Self {
        let risk = strongroom_risk::RiskEngine::new(config.risk.clone());
        Self {
            stores,
            clock,
            config,
            state: RwLock::new(State::Sealed {
                progress: Vec::new(),
                started_ms: 0,
            }),
            unsealing: Mutex::new(()),
            live_tap: std::sync::OnceLock::new(),
            cvvs: strongroom_cards::CvvVault::default(),
            shared_cvvs: std::sync::OnceLock::new(),
            risk,
        }
    }

    /// Shows every audit record, once durable, to `tap`, from the next
    /// unseal on; set it before unsealing. Only one tap: false if one was
    /// set already.
    pub fn set_live_tap(&self, tap: Arc<dyn strongroom_audit::LiveTap>) -> bool {
        self.live_tap.set(tap).is_ok()
    }

    /// Keeps CVVs in `store` (sealed here first) instead of this process's
    /// memory, so any node can relay a CVV another took. Set it before
    /// serving; false if one was set already.
    pub fn set_shared_cvv_store(&self, store: Arc<dyn strongroom_cards::SharedCvvStore>) -> bool {
        self.shared_cvvs.set(store).is_ok()
    }

    /// The longest reveal window a secret may be given (for secrets the
    /// server itself reads for as long as they are kept, like supplier
    /// credentials).
    pub fn max_reveal_window_secs(&self) -> u64 {
        self.config.max_reveal_window_secs
    }

    /// The stores (for the identity layer, which keeps principals centrally).
    pub fn stores(&self) -> &StoreSet {
        &self.stores
    }

    /// The vault's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn unsealed(&self) -> Result<Arc<Unsealed>, VaultError> {
        match &*self.state.read().map_err(|_| VaultError::Sealed)? {
            State::Unsealed(u) => Ok(u.clone()),
            State::Sealed { .. } => Err(VaultError::Sealed),
        }
    }

    /// Seal state and unseal progress.
    pub async fn seal_status(&self) -> Result<SealStatus, VaultError> {
        let identity = VaultIdentity::load(&self.stores.vault).await?;
        let (sealed, progress) = match &mut *self.state.write().map_err(|_| VaultError::Sealed)? {
            State::Unsealed(_) => (false, 0),
            State::Sealed {
                progress,
                started_ms,
            } => {
                if !progress.is_empty()
                    && self.clock.now_ms() - *started_ms > UNSEAL_PROGRESS_TTL_MS
                {
                    // Forget expired shares now, not at the next attempt.
                    progress.clear();
                }
                (true, progress.len() as u8)
            }
        };
        Ok(match identity {
            None => SealStatus {
                initialized: false,
                sealed: true,
                threshold: 0,
                shares: 0,
                progress: 0,
                seal_method: String::new(),
                vault_id: None,
            },
            Some(id) => SealStatus {
                initialized: true,
                sealed,
                threshold: id.threshold,
                shares: id.shares,
                progress,
                seal_method: id.seal_method,
                vault_id: Some(id.vault_id),
            },
        })
    }

    /// Accepts one key share. When the threshold is reached the root key is
    /// rebuilt, checked, and the vault unseals. A bad share is refused without
    /// disturbing progress; a full set that rebuilds the wrong key resets it.
    pub async fn submit_share(
        &self,
        text: &str,
        ctx: &RequestContext,
    ) -> Result<SealStatus, VaultError> {
        let _guard = self.unsealing.lock().await;
        let identity = VaultIdentity::load(&self.stores.vault)
            .await?
            .ok_or(VaultError::NotInitialized)?;
        if self.unsealed().is_ok() {
            return self.seal_status().await;
        }
        let share = identity.parse_share(text)?;
        let ready = {
            let mut state = self.state.write().map_err(|_| VaultError::Sealed)?;
            let State::Sealed {
                progress,
                started_ms,
            } = &mut *state
            else {
                return Err(VaultError::Sealed);
            };
            let now = self.clock.now_ms();
            if !progress.is_empty() && now - *started_ms > UNSEAL_PROGRESS_TTL_MS {
                tracing::warn!("unseal progress expired; starting a new attempt");
                progress.clear();
            }
            if progress.is_empty() {
                *started_ms = now;
            }
            if progress.iter().any(|s| s.index() == share.index()) {
                return Err(VaultError::InvalidShare(format!(
                    "share {} was already given in this unseal attempt",
                    share.index()
                )));
            }
            progress.push(share);
            if progress.len() >= usize::from(identity.threshold) {
                Some(std::mem::take(progress))
            } else {
                None
            }
        };
        if let Some(shares) = ready {
            let root = identity.combine(&shares);
            drop(shares);
            let root = root.inspect_err(|_| {
                tracing::warn!("unseal failed: shares did not reconstruct the root key");
            })?;
            self.open_with_root(&root, ctx).await?;
        }
        self.seal_status().await
    }

    /// Unseals with a root key read from a development key file.
    pub async fn unseal_with_root(
        &self,
        root: &KeyBytes,
        ctx: &RequestContext,
    ) -> Result<(), VaultError> {
        let _guard = self.unsealing.lock().await;
        let identity = VaultIdentity::load(&self.stores.vault)
            .await?
            .ok_or(VaultError::NotInitialized)?;
        identity.check_root(root)?;
        self.open_with_root(root, ctx).await
    }

    async fn open_with_root(
        &self,
        root: &KeyBytes,
        ctx: &RequestContext,
    ) -> Result<(), VaultError> {
        let mut unsealed = seal::open_unsealed(root, &self.stores, self.clock.clone()).await?;
        if let Some(tap) = self.live_tap.get() {
            unsealed.audit = unsealed.audit.with_tap(tap.clone());
        }
        let unsealed = Arc::new(unsealed);
        self.check_audit_head(&unsealed).await?;
        unsealed
            .audit
            .append_one(self.event(ctx, None, "sys.unseal", None, None, Outcome::Allowed, None))
            .await?;
        self.seal_rows_from_before(&unsealed, ctx).await?;
        if let Ok(mut state) = self.state.write() {
            *state = State::Unsealed(unsealed);
        }
        tracing::info!("vault unsealed");
        Ok(())
    }

    /// Refuses to unseal onto an audit log that ends before the head this
    /// vault sealed into the vault store (or whose record there is another):
    /// its tail was cut, and numbering on from the cut would hide it. The
    /// watch raises a critical `audit_chain_cut` alert; the message names
    /// the missing records.
    async fn check_audit_head(&self, u: &Unsealed) -> Result<(), VaultError> {
        use strongroom_audit::head::{self, Reach};
        let key = strongroom_crypto::mac::MacKey::new(&u.audit_key);
        let problem = match head::load(&self.stores.vault, &key).await? {
            None => None,
            Some(Err(e)) => Some(format!(
                "{e}: the end of the audit log cannot be trusted, so nothing is appended"
            )),
            Some(Ok(h)) => match head::reach(&self.stores.audit, &h).await? {
                Reach::Reaches => None,
                Reach::EndsBefore { last } => Some(format!(
                    "the audit log was cut: it ends at record {last}, but the vault sealed \
                     record {} as written, so records {}..={} are missing. Nothing is appended \
                     after a cut log: restore the audit store from a backup",
                    h.seq,
                    last + 1,
                    h.seq
                )),
                Reach::Rewritten => Some(format!(
                    "the audit log was cut and written again: record {} is not the one the \
                     vault sealed. Nothing is appended: restore the audit store from a backup",
                    h.seq
                )),
            },
        };
        let Some(what) = problem else {
            return Ok(());
        };
        tracing::error!("{what}");
        if let Some(tap) = self.live_tap.get() {
            tap.append_failed(&strongroom_audit::AuditError::Cut(what.clone()));
        }
        Err(VaultError::AuditCut(what))
    }

    /// Gives rows written before row seals existed their seals, once: at the
    /// first unseal after the upgrade, before any request is served (the
    /// key exists only once unsealed, and doing it here means no operator
    /// step can be forgotten). A sealed marker in the vault store records
    /// that it was done; after it, a row without a seal is tampering, not
    /// history. New vaults write the marker at `init`.
    async fn seal_rows_from_before(
        &self,
        u: &Unsealed,
        ctx: &RequestContext,
    ) -> Result<(), VaultError> {
        const CHUNK: usize = 2_000;
        let identity = VaultIdentity::load(&self.stores.vault)
            .await?
            .ok_or(VaultError::NotInitialized)?;
        let marker = u.row_seals.marker(&identity.vault_id);
        match self.stores.vault.get_meta(rows::ROWS_SEALED_META).await? {
            Some(m) if subtle::ConstantTimeEq::ct_eq(m.as_slice(), marker.as_slice()).into() => {
                return Ok(());
            }
            Some(_) => {
                // A marker the root key did not make: adopt nothing.
                tracing::error!("the row-seal marker in the vault store is forged; no row adopted");
                u.audit
                    .append_one(self.event(
                        ctx,
                        None,
                        "store.tampered",
                        None,
                        Some(rows::ROWS_SEALED_META),
                        Outcome::Denied,
                        Some("row-seal marker does not match".into()),
                    ))
                    .await?;
                return Ok(());
            }
            None => {}
        }
        let mut sealed = 0u64;
        loop {
            let rows = self.stores.central.rows_without_seal(CHUNK).await?;
            if rows.is_empty() {
                break;
            }
            let writes = rows.iter().map(|row| {
                let seal = u.row_seals.seal(Row::of(row));
                async move { self.stores.central.set_first_seal(row, &seal).await }
            });
            for done in futures_util::future::join_all(writes).await {
                done?;
            }
            sealed += rows.len() as u64;
            tracing::info!(rows = sealed, "sealing rows written before row seals");
        }
        self.stores
            .vault
            .put_meta(rows::ROWS_SEALED_META, marker)
            .await?;
        u.audit
            .append_one(self.event(
                ctx,
                None,
                "store.rows_sealed",
                None,
                None,
                Outcome::Allowed,
                Some(format!("{sealed} rows from before row seals sealed")),
            ))
            .await?;
        tracing::info!(
            rows = sealed,
            "every access-deciding row now carries a seal"
        );
        Ok(())
    }

    /// The row-seal key, while unsealed (for lists checked in bulk).
    pub fn row_seals(&self) -> Result<Arc<RowSeals>, VaultError> {
        Ok(self.unsealed()?.row_seals.clone())
    }

    /// The seal `row` must carry when written: the store keeps it, and
    /// every later read for a decision checks it ([`Vault::check_row`]).
    pub fn seal_row(&self, row: Row<'_>) -> Result<Vec<u8>, VaultError> {
        Ok(self.unsealed()?.row_seals.seal(row))
    }

    /// Checks a row read for a decision. One that fails is never acted on:
    /// the refusal is audited as `store.tampered` (which the watch raises as
    /// a critical alert) and returned as [`VaultError::Tampered`].
    pub async fn check_row(&self, row: Row<'_>, ctx: &RequestContext) -> Result<(), VaultError> {
        let u = self.unsealed()?;
        if u.row_seals.verify(row) {
            return Ok(());
        }
        let name = row.name();
        tracing::error!(row = %name, "a stored row failed its seal check: it was changed outside Strongroom");
        u.audit
            .append_one(self.event(
                ctx,
                None,
                "store.tampered",
                row.tenant(),
                Some(&name),
                Outcome::Denied,
                Some("row seal does not match".into()),
            ))
            .await?;
        Err(VaultError::Tampered(name))
    }

    /// A secret's central row, its seal checked if found in scope (see
    /// [`Vault::check_row`]): what every decision about a secret reads.
    pub async fn secret_row(
        &self,
        token: &str,
        scope: &strongroom_store::TenantScope,
        ctx: &RequestContext,
    ) -> Result<strongroom_store::Scoped<strongroom_store::SecretRecord>, VaultError> {
        let found = self.stores.central.get_secret(token, scope).await?;
        if let strongroom_store::Scoped::Found(rec) = &found {
            self.check_row(Row::Secret(rec), ctx).await?;
        }
        Ok(found)
    }

    /// Moves a secret's reveal window to `closes_at`, sealed. `None` if the
    /// row is gone or changed since `rec` was read.
    pub(crate) async fn set_window_sealed(
        &self,
        mut rec: strongroom_store::SecretRecord,
        closes_at: i64,
    ) -> Result<Option<strongroom_store::SecretRecord>, VaultError> {
        let from = std::mem::take(&mut rec.seal);
        rec.window_closes_at = closes_at;
        rec.seal = self.seal_row(Row::Secret(&rec))?;
        let swap = strongroom_store::SealSwap {
            from,
            to: rec.seal.clone(),
        };
        let done = self
            .stores
            .central
            .set_window(&rec.token, &rec.tenant, closes_at, swap)
            .await?;
        Ok(done.then_some(rec))
    }

    /// Marks a secret's row deleted, sealed; false if it is gone or changed
    /// since `rec` was read.
    pub(crate) async fn mark_deleted_sealed(
        &self,
        rec: &strongroom_store::SecretRecord,
    ) -> Result<bool, VaultError> {
        let mut deleted = rec.clone();
        // As the store leaves the row: deleted, its metadata and fingerprint gone.
        deleted.state = strongroom_store::SecretState::Deleted;
        deleted.metadata = None;
        deleted.fingerprint = None;
        let swap = strongroom_store::SealSwap {
            from: rec.seal.clone(),
            to: self.seal_row(Row::Secret(&deleted))?,
        };
        Ok(self
            .stores
            .central
            .mark_deleted(&rec.token, &rec.tenant, swap)
            .await?)
    }

    /// Seals the vault: key material is dropped (and zeroed) as soon as
    /// requests already in flight finish.
    pub async fn seal(&self, who: &Principal, ctx: &RequestContext) -> Result<(), VaultError> {
        let u = self.unsealed()?;
        self.audited_permission(&u, who, ctx, Permission::Seal, "sys.seal")
            .await?;
        drop(u);
        if let Ok(mut state) = self.state.write() {
            *state = State::Sealed {
                progress: Vec::new(),
                started_ms: 0,
            };
        }
        // CVVs live no longer than the unsealed vault.
        self.cvvs.clear();
        tracing::info!("vault sealed");
        Ok(())
    }

    /// Checks a permission that needs no target, recording the decision
    /// either way before returning it.
    async fn audited_permission(
        &self,
        u: &Unsealed,
        who: &Principal,
        ctx: &RequestContext,
        permission: Permission,
        action: &str,
    ) -> Result<(), VaultError> {
        let allowed = who.require(permission);
        let (outcome, reason) = match &allowed {
            Ok(()) => (Outcome::Allowed, None),
            Err(e) => (Outcome::Denied, Some(e.code().to_owned())),
        };
        u.audit
            .append_one(self.event(ctx, Some(who), action, None, None, outcome, reason))
            .await?;
        allowed
    }

    /// Verifies the audit chain (auditors only); the check is itself audited.
    pub async fn verify_audit(
        &self,
        who: &Principal,
        ctx: &RequestContext,
    ) -> Result<strongroom_audit::VerifyReport, VaultError> {
        let u = self.unsealed()?;
        self.audited_permission(&u, who, ctx, Permission::ReadAudit, "audit.verify")
            .await?;
        let key = strongroom_crypto::mac::MacKey::new(&u.audit_key);
        let head = strongroom_audit::head::load(&self.stores.vault, &key).await?;
        let head = match head {
            Some(Err(e)) => return Err(VaultError::AuditCut(e.to_string())),
            Some(Ok(h)) => Some(h),
            None => None,
        };
        Ok(strongroom_audit::verify(&self.stores.audit, &u.audit_key, head.as_ref()).await?)
    }

    /// True while unsealed.
    pub fn is_unsealed(&self) -> bool {
        self.unsealed().is_ok()
    }

    /// Access tokens issued before this time (Unix ms) are refused: the
    /// moment of the last unseal.
    pub fn tokens_valid_from_ms(&self) -> Result<i64, VaultError> {
        Ok(self.unsealed()?.unsealed_at_ms)
    }

    /// Forgets the shares given so far in an unseal attempt.
    pub fn reset_unseal(&self) {
        if let Ok(mut state) = self.state.write()
            && let State::Sealed { progress, .. } = &mut *state
        {
            progress.clear();
        }
    }

    /// The access-token signing key; only while unsealed.
    pub fn token_signing_key(&self) -> Result<Arc<KeyBytes>, VaultError> {
        Ok(self.unsealed()?.token_signing_key.clone())
    }

    /// Appends an audit record for an action decided outside the vault
    /// (authentication, principal management). Fails closed: if the record
    /// cannot be written, neither can the action go ahead.
    pub async fn record(&self, event: AuditEvent) -> Result<(), VaultError> {
        self.unsealed()?.audit.append_one(event).await?;
        Ok(())
    }

    /// Appends several audit records at once, in order (one durable write).
    pub async fn record_all(&self, events: &[AuditEvent]) -> Result<(), VaultError> {
        self.unsealed()?.audit.append(events).await?;
        Ok(())
    }

    /// Builds an audit event stamped with the vault's clock.
    #[allow(clippy::too_many_arguments)]
    pub fn event(
        &self,
        ctx: &RequestContext,
        who: Option<&Principal>,
        action: &str,
        tenant: Option<&str>,
        target: Option<&str>,
        outcome: Outcome,
        reason: Option<String>,
    ) -> AuditEvent {
        let time = rfc3339(self.clock.now_ms());
        event_at(time, ctx, who, action, tenant, target, outcome, reason)
    }
}

/// An audit event at a given (formatted) time: a batch formats its time once.
#[allow(clippy::too_many_arguments)]
pub(crate) fn event_at(
    time: String,
    ctx: &RequestContext,
    who: Option<&Principal>,
    action: &str,
    tenant: Option<&str>,
    target: Option<&str>,
    outcome: Outcome,
    reason: Option<String>,
) -> AuditEvent {
    AuditEvent {
        time,
        request_id: ctx.request_id.clone(),
        actor: who.map_or_else(|| "anonymous".to_owned(), |p| p.id.clone()),
        actor_name: who.map(|p| p.name.clone()),
        action: action.to_owned(),
        tenant: tenant.map(str::to_owned),
        target: target.map(|t| t.chars().take(80).collect()),
        outcome,
        reason,
        purpose: None,
        customer: None,
        client_addr: ctx.client_addr.clone(),
        items: None,
    }
}
