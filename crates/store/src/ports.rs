//! The storage ports: what the vault needs from each store.

use std::sync::Arc;

use async_trait::async_trait;

use crate::StoreError;

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// The tenants a query may see. Every read and change of a secret's
/// record takes one, so a handler that forgets to check a tenant still cannot
/// get another tenant's record out of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant: for operators bound to `*` and for the vault's own work.
    All,
    /// Only these tenants.
    Only(Vec<String>),
}

impl TenantScope {
    /// The scope of a principal bound to `tenants` (`*` meaning all).
    pub fn of(tenants: &[String]) -> Self {
        if tenants.iter().any(|t| t == "*") {
            TenantScope::All
        } else {
            TenantScope::Only(tenants.to_vec())
        }
    }

    /// Exactly one tenant.
    pub fn one(tenant: &str) -> Self {
        TenantScope::Only(vec![tenant.to_owned()])
    }

    /// True if records of `tenant` are in scope.
    pub fn admits(&self, tenant: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Only(tenants) => tenants.iter().any(|t| t == tenant),
        }
    }

    /// True if every one of `tenants` is in scope (for principals, which
    /// may be bound to several).
    pub fn admits_all(&self, tenants: &[String]) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Only(_) => tenants.iter().all(|t| t != "*" && self.admits(t)),
        }
    }

    /// `record` if its tenant is in scope; otherwise only the name of the
    /// tenant that owns it, so the refusal can be audited for that tenant.
    pub fn filter(&self, record: Option<SecretRecord>) -> Scoped<SecretRecord> {
        match record {
            None => Scoped::Missing,
            Some(r) if self.admits(&r.tenant) => Scoped::Found(r),
            Some(r) => Scoped::OtherTenant(r.tenant),
        }
    }
}

/// The answer to a tenant-scoped look-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scoped<T> {
    /// Found, in scope.
    Found(T),
    /// Exists, but belongs to this tenant, outside the scope. Nothing else
    /// about it leaves the store.
    OtherTenant(String),
    /// No such record.
    Missing,
}

impl<T> Scoped<T> {
    /// The record if found in scope.
    pub fn found(self) -> Option<T> {
        match self {
            Scoped::Found(t) => Some(t),
            _ => None,
        }
    }
}

/// Lifecycle of a secret's central record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretState {
    /// Stored and (within its window) revealable.
    Active,
    /// Deleted: the sealed record is gone; the row remains as a tombstone.
    Deleted,
}

impl SecretState {
    /// Stable text form used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretState::Active => "active",
            SecretState::Deleted => "deleted",
        }
    }

    /// Parses the stored text form.
    pub fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "active" => Ok(SecretState::Active),
            "deleted" => Ok(SecretState::Deleted),
            _ => Err(StoreError::Malformed("unknown secret state")),
        }
    }
}

/// A secret's row in the central store: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// The opaque token that stands for the secret.
    pub token: String,
    /// Owning tenant.
    pub tenant: String,
    /// Data class (`voucher_code`, …).
    pub class: String,
    /// Key version that sealed the record.
    pub key_version: u32,
    /// Keyed fingerprint of the value, for duplicate detection.
    pub fingerprint: Option<[u8; 32]>,
    /// Whether the fingerprint must be unique in (tenant, class).
    pub fingerprint_unique: bool,
    /// Caller metadata, as a JSON object text.
    pub metadata: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// When the reveal window closes, Unix milliseconds.
    pub window_closes_at: i64,
    /// Principal id that created it.
    pub created_by: String,
    /// Lifecycle state.
    pub state: SecretState,
    /// The vault's MAC over this row's id and every field that decides
    /// access (see `docs/architecture.md`, "Row seals"). The store keeps it
    /// and never judges it; empty only on rows from before row seals.
    pub seal: Vec<u8>,
}

/// What happened to one record offered to [`CentralStore::insert_secrets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored.
    Inserted,
    /// Refused: an active record with the same unique fingerprint exists.
    Duplicate {
        /// The existing record's token.
        existing: String,
    },
}

/// A service or human principal as stored. `secret_hash` is a PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRecord {
    /// Stable internal id.
    pub id: String,
    /// Public client identifier used to authenticate.
    pub client_id: String,
    /// Human-readable unique name.
    pub name: String,
    /// Role names.
    pub roles: Vec<String>,
    /// Tenants the principal may act in (`*` means all).
    pub tenants: Vec<String>,
    /// Hash of the client secret (argon2id PHC string).
    pub secret_hash: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Disabled principals cannot obtain tokens.
    pub disabled: bool,
    /// Principal id of whoever created it (empty for bootstrap principals).
    pub created_by: String,
    /// Waiting for a second person's approval (dual control); cannot obtain tokens.
    pub pending_approval: bool,
    /// `service` (client credentials) or `user` (a person: password and TOTP).
    pub kind: String,
    /// A service's previous client-secret hash, still accepted until
    /// `previous_valid_until` after a rotation; empty if none.
    pub previous_secret_hash: String,
    /// When the previous secret stops working, Unix milliseconds.
    pub previous_valid_until: i64,
    /// The vault's MAC over this row's id and every field that decides
    /// access (see `docs/architecture.md`, "Row seals"). The store keeps it
    /// and never judges it; empty only on rows from before row seals.
    pub seal: Vec<u8>,
}

/// A retailer whose vouchers the business holds, in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetailerRecord {
    /// Stable id (`rt_…`).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Unique name within the tenant.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Principal id that created it.
    pub created_by: String,
}

/// A product (SKU) of a retailer, with the face values it comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    /// Stable id (`pr_…`).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// The retailer's id.
    pub retailer_id: String,
    /// Unique stock-keeping unit within the tenant.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// ISO 4217 code of the face values.
    pub currency: String,
    /// Face values it comes in, in minor units (pence, cents), ascending.
    pub denominations: Vec<i64>,
    /// Below this many available vouchers of a denomination, stock is low.
    pub low_stock_threshold: i64,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Principal id that created it.
    pub created_by: String,
}

/// One voucher in stock, by token: the code itself is in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherRecord {
    /// Stable id (`vc_…`).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// The product's id.
    pub product_id: String,
    /// Face value in minor units.
    pub face_value: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The vault token of the code; one voucher per token.
    pub token: String,
    /// The vault token of the PIN, if the voucher has one.
    pub pin_token: Option<String>,
    /// When the code itself expires, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// The retailer's serial number, if given.
    pub serial: Option<String>,
    /// `available`, `reserved`, `delivered`, `archived`, `expired` or `voided`.
    pub state: String,
    /// The import it came in.
    pub import_id: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

/// How many vouchers of one product, face value and state a tenant holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockCount {
    /// Tenant.
    pub tenant: String,
    /// The product's id.
    pub product_id: String,
    /// Face value in minor units.
    pub face_value: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Voucher state.
    pub state: String,
    /// Vouchers.
    pub count: i64,
    /// Of those, vouchers whose code expires before the cut-off given.
    pub expiring: i64,
    /// Of those, vouchers whose code has already expired (at the `now` given).
    pub expired: i64,
}

/// An import job: one file of codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    /// Stable id (`im_…`).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// The retailer whose codes the file holds.
    pub retailer_id: String,
    /// `running`, `completed`, `dry_run` or `failed`.
    pub status: String,
    /// Data rows read.
    pub rows: i64,
    /// Rows whose code is now in stock.
    pub accepted: i64,
    /// Rows refused for their content.
    pub rejected: i64,
    /// Rows whose code was already held.
    pub duplicates: i64,
    /// Who ran it.
    pub created_by: String,
    /// Start, Unix milliseconds.
    pub created_at: i64,
    /// End, Unix milliseconds (0 while running).
    pub finished_at: i64,
}

/// A role defined by an administrator: a named set of permissions. A
/// definition or change that needs a second person waits in `pending`
/// until approved; meanwhile `permissions` (possibly empty) apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRoleRecord {
    /// Unique name (never a built-in role's).
    pub name: String,
    /// Permission names in force.
    pub permissions: Vec<String>,
    /// Permission names waiting for approval, if a change is pending.
    pub pending: Option<Vec<String>>,
    /// Who asked for the pending change (or made the last one).
    pub requested_by: String,
    /// Who created the role.
    pub created_by: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last change, Unix milliseconds.
    pub updated_at: i64,
    /// Incremented by every change; changes are conditional on it.
    pub version: i64,
    /// The vault's MAC over this row's id and every field that decides
    /// access (see `docs/architecture.md`, "Row seals"). The store keeps it
    /// and never judges it; empty only on rows from before row seals.
    pub seal: Vec<u8>,
}

/// How a person (a principal of kind `user`) logs in. Holds no secret in
/// clear: hashes, and a TOTP seed sealed by the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    /// The principal's id.
    pub principal_id: String,
    /// argon2id PHC string of the password; empty until enrolment.
    pub password_hash: String,
    /// argon2id PHC string of the one-time enrolment code; empty once used.
    pub enrolment_hash: String,
    /// The TOTP seed, sealed by the vault; empty until enrolment.
    pub totp_sealed: Vec<u8>,
    /// Enrolment confirmed with a first code: the person can log in.
    pub enrolled: bool,
    /// The last TOTP time step accepted; codes of it or earlier are refused.
    pub totp_last_step: i64,
    /// Login attempts since the last success (each attempt is counted
    /// before it is checked; a success clears it). Drives the back-off.
    pub failed_logins: i64,
    /// When the last attempt was claimed, Unix milliseconds (0: never).
    pub last_failure_at: i64,
    /// Wrong second factors after a right password since the last success.
    /// Drives the lock: wrong passwords alone, which anyone who knows a
    /// user name can send, only slow the account down.
    pub factor_failures: i64,
    /// Locked after too many wrong second factors, until an administrator
    /// unlocks it.
    pub locked: bool,
    /// The vault's MAC over this row's id and every field that decides
    /// access (see `docs/architecture.md`, "Row seals"). The store keeps it
    /// and never judges it; empty only on rows from before row seals.
    pub seal: Vec<u8>,
}

/// The central store: tokens, metadata, principals, stock and orders.
/// Holds no secret.
#[async_trait]
pub trait CentralStore: crate::OrderStore + crate::WatchStore + crate::SupplyStore {
    /// For each fingerprint, the token of an active record in (tenant, class)
    /// carrying it, if any.
    async fn find_fingerprints(
        &self,
        tenant: &str,
        class: &str,
        fingerprints: &[[u8; 32]],
    ) -> StoreResult<Vec<Option<String>>>;

    /// Inserts records durably, each independently: one duplicate does not
    /// stop the others. Returns one outcome per record, in order.
    async fn insert_secrets(&self, records: Arc<[SecretRecord]>)
    -> StoreResult<Vec<InsertOutcome>>;

    /// A record by token, whatever its state, if its tenant is in `scope`.
    async fn get_secret(
        &self,
        token: &str,
        scope: &TenantScope,
    ) -> StoreResult<Scoped<SecretRecord>>;

    /// Sets when the reveal window of an active record of `tenant` closes,
    /// with the row's new seal. False if no active record of that tenant has
    /// that token under the seal `swap.from` (it changed meanwhile).
    async fn set_window(
        &self,
        token: &str,
        tenant: &str,
        closes_at: i64,
        swap: SealSwap,
    ) -> StoreResult<bool>;

    /// Marks an active record of `tenant` deleted and drops its fingerprint,
    /// with the row's new seal. False if no active record of that tenant has
    /// that token under the seal `swap.from`.
    async fn mark_deleted(&self, token: &str, tenant: &str, swap: SealSwap) -> StoreResult<bool>;

    /// Adds a principal; [`StoreError::Conflict`] if the name or client id exists.
    async fn insert_principal(&self, principal: PrincipalRecord) -> StoreResult<()>;

    /// A principal by client id.
    async fn principal_by_client_id(&self, client_id: &str)
    -> StoreResult<Option<PrincipalRecord>>;

    /// A principal by id, if every tenant it is bound to is in `scope`.
    async fn principal_by_id(
        &self,
        id: &str,
        scope: &TenantScope,
    ) -> StoreResult<Option<PrincipalRecord>>;

    /// The principals whose tenants are all in `scope`, oldest first.
    async fn list_principals(&self, scope: &TenantScope) -> StoreResult<Vec<PrincipalRecord>>;

    /// Every custom role, by name.
    async fn list_custom_roles(&self) -> StoreResult<Vec<CustomRoleRecord>>;

    /// Adds vouchers, each in its own right: one per token. Returns, per
    /// record, whether it was added (false: a voucher with that token
    /// already exists). A voucher still `staged` by an import that never
    /// finished is taken over instead (its import and state replaced): the
    /// same file run again finishes that import's work.
    async fn insert_vouchers(&self, vouchers: Vec<VoucherRecord>) -> StoreResult<Vec<bool>>;

    /// Records an import job, or its new counts and status.
    async fn put_import(&self, import: ImportRecord) -> StoreResult<()>;

    /// Voucher counts by tenant, product, face value and state, for the
    /// tenants in `scope`; `expiring` counts codes expiring before
    /// `expiring_before` (Unix ms), `expired` those expired at `now`.
    async fn stock_counts(
        &self,
        scope: &TenantScope,
        now: i64,
        expiring_before: i64,
    ) -> StoreResult<Vec<StockCount>>;

    /// An import job of `tenant` by id.
    async fn import_by_id(&self, tenant: &str, id: &str) -> StoreResult<Option<ImportRecord>>;

    /// Adds a retailer; [`StoreError::Conflict`] if its tenant has one of
    /// that name.
    async fn insert_retailer(&self, retailer: RetailerRecord) -> StoreResult<()>;

    /// The retailers of the tenants in `scope`, by tenant and name.
    async fn list_retailers(&self, scope: &TenantScope) -> StoreResult<Vec<RetailerRecord>>;

    /// Adds a product; [`StoreError::Conflict`] if its tenant has the SKU.
    async fn insert_product(&self, product: ProductRecord) -> StoreResult<()>;

    /// The products of the tenants in `scope`, by tenant and SKU.
    async fn list_products(&self, scope: &TenantScope) -> StoreResult<Vec<ProductRecord>>;

    /// Adds a custom role; [`StoreError::Conflict`] if the name exists.
    async fn insert_custom_role(&self, role: CustomRoleRecord) -> StoreResult<()>;

    /// Replaces a custom role if it is still at `expected_version`, and
    /// stores it at the next version. False if it changed meanwhile (or is
    /// gone): the caller decided on a state that no longer holds.
    async fn replace_custom_role(
        &self,
        role: CustomRoleRecord,
        expected_version: i64,
    ) -> StoreResult<bool>;

    /// Replaces a principal's row (every column but its id, client id,
    /// name and creation time) if it still carries the seal
    /// `expected_seal`. False if it changed meanwhile or is gone: the caller
    /// decided on a state that no longer holds. Disabling, approving and
    /// rotating a secret are all this one compare-and-swap, so the seal the
    /// vault computed always describes the row it lands on.
    async fn replace_principal(
        &self,
        principal: PrincipalRecord,
        expected_seal: &[u8],
    ) -> StoreResult<bool>;

    /// A principal by its unique name (a person's user name).
    async fn principal_by_name(&self, name: &str) -> StoreResult<Option<PrincipalRecord>>;

    /// Stores a person's login record, replacing any earlier one.
    async fn put_operator(&self, operator: OperatorRecord) -> StoreResult<()>;

    /// A person's login record.
    async fn operator(&self, principal_id: &str) -> StoreResult<Option<OperatorRecord>>;

    /// Accepts TOTP time step `step` if it is later than the last accepted
    /// one, atomically across nodes: false means the code was already used
    /// (or an older one), so a code can never be replayed.
    async fn accept_totp_step(&self, principal_id: &str, step: i64) -> StoreResult<bool>;

    /// Claims a login attempt at `at_ms`, atomically across nodes: true if
    /// the account is enrolled, not locked and past its back-off (after `n`
    /// attempts in a row: 1 s, doubling, at most 60 s, from the last
    /// attempt; both stores compute it in SQL), and then counts the
    /// attempt. Concurrent attempts cannot all pass: each claim restarts
    /// the back-off for the next.
    async fn claim_login_attempt(&self, principal_id: &str, at_ms: i64) -> StoreResult<bool>;

    /// Counts a wrong second factor after a right password and locks the
    /// account when the count reaches `lock_after`, giving the row
    /// `locked_seal` (the vault's seal of the locked row) as it locks.
    /// Returns the count and whether the account is now locked.
    async fn record_factor_failure(
        &self,
        principal_id: &str,
        lock_after: i64,
        locked_seal: &[u8],
    ) -> StoreResult<(i64, bool)>;

    /// Clears both failure counts after a successful login or step-up.
    async fn record_login_success(&self, principal_id: &str) -> StoreResult<()>;

    /// Replaces the sealed fields of a person's login record (password,
    /// enrolment code, TOTP seed, enrolled, locked) and its seal, if it still
    /// carries the seal `expected_seal`; false if it changed meanwhile or is
    /// gone. The counters are left as they are. Enrolment steps and
    /// unlocking are this one compare-and-swap: the caller read the record,
    /// checked its seal and sealed the state it wants.
    async fn replace_operator(
        &self,
        operator: OperatorRecord,
        expected_seal: &[u8],
    ) -> StoreResult<bool>;

    /// Replaces a person's recovery codes.
    async fn set_recovery_codes(
        &self,
        principal_id: &str,
        codes: Vec<RecoveryCodeRecord>,
    ) -> StoreResult<()>;

    /// An unused recovery code.
    async fn recovery_code(
        &self,
        principal_id: &str,
        code_id: &str,
    ) -> StoreResult<Option<RecoveryCodeRecord>>;

    /// Uses up a recovery code; false if it was already used (by a
    /// concurrent login on any node, say).
    async fn consume_recovery_code(&self, principal_id: &str, code_id: &str) -> StoreResult<bool>;

    /// Up to `limit` rows of the sealed tables that carry no seal yet: rows
    /// written before row seals existed, which the vault seals once (see
    /// `UnsealedRow`).
    async fn rows_without_seal(&self, limit: usize) -> StoreResult<Vec<UnsealedRow>>;

    /// Gives a row its first seal, only if it still has none. False if it
    /// has one already or is gone.
    async fn set_first_seal(&self, row: &UnsealedRow, seal: &[u8]) -> StoreResult<bool>;
}

/// The seal a row must carry for a change to apply, and the one it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSwap {
    /// The seal the row was read with.
    pub from: Vec<u8>,
    /// The seal of the row as changed.
    pub to: Vec<u8>,
}

/// One single-use recovery code of a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryCodeRecord {
    /// Which code (shown to the person beside it).
    pub code_id: String,
    /// argon2id PHC string of the code.
    pub hash: String,
    /// The vault's MAC over (principal, code id, hash): a code inserted by
    /// SQL does not log anyone in.
    pub seal: Vec<u8>,
}

/// A row of a sealed table found without a seal, for the one-time
/// migration at the first unseal after upgrading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsealedRow {
    /// A secret's central row.
    Secret(SecretRecord),
    /// A principal.
    Principal(PrincipalRecord),
    /// A custom role.
    Role(CustomRoleRecord),
    /// A person's login record.
    Operator(OperatorRecord),
    /// A recovery code of the person with this principal id.
    RecoveryCode(String, RecoveryCodeRecord),
}

/// A wrapped (encrypted) data key in the keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Key scope: `tenant/class`.
    pub scope: String,
    /// Version number, from 1.
    pub version: u32,
    /// The key sealed under the keyring-wrapping key.
    pub wrapped: Vec<u8>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

/// A store of opaque sealed records keyed by token: the secret vault, and
/// with its own file and credentials, the archive vault. It also keeps the
/// wrapped keyring and a few named values (vault id, key check value).
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Stores records durably (replacing none: a token is written once).
    async fn put_many(&self, records: Vec<(String, Vec<u8>)>) -> StoreResult<()>;
    /// A sealed record.
    async fn get(&self, token: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Removes a record; true if it existed.
    async fn delete(&self, token: &str) -> StoreResult<bool>;
    /// Every wrapped key.
    async fn load_keyring(&self) -> StoreResult<Vec<WrappedKey>>;
    /// Adds a key version; [`StoreError::Conflict`] if it exists.
    async fn add_key(&self, key: WrappedKey) -> StoreResult<()>;
    /// A named value.
    async fn get_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Sets a named value, durably.
    async fn put_meta(&self, name: &str, value: Vec<u8>) -> StoreResult<()>;
}

/// Computes a record's chain MAC from the previous record's MAC, its
/// sequence number and its body. Supplied by the audit layer, which holds
/// the key; the store only calls it in order.
pub type ChainFn = Arc<dyn Fn(&[u8], u64, &str) -> Vec<u8> + Send + Sync>;

/// One stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditRecord {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// Canonical JSON body.
    pub body: String,
    /// Chain MAC over (previous MAC, seq, body).
    pub mac: Vec<u8>,
}

/// The append-only audit store.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends bodies in order, durably, chaining each to the last record.
    /// Returns their sequence numbers.
    async fn append(&self, bodies: Vec<String>, chain: ChainFn) -> StoreResult<Vec<u64>>;
    /// Up to `limit` records with `seq >= from`, in order.
    async fn read_from(&self, from: u64, limit: usize) -> StoreResult<Vec<StoredAuditRecord>>;
    /// Up to `limit` records with `seq < before`, newest first: searches
    /// start from the end of the log, where the questions usually are.
    async fn read_back(&self, before: u64, limit: usize) -> StoreResult<Vec<StoredAuditRecord>>;
}

/// The four stores a vault runs on, each behind its own credentials.
#[derive(Clone)]
pub struct StoreSet {
    /// Tokens, metadata, principals.
    pub central: Arc<dyn CentralStore>,
    /// Sealed secrets and the wrapped keyring.
    pub vault: Arc<dyn RecordStore>,
    /// Sealed archived secrets.
    pub archive: Arc<dyn RecordStore>,
    /// The chained audit log.
    pub audit: Arc<dyn AuditStore>,
}

impl std::fmt::Debug for StoreSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSet")
    }
}
