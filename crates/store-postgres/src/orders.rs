//! Orders and voucher transitions on PostgreSQL.
//!
//! Several nodes place orders at once, so allocation rests on the database:
//! the order row goes in first, and the unique index on (client, reference)
//! makes a second request with the same reference wait for the first and
//! then find it. The voucher is then taken with `FOR UPDATE SKIP LOCKED`:
//! concurrent orders each lock a different row instead of queueing on one,
//! and a row another transaction holds is never handed out twice.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use strongroom_store::{
    LinkView, OrderFilter, OrderRecord, OrderStore, PlaceOutcome, StoreError, StoreResult,
    TenantScope, VoucherEvent, VoucherIdentity, WindowChange,
};

use crate::central::{PgCentralStore, scope_param};
use crate::engine::db_error;
use crate::sql;

const ORDER_COLUMNS: &str = "id, tenant, client_id, external_ref, request_hash, product_id, sku, \
     face_value, currency, customer_ref, delivery, state, voucher_id, token, pin_token, expires_at, \
     created_at, reserved_until, delivered_at, updated_at, link_views_left, link_expires_at, \
     cancel_reason, reopen_requested_by, reopen_reason";

fn order_from_row(r: &PgRow) -> StoreResult<OrderRecord> {
    let e = db_error("read order");
    Ok(OrderRecord {
        id: r.try_get(0).map_err(e)?,
        tenant: r.try_get(1).map_err(e)?,
        client_id: r.try_get(2).map_err(e)?,
        external_ref: r.try_get(3).map_err(e)?,
        request_hash: r.try_get(4).map_err(e)?,
        product_id: r.try_get(5).map_err(e)?,
        sku: r.try_get(6).map_err(e)?,
        face_value: r.try_get(7).map_err(e)?,
        currency: r.try_get(8).map_err(e)?,
        customer_ref: r.try_get(9).map_err(e)?,
        delivery: r.try_get(10).map_err(e)?,
        state: r.try_get(11).map_err(e)?,
        voucher_id: r.try_get(12).map_err(e)?,
        token: r.try_get(13).map_err(e)?,
        pin_token: r.try_get(14).map_err(e)?,
        expires_at: r.try_get(15).map_err(e)?,
        created_at: r.try_get(16).map_err(e)?,
        reserved_until: r.try_get(17).map_err(e)?,
        delivered_at: r.try_get(18).map_err(e)?,
        updated_at: r.try_get(19).map_err(e)?,
        link_views_left: r.try_get(20).map_err(e)?,
        link_expires_at: r.try_get(21).map_err(e)?,
        cancel_reason: r.try_get(22).map_err(e)?,
        reopen_requested_by: r.try_get(23).map_err(e)?,
        reopen_reason: r.try_get(24).map_err(e)?,
    })
}

impl PgCentralStore {
    async fn read_order(
        &self,
        conn: &mut PgConnection,
        id: &str,
    ) -> StoreResult<Option<OrderRecord>> {
        let row = sqlx::query(sql(&format!(
            "SELECT {ORDER_COLUMNS} FROM {} WHERE id = $1",
            self.orders
        )))
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db_error("read order"))?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// Moves a voucher between states and records why; false if it was not
    /// in `from_state`.
    async fn move_voucher(&self, conn: &mut PgConnection, e: &VoucherEvent) -> StoreResult<bool> {
        let moved = sqlx::query(sql(&format!(
            "WITH moved AS (UPDATE {} SET state = $3 WHERE id = $1 AND state = $2 AND tenant = $4 \
                 RETURNING id) \
             INSERT INTO {} (voucher_id, tenant, at, actor, from_state, to_state, reason, order_id) \
             SELECT id, $4, $5, $6, $2, $3, $7, $8 FROM moved",
            self.vouchers, self.voucher_events
        )))
        .bind(&e.voucher_id)
        .bind(&e.from_state)
        .bind(&e.to_state)
        .bind(&e.tenant)
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.reason)
        .bind(&e.order_id)
        .execute(conn)
        .await
        .map_err(db_error("change voucher state"))?;
        Ok(moved.rows_affected() > 0)
    }

    /// Sets a reserved order's new state with `set` (which may use `$3`, the
    /// time, and `$4`), then moves its voucher from `reserved` to `to_state`.
    #[allow(clippy::too_many_arguments)]
    async fn finish_reservation(
        &self,
        id: &str,
        tenant: &str,
        actor: &str,
        at: i64,
        set: &str,
        extra: (Option<String>, i64, i64),
        to_state: &str,
        window: WindowChange,
        why: impl FnOnce(&OrderRecord) -> String,
    ) -> StoreResult<Option<OrderRecord>> {
        let e = db_error("change order");
        let mut tx = self.db.pool().begin().await.map_err(e)?;
        let row = sqlx::query(sql(&format!(
            "UPDATE {} SET {set} WHERE id = $1 AND tenant = $2 AND state = 'reserved' \
             RETURNING {ORDER_COLUMNS}",
            self.orders
        )))
        .bind(id)
        .bind(tenant)
        .bind(at)
        .bind(extra.0)
        .bind(extra.1)
        .bind(extra.2)
        .fetch_optional(&mut *tx)
        .await
        .map_err(e)?;
        let Some(order) = row.as_ref().map(order_from_row).transpose()? else {
            return Ok(None);
        };
        let event = VoucherEvent {
            kind: "transition".into(),
            voucher_id: order.voucher_id.clone(),
            tenant: tenant.to_owned(),
            at,
            actor: actor.to_owned(),
            from_state: "reserved".into(),
            to_state: to_state.to_owned(),
            reason: why(&order),
            order_id: Some(order.id.clone()),
        };
        if !self.move_voucher(&mut tx, &event).await? {
            return Err(StoreError::Conflict("voucher not reserved"));
        }
        let wanted = window.rows.len() as u64;
        let tokens: Vec<&str> = window.rows.iter().map(|(t, _)| t.as_str()).collect();
        let from: Vec<&[u8]> = window.rows.iter().map(|(_, s)| s.from.as_slice()).collect();
        let to: Vec<&[u8]> = window.rows.iter().map(|(_, s)| s.to.as_slice()).collect();
        // Each row only if it still carries the seal the vault read.
        let set = sqlx::query(sql(&format!(
            "UPDATE {} s SET window_closes_at = $2, seal = u.to_seal \
             FROM UNNEST($1::text[], $4::bytea[], $5::bytea[]) AS u(token, from_seal, to_seal) \
             WHERE s.token = u.token AND s.tenant = $3 AND s.state = 'active' \
             AND s.seal = u.from_seal",
            self.secrets
        )))
        .bind(tokens)
        .bind(window.closes_at)
        .bind(tenant)
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
        if set.rows_affected() != wanted {
            return Err(StoreError::Conflict("no such secret in the tenant"));
        }
        tx.commit().await.map_err(e)?;
        Ok(Some(order))
    }
}

#[async_trait]
impl OrderStore for PgCentralStore {
    async fn place_order(&self, order: OrderRecord, count_below: i64) -> StoreResult<PlaceOutcome> {
        let e = db_error("place order");
        let mut tx = self.db.pool().begin().await.map_err(e)?;
        let o = &order;
        // The order first: a concurrent request with the same reference
        // waits here on the unique index until this transaction ends.
        let inserted = sqlx::query(sql(&format!(
            "INSERT INTO {} ({ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, 'reserved', '', '', NULL, NULL, $12, $13, 0, $12, 0, 0, NULL, '', '') \
             ON CONFLICT (client_id, external_ref) DO NOTHING",
            self.orders
        )))
        .bind(&o.id)
        .bind(&o.tenant)
        .bind(&o.client_id)
        .bind(&o.external_ref)
        .bind(&o.request_hash)
        .bind(&o.product_id)
        .bind(&o.sku)
        .bind(o.face_value)
        .bind(&o.currency)
        .bind(&o.customer_ref)
        .bind(&o.delivery)
        .bind(o.created_at)
        .bind(o.reserved_until)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
        if inserted.rows_affected() == 0 {
            let row = sqlx::query(sql(&format!(
                "SELECT {ORDER_COLUMNS} FROM {} WHERE client_id = $1 AND external_ref = $2",
                self.orders
            )))
            .bind(&o.client_id)
            .bind(&o.external_ref)
            .fetch_optional(&mut *tx)
            .await
            .map_err(e)?;
            tx.rollback().await.map_err(e)?;
            return match row.as_ref().map(order_from_row).transpose()? {
                Some(existing) => Ok(PlaceOutcome::Existing(existing)),
                None => Err(StoreError::Conflict("order reference taken meanwhile")),
            };
        }
        // Earliest expiry first; ascending order puts undated codes last.
        let taken = sqlx::query(sql(&format!(
            "WITH picked AS (
                 SELECT id FROM {v} WHERE tenant = $1 AND product_id = $2 AND face_value = $3
                     AND state = 'available' AND (expires_at IS NULL OR expires_at > $4)
                 ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED),
             taken AS (
                 UPDATE {v} SET state = 'reserved', order_id = $5 FROM picked
                 WHERE {v}.id = picked.id
                 RETURNING {v}.id, {v}.token, {v}.pin_token, {v}.expires_at),
             logged AS (
                 INSERT INTO {ev} (voucher_id, tenant, at, actor, from_state, to_state, reason, order_id)
                 SELECT id, $1, $4, $6, 'available', 'reserved', $7, $5 FROM taken)
             UPDATE {o} SET voucher_id = taken.id, token = taken.token,
                 pin_token = taken.pin_token, expires_at = taken.expires_at
             FROM taken WHERE {o}.id = $5
             RETURNING taken.id, taken.token, taken.pin_token, taken.expires_at",
            v = self.vouchers,
            ev = self.voucher_events,
            o = self.orders
        )))
        .bind(&o.tenant)
        .bind(&o.product_id)
        .bind(o.face_value)
        .bind(o.created_at)
        .bind(&o.id)
        .bind(&o.client_id)
        .bind(format!("order {}", o.id))
        .fetch_optional(&mut *tx)
        .await
        .map_err(e)?;
        let Some(taken) = taken else {
            tx.rollback().await.map_err(e)?;
            return Ok(PlaceOutcome::OutOfStock);
        };
        let available_after: i64 = if count_below > 0 {
            sqlx::query_scalar(sql(&format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {} WHERE tenant = $1 AND product_id = $2 \
                 AND face_value = $3 AND state = 'available' \
                 AND (expires_at IS NULL OR expires_at > $4) LIMIT $5) s",
                self.vouchers
            )))
            .bind(&o.tenant)
            .bind(&o.product_id)
            .bind(o.face_value)
            .bind(o.created_at)
            .bind(count_below)
            .fetch_one(&mut *tx)
            .await
            .map_err(e)?
        } else {
            0
        };
        tx.commit().await.map_err(e)?;
        let mut order = order;
        order.state = "reserved".into();
        order.voucher_id = taken.try_get(0).map_err(e)?;
        order.token = taken.try_get(1).map_err(e)?;
        order.pin_token = taken.try_get(2).map_err(e)?;
        order.expires_at = taken.try_get(3).map_err(e)?;
        Ok(PlaceOutcome::Placed {
            order,
            available_after,
        })
    }

    async fn order_by_id(&self, id: &str, scope: &TenantScope) -> StoreResult<Option<OrderRecord>> {
        let mut conn = self
            .db
            .pool()
            .acquire()
            .await
            .map_err(db_error("read order"))?;
        let found = self.read_order(&mut conn, id).await?;
        Ok(found.filter(|o| scope.admits(&o.tenant)))
    }

    async fn list_orders(
        &self,
        scope: &TenantScope,
        f: &OrderFilter,
    ) -> StoreResult<Vec<OrderRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT {ORDER_COLUMNS} FROM {} WHERE ($1::text[] IS NULL OR tenant = ANY($1)) \
             AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR customer_ref = $3) \
             AND ($4::text IS NULL OR product_id = $4) AND ($5::text IS NULL OR external_ref = $5) \
             AND ($6::bigint IS NULL OR created_at >= $6) AND ($7::bigint IS NULL OR created_at < $7) \
             AND ($8::text IS NULL OR id < $8) ORDER BY id DESC LIMIT $9",
            self.orders
        )))
        .bind(scope_param(scope))
        .bind(&f.state)
        .bind(&f.customer_ref)
        .bind(&f.product_id)
        .bind(&f.external_ref)
        .bind(f.since)
        .bind(f.until)
        .bind(&f.before_id)
        .bind(i64::from(f.limit))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("list orders"))?;
        rows.iter().map(order_from_row).collect()
    }

    async fn mark_delivered(
        &self,
        id: &str,
        tenant: &str,
        actor: &str,
        at: i64,
        link: Option<(i64, i64)>,
        window: WindowChange,
    ) -> StoreResult<Option<OrderRecord>> {
        let (views, expires) = link.unwrap_or((0, 0));
        self.finish_reservation(
            id,
            tenant,
            actor,
            at,
            "state = 'delivered', delivered_at = $3, updated_at = $3, \
             link_views_left = $5, link_expires_at = $6, cancel_reason = $4",
            (None, views, expires),
            "delivered",
            window,
            |o| format!("order {} delivered by {}", o.id, o.delivery),
        )
        .await
    }

    async fn cancel_order(
        &self,
        id: &str,
        tenant: &str,
        actor: &str,
        reason: &str,
        at: i64,
        window: WindowChange,
    ) -> StoreResult<Option<OrderRecord>> {
        self.finish_reservation(
            id,
            tenant,
            actor,
            at,
            "state = 'cancelled', updated_at = $3, cancel_reason = $4, \
             link_views_left = $5, link_expires_at = $6",
            (Some(reason.to_owned()), 0, 0),
            "available",
            window,
            |o| format!("order {} cancelled: {reason}", o.id),
        )
        .await
    }

    async fn stale_reservations(&self, now: i64, limit: u32) -> StoreResult<Vec<OrderRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT {ORDER_COLUMNS} FROM {} WHERE state = 'reserved' AND reserved_until < $1 \
             LIMIT $2",
            self.orders
        )))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("find stale reservations"))?;
        rows.iter().map(order_from_row).collect()
    }

    async fn use_link_view(&self, id: &str, issued: i64, now: i64) -> StoreResult<LinkView> {
        // One statement: the decrement and its conditions are atomic.
        let counted: Option<i64> = sqlx::query_scalar(sql(&format!(
            "UPDATE {} SET link_views_left = link_views_left - 1 WHERE id = $1 \
             AND state = 'delivered' AND delivery = 'link' AND link_views_left > 0 \
             AND link_expires_at > $2 AND link_expires_at = $3 RETURNING link_views_left",
            self.orders
        )))
        .bind(id)
        .bind(now)
        .bind(issued)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("count reveal link view"))?;
        if let Some(left) = counted {
            return Ok(LinkView::Counted(left));
        }
        let row: Option<(i64, i64)> = sqlx::query_as(sql(&format!(
            "SELECT link_views_left, link_expires_at FROM {} WHERE id = $1 \
             AND state = 'delivered' AND delivery = 'link'",
            self.orders
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("read reveal link"))?;
        Ok(match row {
            None => LinkView::Missing,
            Some((_, expires)) if expires != issued => LinkView::Replaced,
            Some((_, expires)) if now >= expires => LinkView::Expired,
            Some(_) => LinkView::UsedUp,
        })
    }

    async fn expire_vouchers(&self, now: i64, actor: &str, limit: u32) -> StoreResult<u64> {
        let done = sqlx::query(sql(&format!(
            "WITH due AS (
                 SELECT id FROM {v} WHERE state = 'available' AND expires_at <= $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED),
             moved AS (
                 UPDATE {v} SET state = 'expired' FROM due WHERE {v}.id = due.id
                 RETURNING {v}.id, {v}.tenant)
             INSERT INTO {ev} (voucher_id, tenant, at, actor, from_state, to_state, reason)
             SELECT id, tenant, $1, $3, 'available', 'expired', 'the code passed its expiry date'
             FROM moved",
            v = self.vouchers,
            ev = self.voucher_events
        )))
        .bind(now)
        .bind(i64::from(limit))
        .bind(actor)
        .execute(self.db.pool())
        .await
        .map_err(db_error("expire vouchers"))?;
        Ok(done.rows_affected())
    }

    async fn voucher_identity(
        &self,
        voucher_id: &str,
        scope: &TenantScope,
    ) -> StoreResult<Option<VoucherIdentity>> {
        let e = db_error("read voucher");
        let row = sqlx::query(sql(&format!(
            "SELECT id, tenant, token, pin_token, import_id, state, created_at FROM {} WHERE id = $1",
            self.vouchers
        )))
        .bind(voucher_id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(e)?;
        let Some(r) = row else {
            return Ok(None);
        };
        let found = VoucherIdentity {
            id: r.try_get(0).map_err(e)?,
            tenant: r.try_get(1).map_err(e)?,
            token: r.try_get(2).map_err(e)?,
            pin_token: r.try_get(3).map_err(e)?,
            import_id: r.try_get(4).map_err(e)?,
            state: r.try_get(5).map_err(e)?,
            created_at: r.try_get(6).map_err(e)?,
        };
        Ok(scope.admits(&found.tenant).then_some(found))
    }

    async fn voucher_events(
        &self,
        voucher_id: &str,
        tenant: &str,
    ) -> StoreResult<Vec<VoucherEvent>> {
        let e = db_error("read voucher history");
        let rows = sqlx::query(sql(&format!(
            "SELECT voucher_id, tenant, at, actor, from_state, to_state, reason, order_id, kind \
             FROM {} WHERE voucher_id = $1 AND tenant = $2 ORDER BY seq",
            self.voucher_events
        )))
        .bind(voucher_id)
        .bind(tenant)
        .fetch_all(self.db.pool())
        .await
        .map_err(e)?;
        rows.iter()
            .map(|r| {
                Ok(VoucherEvent {
                    voucher_id: r.try_get(0).map_err(e)?,
                    tenant: r.try_get(1).map_err(e)?,
                    at: r.try_get(2).map_err(e)?,
                    actor: r.try_get(3).map_err(e)?,
                    from_state: r.try_get(4).map_err(e)?,
                    to_state: r.try_get(5).map_err(e)?,
                    reason: r.try_get(6).map_err(e)?,
                    order_id: r.try_get(7).map_err(e)?,
                    kind: r.try_get(8).map_err(e)?,
                })
            })
            .collect()
    }

    async fn archivable(&self, before: i64, limit: u32) -> StoreResult<Vec<OrderRecord>> {
        let columns = ORDER_COLUMNS
            .split(',')
            .map(|c| format!("o.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(sql(&format!(
            "SELECT {columns} FROM {} o JOIN {} v ON v.id = o.voucher_id \
             WHERE o.state = 'delivered' AND o.delivered_at <= $1 AND v.state = 'delivered' \
             ORDER BY o.delivered_at LIMIT $2",
            self.orders, self.vouchers
        )))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("find archivable orders"))?;
        rows.iter().map(order_from_row).collect()
    }

    async fn count_archivable(&self, before: i64) -> StoreResult<i64> {
        sqlx::query_scalar(sql(&format!(
            "SELECT COUNT(*) FROM {} o JOIN {} v ON v.id = o.voucher_id \
             WHERE o.state = 'delivered' AND o.delivered_at <= $1 AND v.state = 'delivered'",
            self.orders, self.vouchers
        )))
        .bind(before)
        .fetch_one(self.db.pool())
        .await
        .map_err(db_error("count archivable orders"))
    }

    async fn mark_archived(
        &self,
        voucher_id: &str,
        tenant: &str,
        actor: &str,
        at: i64,
    ) -> StoreResult<bool> {
        let event = VoucherEvent {
            kind: "transition".into(),
            voucher_id: voucher_id.to_owned(),
            tenant: tenant.to_owned(),
            at,
            actor: actor.to_owned(),
            from_state: "delivered".into(),
            to_state: "archived".into(),
            reason: "moved to the archive vault".into(),
            order_id: None,
        };
        let mut conn = self
            .db
            .pool()
            .acquire()
            .await
            .map_err(db_error("archive voucher"))?;
        self.move_voucher(&mut conn, &event).await
    }

    async fn request_reopen(
        &self,
        id: &str,
        tenant: &str,
        by: &str,
        reason: &str,
    ) -> StoreResult<Option<OrderRecord>> {
        let row = sqlx::query(sql(&format!(
            "UPDATE {} SET reopen_requested_by = $3, reopen_reason = $4 \
             WHERE id = $1 AND tenant = $2 AND state = 'delivered' RETURNING {ORDER_COLUMNS}",
            self.orders
        )))
        .bind(id)
        .bind(tenant)
        .bind(by)
        .bind(reason)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("request reopening"))?;
        row.as_ref().map(order_from_row).transpose()
    }

    async fn clear_reopen(&self, id: &str, tenant: &str, by: &str) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "UPDATE {} SET reopen_requested_by = '', reopen_reason = '' \
             WHERE id = $1 AND tenant = $2 AND reopen_requested_by = $3 AND $3 <> ''",
            self.orders
        )))
        .bind(id)
        .bind(tenant)
        .bind(by)
        .execute(self.db.pool())
        .await
        .map_err(db_error("clear reopening"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_redelivery(
        &self,
        order: &OrderRecord,
        actor: &str,
        reason: &str,
        at: i64,
        max_per_day: i64,
        link: Option<(i64, i64)>,
    ) -> StoreResult<bool> {
        let e = db_error("redeliver");
        let mut tx = self.db.pool().begin().await.map_err(e)?;
        // The voucher's row lock orders concurrent redeliveries of it.
        let state: Option<String> = sqlx::query_scalar(sql(&format!(
            "SELECT state FROM {} WHERE id = $1 AND tenant = $2 FOR UPDATE",
            self.vouchers
        )))
        .bind(&order.voucher_id)
        .bind(&order.tenant)
        .fetch_optional(&mut *tx)
        .await
        .map_err(e)?;
        let Some(state) = state else {
            return Ok(false);
        };
        let recent: i64 = sqlx::query_scalar(sql(&format!(
            "SELECT COUNT(*) FROM {} WHERE voucher_id = $1 AND kind = 'redelivery' AND at > $2",
            self.voucher_events
        )))
        .bind(&order.voucher_id)
        .bind(at - 86_400_000)
        .fetch_one(&mut *tx)
        .await
        .map_err(e)?;
        if recent >= max_per_day {
            return Ok(false);
        }
        sqlx::query(sql(&format!(
            "INSERT INTO {} (kind, voucher_id, tenant, at, actor, from_state, to_state, reason, \
             order_id) VALUES ('redelivery', $1, $2, $3, $4, $5, $5, $6, $7)",
            self.voucher_events
        )))
        .bind(&order.voucher_id)
        .bind(&order.tenant)
        .bind(at)
        .bind(actor)
        .bind(&state)
        .bind(format!("redelivered: {reason}"))
        .bind(&order.id)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
        if let Some((views, expires)) = link {
            sqlx::query(sql(&format!(
                "UPDATE {} SET link_views_left = $2, link_expires_at = $3 WHERE id = $1",
                self.orders
            )))
            .bind(&order.id)
            .bind(views)
            .bind(expires)
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        }
        tx.commit().await.map_err(e)?;
        Ok(true)
    }

    async fn promote_staged(&self, import_id: &str, tenant: &str) -> StoreResult<u64> {
        let done = sqlx::query(sql(&format!(
            "UPDATE {} SET state = 'available' \
             WHERE import_id = $1 AND tenant = $2 AND state = 'staged'",
            self.vouchers
        )))
        .bind(import_id)
        .bind(tenant)
        .execute(self.db.pool())
        .await
        .map_err(db_error("stock an import"))?;
        Ok(done.rows_affected())
    }

    async fn staged(
        &self,
        import_id: &str,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, Option<String>)>> {
        sqlx::query_as(sql(&format!(
            "SELECT id, token, pin_token FROM {} \
             WHERE import_id = $1 AND tenant = $2 AND state = 'staged' LIMIT $3",
            self.vouchers
        )))
        .bind(import_id)
        .bind(tenant)
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("read staged vouchers"))
    }

    async fn remove_staged(&self, import_id: &str, ids: &[String]) -> StoreResult<u64> {
        let done = sqlx::query(sql(&format!(
            "DELETE FROM {} WHERE id = ANY($1) AND import_id = $2 AND state = 'staged'",
            self.vouchers
        )))
        .bind(ids)
        .bind(import_id)
        .execute(self.db.pool())
        .await
        .map_err(db_error("remove staged vouchers"))?;
        Ok(done.rows_affected())
    }

    async fn void_import(
        &self,
        import_id: &str,
        tenant: &str,
        actor: &str,
        reason: &str,
        at: i64,
    ) -> StoreResult<u64> {
        let done = sqlx::query(sql(&format!(
            "WITH held AS (
                 SELECT id, state FROM {v} WHERE import_id = $1 AND tenant = $2
                     AND state IN ('available', 'expired') FOR UPDATE),
             voided AS (
                 UPDATE {v} SET state = 'voided' FROM held WHERE {v}.id = held.id
                 RETURNING {v}.id, held.state AS was)
             INSERT INTO {ev} (voucher_id, tenant, at, actor, from_state, to_state, reason)
             SELECT id, $2, $3, $4, was, 'voided', $5 FROM voided",
            v = self.vouchers,
            ev = self.voucher_events
        )))
        .bind(import_id)
        .bind(tenant)
        .bind(at)
        .bind(actor)
        .bind(format!("import {import_id} voided: {reason}"))
        .execute(self.db.pool())
        .await
        .map_err(db_error("void vouchers"))?;
        Ok(done.rows_affected())
    }
}
