//! The central store in SQLite: tokens, metadata and principals.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::engine::{Database, Migrations, Shadow};
use super::fingerprints::FingerprintIndex;
use crate::{
    CentralStore, CustomRoleRecord, ImportRecord, InsertOutcome, OperatorRecord, PrincipalRecord,
    ProductRecord, RecoveryCodeRecord, RetailerRecord, Scoped, SealSwap, SecretRecord, SecretState,
    StockCount, StoreError, StoreResult, TenantScope, UnsealedRow, VoucherRecord,
};

// Rows are appended in rowid order and found through the unique token index.
// Tokens begin with their creation time, so that index grows at its right
// edge too, and a commit writes few pages however large the table.
// Fingerprints have no index on disk: they are random, and a B-tree over them
// would make every insert rewrite a page of its own. The writer keeps them in
// memory instead (see fingerprints.rs) and enforces uniqueness there.
// `duplicate_allowed` marks a copy the caller explicitly allowed.
// A deleted record's fingerprint is set to NULL, which frees it.
const MIGRATIONS: Migrations = &[
    "CREATE TABLE secrets (
         token TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         class TEXT NOT NULL,
         key_version INTEGER NOT NULL,
         fingerprint BLOB,
         fp_dup INTEGER NOT NULL,
         metadata TEXT,
         created_at INTEGER NOT NULL,
         window_closes_at INTEGER NOT NULL,
         created_by TEXT NOT NULL,
         state TEXT NOT NULL
     );
     CREATE UNIQUE INDEX secrets_fingerprint ON secrets (fingerprint, fp_dup);
     CREATE TABLE principals (
         id TEXT PRIMARY KEY,
         client_id TEXT NOT NULL UNIQUE,
         name TEXT NOT NULL UNIQUE,
         roles TEXT NOT NULL,
         tenants TEXT NOT NULL,
         secret_hash TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         disabled INTEGER NOT NULL DEFAULT 0,
         created_by TEXT NOT NULL,
         pending_approval INTEGER NOT NULL
     )",
    // 2: fingerprints leave the on-disk index for the in-memory one; the
    // duplicate marker becomes a plain flag (it was 0 or a random number).
    "DROP INDEX secrets_fingerprint;
     ALTER TABLE secrets RENAME COLUMN fp_dup TO duplicate_allowed;
     UPDATE secrets SET duplicate_allowed = (duplicate_allowed != 0)",
    // 3: people log in with a password and TOTP; recovery codes are single use.
    "ALTER TABLE principals ADD COLUMN kind TEXT NOT NULL DEFAULT 'service';
     ALTER TABLE principals ADD COLUMN previous_secret_hash TEXT NOT NULL DEFAULT '';
     ALTER TABLE principals ADD COLUMN previous_valid_until INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE operators (
         principal_id TEXT PRIMARY KEY REFERENCES principals (id),
         password_hash TEXT NOT NULL,
         enrolment_hash TEXT NOT NULL,
         totp_sealed BLOB NOT NULL,
         enrolled INTEGER NOT NULL,
         totp_last_step INTEGER NOT NULL,
         failed_logins INTEGER NOT NULL,
         last_failure_at INTEGER NOT NULL,
         factor_failures INTEGER NOT NULL,
         locked INTEGER NOT NULL
     );
     CREATE TABLE recovery_codes (
         principal_id TEXT NOT NULL REFERENCES principals (id),
         code_id TEXT NOT NULL,
         hash TEXT NOT NULL,
         PRIMARY KEY (principal_id, code_id)
     )",
    // 4: custom roles; a change that needs a second person waits in `pending`.
    "CREATE TABLE custom_roles (
         name TEXT PRIMARY KEY,
         permissions TEXT NOT NULL,
         pending TEXT,
         requested_by TEXT NOT NULL,
         created_by TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL,
         version INTEGER NOT NULL
     )",
    // 5: the voucher catalogue: retailers and their products (SKUs).
    "CREATE TABLE retailers (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         name TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         created_by TEXT NOT NULL,
         UNIQUE (tenant, name)
     );
     CREATE TABLE products (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         retailer_id TEXT NOT NULL REFERENCES retailers (id),
         sku TEXT NOT NULL,
         name TEXT NOT NULL,
         currency TEXT NOT NULL,
         denominations TEXT NOT NULL,
         low_stock_threshold INTEGER NOT NULL,
         created_at INTEGER NOT NULL,
         created_by TEXT NOT NULL,
         UNIQUE (tenant, sku)
     )",
    // 6: vouchers in stock (by token) and the imports that brought them.
    "CREATE TABLE vouchers (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         product_id TEXT NOT NULL,
         face_value INTEGER NOT NULL,
         currency TEXT NOT NULL,
         token TEXT NOT NULL UNIQUE,
         pin_token TEXT,
         expires_at INTEGER,
         serial TEXT,
         state TEXT NOT NULL,
         import_id TEXT NOT NULL,
         created_at INTEGER NOT NULL
     );
     CREATE INDEX vouchers_stock ON vouchers (tenant, product_id, face_value, state, expires_at);
     CREATE TABLE imports (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         retailer_id TEXT NOT NULL,
         status TEXT NOT NULL,
         rows INTEGER NOT NULL,
         accepted INTEGER NOT NULL,
         rejected INTEGER NOT NULL,
         duplicates INTEGER NOT NULL,
         created_by TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         finished_at INTEGER NOT NULL
     )",
    // 7: orders (unique per client and reference) and every voucher's
    // transitions after import.
    "CREATE TABLE orders (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         client_id TEXT NOT NULL,
         external_ref TEXT NOT NULL,
         request_hash TEXT NOT NULL,
         product_id TEXT NOT NULL,
         sku TEXT NOT NULL,
         face_value INTEGER NOT NULL,
         currency TEXT NOT NULL,
         customer_ref TEXT NOT NULL,
         delivery TEXT NOT NULL,
         state TEXT NOT NULL,
         voucher_id TEXT NOT NULL,
         token TEXT NOT NULL,
         pin_token TEXT,
         expires_at INTEGER,
         created_at INTEGER NOT NULL,
         reserved_until INTEGER NOT NULL,
         delivered_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL,
         link_views_left INTEGER NOT NULL,
         link_expires_at INTEGER NOT NULL,
         cancel_reason TEXT,
         reopen_requested_by TEXT NOT NULL DEFAULT '',
         reopen_reason TEXT NOT NULL DEFAULT '',
         UNIQUE (client_id, external_ref)
     );
     CREATE INDEX orders_reserved ON orders (state, reserved_until);
     CREATE INDEX orders_delivered ON orders (state, delivered_at);
     CREATE INDEX orders_customer ON orders (tenant, customer_ref);
     CREATE TABLE voucher_events (
         seq INTEGER PRIMARY KEY,
         kind TEXT NOT NULL DEFAULT 'transition',
         voucher_id TEXT NOT NULL,
         tenant TEXT NOT NULL,
         at INTEGER NOT NULL,
         actor TEXT NOT NULL,
         from_state TEXT NOT NULL,
         to_state TEXT NOT NULL,
         reason TEXT NOT NULL,
         order_id TEXT
     );
     CREATE INDEX voucher_events_voucher ON voucher_events (voucher_id);
     ALTER TABLE vouchers ADD COLUMN order_id TEXT;
     CREATE INDEX vouchers_expiry ON vouchers (state, expires_at)",
    "CREATE TABLE alerts (
         id TEXT PRIMARY KEY,
         created_at INTEGER NOT NULL,
         detector TEXT NOT NULL,
         severity TEXT NOT NULL,
         subject TEXT NOT NULL,
         tenant TEXT,
         summary TEXT NOT NULL,
         details TEXT NOT NULL,
         audit_seq INTEGER NOT NULL,
         status TEXT NOT NULL,
         acknowledged_by TEXT NOT NULL DEFAULT '',
         acknowledged_at INTEGER NOT NULL DEFAULT 0,
         note TEXT NOT NULL DEFAULT '',
         froze INTEGER NOT NULL DEFAULT 0
     ) WITHOUT ROWID;
     CREATE TABLE frozen_principals (
         principal_id TEXT PRIMARY KEY,
         frozen_at INTEGER NOT NULL,
         alert_id TEXT NOT NULL,
         frozen_by TEXT NOT NULL,
         reason TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE forwarder_cursors (
         name TEXT PRIMARY KEY,
         seq INTEGER NOT NULL,
         updated_at INTEGER NOT NULL
     ) WITHOUT ROWID",
    "CREATE TABLE purchases (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         supplier TEXT NOT NULL,
         product_id TEXT NOT NULL,
         face_value INTEGER NOT NULL,
         currency TEXT NOT NULL,
         quantity INTEGER NOT NULL,
         cost INTEGER NOT NULL,
         purpose TEXT NOT NULL,
         state TEXT NOT NULL,
         day TEXT NOT NULL,
         requested_by TEXT NOT NULL,
         approved_by TEXT NOT NULL DEFAULT '',
         charged INTEGER NOT NULL DEFAULT 0,
         codes_received INTEGER NOT NULL DEFAULT 0,
         note TEXT NOT NULL DEFAULT '',
         created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX purchases_spend ON purchases (supplier, day, currency);
     CREATE INDEX purchases_state ON purchases (state);
     CREATE TABLE purchase_lines (
         purchase_id TEXT NOT NULL,
         line INTEGER NOT NULL,
         reference TEXT NOT NULL UNIQUE,
         supplier_order TEXT NOT NULL DEFAULT '',
         state TEXT NOT NULL,
         charged INTEGER NOT NULL DEFAULT 0,
         codes INTEGER NOT NULL DEFAULT 0,
         note TEXT NOT NULL DEFAULT '',
         updated_at INTEGER NOT NULL,
         PRIMARY KEY (purchase_id, line)
     ) WITHOUT ROWID;
     CREATE TABLE supplier_credentials (
         supplier TEXT PRIMARY KEY,
         token TEXT NOT NULL,
         set_by TEXT NOT NULL,
         set_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX vouchers_source ON vouchers (import_id)",
    // 11: row seals. Every row whose content decides access carries the
    // vault's MAC over its id and those fields; rows from before get theirs
    // once, at the first unseal after the upgrade.
    "ALTER TABLE secrets ADD COLUMN seal BLOB NOT NULL DEFAULT x'';
     ALTER TABLE principals ADD COLUMN seal BLOB NOT NULL DEFAULT x'';
     ALTER TABLE custom_roles ADD COLUMN seal BLOB NOT NULL DEFAULT x'';
     ALTER TABLE operators ADD COLUMN seal BLOB NOT NULL DEFAULT x'';
     ALTER TABLE recovery_codes ADD COLUMN seal BLOB NOT NULL DEFAULT x''",
];

// Column lists as macros, so every statement is a literal built at compile time.
macro_rules! secret_columns {
    () => {
        "token, tenant, class, key_version, fingerprint, duplicate_allowed, metadata, created_at, window_closes_at, created_by, state, seal"
    };
}

/// A [`CentralStore`] in one SQLite file.
#[derive(Debug)]
pub struct SqliteCentralStore {
    pub(super) db: Arc<Database>,
    fingerprints: Arc<FingerprintIndex>,
}

impl SqliteCentralStore {
    /// Opens or creates the file and loads its fingerprint index. Only one
    /// open at a time, across processes: see [`Database::open_exclusive`].
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut fingerprints = None;
        // Exclusive: the fingerprint index must see every insert.
        let db = Database::open_exclusive(path, MIGRATIONS, |conn| {
            let index = Arc::new(FingerprintIndex::load(conn)?);
            fingerprints = Some(index.clone());
            Ok(Some(index as Arc<dyn Shadow>))
        })?;
        let fingerprints = fingerprints.ok_or(StoreError::Closed)?;
        Ok(Self { db, fingerprints })
    }

    /// The underlying database (for tests that inspect stored rows).
    pub fn database(&self) -> &Database {
        &self.db
    }
}

fn secret_from_row(r: &Row<'_>) -> rusqlite::Result<(SecretRecord, String)> {
    let fingerprint: Option<Vec<u8>> = r.get(4)?;
    let duplicate_allowed: bool = r.get(5)?;
    let state: String = r.get(10)?;
    Ok((
        SecretRecord {
            token: r.get(0)?,
            tenant: r.get(1)?,
            class: r.get(2)?,
            key_version: r.get(3)?,
            fingerprint: fingerprint.and_then(|f| f.try_into().ok()),
            fingerprint_unique: !duplicate_allowed,
            metadata: r.get(6)?,
            created_at: r.get(7)?,
            window_closes_at: r.get(8)?,
            created_by: r.get(9)?,
            state: SecretState::Active,
            seal: r.get(11)?,
        },
        state,
    ))
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn join_list(items: &[String]) -> String {
    items.join(",")
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn principal_from_row(r: &Row<'_>) -> rusqlite::Result<PrincipalRecord> {
    let roles: String = r.get(3)?;
    let tenants: String = r.get(4)?;
    Ok(PrincipalRecord {
        id: r.get(0)?,
        client_id: r.get(1)?,
        name: r.get(2)?,
        roles: split_list(&roles),
        tenants: split_list(&tenants),
        secret_hash: r.get(5)?,
        created_at: r.get(6)?,
        disabled: r.get::<_, i64>(7)? != 0,
        created_by: r.get(8)?,
        pending_approval: r.get::<_, i64>(9)? != 0,
        kind: r.get(10)?,
        previous_secret_hash: r.get(11)?,
        previous_valid_until: r.get(12)?,
        seal: r.get(13)?,
    })
}

macro_rules! principal_columns {
    () => {
        "id, client_id, name, roles, tenants, secret_hash, created_at, disabled, created_by, pending_approval, kind, previous_secret_hash, previous_valid_until, seal"
    };
}

macro_rules! role_columns {
    () => {
        "name, permissions, pending, requested_by, created_by, created_at, updated_at, version, seal"
    };
}

fn role_from_row(r: &Row<'_>) -> rusqlite::Result<CustomRoleRecord> {
    let permissions: String = r.get(1)?;
    let pending: Option<String> = r.get(2)?;
    Ok(CustomRoleRecord {
        name: r.get(0)?,
        permissions: split_list(&permissions),
        pending: pending.as_deref().map(split_list),
        requested_by: r.get(3)?,
        created_by: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        version: r.get(7)?,
        seal: r.get(8)?,
    })
}

macro_rules! product_columns {
    () => {
        "id, tenant, retailer_id, sku, name, currency, denominations, low_stock_threshold, created_at, created_by"
    };
}

fn product_from_row(r: &Row<'_>) -> rusqlite::Result<ProductRecord> {
    let denominations: String = r.get(6)?;
    Ok(ProductRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        retailer_id: r.get(2)?,
        sku: r.get(3)?,
        name: r.get(4)?,
        currency: r.get(5)?,
        denominations: split_list(&denominations)
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect(),
        low_stock_threshold: r.get(7)?,
        created_at: r.get(8)?,
        created_by: r.get(9)?,
    })
}

/// The rows of `select` whose tenant (column 1) is in `scope`.
fn scoped_rows<T>(
    conn: &rusqlite::Connection,
    select: &str,
    scope: &TenantScope,
    what: &'static str,
    tenant_of: impl Fn(&T) -> &str,
    from_row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn
        .prepare_cached(select)
        .map_err(StoreError::backend(what))?;
    let rows = stmt
        .query_map([], from_row)
        .map_err(StoreError::backend(what))?;
    let all = rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::backend(what))?;
    Ok(all
        .into_iter()
        .filter(|r| scope.admits(tenant_of(r)))
        .collect())
}

macro_rules! operator_columns {
    () => {
        "principal_id, password_hash, enrolment_hash, totp_sealed, enrolled, totp_last_step, failed_logins, last_failure_at, factor_failures, locked, seal"
    };
}

fn operator_from_row(r: &Row<'_>) -> rusqlite::Result<OperatorRecord> {
    Ok(OperatorRecord {
        principal_id: r.get(0)?,
        password_hash: r.get(1)?,
        enrolment_hash: r.get(2)?,
        totp_sealed: r.get(3)?,
        enrolled: r.get::<_, i64>(4)? != 0,
        totp_last_step: r.get(5)?,
        failed_logins: r.get(6)?,
        last_failure_at: r.get(7)?,
        factor_failures: r.get(8)?,
        locked: r.get::<_, i64>(9)? != 0,
        seal: r.get(10)?,
    })
}

impl SqliteCentralStore {
    /// The principal `select` (one unique column compared with `?1`) finds.
    fn principal_where(
        &self,
        select: &'static str,
        value: &str,
    ) -> StoreResult<Option<PrincipalRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(select)
                .and_then(|mut s| s.query_row([value], principal_from_row).optional())
                .map_err(StoreError::backend("read principal"))
        })
    }
}

#[async_trait]
impl CentralStore for SqliteCentralStore {
    async fn find_fingerprints(
        &self,
        tenant: &str,
        class: &str,
        fingerprints: &[[u8; 32]],
    ) -> StoreResult<Vec<Option<String>>> {
        let candidates: Vec<Vec<i64>> = fingerprints
            .iter()
            .map(|fp| self.fingerprints.candidates(fp))
            .collect();
        if candidates.iter().all(Vec::is_empty) {
            return Ok(vec![None; fingerprints.len()]);
        }
        self.db.read(|conn| {
            fingerprints
                .iter()
                .zip(candidates)
                .map(|(fp, rows)| FingerprintIndex::confirm(conn, tenant, class, fp, rows))
                .collect()
        })
    }

    async fn insert_secrets(
        &self,
        records: Arc<[SecretRecord]>,
    ) -> StoreResult<Vec<InsertOutcome>> {
        let index = self.fingerprints.clone();
        self.db
            .write(move |conn| {
                let sql = concat!(
                    "INSERT INTO secrets (",
                    secret_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                );
                let mut stmt = conn
                    .prepare_cached(sql)
                    .map_err(StoreError::backend("prepare secret insert"))?;
                let mut outcomes = Vec::with_capacity(records.len());
                for rec in records.iter() {
                    // The writer is the only one changing the table, so this
                    // check and the insert below cannot be overtaken.
                    if let Some(fp) = rec.fingerprint.as_ref().filter(|_| rec.fingerprint_unique)
                        && let Some(existing) = index.find(conn, &rec.tenant, &rec.class, fp)?
                    {
                        outcomes.push(InsertOutcome::Duplicate { existing });
                        continue;
                    }
                    stmt.execute(params![
                        rec.token,
                        rec.tenant,
                        rec.class,
                        rec.key_version,
                        rec.fingerprint.as_ref().map(|f| f.as_slice()),
                        !rec.fingerprint_unique,
                        rec.metadata,
                        rec.created_at,
                        rec.window_closes_at,
                        rec.created_by,
                        rec.state.as_str(),
                        rec.seal,
                    ])
                    .map_err(|e| {
                        if is_constraint(&e) {
                            StoreError::Conflict("token already exists")
                        } else {
                            StoreError::backend("insert secret")(e)
                        }
                    })?;
                    if let Some(fp) = &rec.fingerprint {
                        index.added(fp, conn.last_insert_rowid());
                    }
                    outcomes.push(InsertOutcome::Inserted);
                }
                Ok(outcomes)
            })
            .await
    }

    async fn get_secret(
        &self,
        token: &str,
        scope: &TenantScope,
    ) -> StoreResult<Scoped<SecretRecord>> {
        let row = self.db.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                secret_columns!(),
                " FROM secrets WHERE token = ?1"
            ))
            .and_then(|mut s| s.query_row([token], secret_from_row).optional())
            .map_err(StoreError::backend("read secret"))
        })?;
        match row {
            None => Ok(Scoped::Missing),
            Some((mut rec, state)) => {
                rec.state = SecretState::parse(&state)?;
                Ok(scope.filter(Some(rec)))
            }
        }
    }

    async fn set_window(
        &self,
        token: &str,
        tenant: &str,
        closes_at: i64,
        swap: SealSwap,
    ) -> StoreResult<bool> {
        let token = token.to_owned();
        let tenant = tenant.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE secrets SET window_closes_at = ?2, seal = ?5 \
                     WHERE token = ?1 AND tenant = ?3 AND state = 'active' AND seal = ?4",
                    params![token, closes_at, tenant, swap.from, swap.to],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("set reveal window"))
            })
            .await
    }

    async fn mark_deleted(&self, token: &str, tenant: &str, swap: SealSwap) -> StoreResult<bool> {
        let token = token.to_owned();
        let tenant = tenant.to_owned();
        let index = self.fingerprints.clone();
        self.db
            .write(move |conn| {
                let live: Option<(i64, Option<Vec<u8>>)> = conn
                    .query_row(
                        "SELECT rowid, fingerprint FROM secrets \
                         WHERE token = ?1 AND tenant = ?2 AND state = 'active' AND seal = ?3",
                        params![&token, &tenant, &swap.from],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(StoreError::backend("delete secret"))?;
                let Some((rowid, fingerprint)) = live else {
                    return Ok(false);
                };
                conn.execute(
                    "UPDATE secrets SET state = 'deleted', fingerprint = NULL, metadata = NULL, \
                     seal = ?2 WHERE rowid = ?1",
                    params![rowid, swap.to],
                )
                .map_err(StoreError::backend("delete secret"))?;
                if let Some(fp) = fingerprint.and_then(|f| <[u8; 32]>::try_from(f).ok()) {
                    index.removed(&fp, rowid);
                }
                Ok(true)
            })
            .await
    }

    async fn insert_principal(&self, p: PrincipalRecord) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                conn.execute(
                    concat!(
                        "INSERT INTO principals (",
                        principal_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                    ),
                    params![
                        p.id,
                        p.client_id,
                        p.name,
                        join_list(&p.roles),
                        join_list(&p.tenants),
                        p.secret_hash,
                        p.created_at,
                        p.disabled,
                        p.created_by,
                        p.pending_approval,
                        p.kind,
                        p.previous_secret_hash,
                        p.previous_valid_until,
                        p.seal
                    ],
                )
                .map(|_| ())
                .map_err(|e| {
                    if is_constraint(&e) {
                        StoreError::Conflict("a principal with that name exists")
                    } else {
                        StoreError::backend("insert principal")(e)
                    }
                })
            })
            .await
    }

    async fn principal_by_client_id(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<PrincipalRecord>> {
        self.principal_where(
            concat!(
                "SELECT ",
                principal_columns!(),
                " FROM principals WHERE client_id = ?1"
            ),
            client_id,
        )
    }

    async fn principal_by_id(
        &self,
        id: &str,
        scope: &TenantScope,
    ) -> StoreResult<Option<PrincipalRecord>> {
        Ok(self
            .principal_where(
                concat!(
                    "SELECT ",
                    principal_columns!(),
                    " FROM principals WHERE id = ?1"
                ),
                id,
            )?
            .filter(|p| scope.admits_all(&p.tenants)))
    }

    async fn list_principals(&self, scope: &TenantScope) -> StoreResult<Vec<PrincipalRecord>> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare(concat!(
                    "SELECT ",
                    principal_columns!(),
                    " FROM principals ORDER BY created_at, name"
                ))
                .map_err(StoreError::backend("list principals"))?;
            let rows = stmt
                .query_map([], principal_from_row)
                .map_err(StoreError::backend("list principals"))?;
            let all = rows
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("list principals"))?;
            Ok(all
                .into_iter()
                .filter(|p| scope.admits_all(&p.tenants))
                .collect())
        })
    }

    async fn insert_vouchers(&self, vouchers: Vec<VoucherRecord>) -> StoreResult<Vec<bool>> {
        self.db
            // One job of the group commit: its savepoint makes it all or nothing.
            .write(move |conn| {
                let mut added = Vec::with_capacity(vouchers.len());
                {
                    let mut stmt = conn
                        .prepare_cached(
                            "INSERT INTO vouchers (id, tenant, product_id, face_value, currency, token, \
                             pin_token, expires_at, serial, state, import_id, created_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                             ON CONFLICT (token) DO NOTHING",
                        )
                        .map_err(StoreError::backend("insert vouchers"))?;
                    // Only for a token already held: a voucher an unfinished
                    // import staged is taken over.
                    let mut take_over = conn
                        .prepare_cached(
                            "UPDATE vouchers SET import_id = ?2, state = ?3 \
                             WHERE token = ?1 AND tenant = ?4 AND state = 'staged'",
                        )
                        .map_err(StoreError::backend("insert vouchers"))?;
                    for v in &vouchers {
                        let n = stmt
                            .execute(params![
                                v.id,
                                v.tenant,
                                v.product_id,
                                v.face_value,
                                v.currency,
                                v.token,
                                v.pin_token,
                                v.expires_at,
                                v.serial,
                                v.state,
                                v.import_id,
                                v.created_at
                            ])
                            .map_err(StoreError::backend("insert vouchers"))?;
                        let n = if n > 0 {
                            n
                        } else {
                            take_over
                                .execute(params![v.token, v.import_id, v.state, v.tenant])
                                .map_err(StoreError::backend("insert vouchers"))?
                        };
                        added.push(n > 0);
                    }
                }
                Ok(added)
            })
            .await
    }

    async fn put_import(&self, i: ImportRecord) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO imports (id, tenant, retailer_id, status, rows, accepted, rejected, \
                     duplicates, created_by, created_at, finished_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                     ON CONFLICT (id) DO UPDATE SET status = excluded.status, rows = excluded.rows, \
                     accepted = excluded.accepted, rejected = excluded.rejected, \
                     duplicates = excluded.duplicates, finished_at = excluded.finished_at",
                    params![
                        i.id,
                        i.tenant,
                        i.retailer_id,
                        i.status,
                        i.rows,
                        i.accepted,
                        i.rejected,
                        i.duplicates,
                        i.created_by,
                        i.created_at,
                        i.finished_at
                    ],
                )
                .map(|_| ())
                .map_err(StoreError::backend("record import"))
            })
            .await
    }

    async fn stock_counts(
        &self,
        scope: &TenantScope,
        now: i64,
        expiring_before: i64,
    ) -> StoreResult<Vec<StockCount>> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT tenant, product_id, face_value, currency, state, COUNT(*), \
                     SUM(CASE WHEN expires_at IS NOT NULL AND expires_at < ?1 THEN 1 ELSE 0 END), \
                     SUM(CASE WHEN expires_at IS NOT NULL AND expires_at <= ?2 THEN 1 ELSE 0 END) \
                     FROM vouchers GROUP BY tenant, product_id, face_value, currency, state \
                     ORDER BY tenant, product_id, face_value, state",
                )
                .map_err(StoreError::backend("count stock"))?;
            let rows = stmt
                .query_map(params![expiring_before, now], |r| {
                    Ok(StockCount {
                        tenant: r.get(0)?,
                        product_id: r.get(1)?,
                        face_value: r.get(2)?,
                        currency: r.get(3)?,
                        state: r.get(4)?,
                        count: r.get(5)?,
                        expiring: r.get(6)?,
                        expired: r.get(7)?,
                    })
                })
                .map_err(StoreError::backend("count stock"))?;
            let all = rows
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("count stock"))?;
            Ok(all
                .into_iter()
                .filter(|c| scope.admits(&c.tenant))
                .collect())
        })
    }

    async fn import_by_id(&self, tenant: &str, id: &str) -> StoreResult<Option<ImportRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT id, tenant, retailer_id, status, rows, accepted, rejected, duplicates, \
                 created_by, created_at, finished_at FROM imports WHERE id = ?1 AND tenant = ?2",
            )
            .and_then(|mut s| {
                s.query_row([id, tenant], |r| {
                    Ok(ImportRecord {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        retailer_id: r.get(2)?,
                        status: r.get(3)?,
                        rows: r.get(4)?,
                        accepted: r.get(5)?,
                        rejected: r.get(6)?,
                        duplicates: r.get(7)?,
                        created_by: r.get(8)?,
                        created_at: r.get(9)?,
                        finished_at: r.get(10)?,
                    })
                })
                .optional()
            })
            .map_err(StoreError::backend("read import"))
        })
    }

    async fn insert_retailer(&self, r: RetailerRecord) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO retailers (id, tenant, name, created_at, created_by) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![r.id, r.tenant, r.name, r.created_at, r.created_by],
                )
                .map(|_| ())
                .map_err(|e| {
                    if is_constraint(&e) {
                        StoreError::Conflict("a retailer with that name exists")
                    } else {
                        StoreError::backend("insert retailer")(e)
                    }
                })
            })
            .await
    }

    async fn list_retailers(&self, scope: &TenantScope) -> StoreResult<Vec<RetailerRecord>> {
        self.db.read(|conn| {
            scoped_rows(
                conn,
                "SELECT id, tenant, name, created_at, created_by FROM retailers ORDER BY tenant, name",
                scope,
                "list retailers",
                |r: &RetailerRecord| r.tenant.as_str(),
                |r| {
                    Ok(RetailerRecord {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        name: r.get(2)?,
                        created_at: r.get(3)?,
                        created_by: r.get(4)?,
                    })
                },
            )
        })
    }

    async fn insert_product(&self, p: ProductRecord) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                let denominations: Vec<String> =
                    p.denominations.iter().map(i64::to_string).collect();
                conn.execute(
                    concat!(
                        "INSERT INTO products (",
                        product_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                    ),
                    params![
                        p.id,
                        p.tenant,
                        p.retailer_id,
                        p.sku,
                        p.name,
                        p.currency,
                        join_list(&denominations),
                        p.low_stock_threshold,
                        p.created_at,
                        p.created_by
                    ],
                )
                .map(|_| ())
                .map_err(|e| {
                    if is_constraint(&e) {
                        StoreError::Conflict("a product with that SKU exists")
                    } else {
                        StoreError::backend("insert product")(e)
                    }
                })
            })
            .await
    }

    async fn list_products(&self, scope: &TenantScope) -> StoreResult<Vec<ProductRecord>> {
        self.db.read(|conn| {
            scoped_rows(
                conn,
                concat!(
                    "SELECT ",
                    product_columns!(),
                    " FROM products ORDER BY tenant, sku"
                ),
                scope,
                "list products",
                |p: &ProductRecord| p.tenant.as_str(),
                product_from_row,
            )
        })
    }

    async fn list_custom_roles(&self) -> StoreResult<Vec<CustomRoleRecord>> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare(concat!(
                    "SELECT ",
                    role_columns!(),
                    " FROM custom_roles ORDER BY name"
                ))
                .map_err(StoreError::backend("list roles"))?;
            let rows = stmt
                .query_map([], role_from_row)
                .map_err(StoreError::backend("list roles"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("list roles"))
        })
    }

    async fn insert_custom_role(&self, role: CustomRoleRecord) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                conn.execute(
                    concat!(
                        "INSERT INTO custom_roles (",
                        role_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                    ),
                    params![
                        role.name,
                        join_list(&role.permissions),
                        role.pending.as_deref().map(join_list),
                        role.requested_by,
                        role.created_by,
                        role.created_at,
                        role.updated_at,
                        role.version,
                        role.seal
                    ],
                )
                .map(|_| ())
                .map_err(|e| {
                    if is_constraint(&e) {
                        StoreError::Conflict("a role with that name exists")
                    } else {
                        StoreError::backend("insert role")(e)
                    }
                })
            })
            .await
    }

    async fn replace_custom_role(
        &self,
        role: CustomRoleRecord,
        expected_version: i64,
    ) -> StoreResult<bool> {
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE custom_roles SET permissions = ?2, pending = ?3, requested_by = ?4, \
                     updated_at = ?5, version = version + 1, seal = ?7 \
                     WHERE name = ?1 AND version = ?6",
                    params![
                        role.name,
                        join_list(&role.permissions),
                        role.pending.as_deref().map(join_list),
                        role.requested_by,
                        role.updated_at,
                        expected_version,
                        role.seal
                    ],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("change role"))
            })
            .await
    }

    async fn replace_principal(
        &self,
        p: PrincipalRecord,
        expected_seal: &[u8],
    ) -> StoreResult<bool> {
        let expected = expected_seal.to_vec();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE principals SET roles = ?2, tenants = ?3, secret_hash = ?4, \
                         disabled = ?5, created_by = ?6, pending_approval = ?7, kind = ?8, \
                         previous_secret_hash = ?9, previous_valid_until = ?10, seal = ?11 \
                     WHERE id = ?1 AND seal = ?12",
                    params![
                        p.id,
                        join_list(&p.roles),
                        join_list(&p.tenants),
                        p.secret_hash,
                        p.disabled,
                        p.created_by,
                        p.pending_approval,
                        p.kind,
                        p.previous_secret_hash,
                        p.previous_valid_until,
                        p.seal,
                        expected
                    ],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("change principal"))
            })
            .await
    }

    async fn principal_by_name(&self, name: &str) -> StoreResult<Option<PrincipalRecord>> {
        self.principal_where(
            concat!(
                "SELECT ",
                principal_columns!(),
                " FROM principals WHERE name = ?1"
            ),
            name,
        )
    }

    async fn put_operator(&self, o: OperatorRecord) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                conn.execute(
                    concat!(
                        "INSERT OR REPLACE INTO operators (",
                        operator_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                    ),
                    params![
                        o.principal_id,
                        o.password_hash,
                        o.enrolment_hash,
                        o.totp_sealed,
                        o.enrolled,
                        o.totp_last_step,
                        o.failed_logins,
                        o.last_failure_at,
                        o.factor_failures,
                        o.locked,
                        o.seal
                    ],
                )
                .map(|_| ())
                .map_err(StoreError::backend("store operator"))
            })
            .await
    }

    async fn operator(&self, principal_id: &str) -> StoreResult<Option<OperatorRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                operator_columns!(),
                " FROM operators WHERE principal_id = ?1"
            ))
            .and_then(|mut s| s.query_row([principal_id], operator_from_row).optional())
            .map_err(StoreError::backend("read operator"))
        })
    }

    async fn accept_totp_step(&self, principal_id: &str, step: i64) -> StoreResult<bool> {
        let id = principal_id.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE operators SET totp_last_step = ?2 \
                     WHERE principal_id = ?1 AND totp_last_step < ?2",
                    params![id, step],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("accept totp step"))
            })
            .await
    }

    async fn claim_login_attempt(&self, principal_id: &str, at_ms: i64) -> StoreResult<bool> {
        let id = principal_id.to_owned();
        self.db
            .write(move |conn| {
                // The back-off: 0, then 1 s doubling to at most 60 s.
                conn.execute(
                    "UPDATE operators SET failed_logins = failed_logins + 1, last_failure_at = ?2 \
                     WHERE principal_id = ?1 AND enrolled AND NOT locked \
                     AND ?2 >= last_failure_at + CASE \
                         WHEN failed_logins <= 0 THEN 0 \
                         WHEN failed_logins >= 7 THEN 60000 \
                         ELSE 1000 << (failed_logins - 1) END",
                    params![id, at_ms],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("claim login attempt"))
            })
            .await
    }

    async fn record_factor_failure(
        &self,
        principal_id: &str,
        lock_after: i64,
        locked_seal: &[u8],
    ) -> StoreResult<(i64, bool)> {
        let (id, locked_seal) = (principal_id.to_owned(), locked_seal.to_vec());
        self.db
            .write(move |conn| {
                // The seal changes with `locked` in the same statement.
                conn.query_row(
                    "UPDATE operators SET factor_failures = factor_failures + 1, \
                         seal = CASE WHEN NOT locked AND factor_failures + 1 >= ?2 \
                             THEN ?3 ELSE seal END, \
                         locked = (locked OR factor_failures + 1 >= ?2) \
                     WHERE principal_id = ?1 RETURNING factor_failures, locked",
                    params![id, lock_after, locked_seal],
                    |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)),
                )
                .map_err(StoreError::backend("record login failure"))
            })
            .await
    }

    async fn record_login_success(&self, principal_id: &str) -> StoreResult<()> {
        let id = principal_id.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE operators SET failed_logins = 0, factor_failures = 0 \
                     WHERE principal_id = ?1",
                    [id],
                )
                .map(|_| ())
                .map_err(StoreError::backend("record login success"))
            })
            .await
    }

    async fn replace_operator(&self, o: OperatorRecord, expected_seal: &[u8]) -> StoreResult<bool> {
        let expected = expected_seal.to_vec();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE operators SET password_hash = ?2, enrolment_hash = ?3, \
                         totp_sealed = ?4, enrolled = ?5, locked = ?6, seal = ?7 \
                     WHERE principal_id = ?1 AND seal = ?8",
                    params![
                        o.principal_id,
                        o.password_hash,
                        o.enrolment_hash,
                        o.totp_sealed,
                        o.enrolled,
                        o.locked,
                        o.seal,
                        expected
                    ],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("change operator"))
            })
            .await
    }

    async fn set_recovery_codes(
        &self,
        principal_id: &str,
        codes: Vec<RecoveryCodeRecord>,
    ) -> StoreResult<()> {
        let id = principal_id.to_owned();
        self.db
            .write(move |conn| {
                // Runs inside the writer's transaction: all or nothing.
                conn.execute("DELETE FROM recovery_codes WHERE principal_id = ?1", [&id])
                    .map_err(StoreError::backend("store recovery codes"))?;
                for code in &codes {
                    conn.execute(
                        "INSERT INTO recovery_codes (principal_id, code_id, hash, seal) \
                         VALUES (?1, ?2, ?3, ?4)",
                        params![id, code.code_id, code.hash, code.seal],
                    )
                    .map_err(StoreError::backend("store recovery codes"))?;
                }
                Ok(())
            })
            .await
    }

    async fn recovery_code(
        &self,
        principal_id: &str,
        code_id: &str,
    ) -> StoreResult<Option<RecoveryCodeRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT code_id, hash, seal FROM recovery_codes \
                 WHERE principal_id = ?1 AND code_id = ?2",
            )
            .and_then(|mut s| {
                s.query_row([principal_id, code_id], |r| {
                    Ok(RecoveryCodeRecord {
                        code_id: r.get(0)?,
                        hash: r.get(1)?,
                        seal: r.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(StoreError::backend("read recovery code"))
        })
    }

    async fn consume_recovery_code(&self, principal_id: &str, code_id: &str) -> StoreResult<bool> {
        let (id, code_id) = (principal_id.to_owned(), code_id.to_owned());
        self.db
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM recovery_codes WHERE principal_id = ?1 AND code_id = ?2",
                    [id, code_id],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("use recovery code"))
            })
            .await
    }

    async fn rows_without_seal(&self, limit: usize) -> StoreResult<Vec<UnsealedRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db.read(|conn| {
            let mut out = Vec::new();
            let mut take = |sql: &str,
                            f: &mut dyn FnMut(&Row<'_>) -> rusqlite::Result<UnsealedRow>|
             -> StoreResult<()> {
                let left = limit - out.len() as i64;
                if left <= 0 {
                    return Ok(());
                }
                let mut stmt = conn
                    .prepare_cached(sql)
                    .map_err(StoreError::backend("read unsealed rows"))?;
                let rows = stmt
                    .query_map([left], |r| f(r))
                    .map_err(StoreError::backend("read unsealed rows"))?;
                for row in rows {
                    out.push(row.map_err(StoreError::backend("read unsealed rows"))?);
                }
                Ok(())
            };
            take(
                concat!(
                    "SELECT ",
                    principal_columns!(),
                    " FROM principals WHERE seal = x'' LIMIT ?1"
                ),
                &mut |r| principal_from_row(r).map(UnsealedRow::Principal),
            )?;
            take(
                concat!(
                    "SELECT ",
                    role_columns!(),
                    " FROM custom_roles WHERE seal = x'' LIMIT ?1"
                ),
                &mut |r| role_from_row(r).map(UnsealedRow::Role),
            )?;
            take(
                concat!(
                    "SELECT ",
                    operator_columns!(),
                    " FROM operators WHERE seal = x'' LIMIT ?1"
                ),
                &mut |r| operator_from_row(r).map(UnsealedRow::Operator),
            )?;
            take(
                "SELECT principal_id, code_id, hash, seal FROM recovery_codes \
                 WHERE seal = x'' LIMIT ?1",
                &mut |r| {
                    Ok(UnsealedRow::RecoveryCode(
                        r.get(0)?,
                        RecoveryCodeRecord {
                            code_id: r.get(1)?,
                            hash: r.get(2)?,
                            seal: r.get(3)?,
                        },
                    ))
                },
            )?;
            take(
                concat!(
                    "SELECT ",
                    secret_columns!(),
                    " FROM secrets WHERE seal = x'' LIMIT ?1"
                ),
                &mut |r| {
                    let (mut rec, state) = secret_from_row(r)?;
                    rec.state = SecretState::parse(&state).map_err(|_| {
                        rusqlite::Error::InvalidColumnType(
                            10,
                            "state".into(),
                            rusqlite::types::Type::Text,
                        )
                    })?;
                    Ok(UnsealedRow::Secret(rec))
                },
            )?;
            Ok(out)
        })
    }

    async fn set_first_seal(&self, row: &UnsealedRow, seal: &[u8]) -> StoreResult<bool> {
        let (sql, keys): (&str, Vec<String>) = match row {
            UnsealedRow::Secret(r) => (
                "UPDATE secrets SET seal = ?1 WHERE token = ?2 AND seal = x''",
                vec![r.token.clone()],
            ),
            UnsealedRow::Principal(r) => (
                "UPDATE principals SET seal = ?1 WHERE id = ?2 AND seal = x''",
                vec![r.id.clone()],
            ),
            UnsealedRow::Role(r) => (
                "UPDATE custom_roles SET seal = ?1 WHERE name = ?2 AND seal = x''",
                vec![r.name.clone()],
            ),
            UnsealedRow::Operator(r) => (
                "UPDATE operators SET seal = ?1 WHERE principal_id = ?2 AND seal = x''",
                vec![r.principal_id.clone()],
            ),
            UnsealedRow::RecoveryCode(id, c) => (
                "UPDATE recovery_codes SET seal = ?1 \
                 WHERE principal_id = ?2 AND code_id = ?3 AND seal = x''",
                vec![id.clone(), c.code_id.clone()],
            ),
        };
        let seal = seal.to_vec();
        self.db
            .write(move |conn| {
                let mut values: Vec<&dyn rusqlite::ToSql> = vec![&seal];
                values.extend(keys.iter().map(|k| k as &dyn rusqlite::ToSql));
                conn.execute(sql, values.as_slice())
                    .map(|n| n > 0)
                    .map_err(StoreError::backend("seal row"))
            })
            .await
    }
}
