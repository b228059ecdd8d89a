//! Purchases from suppliers and their credentials' tokens on PostgreSQL.
//!
//! A purchase is reserved against its supplier's daily limit under a
//! transaction-scoped advisory lock on (supplier, day): purchases of one
//! supplier and day are checked one after another, across every node, while
//! other suppliers' go on.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use strongroom_store::{
    PurchaseFilter, PurchaseLineRecord, PurchaseRecord, Reservation, ReserveRule, StoreResult,
    SupplierCredentialRecord, SupplyStore, purchase_state,
};

use crate::central::PgCentralStore;
use crate::engine::db_error;
use crate::sql;

const PURCHASE_COLUMNS: &str = "id, tenant, supplier, product_id, face_value, currency, quantity, \
     cost, purpose, state, day, requested_by, approved_by, charged, codes_received, note, \
     created_at, updated_at";

const LINE_COLUMNS: &str =
    "purchase_id, line, reference, supplier_order, state, charged, codes, note, updated_at";

fn purchase_from_row(r: &PgRow) -> StoreResult<PurchaseRecord> {
    let e = db_error("read purchase");
    Ok(PurchaseRecord {
        id: r.try_get(0).map_err(e)?,
        tenant: r.try_get(1).map_err(e)?,
        supplier: r.try_get(2).map_err(e)?,
        product_id: r.try_get(3).map_err(e)?,
        face_value: r.try_get(4).map_err(e)?,
        currency: r.try_get(5).map_err(e)?,
        quantity: r.try_get(6).map_err(e)?,
        cost: r.try_get(7).map_err(e)?,
        purpose: r.try_get(8).map_err(e)?,
        state: r.try_get(9).map_err(e)?,
        day: r.try_get(10).map_err(e)?,
        requested_by: r.try_get(11).map_err(e)?,
        approved_by: r.try_get(12).map_err(e)?,
        charged: r.try_get(13).map_err(e)?,
        codes_received: r.try_get(14).map_err(e)?,
        note: r.try_get(15).map_err(e)?,
        created_at: r.try_get(16).map_err(e)?,
        updated_at: r.try_get(17).map_err(e)?,
    })
}

impl PgCentralStore {
    fn spent_sql(&self) -> String {
        format!(
            "SELECT COALESCE(SUM(CASE WHEN state = ANY($4) THEN cost \
             ELSE GREATEST(charged, face_value * codes_received) END), 0)::BIGINT \
             FROM {}.purchases WHERE supplier = $1 AND day = $2 AND currency = $3",
            self.schema
        )
    }
}

fn committed() -> Vec<String> {
    purchase_state::COMMITTED
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

#[async_trait]
impl SupplyStore for PgCentralStore {
    async fn reserve_purchase(
        &self,
        mut p: PurchaseRecord,
        daily_limit: Option<i64>,
        rule: ReserveRule,
    ) -> StoreResult<Reservation> {
        let e = db_error("reserve purchase");
        let mut tx = self.db.pool().begin().await.map_err(e)?;
        // One purchase of a supplier and day at a time is checked.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("strongroom-spend:{}:{}", p.supplier, p.day))
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        if rule == ReserveRule::Replenishment {
            // And one replenishment of a product and face value, whichever
            // supplier or day it counts against.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!(
                    "strongroom-replenish:{}:{}:{}",
                    p.tenant, p.product_id, p.face_value
                ))
                .execute(&mut *tx)
                .await
                .map_err(e)?;
            let open: i64 = sqlx::query_scalar(sql(&format!(
                "SELECT COUNT(*) FROM {}.purchases WHERE tenant = $1 AND product_id = $2 \
                 AND face_value = $3 AND purpose = 'replenishment' AND state = ANY($4)",
                self.schema
            )))
            .bind(&p.tenant)
            .bind(&p.product_id)
            .bind(p.face_value)
            .bind(
                purchase_state::OPEN
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect::<Vec<_>>(),
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(e)?;
            if open > 0 {
                return Ok(Reservation::AlreadyOnOrder);
            }
        }
        let within = match daily_limit {
            None => true,
            Some(limit) => {
                let spent: i64 = sqlx::query_scalar(sql(&self.spent_sql()))
                    .bind(&p.supplier)
                    .bind(&p.day)
                    .bind(&p.currency)
                    .bind(committed())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(e)?;
                spent.saturating_add(p.cost) <= limit
            }
        };
        if !within {
            if rule == ReserveRule::OnDemand {
                return Ok(Reservation::OverLimit);
            }
            p.state = purchase_state::AWAITING_APPROVAL.into();
        }
        sqlx::query(sql(&format!(
            "INSERT INTO {}.purchases ({PURCHASE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            self.schema
        )))
        .bind(p.id)
        .bind(p.tenant)
        .bind(p.supplier)
        .bind(p.product_id)
        .bind(p.face_value)
        .bind(p.currency)
        .bind(p.quantity)
        .bind(p.cost)
        .bind(p.purpose)
        .bind(p.state)
        .bind(p.day)
        .bind(p.requested_by)
        .bind(p.approved_by)
        .bind(p.charged)
        .bind(p.codes_received)
        .bind(p.note)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
        tx.commit().await.map_err(e)?;
        Ok(if within {
            Reservation::Reserved
        } else {
            Reservation::OverLimit
        })
    }

    async fn spent(&self, supplier: &str, day: &str, currency: &str) -> StoreResult<i64> {
        sqlx::query_scalar(sql(&self.spent_sql()))
            .bind(supplier)
            .bind(day)
            .bind(currency)
            .bind(committed())
            .fetch_one(self.db.pool())
            .await
            .map_err(db_error("read spend"))
    }

    async fn transition_purchase(
        &self,
        id: &str,
        from: &str,
        to: &str,
        approved_by: &str,
        at: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "UPDATE {}.purchases SET state = $3, updated_at = $5, \
             approved_by = CASE WHEN $4 = '' THEN approved_by ELSE $4 END \
             WHERE id = $1 AND state = $2",
            self.schema
        )))
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(approved_by)
        .bind(at)
        .execute(self.db.pool())
        .await
        .map_err(db_error("change purchase"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn settle_purchase(&self, p: &PurchaseRecord, from: &str) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "UPDATE {}.purchases SET state = $2, charged = $3, codes_received = $4, note = $5, \
             updated_at = $6 WHERE id = $1 AND state = $7",
            self.schema
        )))
        .bind(&p.id)
        .bind(&p.state)
        .bind(p.charged)
        .bind(p.codes_received)
        .bind(&p.note)
        .bind(p.updated_at)
        .bind(from)
        .execute(self.db.pool())
        .await
        .map_err(db_error("settle purchase"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn purchase(&self, id: &str) -> StoreResult<Option<PurchaseRecord>> {
        sqlx::query(sql(&format!(
            "SELECT {PURCHASE_COLUMNS} FROM {}.purchases WHERE id = $1",
            self.schema
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("read purchase"))?
        .as_ref()
        .map(purchase_from_row)
        .transpose()
    }

    async fn list_purchases(
        &self,
        filter: &PurchaseFilter,
        limit: usize,
    ) -> StoreResult<Vec<PurchaseRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT {PURCHASE_COLUMNS} FROM {}.purchases \
             WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR day = $2) \
             AND ($3::text IS NULL OR supplier = $3) ORDER BY id DESC",
            self.schema
        )))
        .bind(&filter.state)
        .bind(&filter.day)
        .bind(&filter.supplier)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("list purchases"))?;
        let mut out = Vec::new();
        for row in &rows {
            let p = purchase_from_row(row)?;
            if filter.scope.admits(&p.tenant) {
                out.push(p);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn put_purchase_line(&self, l: PurchaseLineRecord) -> StoreResult<()> {
        sqlx::query(sql(&format!(
            "INSERT INTO {}.purchase_lines ({LINE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (purchase_id, line) DO UPDATE SET \
             supplier_order = excluded.supplier_order, state = excluded.state, \
             charged = excluded.charged, codes = excluded.codes, note = excluded.note, \
             updated_at = excluded.updated_at",
            self.schema
        )))
        .bind(l.purchase_id)
        .bind(l.line)
        .bind(l.reference)
        .bind(l.supplier_order)
        .bind(l.state)
        .bind(l.charged)
        .bind(l.codes)
        .bind(l.note)
        .bind(l.updated_at)
        .execute(self.db.pool())
        .await
        .map_err(db_error("write purchase line"))?;
        Ok(())
    }

    async fn purchase_lines(&self, purchase_id: &str) -> StoreResult<Vec<PurchaseLineRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT {LINE_COLUMNS} FROM {}.purchase_lines WHERE purchase_id = $1 ORDER BY line",
            self.schema
        )))
        .bind(purchase_id)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("read purchase lines"))?;
        let e = db_error("read purchase line");
        rows.iter()
            .map(|r| {
                Ok(PurchaseLineRecord {
                    purchase_id: r.try_get(0).map_err(e)?,
                    line: r.try_get(1).map_err(e)?,
                    reference: r.try_get(2).map_err(e)?,
                    supplier_order: r.try_get(3).map_err(e)?,
                    state: r.try_get(4).map_err(e)?,
                    charged: r.try_get(5).map_err(e)?,
                    codes: r.try_get(6).map_err(e)?,
                    note: r.try_get(7).map_err(e)?,
                    updated_at: r.try_get(8).map_err(e)?,
                })
            })
            .collect()
    }

    async fn vouchers_from(&self, source: &str) -> StoreResult<i64> {
        sqlx::query_scalar(sql(&format!(
            "SELECT COUNT(*) FROM {} WHERE import_id = $1",
            self.vouchers
        )))
        .bind(source)
        .fetch_one(self.db.pool())
        .await
        .map_err(db_error("count vouchers"))
    }

    async fn set_supplier_credential(
        &self,
        c: SupplierCredentialRecord,
    ) -> StoreResult<Option<String>> {
        let e = db_error("write supplier credential");
        let mut tx = self.db.pool().begin().await.map_err(e)?;
        let old: Option<String> = sqlx::query_scalar(sql(&format!(
            "SELECT token FROM {}.supplier_credentials WHERE supplier = $1 FOR UPDATE",
            self.schema
        )))
        .bind(&c.supplier)
        .fetch_optional(&mut *tx)
        .await
        .map_err(e)?;
        sqlx::query(sql(&format!(
            "INSERT INTO {}.supplier_credentials (supplier, token, set_by, set_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (supplier) DO UPDATE SET \
             token = excluded.token, set_by = excluded.set_by, set_at = excluded.set_at",
            self.schema
        )))
        .bind(c.supplier)
        .bind(c.token)
        .bind(c.set_by)
        .bind(c.set_at)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
        tx.commit().await.map_err(e)?;
        Ok(old)
    }

    async fn supplier_credential(
        &self,
        supplier: &str,
    ) -> StoreResult<Option<SupplierCredentialRecord>> {
        let row = sqlx::query(sql(&format!(
            "SELECT supplier, token, set_by, set_at FROM {}.supplier_credentials \
             WHERE supplier = $1",
            self.schema
        )))
        .bind(supplier)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("read supplier credential"))?;
        let e = db_error("read supplier credential");
        row.map(|r| {
            Ok(SupplierCredentialRecord {
                supplier: r.try_get(0).map_err(e)?,
                token: r.try_get(1).map_err(e)?,
                set_by: r.try_get(2).map_err(e)?,
                set_at: r.try_get(3).map_err(e)?,
            })
        })
        .transpose()
    }
}
