//! Orders and voucher transitions in SQLite.
//!
//! Every change runs as one job of the single writer (see engine.rs), inside
//! its own savepoint: the check for an existing order, the choice of a
//! voucher and both updates cannot be overtaken by another order, and
//! either all of them stand or none does.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::central::SqliteCentralStore;
use crate::{
    LinkView, OrderFilter, OrderRecord, OrderStore, PlaceOutcome, StoreError, StoreResult,
    TenantScope, VoucherEvent, VoucherIdentity, WindowChange,
};

macro_rules! order_columns {
    () => {
        "id, tenant, client_id, external_ref, request_hash, product_id, sku, face_value, currency, \
         customer_ref, delivery, state, voucher_id, token, pin_token, expires_at, created_at, \
         reserved_until, delivered_at, updated_at, link_views_left, link_expires_at, cancel_reason, \
         reopen_requested_by, reopen_reason"
    };
}

fn order_from_row(r: &Row<'_>) -> rusqlite::Result<OrderRecord> {
    Ok(OrderRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        client_id: r.get(2)?,
        external_ref: r.get(3)?,
        request_hash: r.get(4)?,
        product_id: r.get(5)?,
        sku: r.get(6)?,
        face_value: r.get(7)?,
        currency: r.get(8)?,
        customer_ref: r.get(9)?,
        delivery: r.get(10)?,
        state: r.get(11)?,
        voucher_id: r.get(12)?,
        token: r.get(13)?,
        pin_token: r.get(14)?,
        expires_at: r.get(15)?,
        created_at: r.get(16)?,
        reserved_until: r.get(17)?,
        delivered_at: r.get(18)?,
        updated_at: r.get(19)?,
        link_views_left: r.get(20)?,
        link_expires_at: r.get(21)?,
        cancel_reason: r.get(22)?,
        reopen_requested_by: r.get(23)?,
        reopen_reason: r.get(24)?,
    })
}

fn order_where(conn: &Connection, id: &str) -> StoreResult<Option<OrderRecord>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], order_from_row).optional())
    .map_err(StoreError::backend("read order"))
}

/// Records one transition of a voucher.
fn record_event(conn: &Connection, e: &VoucherEvent) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO voucher_events (voucher_id, tenant, at, actor, from_state, to_state, \
         reason, order_id, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            e.voucher_id,
            e.tenant,
            e.at,
            e.actor,
            e.from_state,
            e.to_state,
            e.reason,
            e.order_id,
            e.kind
        ])
    })
    .map(|_| ())
    .map_err(StoreError::backend("record voucher event"))
}

/// Moves a voucher from one state to another; false if it was not in `from`.
fn move_voucher(
    conn: &Connection,
    event: &VoucherEvent,
    order_id: Option<&str>,
) -> StoreResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE vouchers SET state = ?3, order_id = COALESCE(?4, order_id) \
             WHERE id = ?1 AND state = ?2",
        )
        .and_then(|mut s| {
            s.execute(params![
                event.voucher_id,
                event.from_state,
                event.to_state,
                order_id
            ])
        })
        .map_err(StoreError::backend("change voucher state"))?;
    if n == 0 {
        return Ok(false);
    }
    record_event(conn, event)?;
    Ok(true)
}

/// A voucher taken for an order: id, code token, PIN token, code expiry.
type Picked = (String, String, Option<String>, Option<i64>);

/// The allocatable voucher whose code expires first: dated codes before
/// undated ones, and among equals the one imported first.
fn pick_voucher(conn: &Connection, o: &OrderRecord) -> StoreResult<Option<Picked>> {
    let dated = conn
        .prepare_cached(
            "SELECT id, token, pin_token, expires_at FROM vouchers \
             WHERE tenant = ?1 AND product_id = ?2 AND face_value = ?3 AND state = 'available' \
             AND expires_at > ?4 ORDER BY expires_at, rowid LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(
                params![o.tenant, o.product_id, o.face_value, o.created_at],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })
        .map_err(StoreError::backend("allocate voucher"))?;
    if dated.is_some() {
        return Ok(dated);
    }
    conn.prepare_cached(
        "SELECT id, token, pin_token, expires_at FROM vouchers \
         WHERE tenant = ?1 AND product_id = ?2 AND face_value = ?3 AND state = 'available' \
         AND expires_at IS NULL ORDER BY rowid LIMIT 1",
    )
    .and_then(|mut s| {
        s.query_row(params![o.tenant, o.product_id, o.face_value], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
    })
    .map_err(StoreError::backend("allocate voucher"))
}

fn count_available(conn: &Connection, o: &OrderRecord, below: i64) -> StoreResult<i64> {
    if below <= 0 {
        return Ok(0);
    }
    conn.prepare_cached(
        "SELECT COUNT(*) FROM (SELECT 1 FROM vouchers \
         WHERE tenant = ?1 AND product_id = ?2 AND face_value = ?3 AND state = 'available' \
         AND (expires_at IS NULL OR expires_at > ?4) LIMIT ?5)",
    )
    .and_then(|mut s| {
        s.query_row(
            params![o.tenant, o.product_id, o.face_value, o.created_at, below],
            |r| r.get(0),
        )
    })
    .map_err(StoreError::backend("count stock"))
}

fn insert_order(conn: &Connection, o: &OrderRecord) -> StoreResult<()> {
    conn.prepare_cached(concat!(
        "INSERT INTO orders (",
        order_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
         ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            o.id,
            o.tenant,
            o.client_id,
            o.external_ref,
            o.request_hash,
            o.product_id,
            o.sku,
            o.face_value,
            o.currency,
            o.customer_ref,
            o.delivery,
            o.state,
            o.voucher_id,
            o.token,
            o.pin_token,
            o.expires_at,
            o.created_at,
            o.reserved_until,
            o.delivered_at,
            o.updated_at,
            o.link_views_left,
            o.link_expires_at,
            o.cancel_reason,
            o.reopen_requested_by,
            o.reopen_reason
        ])
    })
    .map(|_| ())
    .map_err(StoreError::backend("insert order"))
}

/// How a reserved order ends: the order's new columns (`set`, which may use
/// `?3` the time and `?4`…`?6` the `values`) and its voucher's new state.
struct Reservation {
    set: &'static str,
    values: (Option<String>, i64, i64),
    to_state: &'static str,
    /// Secrets whose reveal window closes then.
    window: WindowChange,
}

impl SqliteCentralStore {
    /// Ends a reserved order of `tenant` as `change` says and moves its
    /// voucher on, recording why; `None` if it is not a reserved order.
    async fn finish_reservation(
        &self,
        id: &str,
        tenant: &str,
        actor: &str,
        at: i64,
        change: Reservation,
        why: impl FnOnce(&OrderRecord) -> String + Send + 'static,
    ) -> StoreResult<Option<OrderRecord>> {
        let (id, tenant, actor) = (id.to_owned(), tenant.to_owned(), actor.to_owned());
        self.db
            .write(move |conn| {
                let sql = format!(
                    "UPDATE orders SET {} WHERE id = ?1 AND tenant = ?2 AND state = 'reserved'",
                    change.set
                );
                let (text, views, expires) = change.values;
                let n = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.execute(params![id, tenant, at, text, views, expires]))
                    .map_err(StoreError::backend("change order"))?;
                if n == 0 {
                    return Ok(None);
                }
                let Some(order) = order_where(conn, &id)? else {
                    return Ok(None);
                };
                let event = VoucherEvent {
                    kind: "transition".into(),
                    voucher_id: order.voucher_id.clone(),
                    tenant,
                    at,
                    actor,
                    from_state: "reserved".into(),
                    to_state: change.to_state.into(),
                    reason: why(&order),
                    order_id: Some(order.id.clone()),
                };
                if !move_voucher(conn, &event, None)? {
                    return Err(StoreError::Conflict("voucher not reserved"));
                }
                let closes_at = change.window.closes_at;
                for (token, swap) in change.window.rows {
                    let n = conn
                        .prepare_cached(
                            "UPDATE secrets SET window_closes_at = ?2, seal = ?5 \
                             WHERE token = ?1 AND tenant = ?3 AND state = 'active' AND seal = ?4",
                        )
                        .and_then(|mut s| {
                            s.execute(params![token, closes_at, event.tenant, swap.from, swap.to])
                        })
                        .map_err(StoreError::backend("set reveal window"))?;
                    if n == 0 {
                        return Err(StoreError::Conflict("no such secret in the tenant"));
                    }
                }
                Ok(Some(order))
            })
            .await
    }
}

#[async_trait]
impl OrderStore for SqliteCentralStore {
    async fn place_order(&self, order: OrderRecord, count_below: i64) -> StoreResult<PlaceOutcome> {
        self.db
            .write(move |conn| {
                let existing = conn
                    .prepare_cached(concat!(
                        "SELECT ",
                        order_columns!(),
                        " FROM orders WHERE client_id = ?1 AND external_ref = ?2"
                    ))
                    .and_then(|mut s| {
                        s.query_row([&order.client_id, &order.external_ref], order_from_row)
                            .optional()
                    })
                    .map_err(StoreError::backend("read order"))?;
                if let Some(existing) = existing {
                    return Ok(PlaceOutcome::Existing(existing));
                }
                let Some((voucher_id, token, pin_token, expires_at)) = pick_voucher(conn, &order)?
                else {
                    return Ok(PlaceOutcome::OutOfStock);
                };
                let mut order = order;
                order.voucher_id = voucher_id;
                order.token = token;
                order.pin_token = pin_token;
                order.expires_at = expires_at;
                order.state = "reserved".into();
                let event = VoucherEvent {
                    kind: "transition".into(),
                    voucher_id: order.voucher_id.clone(),
                    tenant: order.tenant.clone(),
                    at: order.created_at,
                    actor: order.client_id.clone(),
                    from_state: "available".into(),
                    to_state: "reserved".into(),
                    reason: format!("order {}", order.id),
                    order_id: Some(order.id.clone()),
                };
                if !move_voucher(conn, &event, Some(&order.id))? {
                    return Err(StoreError::Conflict("voucher taken meanwhile"));
                }
                insert_order(conn, &order)?;
                let available_after = count_available(conn, &order, count_below)?;
                Ok(PlaceOutcome::Placed {
                    order,
                    available_after,
                })
            })
            .await
    }

    async fn order_by_id(&self, id: &str, scope: &TenantScope) -> StoreResult<Option<OrderRecord>> {
        let found = self.db.read(|conn| order_where(conn, id))?;
        Ok(found.filter(|o| scope.admits(&o.tenant)))
    }

    async fn list_orders(
        &self,
        scope: &TenantScope,
        filter: &OrderFilter,
    ) -> StoreResult<Vec<OrderRecord>> {
        // Tenant names never hold a comma, so ",a,b," lists them safely.
        let tenants: Option<String> = match scope {
            TenantScope::All => None,
            TenantScope::Only(t) => Some(format!(",{},", t.join(","))),
        };
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM orders WHERE (?1 IS NULL OR instr(?1, ',' || tenant || ',') > 0) \
                     AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR customer_ref = ?3) \
                     AND (?4 IS NULL OR product_id = ?4) AND (?5 IS NULL OR external_ref = ?5) \
                     AND (?6 IS NULL OR created_at >= ?6) AND (?7 IS NULL OR created_at < ?7) \
                     AND (?8 IS NULL OR id < ?8) ORDER BY id DESC LIMIT ?9"
                ))
                .map_err(StoreError::backend("list orders"))?;
            let rows = stmt
                .query_map(
                    params![
                        tenants,
                        filter.state,
                        filter.customer_ref,
                        filter.product_id,
                        filter.external_ref,
                        filter.since,
                        filter.until,
                        filter.before_id,
                        filter.limit
                    ],
                    order_from_row,
                )
                .map_err(StoreError::backend("list orders"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("list orders"))
        })
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
        let change = Reservation {
            window,
            set: "state = 'delivered', delivered_at = ?3, updated_at = ?3, \
                  link_views_left = ?5, link_expires_at = ?6, cancel_reason = ?4",
            values: (None, views, expires),
            to_state: "delivered",
        };
        self.finish_reservation(id, tenant, actor, at, change, |o| {
            format!("order {} delivered by {}", o.id, o.delivery)
        })
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
        let change = Reservation {
            window,
            set: "state = 'cancelled', updated_at = ?3, cancel_reason = ?4, \
                  link_views_left = ?5, link_expires_at = ?6",
            values: (Some(reason.to_owned()), 0, 0),
            to_state: "available",
        };
        let reason = reason.to_owned();
        self.finish_reservation(id, tenant, actor, at, change, move |o| {
            format!("order {} cancelled: {reason}", o.id)
        })
        .await
    }

    async fn stale_reservations(&self, now: i64, limit: u32) -> StoreResult<Vec<OrderRecord>> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM orders WHERE state = 'reserved' AND reserved_until < ?1 LIMIT ?2"
                ))
                .map_err(StoreError::backend("find stale reservations"))?;
            let rows = stmt
                .query_map(params![now, limit], order_from_row)
                .map_err(StoreError::backend("find stale reservations"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("find stale reservations"))
        })
    }

    async fn use_link_view(&self, id: &str, issued: i64, now: i64) -> StoreResult<LinkView> {
        let id = id.to_owned();
        self.db
            .write(move |conn| {
                let row: Option<(i64, i64)> = conn
                    .prepare_cached(
                        "SELECT link_views_left, link_expires_at FROM orders \
                         WHERE id = ?1 AND state = 'delivered' AND delivery = 'link'",
                    )
                    .and_then(|mut s| {
                        s.query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(StoreError::backend("read reveal link"))?;
                let Some((left, expires)) = row else {
                    return Ok(LinkView::Missing);
                };
                if expires != issued {
                    return Ok(LinkView::Replaced);
                }
                if now >= expires {
                    return Ok(LinkView::Expired);
                }
                if left <= 0 {
                    return Ok(LinkView::UsedUp);
                }
                conn.prepare_cached(
                    "UPDATE orders SET link_views_left = link_views_left - 1 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute([&id]))
                .map_err(StoreError::backend("count reveal link view"))?;
                Ok(LinkView::Counted(left - 1))
            })
            .await
    }

    async fn expire_vouchers(&self, now: i64, actor: &str, limit: u32) -> StoreResult<u64> {
        let actor = actor.to_owned();
        self.db
            .write(move |conn| {
                let due: Vec<(String, String)> = {
                    let mut stmt = conn
                        .prepare_cached(
                            "SELECT id, tenant FROM vouchers WHERE state = 'available' \
                             AND expires_at <= ?1 LIMIT ?2",
                        )
                        .map_err(StoreError::backend("find expired vouchers"))?;
                    let rows = stmt
                        .query_map(params![now, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(StoreError::backend("find expired vouchers"))?;
                    rows.collect::<Result<Vec<_>, _>>()
                        .map_err(StoreError::backend("find expired vouchers"))?
                };
                let mut moved = 0;
                for (voucher_id, tenant) in due {
                    let event = VoucherEvent {
                        kind: "transition".into(),
                        voucher_id,
                        tenant,
                        at: now,
                        actor: actor.clone(),
                        from_state: "available".into(),
                        to_state: "expired".into(),
                        reason: "the code passed its expiry date".into(),
                        order_id: None,
                    };
                    if move_voucher(conn, &event, None)? {
                        moved += 1;
                    }
                }
                Ok(moved)
            })
            .await
    }

    async fn voucher_identity(
        &self,
        voucher_id: &str,
        scope: &TenantScope,
    ) -> StoreResult<Option<VoucherIdentity>> {
        let found = self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT id, tenant, token, pin_token, import_id, state, created_at \
                 FROM vouchers WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([voucher_id], |r| {
                    Ok(VoucherIdentity {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        token: r.get(2)?,
                        pin_token: r.get(3)?,
                        import_id: r.get(4)?,
                        state: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                })
                .optional()
            })
            .map_err(StoreError::backend("read voucher"))
        })?;
        Ok(found.filter(|v| scope.admits(&v.tenant)))
    }

    async fn voucher_events(
        &self,
        voucher_id: &str,
        tenant: &str,
    ) -> StoreResult<Vec<VoucherEvent>> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT voucher_id, tenant, at, actor, from_state, to_state, reason, order_id, \
                     kind FROM voucher_events WHERE voucher_id = ?1 AND tenant = ?2 ORDER BY seq",
                )
                .map_err(StoreError::backend("read voucher history"))?;
            let rows = stmt
                .query_map([voucher_id, tenant], |r| {
                    Ok(VoucherEvent {
                        voucher_id: r.get(0)?,
                        tenant: r.get(1)?,
                        at: r.get(2)?,
                        actor: r.get(3)?,
                        from_state: r.get(4)?,
                        to_state: r.get(5)?,
                        reason: r.get(6)?,
                        order_id: r.get(7)?,
                        kind: r.get(8)?,
                    })
                })
                .map_err(StoreError::backend("read voucher history"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("read voucher history"))
        })
    }

    async fn archivable(&self, before: i64, limit: u32) -> StoreResult<Vec<OrderRecord>> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT o.id FROM orders o JOIN vouchers v ON v.id = o.voucher_id \
                     WHERE o.state = 'delivered' AND o.delivered_at <= ?1 AND v.state = 'delivered' \
                     ORDER BY o.delivered_at LIMIT ?2",
                )
                .map_err(StoreError::backend("find archivable orders"))?;
            let ids = stmt
                .query_map(params![before, limit], |r| r.get::<_, String>(0))
                .map_err(StoreError::backend("find archivable orders"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("find archivable orders"))?;
            let mut orders = Vec::with_capacity(ids.len());
            for id in ids {
                orders.extend(order_where(conn, &id)?);
            }
            Ok(orders)
        })
    }

    async fn count_archivable(&self, before: i64) -> StoreResult<i64> {
        self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT COUNT(*) FROM orders o JOIN vouchers v ON v.id = o.voucher_id \
                 WHERE o.state = 'delivered' AND o.delivered_at <= ?1 AND v.state = 'delivered'",
            )
            .and_then(|mut s| s.query_row([before], |r| r.get(0)))
            .map_err(StoreError::backend("count archivable orders"))
        })
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
        self.db
            .write(move |conn| {
                let owned: bool = conn
                    .prepare_cached("SELECT COUNT(*) FROM vouchers WHERE id = ?1 AND tenant = ?2")
                    .and_then(|mut s| {
                        s.query_row([&event.voucher_id, &event.tenant], |r| r.get::<_, i64>(0))
                    })
                    .map(|n| n > 0)
                    .map_err(StoreError::backend("archive voucher"))?;
                if !owned {
                    return Ok(false);
                }
                move_voucher(conn, &event, None)
            })
            .await
    }

    async fn request_reopen(
        &self,
        id: &str,
        tenant: &str,
        by: &str,
        reason: &str,
    ) -> StoreResult<Option<OrderRecord>> {
        let (id, tenant, by, reason) = (
            id.to_owned(),
            tenant.to_owned(),
            by.to_owned(),
            reason.to_owned(),
        );
        self.db
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE orders SET reopen_requested_by = ?3, reopen_reason = ?4 \
                         WHERE id = ?1 AND tenant = ?2 AND state = 'delivered'",
                    )
                    .and_then(|mut s| s.execute(params![id, tenant, by, reason]))
                    .map_err(StoreError::backend("request reopening"))?;
                if n == 0 {
                    return Ok(None);
                }
                order_where(conn, &id)
            })
            .await
    }

    async fn clear_reopen(&self, id: &str, tenant: &str, by: &str) -> StoreResult<bool> {
        let (id, tenant, by) = (id.to_owned(), tenant.to_owned(), by.to_owned());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE orders SET reopen_requested_by = '', reopen_reason = '' \
                     WHERE id = ?1 AND tenant = ?2 AND reopen_requested_by = ?3 AND ?3 != ''",
                )
                .and_then(|mut s| s.execute(params![id, tenant, by]))
                .map(|n| n > 0)
                .map_err(StoreError::backend("clear reopening"))
            })
            .await
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
        let (id, tenant, voucher_id) = (
            order.id.clone(),
            order.tenant.clone(),
            order.voucher_id.clone(),
        );
        let (actor, reason) = (actor.to_owned(), reason.to_owned());
        self.db
            .write(move |conn| {
                let state: Option<String> = conn
                    .prepare_cached("SELECT state FROM vouchers WHERE id = ?1 AND tenant = ?2")
                    .and_then(|mut s| s.query_row([&voucher_id, &tenant], |r| r.get(0)).optional())
                    .map_err(StoreError::backend("redeliver"))?;
                let Some(state) = state else {
                    return Ok(false);
                };
                let recent: i64 = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM voucher_events WHERE voucher_id = ?1 \
                         AND kind = 'redelivery' AND at > ?2",
                    )
                    .and_then(|mut s| s.query_row(params![voucher_id, at - 86_400_000], |r| r.get(0)))
                    .map_err(StoreError::backend("redeliver"))?;
                if recent >= max_per_day {
                    return Ok(false);
                }
                record_event(
                    conn,
                    &VoucherEvent {
                        kind: "redelivery".into(),
                        voucher_id: voucher_id.clone(),
                        tenant: tenant.clone(),
                        at,
                        actor,
                        from_state: state.clone(),
                        to_state: state,
                        reason: format!("redelivered: {reason}"),
                        order_id: Some(id.clone()),
                    },
                )?;
                if let Some((views, expires)) = link {
                    conn.prepare_cached(
                        "UPDATE orders SET link_views_left = ?2, link_expires_at = ?3 WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, views, expires]))
                    .map_err(StoreError::backend("redeliver"))?;
                }
                Ok(true)
            })
            .await
    }

    async fn promote_staged(&self, import_id: &str, tenant: &str) -> StoreResult<u64> {
        let (import_id, tenant) = (import_id.to_owned(), tenant.to_owned());
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE vouchers SET state = 'available' \
                     WHERE import_id = ?1 AND tenant = ?2 AND state = 'staged'",
                    params![import_id, tenant],
                )
                .map(|n| n as u64)
                .map_err(StoreError::backend("stock an import"))
            })
            .await
    }

    async fn staged(
        &self,
        import_id: &str,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, Option<String>)>> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, token, pin_token FROM vouchers \
                     WHERE import_id = ?1 AND tenant = ?2 AND state = 'staged' LIMIT ?3",
                )
                .map_err(StoreError::backend("read staged vouchers"))?;
            let rows = stmt
                .query_map(params![import_id, tenant, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(StoreError::backend("read staged vouchers"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::backend("read staged vouchers"))
        })
    }

    async fn remove_staged(&self, import_id: &str, ids: &[String]) -> StoreResult<u64> {
        let (import_id, ids) = (import_id.to_owned(), ids.to_vec());
        self.db
            .write(move |conn| {
                let mut removed = 0;
                let mut stmt = conn
                    .prepare_cached(
                        "DELETE FROM vouchers WHERE id = ?1 AND import_id = ?2 AND state = 'staged'",
                    )
                    .map_err(StoreError::backend("remove staged vouchers"))?;
                for id in ids {
                    removed += stmt
                        .execute(params![id, import_id])
                        .map_err(StoreError::backend("remove staged vouchers"))?
                        as u64;
                }
                Ok(removed)
            })
            .await
    }

    async fn void_import(
        &self,
        import_id: &str,
        tenant: &str,
        actor: &str,
        reason: &str,
        at: i64,
    ) -> StoreResult<u64> {
        let (import_id, tenant) = (import_id.to_owned(), tenant.to_owned());
        let (actor, reason) = (actor.to_owned(), reason.to_owned());
        self.db
            .write(move |conn| {
                let held: Vec<(String, String)> = {
                    let mut stmt = conn
                        .prepare_cached(
                            "SELECT id, state FROM vouchers WHERE import_id = ?1 AND tenant = ?2 \
                             AND state IN ('available', 'expired')",
                        )
                        .map_err(StoreError::backend("void vouchers"))?;
                    let rows = stmt
                        .query_map(params![import_id, tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(StoreError::backend("void vouchers"))?;
                    rows.collect::<Result<Vec<_>, _>>()
                        .map_err(StoreError::backend("void vouchers"))?
                };
                let mut voided = 0;
                for (voucher_id, state) in held {
                    let event = VoucherEvent {
                        kind: "transition".into(),
                        voucher_id,
                        tenant: tenant.clone(),
                        at,
                        actor: actor.clone(),
                        from_state: state,
                        to_state: "voided".into(),
                        reason: format!("import {import_id} voided: {reason}"),
                        order_id: None,
                    };
                    if move_voucher(conn, &event, None)? {
                        voided += 1;
                    }
                }
                Ok(voided)
            })
            .await
    }
}
