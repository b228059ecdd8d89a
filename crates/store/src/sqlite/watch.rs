//! Alerts, freezes and forwarding cursors in SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::central::SqliteCentralStore;
use crate::{AlertFilter, AlertRecord, FreezeRecord, StoreError, StoreResult, WatchStore};

macro_rules! alert_columns {
    () => {
        "id, created_at, detector, severity, subject, tenant, summary, details, audit_seq, status, \
         acknowledged_by, acknowledged_at, note, froze"
    };
}

fn alert_from_row(r: &Row<'_>) -> rusqlite::Result<AlertRecord> {
    Ok(AlertRecord {
        id: r.get(0)?,
        created_at: r.get(1)?,
        detector: r.get(2)?,
        severity: r.get(3)?,
        subject: r.get(4)?,
        tenant: r.get(5)?,
        summary: r.get(6)?,
        details: r.get(7)?,
        audit_seq: r.get(8)?,
        status: r.get(9)?,
        acknowledged_by: r.get(10)?,
        acknowledged_at: r.get(11)?,
        note: r.get(12)?,
        froze: r.get(13)?,
    })
}

#[async_trait]
impl WatchStore for SqliteCentralStore {
    async fn insert_alert(&self, a: AlertRecord) -> StoreResult<()> {
        self.db
            .write(move |conn| {
                conn.execute(
                    concat!(
                        "INSERT INTO alerts (",
                        alert_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                    ),
                    params![
                        a.id,
                        a.created_at,
                        a.detector,
                        a.severity,
                        a.subject,
                        a.tenant,
                        a.summary,
                        a.details,
                        a.audit_seq,
                        a.status,
                        a.acknowledged_by,
                        a.acknowledged_at,
                        a.note,
                        a.froze
                    ],
                )
                .map(|_| ())
                .map_err(StoreError::backend("insert alert"))
            })
            .await
    }

    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
    ) -> StoreResult<Vec<AlertRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                alert_columns!(),
                " FROM alerts WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR detector = ?2) \
                 AND (?3 IS NULL OR subject = ?3) AND (?4 IS NULL OR id < ?4) \
                 ORDER BY id DESC LIMIT ?5"
            ))
            .and_then(|mut s| {
                s.query_map(
                    params![
                        filter.status,
                        filter.detector,
                        filter.subject,
                        filter.before,
                        limit
                    ],
                    alert_from_row,
                )?
                .collect()
            })
            .map_err(StoreError::backend("list alerts"))
        })
    }

    async fn alert(&self, id: &str) -> StoreResult<Option<AlertRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                alert_columns!(),
                " FROM alerts WHERE id = ?1"
            ))
            .and_then(|mut s| s.query_row([id], alert_from_row).optional())
            .map_err(StoreError::backend("read alert"))
        })
    }

    async fn acknowledge_alert(
        &self,
        id: &str,
        by: &str,
        at: i64,
        note: &str,
    ) -> StoreResult<bool> {
        let (id, by, note) = (id.to_owned(), by.to_owned(), note.to_owned());
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE alerts SET status = 'acknowledged', acknowledged_by = ?2, \
                     acknowledged_at = ?3, note = ?4 WHERE id = ?1 AND status = 'open'",
                    params![id, by, at, note],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("acknowledge alert"))
            })
            .await
    }

    async fn freeze_principal(&self, f: FreezeRecord) -> StoreResult<bool> {
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO frozen_principals (principal_id, frozen_at, alert_id, frozen_by, \
                     reason) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (principal_id) DO NOTHING",
                    params![
                        f.principal_id,
                        f.frozen_at,
                        f.alert_id,
                        f.frozen_by,
                        f.reason
                    ],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("freeze principal"))
            })
            .await
    }

    async fn unfreeze_principal(&self, principal_id: &str) -> StoreResult<bool> {
        let id = principal_id.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM frozen_principals WHERE principal_id = ?1",
                    [id],
                )
                .map(|n| n > 0)
                .map_err(StoreError::backend("unfreeze principal"))
            })
            .await
    }

    async fn frozen_principals(&self) -> StoreResult<Vec<FreezeRecord>> {
        self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT principal_id, frozen_at, alert_id, frozen_by, reason \
                 FROM frozen_principals ORDER BY frozen_at",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(FreezeRecord {
                        principal_id: r.get(0)?,
                        frozen_at: r.get(1)?,
                        alert_id: r.get(2)?,
                        frozen_by: r.get(3)?,
                        reason: r.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(StoreError::backend("list frozen principals"))
        })
    }

    async fn forwarder_cursor(&self, name: &str) -> StoreResult<u64> {
        let seq: Option<i64> = self.db.read(|conn| {
            conn.prepare_cached("SELECT seq FROM forwarder_cursors WHERE name = ?1")
                .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
                .map_err(StoreError::backend("read forwarder cursor"))
        })?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }

    async fn set_forwarder_cursor(&self, name: &str, seq: u64, at: i64) -> StoreResult<()> {
        let name = name.to_owned();
        let seq = i64::try_from(seq).map_err(|_| StoreError::Conflict("sequence out of range"))?;
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO forwarder_cursors (name, seq, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET seq = max(seq, excluded.seq), \
                     updated_at = excluded.updated_at",
                    params![name, seq, at],
                )
                .map(|_| ())
                .map_err(StoreError::backend("set forwarder cursor"))
            })
            .await
    }
}
