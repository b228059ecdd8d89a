//! The storage port of watching the vault: alerts the detectors raised,
//! principals frozen because of them, and how far each audit forwarder has
//! sent the log.
//!
//! All three live in the central store so that every node sees them: a
//! principal frozen through one node is refused by all of them, and a
//! forwarder restarted on another node resumes where the last one stopped.

use async_trait::async_trait;

use crate::StoreResult;

/// An alert raised by a detector. Holds no secret and no token value beyond
/// what the audit record it came from already names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    /// Stable id (`al_…`), time-ordered.
    pub id: String,
    /// Raised, Unix ms.
    pub created_at: i64,
    /// The detector's name, e.g. `reveal_rate`.
    pub detector: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// The principal (or, for anonymous attempts, `addr:<client address>`)
    /// the alert is about.
    pub subject: String,
    /// Tenant of the events, when they had one.
    pub tenant: Option<String>,
    /// One line for a person.
    pub summary: String,
    /// The figures behind it, JSON.
    pub details: String,
    /// Sequence number of the audit record that raised it.
    pub audit_seq: i64,
    /// `open` or `acknowledged`.
    pub status: String,
    /// Who acknowledged it (principal id), empty while open.
    pub acknowledged_by: String,
    /// When, Unix ms (0 while open).
    pub acknowledged_at: i64,
    /// Their note.
    pub note: String,
    /// Whether the alert froze its subject.
    pub froze: bool,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only `open` or only `acknowledged`.
    pub status: Option<String>,
    /// Only this detector's.
    pub detector: Option<String>,
    /// Only those about this subject.
    pub subject: Option<String>,
    /// Only alerts older than this id (paging, newest first).
    pub before: Option<String>,
}

/// A frozen principal: refused on every request until a security officer
/// unfreezes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeRecord {
    /// The principal's id.
    pub principal_id: String,
    /// Frozen, Unix ms.
    pub frozen_at: i64,
    /// The alert that froze it, or empty when a person did.
    pub alert_id: String,
    /// Who froze it (`watch` for the detectors, else a principal id).
    pub frozen_by: String,
    /// Why, for the person who reviews it.
    pub reason: String,
}

/// Alerts, freezes and forwarding cursors.
#[async_trait]
pub trait WatchStore: Send + Sync {
    /// Stores a new alert.
    async fn insert_alert(&self, alert: AlertRecord) -> StoreResult<()>;

    /// Up to `limit` alerts matching `filter`, newest first.
    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
    ) -> StoreResult<Vec<AlertRecord>>;

    /// One alert.
    async fn alert(&self, id: &str) -> StoreResult<Option<AlertRecord>>;

    /// Marks an open alert acknowledged; false if it was not open.
    async fn acknowledge_alert(&self, id: &str, by: &str, at: i64, note: &str)
    -> StoreResult<bool>;

    /// Freezes a principal; false if it already was.
    async fn freeze_principal(&self, freeze: FreezeRecord) -> StoreResult<bool>;

    /// Lifts a freeze; false if the principal was not frozen.
    async fn unfreeze_principal(&self, principal_id: &str) -> StoreResult<bool>;

    /// Every frozen principal.
    async fn frozen_principals(&self) -> StoreResult<Vec<FreezeRecord>>;

    /// The last audit sequence number forwarder `name` has delivered (0:
    /// none yet).
    async fn forwarder_cursor(&self, name: &str) -> StoreResult<u64>;

    /// Records that forwarder `name` has delivered everything up to `seq`.
    /// Never moves a cursor backwards.
    async fn set_forwarder_cursor(&self, name: &str, seq: u64, at: i64) -> StoreResult<()>;
}
