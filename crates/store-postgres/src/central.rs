//! The central store on PostgreSQL: tokens, metadata and principals.
//!
//! Duplicates: several nodes insert at once, so uniqueness is the database's
//! job here. An insert that must be unique first checks for any live row with
//! the fingerprint (an original or an allowed copy, as on SQLite) and the
//! partial unique index on originals settles a race between two nodes: the
//! loser's insert fails and is reported as a duplicate of the winner.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use strongroom_store::{
    CentralStore, CustomRoleRecord, ImportRecord, InsertOutcome, OperatorRecord, PrincipalRecord,
    ProductRecord, RecoveryCodeRecord, RetailerRecord, Scoped, SealSwap, SecretRecord, SecretState,
    StockCount, StoreError, StoreResult, TenantScope, UnsealedRow, VoucherRecord,
};

use std::sync::Arc;

use crate::coalesce::{Coalescer, read_by_token, together_or_alone};
use crate::engine::{MAX_GROUP_ROWS, PgDatabase, READERS, WRITERS, db_error};
use crate::sql;

/// A [`CentralStore`] in one schema, reached through its own role.
#[derive(Debug)]
pub struct PgCentralStore {
    pub(crate) db: PgDatabase,
    pub(crate) secrets: String,
    principals: String,
    operators: String,
    recovery_codes: String,
    custom_roles: String,
    retailers: String,
    products: String,
    pub(crate) vouchers: String,
    imports: String,
    pub(crate) orders: String,
    pub(crate) voucher_events: String,
    pub(crate) schema: String,
    /// Concurrent inserts, merged into one statement per group.
    inserts: Coalescer<Arc<[SecretRecord]>, Vec<InsertOutcome>>,
    /// Concurrent duplicate look-ups, merged likewise.
    lookups: Coalescer<Lookup, Vec<Option<String>>>,
    /// Concurrent reads of one secret each (every reveal makes one), merged
    /// into one read of many tokens.
    reads: Coalescer<String, Option<SecretRecord>>,
}

/// One caller's duplicate look-up: fingerprints in one tenant and class.
#[derive(Clone)]
struct Lookup {
    tenant: String,
    class: String,
    fingerprints: Vec<[u8; 32]>,
}

const SECRET_COLUMNS: &str = "token, tenant, class, key_version, fingerprint, duplicate_allowed, \
     metadata, created_at, window_closes_at, created_by, state, seal";
const PRINCIPAL_COLUMNS: &str = "id, client_id, name, roles, tenants, secret_hash, created_at, \
     disabled, created_by, pending_approval, kind, previous_secret_hash, previous_valid_until, seal";
const ROLE_COLUMNS: &str =
    "name, permissions, pending, requested_by, created_by, created_at, updated_at, version, seal";
const PRODUCT_COLUMNS: &str = "id, tenant, retailer_id, sku, name, currency, denominations, \
     low_stock_threshold, created_at, created_by";
const OPERATOR_COLUMNS: &str = "principal_id, password_hash, enrolment_hash, totp_sealed, enrolled, \
     totp_last_step, failed_logins, last_failure_at, factor_failures, locked, seal";

impl PgCentralStore {
    /// The store in `schema`. Must run inside a Tokio runtime.
    pub fn new(db: PgDatabase, schema: &str) -> Self {
        let secrets = format!("{schema}.secrets");
        let inserts = {
            let (db, secrets) = (db.clone(), secrets.clone());
            Coalescer::spawn(WRITERS, MAX_GROUP_ROWS, move |jobs| {
                insert_group(db.clone(), secrets.clone(), jobs)
            })
        };
        let lookups = {
            let (db, secrets) = (db.clone(), secrets.clone());
            Coalescer::spawn(READERS, MAX_GROUP_ROWS, move |jobs| {
                lookup_group(db.clone(), secrets.clone(), jobs)
            })
        };
        let reads = {
            let (db, secrets) = (db.clone(), secrets.clone());
            Coalescer::spawn(READERS, MAX_GROUP_ROWS, move |tokens| {
                read_group(db.clone(), secrets.clone(), tokens)
            })
        };
        Self {
            db,
            secrets,
            principals: format!("{schema}.principals"),
            operators: format!("{schema}.operators"),
            recovery_codes: format!("{schema}.recovery_codes"),
            custom_roles: format!("{schema}.custom_roles"),
            retailers: format!("{schema}.retailers"),
            products: format!("{schema}.products"),
            vouchers: format!("{schema}.vouchers"),
            imports: format!("{schema}.imports"),
            orders: format!("{schema}.orders"),
            schema: schema.to_owned(),
            voucher_events: format!("{schema}.voucher_events"),
            inserts,
            lookups,
            reads,
        }
    }
}

fn secret_from_row(r: &PgRow) -> StoreResult<SecretRecord> {
    let e = db_error("read secret");
    let fingerprint: Option<Vec<u8>> = r.try_get(4).map_err(e)?;
    let version: i32 = r.try_get(3).map_err(e)?;
    let state: String = r.try_get(10).map_err(e)?;
    Ok(SecretRecord {
        token: r.try_get(0).map_err(e)?,
        tenant: r.try_get(1).map_err(e)?,
        class: r.try_get(2).map_err(e)?,
        key_version: u32::try_from(version)
            .map_err(|_| StoreError::Malformed("negative key version"))?,
        fingerprint: fingerprint.and_then(|f| f.try_into().ok()),
        fingerprint_unique: !r.try_get::<bool, _>(5).map_err(e)?,
        metadata: r.try_get(6).map_err(e)?,
        created_at: r.try_get(7).map_err(e)?,
        window_closes_at: r.try_get(8).map_err(e)?,
        created_by: r.try_get(9).map_err(e)?,
        state: SecretState::parse(&state)?,
        seal: r.try_get(11).map_err(e)?,
    })
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn principal_from_row(r: &PgRow) -> StoreResult<PrincipalRecord> {
    let e = db_error("read principal");
    let roles: String = r.try_get(3).map_err(e)?;
    let tenants: String = r.try_get(4).map_err(e)?;
    Ok(PrincipalRecord {
        id: r.try_get(0).map_err(e)?,
        client_id: r.try_get(1).map_err(e)?,
        name: r.try_get(2).map_err(e)?,
        roles: split_list(&roles),
        tenants: split_list(&tenants),
        secret_hash: r.try_get(5).map_err(e)?,
        created_at: r.try_get(6).map_err(e)?,
        disabled: r.try_get(7).map_err(e)?,
        created_by: r.try_get(8).map_err(e)?,
        pending_approval: r.try_get(9).map_err(e)?,
        kind: r.try_get(10).map_err(e)?,
        previous_secret_hash: r.try_get(11).map_err(e)?,
        previous_valid_until: r.try_get(12).map_err(e)?,
        seal: r.try_get(13).map_err(e)?,
    })
}

fn product_from_row(r: &PgRow) -> StoreResult<ProductRecord> {
    let e = db_error("read product");
    Ok(ProductRecord {
        id: r.try_get(0).map_err(e)?,
        tenant: r.try_get(1).map_err(e)?,
        retailer_id: r.try_get(2).map_err(e)?,
        sku: r.try_get(3).map_err(e)?,
        name: r.try_get(4).map_err(e)?,
        currency: r.try_get(5).map_err(e)?,
        denominations: r.try_get(6).map_err(e)?,
        low_stock_threshold: r.try_get(7).map_err(e)?,
        created_at: r.try_get(8).map_err(e)?,
        created_by: r.try_get(9).map_err(e)?,
    })
}

/// `$1` for a query filtered by tenant: `None` (every tenant) or the list.
pub(crate) fn scope_param(scope: &TenantScope) -> Option<Vec<String>> {
    match scope {
        TenantScope::All => None,
        TenantScope::Only(tenants) => Some(tenants.clone()),
    }
}

fn role_from_row(r: &PgRow) -> StoreResult<CustomRoleRecord> {
    let e = db_error("read role");
    let permissions: String = r.try_get(1).map_err(e)?;
    let pending: Option<String> = r.try_get(2).map_err(e)?;
    Ok(CustomRoleRecord {
        name: r.try_get(0).map_err(e)?,
        permissions: split_list(&permissions),
        pending: pending.as_deref().map(split_list),
        requested_by: r.try_get(3).map_err(e)?,
        created_by: r.try_get(4).map_err(e)?,
        created_at: r.try_get(5).map_err(e)?,
        updated_at: r.try_get(6).map_err(e)?,
        version: r.try_get(7).map_err(e)?,
        seal: r.try_get(8).map_err(e)?,
    })
}

fn operator_from_row(r: &PgRow) -> StoreResult<OperatorRecord> {
    let e = db_error("read operator");
    Ok(OperatorRecord {
        principal_id: r.try_get(0).map_err(e)?,
        password_hash: r.try_get(1).map_err(e)?,
        enrolment_hash: r.try_get(2).map_err(e)?,
        totp_sealed: r.try_get(3).map_err(e)?,
        enrolled: r.try_get(4).map_err(e)?,
        totp_last_step: r.try_get(5).map_err(e)?,
        failed_logins: r.try_get(6).map_err(e)?,
        last_failure_at: r.try_get(7).map_err(e)?,
        factor_failures: r.try_get(8).map_err(e)?,
        locked: r.try_get(9).map_err(e)?,
        seal: r.try_get(10).map_err(e)?,
    })
}

/// A recovery code from columns `at` (code id), `at + 1` (hash), `at + 2` (seal).
fn recovery_code_from_row(r: &PgRow, at: usize) -> StoreResult<RecoveryCodeRecord> {
    let e = db_error("read recovery code");
    Ok(RecoveryCodeRecord {
        code_id: r.try_get(at).map_err(e)?,
        hash: r.try_get(at + 1).map_err(e)?,
        seal: r.try_get(at + 2).map_err(e)?,
    })
}

/// The rows that carry these tokens, by token.
async fn rows_by_token(
    conn: &mut PgConnection,
    secrets: &str,
    tokens: &[String],
) -> StoreResult<std::collections::HashMap<String, SecretRecord>> {
    if tokens.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let rows = sqlx::query(sql(&format!(
        "SELECT {SECRET_COLUMNS} FROM {secrets} WHERE token = ANY($1)"
    )))
    .bind(tokens)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error("read secrets"))?;
    rows.iter()
        .map(|r| secret_from_row(r).map(|rec| (rec.token.clone(), rec)))
        .collect()
}

/// Reads a group of secrets, one token per caller, in one statement.
async fn read_group(
    db: PgDatabase,
    secrets: String,
    tokens: Vec<String>,
) -> Vec<StoreResult<Option<SecretRecord>>> {
    let sql_text = format!("SELECT {SECRET_COLUMNS} FROM {secrets} WHERE token = ANY($1)");
    read_by_token(&db, &sql_text, &tokens, "read secret", secret_from_row).await
}

/// The token of a live secret in (tenant, class) with this fingerprint; an
/// original before an allowed copy, then the oldest.
async fn find_one(
    conn: &mut PgConnection,
    secrets: &str,
    tenant: &str,
    class: &str,
    fingerprint: &[u8],
) -> StoreResult<Option<String>> {
    sqlx::query(sql(&format!(
        "SELECT token FROM {secrets} WHERE fingerprint = $1 AND tenant = $2 AND class = $3 \
         AND state = 'active' ORDER BY duplicate_allowed, created_at, token LIMIT 1"
    )))
    .bind(fingerprint)
    .bind(tenant)
    .bind(class)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error("find fingerprint"))?
    .map(|r| r.try_get(0).map_err(db_error("find fingerprint")))
    .transpose()
}

/// Answers a group of look-ups with one statement: for each fingerprint of
/// each job, the token of a live secret in the job's tenant and class that
/// carries it (an original before an allowed copy, then the oldest).
async fn lookup_group(
    db: PgDatabase,
    secrets: String,
    jobs: Vec<Lookup>,
) -> Vec<StoreResult<Vec<Option<String>>>> {
    together_or_alone(
        jobs,
        |jobs| {
            let (db, secrets) = (&db, &secrets);
            async move { lookup_rows(db, secrets, &jobs).await }
        },
        |job| {
            let (db, secrets) = (&db, &secrets);
            async move {
                let mut one = lookup_rows(db, secrets, std::slice::from_ref(&job)).await?;
                one.pop()
                    .ok_or(StoreError::Malformed("look-up returned nothing"))
            }
        },
    )
    .await
}

async fn lookup_rows(
    db: &PgDatabase,
    secrets: &str,
    jobs: &[Lookup],
) -> StoreResult<Vec<Vec<Option<String>>>> {
    // Each fingerprint probed once, however many jobs ask about it.
    let mut fps: Vec<Vec<u8>> = jobs
        .iter()
        .flat_map(|j| j.fingerprints.iter().map(|f| f.to_vec()))
        .collect();
    fps.sort_unstable();
    fps.dedup();
    // One index probe per fingerprint, whatever the table's statistics say.
    // As `fingerprint = ANY($1)`, a table not yet analysed (a new vault's
    // first minutes, or its first large import) is estimated to return half
    // a percent of its rows per element, and for a group of a few dozen
    // fingerprints the planner scanned the whole table instead. The OFFSET 0
    // keeps the subquery from being flattened into such a join. `IS NOT
    // NULL` is spelled out so the partial fingerprint index applies.
    // Fingerprints are keyed per tenant and class, so rows of other tenants
    // practically never match; they are filtered out below all the same.
    let rows = sqlx::query(sql(&format!(
        "SELECT f.fp, s.tenant, s.class, s.token FROM UNNEST($1::bytea[]) AS f(fp) \
         CROSS JOIN LATERAL (SELECT tenant, class, token, duplicate_allowed, created_at \
             FROM {secrets} WHERE fingerprint IS NOT NULL AND fingerprint = f.fp \
             AND state = 'active' OFFSET 0) AS s \
         ORDER BY f.fp, s.duplicate_allowed, s.created_at, s.token"
    )))
    .bind(&fps)
    .fetch_all(db.pool())
    .await
    .map_err(db_error("find fingerprints"))?;
    let e = db_error("find fingerprints");
    // Fingerprint → its live rows as (tenant, class, token), in the order
    // above: the first that matches a job's tenant and class answers it.
    let mut found: std::collections::HashMap<Vec<u8>, Vec<(String, String, String)>> =
        std::collections::HashMap::new();
    for r in &rows {
        found.entry(r.try_get(0).map_err(e)?).or_default().push((
            r.try_get(1).map_err(e)?,
            r.try_get(2).map_err(e)?,
            r.try_get(3).map_err(e)?,
        ));
    }
    Ok(jobs
        .iter()
        .map(|j| {
            j.fingerprints
                .iter()
                .map(|f| {
                    found.get(f.as_slice()).and_then(|live| {
                        live.iter()
                            .find(|(tenant, class, _)| *tenant == j.tenant && *class == j.class)
                            .map(|(_, _, token)| token.clone())
                    })
                })
                .collect()
        })
        .collect())
}

/// Runs a group of insert jobs as one statement (or, if that fails, job by
/// job) and splits the outcomes back per job.
async fn insert_group(
    db: PgDatabase,
    secrets: String,
    jobs: Vec<Arc<[SecretRecord]>>,
) -> Vec<StoreResult<Vec<InsertOutcome>>> {
    together_or_alone(
        jobs,
        |jobs| {
            let (db, secrets) = (&db, &secrets);
            async move {
                let all: Vec<&SecretRecord> = jobs.iter().flat_map(|j| j.iter()).collect();
                let mut outcomes = insert_rows(db, secrets, &all).await?.into_iter();
                Ok(jobs
                    .iter()
                    .map(|j| outcomes.by_ref().take(j.len()).collect())
                    .collect())
            }
        },
        |job| {
            let (db, secrets) = (&db, &secrets);
            async move { insert_rows(db, secrets, &job.iter().collect::<Vec<_>>()).await }
        },
    )
    .await
}

/// Inserts `records` in one statement; one outcome per record, in order.
async fn insert_rows(
    db: &PgDatabase,
    secrets: &str,
    records: &[&SecretRecord],
) -> StoreResult<Vec<InsertOutcome>> {
    let mut conn = db.pool().acquire().await.map_err(db_error("connect"))?;
    let conn = &mut *conn;
    // One statement for the whole group. The NOT EXISTS ends in OFFSET 0 so
    // it stays a per-row probe of the fingerprint index: as a join, the
    // generic plan of this prepared statement hashed the whole table on every
    // insert. A row whose value is already live (an original or an allowed
    // copy) is left out; two nodes, or two jobs of one group, inserting the
    // same value at once meet at the unique index on originals, and the
    // later row is skipped. Rows go in fingerprint order, so two such
    // statements take their index locks in the same order and cannot
    // deadlock. Any unique conflict skips the row, the token's too: the
    // statement may be run again for rows an earlier run committed (a merged
    // group that failed after its insert is rerun job by job), and must
    // then report them inserted, not as duplicates of themselves.
    let insert = format!(
        "INSERT INTO {secrets} ({SECRET_COLUMNS}) \
         SELECT r.* FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], \
             $5::bytea[], $6::bool[], $7::text[], $8::bigint[], $9::bigint[], \
             $10::text[], $11::text[], $12::bytea[]) \
         AS r(token, tenant, class, key_version, fingerprint, duplicate_allowed, \
             metadata, created_at, window_closes_at, created_by, state, seal) \
         WHERE NOT EXISTS (SELECT 1 FROM {secrets} s WHERE NOT r.duplicate_allowed \
             AND s.fingerprint = r.fingerprint AND s.tenant = r.tenant \
             AND s.class = r.class AND s.state = 'active' OFFSET 0) \
         ORDER BY r.fingerprint \
         ON CONFLICT DO NOTHING RETURNING token"
    );
    let version = |r: &&SecretRecord| {
        i32::try_from(r.key_version).map_err(|_| StoreError::Malformed("key version too large"))
    };
    let inserted = sqlx::query(sql(&insert))
        .bind(records.iter().map(|r| r.token.clone()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.tenant.clone()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.class.clone()).collect::<Vec<_>>())
        .bind(records.iter().map(version).collect::<Result<Vec<_>, _>>()?)
        .bind(
            records
                .iter()
                .map(|r| r.fingerprint.map(|f| f.to_vec()))
                .collect::<Vec<_>>(),
        )
        .bind(
            records
                .iter()
                .map(|r| !r.fingerprint_unique)
                .collect::<Vec<_>>(),
        )
        .bind(
            records
                .iter()
                .map(|r| r.metadata.clone())
                .collect::<Vec<_>>(),
        )
        .bind(records.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(
            records
                .iter()
                .map(|r| r.window_closes_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            records
                .iter()
                .map(|r| r.created_by.clone())
                .collect::<Vec<_>>(),
        )
        .bind(records.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.seal.clone()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error("insert secrets"))?;
    let live: std::collections::HashSet<String> = inserted
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(db_error("insert secrets"))?;
    let skipped: Vec<String> = records
        .iter()
        .filter(|r| !live.contains(&r.token))
        .map(|r| r.token.clone())
        .collect();
    let already = rows_by_token(conn, secrets, &skipped).await?;
    let mut outcomes = Vec::with_capacity(records.len());
    for rec in records.iter() {
        if live.contains(&rec.token) {
            outcomes.push(InsertOutcome::Inserted);
            continue;
        }
        if let Some(stored) = already.get(&rec.token) {
            // Stored by an earlier run of this same insert, or (with 128
            // random bits, never in practice) another secret's token.
            if stored == *rec {
                outcomes.push(InsertOutcome::Inserted);
                continue;
            }
            return Err(StoreError::Conflict("token already in use"));
        }
        let existing = match &rec.fingerprint {
            Some(fp) => find_one(conn, secrets, &rec.tenant, &rec.class, fp).await?,
            None => None,
        };
        match existing {
            Some(existing) => outcomes.push(InsertOutcome::Duplicate { existing }),
            // Skipped for a live copy that has gone since: the
            // job cannot answer truthfully, so the group fails.
            None => {
                return Err(StoreError::Backend {
                    op: "insert secrets",
                    detail: "a duplicate vanished while it was being stored; retry".into(),
                });
            }
        }
    }
    Ok(outcomes)
}

#[async_trait]
impl CentralStore for PgCentralStore {
    async fn find_fingerprints(
        &self,
        tenant: &str,
        class: &str,
        fingerprints: &[[u8; 32]],
    ) -> StoreResult<Vec<Option<String>>> {
        let job = Lookup {
            tenant: tenant.to_owned(),
            class: class.to_owned(),
            fingerprints: fingerprints.to_vec(),
        };
        self.lookups.submit(job, fingerprints.len()).await
    }

    async fn insert_secrets(
        &self,
        records: std::sync::Arc<[SecretRecord]>,
    ) -> StoreResult<Vec<InsertOutcome>> {
        let rows = records.len();
        self.inserts.submit(records, rows).await
    }

    async fn get_secret(
        &self,
        token: &str,
        scope: &TenantScope,
    ) -> StoreResult<Scoped<SecretRecord>> {
        Ok(scope.filter(self.reads.submit(token.to_owned(), 1).await?))
    }

    async fn set_window(
        &self,
        token: &str,
        tenant: &str,
        closes_at: i64,
        swap: SealSwap,
    ) -> StoreResult<bool> {
        let sql_text = format!(
            "UPDATE {} SET window_closes_at = $2, seal = $5 \
             WHERE token = $1 AND tenant = $3 AND state = 'active' AND seal = $4",
            self.secrets
        );
        let done = sqlx::query(sql(&sql_text))
            .bind(token)
            .bind(closes_at)
            .bind(tenant)
            .bind(swap.from)
            .bind(swap.to)
            .execute(self.db.pool())
            .await
            .map_err(db_error("set reveal window"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn mark_deleted(&self, token: &str, tenant: &str, swap: SealSwap) -> StoreResult<bool> {
        let sql_text = format!(
            "UPDATE {} SET state = 'deleted', fingerprint = NULL, metadata = NULL, seal = $4 \
             WHERE token = $1 AND tenant = $2 AND state = 'active' AND seal = $3",
            self.secrets
        );
        let done = sqlx::query(sql(&sql_text))
            .bind(token)
            .bind(tenant)
            .bind(swap.from)
            .bind(swap.to)
            .execute(self.db.pool())
            .await
            .map_err(db_error("delete secret"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_principal(&self, p: PrincipalRecord) -> StoreResult<()> {
        let sql_text = format!(
            "INSERT INTO {} ({PRINCIPAL_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT DO NOTHING",
            self.principals
        );
        let done = sqlx::query(sql(&sql_text))
            .bind(p.id)
            .bind(p.client_id)
            .bind(p.name)
            .bind(p.roles.join(","))
            .bind(p.tenants.join(","))
            .bind(p.secret_hash)
            .bind(p.created_at)
            .bind(p.disabled)
            .bind(p.created_by)
            .bind(p.pending_approval)
            .bind(p.kind)
            .bind(p.previous_secret_hash)
            .bind(p.previous_valid_until)
            .bind(p.seal)
            .execute(self.db.pool())
            .await
            .map_err(db_error("insert principal"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("a principal with that name exists"));
        }
        Ok(())
    }

    async fn principal_by_client_id(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<PrincipalRecord>> {
        self.principal_where("client_id", client_id).await
    }

    async fn principal_by_id(
        &self,
        id: &str,
        scope: &TenantScope,
    ) -> StoreResult<Option<PrincipalRecord>> {
        Ok(self
            .principal_where("id", id)
            .await?
            .filter(|p| scope.admits_all(&p.tenants)))
    }

    async fn list_principals(&self, scope: &TenantScope) -> StoreResult<Vec<PrincipalRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM {} ORDER BY created_at, name",
            self.principals
        )))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("list principals"))?;
        let mut visible = Vec::with_capacity(rows.len());
        for row in &rows {
            let p = principal_from_row(row)?;
            if scope.admits_all(&p.tenants) {
                visible.push(p);
            }
        }
        Ok(visible)
    }

    async fn insert_vouchers(&self, vouchers: Vec<VoucherRecord>) -> StoreResult<Vec<bool>> {
        if vouchers.is_empty() {
            return Ok(Vec::new());
        }
        let column = |f: fn(&VoucherRecord) -> String| vouchers.iter().map(f).collect::<Vec<_>>();
        let rows = sqlx::query(sql(&format!(
            "INSERT INTO {} (id, tenant, product_id, face_value, currency, token, pin_token, \
                 expires_at, serial, state, import_id, created_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
                 $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[], \
                 $12::bigint[]) \
             ON CONFLICT (token) DO UPDATE SET import_id = excluded.import_id, \
                 state = excluded.state WHERE {v}.state = 'staged' AND {v}.tenant = excluded.tenant \
             RETURNING token",
            self.vouchers,
            v = self.vouchers
        )))
        .bind(column(|v| v.id.clone()))
        .bind(column(|v| v.tenant.clone()))
        .bind(column(|v| v.product_id.clone()))
        .bind(vouchers.iter().map(|v| v.face_value).collect::<Vec<_>>())
        .bind(column(|v| v.currency.clone()))
        .bind(column(|v| v.token.clone()))
        .bind(
            vouchers
                .iter()
                .map(|v| v.pin_token.clone())
                .collect::<Vec<_>>(),
        )
        .bind(vouchers.iter().map(|v| v.expires_at).collect::<Vec<_>>())
        .bind(
            vouchers
                .iter()
                .map(|v| v.serial.clone())
                .collect::<Vec<_>>(),
        )
        .bind(column(|v| v.state.clone()))
        .bind(column(|v| v.import_id.clone()))
        .bind(vouchers.iter().map(|v| v.created_at).collect::<Vec<_>>())
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("insert vouchers"))?;
        let mut added = std::collections::HashSet::with_capacity(rows.len());
        for row in &rows {
            let token: String = row.try_get(0).map_err(db_error("insert vouchers"))?;
            added.insert(token);
        }
        // A token offered twice was added at most once: the first time.
        Ok(vouchers.iter().map(|v| added.remove(&v.token)).collect())
    }

    async fn put_import(&self, i: ImportRecord) -> StoreResult<()> {
        sqlx::query(sql(&format!(
            "INSERT INTO {} (id, tenant, retailer_id, status, rows, accepted, rejected, \
                 duplicates, created_by, created_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, rows = excluded.rows, \
                 accepted = excluded.accepted, rejected = excluded.rejected, \
                 duplicates = excluded.duplicates, finished_at = excluded.finished_at",
            self.imports
        )))
        .bind(i.id)
        .bind(i.tenant)
        .bind(i.retailer_id)
        .bind(i.status)
        .bind(i.rows)
        .bind(i.accepted)
        .bind(i.rejected)
        .bind(i.duplicates)
        .bind(i.created_by)
        .bind(i.created_at)
        .bind(i.finished_at)
        .execute(self.db.pool())
        .await
        .map_err(db_error("record import"))?;
        Ok(())
    }

    async fn stock_counts(
        &self,
        scope: &TenantScope,
        now: i64,
        expiring_before: i64,
    ) -> StoreResult<Vec<StockCount>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT tenant, product_id, face_value, currency, state, COUNT(*), \
                 COUNT(*) FILTER (WHERE expires_at < $2), COUNT(*) FILTER (WHERE expires_at <= $3) \
             FROM {} WHERE $1::text[] IS NULL OR tenant = ANY($1) \
             GROUP BY tenant, product_id, face_value, currency, state \
             ORDER BY tenant, product_id, face_value, state",
            self.vouchers
        )))
        .bind(scope_param(scope))
        .bind(expiring_before)
        .bind(now)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("count stock"))?;
        rows.iter()
            .map(|r| {
                let e = db_error("count stock");
                Ok(StockCount {
                    tenant: r.try_get(0).map_err(e)?,
                    product_id: r.try_get(1).map_err(e)?,
                    face_value: r.try_get(2).map_err(e)?,
                    currency: r.try_get(3).map_err(e)?,
                    state: r.try_get(4).map_err(e)?,
                    count: r.try_get(5).map_err(e)?,
                    expiring: r.try_get(6).map_err(e)?,
                    expired: r.try_get(7).map_err(e)?,
                })
            })
            .collect()
    }

    async fn import_by_id(&self, tenant: &str, id: &str) -> StoreResult<Option<ImportRecord>> {
        let row = sqlx::query(sql(&format!(
            "SELECT id, tenant, retailer_id, status, rows, accepted, rejected, duplicates, \
                 created_by, created_at, finished_at FROM {} WHERE id = $1 AND tenant = $2",
            self.imports
        )))
        .bind(id)
        .bind(tenant)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("read import"))?;
        let Some(r) = row else {
            return Ok(None);
        };
        let e = db_error("read import");
        Ok(Some(ImportRecord {
            id: r.try_get(0).map_err(e)?,
            tenant: r.try_get(1).map_err(e)?,
            retailer_id: r.try_get(2).map_err(e)?,
            status: r.try_get(3).map_err(e)?,
            rows: r.try_get(4).map_err(e)?,
            accepted: r.try_get(5).map_err(e)?,
            rejected: r.try_get(6).map_err(e)?,
            duplicates: r.try_get(7).map_err(e)?,
            created_by: r.try_get(8).map_err(e)?,
            created_at: r.try_get(9).map_err(e)?,
            finished_at: r.try_get(10).map_err(e)?,
        }))
    }

    async fn insert_retailer(&self, r: RetailerRecord) -> StoreResult<()> {
        let done = sqlx::query(sql(&format!(
            "INSERT INTO {} (id, tenant, name, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            self.retailers
        )))
        .bind(r.id)
        .bind(r.tenant)
        .bind(r.name)
        .bind(r.created_at)
        .bind(r.created_by)
        .execute(self.db.pool())
        .await
        .map_err(db_error("insert retailer"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("a retailer with that name exists"));
        }
        Ok(())
    }

    async fn list_retailers(&self, scope: &TenantScope) -> StoreResult<Vec<RetailerRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT id, tenant, name, created_at, created_by FROM {} \
             WHERE $1::text[] IS NULL OR tenant = ANY($1) ORDER BY tenant, name",
            self.retailers
        )))
        .bind(scope_param(scope))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("list retailers"))?;
        rows.iter()
            .map(|r| {
                let e = db_error("read retailer");
                Ok(RetailerRecord {
                    id: r.try_get(0).map_err(e)?,
                    tenant: r.try_get(1).map_err(e)?,
                    name: r.try_get(2).map_err(e)?,
                    created_at: r.try_get(3).map_err(e)?,
                    created_by: r.try_get(4).map_err(e)?,
                })
            })
            .collect()
    }

    async fn insert_product(&self, p: ProductRecord) -> StoreResult<()> {
        let done = sqlx::query(sql(&format!(
            "INSERT INTO {} ({PRODUCT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            self.products
        )))
        .bind(p.id)
        .bind(p.tenant)
        .bind(p.retailer_id)
        .bind(p.sku)
        .bind(p.name)
        .bind(p.currency)
        .bind(p.denominations)
        .bind(p.low_stock_threshold)
        .bind(p.created_at)
        .bind(p.created_by)
        .execute(self.db.pool())
        .await
        .map_err(db_error("insert product"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("a product with that SKU exists"));
        }
        Ok(())
    }

    async fn list_products(&self, scope: &TenantScope) -> StoreResult<Vec<ProductRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM {} \
             WHERE $1::text[] IS NULL OR tenant = ANY($1) ORDER BY tenant, sku",
            self.products
        )))
        .bind(scope_param(scope))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("list products"))?;
        rows.iter().map(product_from_row).collect()
    }

    async fn list_custom_roles(&self) -> StoreResult<Vec<CustomRoleRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT {ROLE_COLUMNS} FROM {} ORDER BY name",
            self.custom_roles
        )))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("list roles"))?;
        rows.iter().map(role_from_row).collect()
    }

    async fn insert_custom_role(&self, role: CustomRoleRecord) -> StoreResult<()> {
        let sql_text = format!(
            "INSERT INTO {} ({ROLE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING",
            self.custom_roles
        );
        let done = sqlx::query(sql(&sql_text))
            .bind(role.name)
            .bind(role.permissions.join(","))
            .bind(role.pending.map(|p| p.join(",")))
            .bind(role.requested_by)
            .bind(role.created_by)
            .bind(role.created_at)
            .bind(role.updated_at)
            .bind(role.version)
            .bind(role.seal)
            .execute(self.db.pool())
            .await
            .map_err(db_error("insert role"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("a role with that name exists"));
        }
        Ok(())
    }

    async fn replace_custom_role(
        &self,
        role: CustomRoleRecord,
        expected_version: i64,
    ) -> StoreResult<bool> {
        let sql_text = format!(
            "UPDATE {} SET permissions = $2, pending = $3, requested_by = $4, updated_at = $5, \
             version = version + 1, seal = $7 WHERE name = $1 AND version = $6",
            self.custom_roles
        );
        let done = sqlx::query(sql(&sql_text))
            .bind(role.name)
            .bind(role.permissions.join(","))
            .bind(role.pending.map(|p| p.join(",")))
            .bind(role.requested_by)
            .bind(role.updated_at)
            .bind(expected_version)
            .bind(role.seal)
            .execute(self.db.pool())
            .await
            .map_err(db_error("change role"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn replace_principal(
        &self,
        p: PrincipalRecord,
        expected_seal: &[u8],
    ) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "UPDATE {} SET roles = $2, tenants = $3, secret_hash = $4, disabled = $5, \
                 created_by = $6, pending_approval = $7, kind = $8, previous_secret_hash = $9, \
                 previous_valid_until = $10, seal = $11 \
             WHERE id = $1 AND seal = $12",
            self.principals
        )))
        .bind(p.id)
        .bind(p.roles.join(","))
        .bind(p.tenants.join(","))
        .bind(p.secret_hash)
        .bind(p.disabled)
        .bind(p.created_by)
        .bind(p.pending_approval)
        .bind(p.kind)
        .bind(p.previous_secret_hash)
        .bind(p.previous_valid_until)
        .bind(p.seal)
        .bind(expected_seal)
        .execute(self.db.pool())
        .await
        .map_err(db_error("change principal"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn principal_by_name(&self, name: &str) -> StoreResult<Option<PrincipalRecord>> {
        self.principal_where("name", name).await
    }

    async fn put_operator(&self, o: OperatorRecord) -> StoreResult<()> {
        sqlx::query(sql(&format!(
            "INSERT INTO {} ({OPERATOR_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (principal_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, \
                 enrolment_hash = EXCLUDED.enrolment_hash, totp_sealed = EXCLUDED.totp_sealed, \
                 enrolled = EXCLUDED.enrolled, totp_last_step = EXCLUDED.totp_last_step, \
                 failed_logins = EXCLUDED.failed_logins, \
                 last_failure_at = EXCLUDED.last_failure_at, \
                 factor_failures = EXCLUDED.factor_failures, locked = EXCLUDED.locked, \
                 seal = EXCLUDED.seal",
            self.operators
        )))
        .bind(o.principal_id)
        .bind(o.password_hash)
        .bind(o.enrolment_hash)
        .bind(o.totp_sealed)
        .bind(o.enrolled)
        .bind(o.totp_last_step)
        .bind(o.failed_logins)
        .bind(o.last_failure_at)
        .bind(o.factor_failures)
        .bind(o.locked)
        .bind(o.seal)
        .execute(self.db.pool())
        .await
        .map_err(db_error("store operator"))?;
        Ok(())
    }

    async fn operator(&self, principal_id: &str) -> StoreResult<Option<OperatorRecord>> {
        sqlx::query(sql(&format!(
            "SELECT {OPERATOR_COLUMNS} FROM {} WHERE principal_id = $1",
            self.operators
        )))
        .bind(principal_id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("read operator"))?
        .as_ref()
        .map(operator_from_row)
        .transpose()
    }

    async fn accept_totp_step(&self, principal_id: &str, step: i64) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "UPDATE {} SET totp_last_step = $2 WHERE principal_id = $1 AND totp_last_step < $2",
            self.operators
        )))
        .bind(principal_id)
        .bind(step)
        .execute(self.db.pool())
        .await
        .map_err(db_error("accept totp step"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim_login_attempt(&self, principal_id: &str, at_ms: i64) -> StoreResult<bool> {
        // The back-off: 0, then 1 s doubling to at most 60 s.
        let done = sqlx::query(sql(&format!(
            "UPDATE {} SET failed_logins = failed_logins + 1, last_failure_at = $2 \
             WHERE principal_id = $1 AND enrolled AND NOT locked \
             AND $2 >= last_failure_at + CASE \
                 WHEN failed_logins <= 0 THEN 0 \
                 WHEN failed_logins >= 7 THEN 60000 \
                 ELSE 1000::bigint << (failed_logins - 1)::int END",
            self.operators
        )))
        .bind(principal_id)
        .bind(at_ms)
        .execute(self.db.pool())
        .await
        .map_err(db_error("claim login attempt"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_factor_failure(
        &self,
        principal_id: &str,
        lock_after: i64,
        locked_seal: &[u8],
    ) -> StoreResult<(i64, bool)> {
        // The seal changes with `locked` in the same statement (the right
        // side of every assignment sees the row as it was).
        let row = sqlx::query(sql(&format!(
            "UPDATE {} SET factor_failures = factor_failures + 1, \
                 seal = CASE WHEN NOT locked AND factor_failures + 1 >= $2 \
                     THEN $3 ELSE seal END, \
                 locked = (locked OR factor_failures + 1 >= $2) \
             WHERE principal_id = $1 RETURNING factor_failures, locked",
            self.operators
        )))
        .bind(principal_id)
        .bind(lock_after)
        .bind(locked_seal)
        .fetch_one(self.db.pool())
        .await
        .map_err(db_error("record login failure"))?;
        let e = db_error("record login failure");
        Ok((row.try_get(0).map_err(e)?, row.try_get(1).map_err(e)?))
    }

    async fn record_login_success(&self, principal_id: &str) -> StoreResult<()> {
        sqlx::query(sql(&format!(
            "UPDATE {} SET failed_logins = 0, factor_failures = 0 WHERE principal_id = $1",
            self.operators
        )))
        .bind(principal_id)
        .execute(self.db.pool())
        .await
        .map_err(db_error("record login success"))?;
        Ok(())
    }

    async fn replace_operator(&self, o: OperatorRecord, expected_seal: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "UPDATE {} SET password_hash = $2, enrolment_hash = $3, totp_sealed = $4, \
                 enrolled = $5, locked = $6, seal = $7 \
             WHERE principal_id = $1 AND seal = $8",
            self.operators
        )))
        .bind(o.principal_id)
        .bind(o.password_hash)
        .bind(o.enrolment_hash)
        .bind(o.totp_sealed)
        .bind(o.enrolled)
        .bind(o.locked)
        .bind(o.seal)
        .bind(expected_seal)
        .execute(self.db.pool())
        .await
        .map_err(db_error("change operator"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_recovery_codes(
        &self,
        principal_id: &str,
        codes: Vec<RecoveryCodeRecord>,
    ) -> StoreResult<()> {
        let e = db_error("store recovery codes");
        let mut tx = self.db.pool().begin().await.map_err(e)?;
        sqlx::query(sql(&format!(
            "DELETE FROM {} WHERE principal_id = $1",
            self.recovery_codes
        )))
        .bind(principal_id)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
        let ids: Vec<&str> = codes.iter().map(|c| c.code_id.as_str()).collect();
        let hashes: Vec<&str> = codes.iter().map(|c| c.hash.as_str()).collect();
        let seals: Vec<&[u8]> = codes.iter().map(|c| c.seal.as_slice()).collect();
        sqlx::query(sql(&format!(
            "INSERT INTO {} (principal_id, code_id, hash, seal) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bytea[])",
            self.recovery_codes
        )))
        .bind(principal_id)
        .bind(ids)
        .bind(hashes)
        .bind(seals)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
        tx.commit().await.map_err(e)
    }

    async fn recovery_code(
        &self,
        principal_id: &str,
        code_id: &str,
    ) -> StoreResult<Option<RecoveryCodeRecord>> {
        let e = db_error("read recovery code");
        sqlx::query(sql(&format!(
            "SELECT code_id, hash, seal FROM {} WHERE principal_id = $1 AND code_id = $2",
            self.recovery_codes
        )))
        .bind(principal_id)
        .bind(code_id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(e)?
        .map(|r| recovery_code_from_row(&r, 0))
        .transpose()
    }

    async fn consume_recovery_code(&self, principal_id: &str, code_id: &str) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "DELETE FROM {} WHERE principal_id = $1 AND code_id = $2",
            self.recovery_codes
        )))
        .bind(principal_id)
        .bind(code_id)
        .execute(self.db.pool())
        .await
        .map_err(db_error("use recovery code"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn rows_without_seal(&self, limit: usize) -> StoreResult<Vec<UnsealedRow>> {
        let e = db_error("read unsealed rows");
        let mut out = Vec::new();
        let left = |out: &Vec<UnsealedRow>| {
            i64::try_from(limit.saturating_sub(out.len())).unwrap_or(i64::MAX)
        };
        let queries = [
            format!(
                "SELECT {PRINCIPAL_COLUMNS} FROM {} WHERE seal = ''::bytea LIMIT $1",
                self.principals
            ),
            format!(
                "SELECT {ROLE_COLUMNS} FROM {} WHERE seal = ''::bytea LIMIT $1",
                self.custom_roles
            ),
            format!(
                "SELECT {OPERATOR_COLUMNS} FROM {} WHERE seal = ''::bytea LIMIT $1",
                self.operators
            ),
            format!(
                "SELECT code_id, hash, seal, principal_id FROM {} WHERE seal = ''::bytea LIMIT $1",
                self.recovery_codes
            ),
            format!(
                "SELECT {SECRET_COLUMNS} FROM {} WHERE seal = ''::bytea LIMIT $1",
                self.secrets
            ),
        ];
        for (kind, query) in queries.iter().enumerate() {
            if left(&out) == 0 {
                break;
            }
            let rows = sqlx::query(sql(query))
                .bind(left(&out))
                .fetch_all(self.db.pool())
                .await
                .map_err(e)?;
            for r in &rows {
                out.push(match kind {
                    0 => UnsealedRow::Principal(principal_from_row(r)?),
                    1 => UnsealedRow::Role(role_from_row(r)?),
                    2 => UnsealedRow::Operator(operator_from_row(r)?),
                    3 => UnsealedRow::RecoveryCode(
                        r.try_get(3).map_err(e)?,
                        recovery_code_from_row(r, 0)?,
                    ),
                    _ => UnsealedRow::Secret(secret_from_row(r)?),
                });
            }
        }
        Ok(out)
    }

    async fn set_first_seal(&self, row: &UnsealedRow, seal: &[u8]) -> StoreResult<bool> {
        let (table, key, keys): (&str, &str, Vec<&str>) = match row {
            UnsealedRow::Secret(r) => (&self.secrets, "token = $2", vec![&r.token]),
            UnsealedRow::Principal(r) => (&self.principals, "id = $2", vec![&r.id]),
            UnsealedRow::Role(r) => (&self.custom_roles, "name = $2", vec![&r.name]),
            UnsealedRow::Operator(r) => {
                (&self.operators, "principal_id = $2", vec![&r.principal_id])
            }
            UnsealedRow::RecoveryCode(id, c) => (
                &self.recovery_codes,
                "principal_id = $2 AND code_id = $3",
                vec![id, &c.code_id],
            ),
        };
        let text = format!("UPDATE {table} SET seal = $1 WHERE {key} AND seal = ''::bytea");
        let mut query = sqlx::query(sql(&text)).bind(seal);
        for k in keys {
            query = query.bind(k);
        }
        let done = query
            .execute(self.db.pool())
            .await
            .map_err(db_error("seal row"))?;
        Ok(done.rows_affected() > 0)
    }
}

impl PgCentralStore {
    /// The principal whose `column` (a unique one) equals `value`.
    async fn principal_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> StoreResult<Option<PrincipalRecord>> {
        sqlx::query(sql(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM {} WHERE {column} = $1",
            self.principals
        )))
        .bind(value)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("read principal"))?
        .as_ref()
        .map(principal_from_row)
        .transpose()
    }
}
