//! Alerts, freezes and forwarding cursors on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use strongroom_store::{AlertFilter, AlertRecord, FreezeRecord, StoreResult, WatchStore};

use crate::central::PgCentralStore;
use crate::engine::db_error;
use crate::sql;

const ALERT_COLUMNS: &str = "id, created_at, detector, severity, subject, tenant, summary, \
     details, audit_seq, status, acknowledged_by, acknowledged_at, note, froze";

fn alert_from_row(r: &PgRow) -> StoreResult<AlertRecord> {
    let e = db_error("read alert");
    Ok(AlertRecord {
        id: r.try_get(0).map_err(e)?,
        created_at: r.try_get(1).map_err(e)?,
        detector: r.try_get(2).map_err(e)?,
        severity: r.try_get(3).map_err(e)?,
        subject: r.try_get(4).map_err(e)?,
        tenant: r.try_get(5).map_err(e)?,
        summary: r.try_get(6).map_err(e)?,
        details: r.try_get(7).map_err(e)?,
        audit_seq: r.try_get(8).map_err(e)?,
        status: r.try_get(9).map_err(e)?,
        acknowledged_by: r.try_get(10).map_err(e)?,
        acknowledged_at: r.try_get(11).map_err(e)?,
        note: r.try_get(12).map_err(e)?,
        froze: r.try_get(13).map_err(e)?,
    })
}

#[async_trait]
impl WatchStore for PgCentralStore {
    async fn insert_alert(&self, a: AlertRecord) -> StoreResult<()> {
        sqlx::query(sql(&format!(
            "INSERT INTO {}.alerts ({ALERT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            self.schema
        )))
        .bind(a.id)
        .bind(a.created_at)
        .bind(a.detector)
        .bind(a.severity)
        .bind(a.subject)
        .bind(a.tenant)
        .bind(a.summary)
        .bind(a.details)
        .bind(a.audit_seq)
        .bind(a.status)
        .bind(a.acknowledged_by)
        .bind(a.acknowledged_at)
        .bind(a.note)
        .bind(a.froze)
        .execute(self.db.pool())
        .await
        .map_err(db_error("insert alert"))?;
        Ok(())
    }

    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
    ) -> StoreResult<Vec<AlertRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT {ALERT_COLUMNS} FROM {}.alerts \
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR detector = $2) \
             AND ($3::text IS NULL OR subject = $3) AND ($4::text IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
            self.schema
        )))
        .bind(&filter.status)
        .bind(&filter.detector)
        .bind(&filter.subject)
        .bind(&filter.before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("list alerts"))?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn alert(&self, id: &str) -> StoreResult<Option<AlertRecord>> {
        let row = sqlx::query(sql(&format!(
            "SELECT {ALERT_COLUMNS} FROM {}.alerts WHERE id = $1",
            self.schema
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("read alert"))?;
        row.as_ref().map(alert_from_row).transpose()
    }

    async fn acknowledge_alert(
        &self,
        id: &str,
        by: &str,
        at: i64,
        note: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "UPDATE {}.alerts SET status = 'acknowledged', acknowledged_by = $2, \
             acknowledged_at = $3, note = $4 WHERE id = $1 AND status = 'open'",
            self.schema
        )))
        .bind(id)
        .bind(by)
        .bind(at)
        .bind(note)
        .execute(self.db.pool())
        .await
        .map_err(db_error("acknowledge alert"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn freeze_principal(&self, f: FreezeRecord) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "INSERT INTO {}.frozen_principals (principal_id, frozen_at, alert_id, frozen_by, \
             reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (principal_id) DO NOTHING",
            self.schema
        )))
        .bind(f.principal_id)
        .bind(f.frozen_at)
        .bind(f.alert_id)
        .bind(f.frozen_by)
        .bind(f.reason)
        .execute(self.db.pool())
        .await
        .map_err(db_error("freeze principal"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn unfreeze_principal(&self, principal_id: &str) -> StoreResult<bool> {
        let done = sqlx::query(sql(&format!(
            "DELETE FROM {}.frozen_principals WHERE principal_id = $1",
            self.schema
        )))
        .bind(principal_id)
        .execute(self.db.pool())
        .await
        .map_err(db_error("unfreeze principal"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn frozen_principals(&self) -> StoreResult<Vec<FreezeRecord>> {
        let rows = sqlx::query(sql(&format!(
            "SELECT principal_id, frozen_at, alert_id, frozen_by, reason \
             FROM {}.frozen_principals ORDER BY frozen_at",
            self.schema
        )))
        .fetch_all(self.db.pool())
        .await
        .map_err(db_error("list frozen principals"))?;
        let e = db_error("read frozen principal");
        rows.iter()
            .map(|r| {
                Ok(FreezeRecord {
                    principal_id: r.try_get(0).map_err(e)?,
                    frozen_at: r.try_get(1).map_err(e)?,
                    alert_id: r.try_get(2).map_err(e)?,
                    frozen_by: r.try_get(3).map_err(e)?,
                    reason: r.try_get(4).map_err(e)?,
                })
            })
            .collect()
    }

    async fn forwarder_cursor(&self, name: &str) -> StoreResult<u64> {
        let seq: Option<i64> = sqlx::query(sql(&format!(
            "SELECT seq FROM {}.forwarder_cursors WHERE name = $1",
            self.schema
        )))
        .bind(name)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_error("read forwarder cursor"))?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(db_error("read forwarder cursor"))?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }

    async fn set_forwarder_cursor(&self, name: &str, seq: u64, at: i64) -> StoreResult<()> {
        sqlx::query(sql(&format!(
            "INSERT INTO {0}.forwarder_cursors (name, seq, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET seq = GREATEST({0}.forwarder_cursors.seq, \
             excluded.seq), updated_at = excluded.updated_at",
            self.schema
        )))
        .bind(name)
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .bind(at)
        .execute(self.db.pool())
        .await
        .map_err(db_error("set forwarder cursor"))?;
        Ok(())
    }
}
