//! Purchases from suppliers and their credentials' tokens in SQLite.
//!
//! Every write runs on the one writer connection, each in its own savepoint:
//! the spend check and the insert of [`SupplyStore::reserve_purchase`] are
//! one step no other purchase can come between.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::central::SqliteCentralStore;
use crate::supply::purchase_state;
use crate::{
    PurchaseFilter, PurchaseLineRecord, PurchaseRecord, Reservation, ReserveRule, StoreError,
    StoreResult, SupplierCredentialRecord, SupplyStore,
};

macro_rules! purchase_columns {
    () => {
        "id, tenant, supplier, product_id, face_value, currency, quantity, cost, purpose, state, \
         day, requested_by, approved_by, charged, codes_received, note, created_at, updated_at"
    };
}

fn purchase_from_row(r: &Row<'_>) -> rusqlite::Result<PurchaseRecord> {
    Ok(PurchaseRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        supplier: r.get(2)?,
        product_id: r.get(3)?,
        face_value: r.get(4)?,
        currency: r.get(5)?,
        quantity: r.get(6)?,
        cost: r.get(7)?,
        purpose: r.get(8)?,
        state: r.get(9)?,
        day: r.get(10)?,
        requested_by: r.get(11)?,
        approved_by: r.get(12)?,
        charged: r.get(13)?,
        codes_received: r.get(14)?,
        note: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

/// The spend of one supplier, day and currency (see [`SupplyStore::spent`]).
fn spent_on(conn: &Connection, supplier: &str, day: &str, currency: &str) -> StoreResult<i64> {
    let [a, b, c] = purchase_state::COMMITTED;
    conn.prepare_cached(
        "SELECT COALESCE(SUM(CASE WHEN state IN (?4, ?5, ?6) THEN cost \
         ELSE MAX(charged, face_value * codes_received) END), 0) \
         FROM purchases WHERE supplier = ?1 AND day = ?2 AND currency = ?3",
    )
    .and_then(|mut s| s.query_row(params![supplier, day, currency, a, b, c], |r| r.get(0)))
    .map_err(StoreError::backend("read spend"))
}

#[async_trait]
impl SupplyStore for SqliteCentralStore {
    async fn reserve_purchase(
        &self,
        mut p: PurchaseRecord,
        daily_limit: Option<i64>,
        rule: ReserveRule,
    ) -> StoreResult<Reservation> {
        self.db
            .write(move |conn| {
                if rule == ReserveRule::Replenishment {
                    let [a, b, c, d] = purchase_state::OPEN;
                    let open: i64 = conn
                        .prepare_cached(
                            "SELECT COUNT(*) FROM purchases WHERE tenant = ?1 AND product_id = ?2 \
                             AND face_value = ?3 AND purpose = 'replenishment' \
                             AND state IN (?4, ?5, ?6, ?7)",
                        )
                        .and_then(|mut s| {
                            s.query_row(
                                params![p.tenant, p.product_id, p.face_value, a, b, c, d],
                                |r| r.get(0),
                            )
                        })
                        .map_err(StoreError::backend("read open purchases"))?;
                    if open > 0 {
                        return Ok(Reservation::AlreadyOnOrder);
                    }
                }
                let within = match daily_limit {
                    None => true,
                    Some(limit) => {
                        let spent = spent_on(conn, &p.supplier, &p.day, &p.currency)?;
                        spent.saturating_add(p.cost) <= limit
                    }
                };
                if !within {
                    if rule == ReserveRule::OnDemand {
                        return Ok(Reservation::OverLimit);
                    }
                    p.state = purchase_state::AWAITING_APPROVAL.into();
                }
                conn.execute(
                    concat!(
                        "INSERT INTO purchases (",
                        purchase_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                         ?15, ?16, ?17, ?18)"
                    ),
                    params![
                        p.id,
                        p.tenant,
                        p.supplier,
                        p.product_id,
                        p.face_value,
                        p.currency,
                        p.quantity,
                        p.cost,
                        p.purpose,
                        p.state,
                        p.day,
                        p.requested_by,
                        p.approved_by,
                        p.charged,
                        p.codes_received,
                        p.note,
                        p.created_at,
                        p.updated_at
                    ],
                )
                .map_err(StoreError::backend("insert purchase"))?;
                Ok(if within {
                    Reservation::Reserved
                } else {
                    Reservation::OverLimit
                })
            })
            .await
    }

    async fn spent(&self, supplier: &str, day: &str, currency: &str) -> StoreResult<i64> {
        self.db.read(|conn| spent_on(conn, supplier, day, currency))
    }

    async fn transition_purchase(
        &self,
        id: &str,
        from: &str,
        to: &str,
        approved_by: &str,
        at: i64,
    ) -> StoreResult<bool> {
        let (id, from, to, by) = (
            id.to_owned(),
            from.to_owned(),
            to.to_owned(),
            approved_by.to_owned(),
        );
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE purchases SET state = ?3, updated_at = ?5, \
                     approved_by = CASE WHEN ?4 = '' THEN approved_by ELSE ?4 END \
                     WHERE id = ?1 AND state = ?2",
                    params![id, from, to, by, at],
                )
                .map(|n| n == 1)
                .map_err(StoreError::backend("change purchase"))
            })
            .await
    }

    async fn settle_purchase(&self, p: &PurchaseRecord, from: &str) -> StoreResult<bool> {
        let (p, from) = (p.clone(), from.to_owned());
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE purchases SET state = ?2, charged = ?3, codes_received = ?4, \
                     note = ?5, updated_at = ?6 WHERE id = ?1 AND state = ?7",
                    params![
                        p.id,
                        p.state,
                        p.charged,
                        p.codes_received,
                        p.note,
                        p.updated_at,
                        from
                    ],
                )
                .map(|n| n == 1)
                .map_err(StoreError::backend("settle purchase"))
            })
            .await
    }

    async fn purchase(&self, id: &str) -> StoreResult<Option<PurchaseRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                purchase_columns!(),
                " FROM purchases WHERE id = ?1"
            ))
            .and_then(|mut s| s.query_row(params![id], purchase_from_row).optional())
            .map_err(StoreError::backend("read purchase"))
        })
    }

    async fn list_purchases(
        &self,
        filter: &PurchaseFilter,
        limit: usize,
    ) -> StoreResult<Vec<PurchaseRecord>> {
        let rows: Vec<PurchaseRecord> = self.db.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                purchase_columns!(),
                " FROM purchases WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR day = ?2) \
                 AND (?3 IS NULL OR supplier = ?3) ORDER BY id DESC"
            ))
            .and_then(|mut s| {
                s.query_map(
                    params![filter.state, filter.day, filter.supplier],
                    purchase_from_row,
                )?
                .collect()
            })
            .map_err(StoreError::backend("list purchases"))
        })?;
        Ok(rows
            .into_iter()
            .filter(|p| filter.scope.admits(&p.tenant))
            .take(limit)
            .collect())
    }

    async fn put_purchase_line(&self, l: PurchaseLineRecord) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO purchase_lines (purchase_id, line, reference, supplier_order, \
                     state, charged, codes, note, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                     ON CONFLICT (purchase_id, line) DO UPDATE SET \
                     supplier_order = excluded.supplier_order, state = excluded.state, \
                     charged = excluded.charged, codes = excluded.codes, note = excluded.note, \
                     updated_at = excluded.updated_at",
                    params![
                        l.purchase_id,
                        l.line,
                        l.reference,
                        l.supplier_order,
                        l.state,
                        l.charged,
                        l.codes,
                        l.note,
                        l.updated_at
                    ],
                )
                .map(|_| ())
                .map_err(StoreError::backend("write purchase line"))
            })
            .await
    }

    async fn purchase_lines(&self, purchase_id: &str) -> StoreResult<Vec<PurchaseLineRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT purchase_id, line, reference, supplier_order, state, charged, codes, note, \
                 updated_at FROM purchase_lines WHERE purchase_id = ?1 ORDER BY line",
            )
            .and_then(|mut s| {
                s.query_map(params![purchase_id], |r| {
                    Ok(PurchaseLineRecord {
                        purchase_id: r.get(0)?,
                        line: r.get(1)?,
                        reference: r.get(2)?,
                        supplier_order: r.get(3)?,
                        state: r.get(4)?,
                        charged: r.get(5)?,
                        codes: r.get(6)?,
                        note: r.get(7)?,
                        updated_at: r.get(8)?,
                    })
                })?
                .collect()
            })
            .map_err(StoreError::backend("read purchase lines"))
        })
    }

    async fn vouchers_from(&self, source: &str) -> StoreResult<i64> {
        self.db.read(|conn| {
            conn.prepare_cached("SELECT COUNT(*) FROM vouchers WHERE import_id = ?1")
                .and_then(|mut s| s.query_row(params![source], |r| r.get(0)))
                .map_err(StoreError::backend("count vouchers"))
        })
    }

    async fn set_supplier_credential(
        &self,
        c: SupplierCredentialRecord,
    ) -> StoreResult<Option<String>> {
        self.db
            .write(move |conn| {
                let old: Option<String> = conn
                    .query_row(
                        "SELECT token FROM supplier_credentials WHERE supplier = ?1",
                        params![c.supplier],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(StoreError::backend("read supplier credential"))?;
                conn.execute(
                    "INSERT INTO supplier_credentials (supplier, token, set_by, set_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (supplier) DO UPDATE SET \
                     token = excluded.token, set_by = excluded.set_by, set_at = excluded.set_at",
                    params![c.supplier, c.token, c.set_by, c.set_at],
                )
                .map_err(StoreError::backend("write supplier credential"))?;
                Ok(old)
            })
            .await
    }

    async fn supplier_credential(
        &self,
        supplier: &str,
    ) -> StoreResult<Option<SupplierCredentialRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT supplier, token, set_by, set_at FROM supplier_credentials \
                 WHERE supplier = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![supplier], |r| {
                    Ok(SupplierCredentialRecord {
                        supplier: r.get(0)?,
                        token: r.get(1)?,
                        set_by: r.get(2)?,
                        set_at: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(StoreError::backend("read supplier credential"))
        })
    }
}
