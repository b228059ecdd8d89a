//! Finding records: searches from the newest back, and exports of a time
//! range from the oldest forward.
//!
//! # No index, bounded work
//! The log has no index but its sequence number: an index over actors or
//! tokens would put random keys on disk and slow every append, and appends
//! are on the path of every reveal. A search reads backwards in pages and
//! filters in memory, and stops after [`SCAN_BUDGET`] records whether or not
//! the page is full: the answer then says where to go on from. An auditor's
//! question costs a bounded amount however large the log, and a question
//! about the last hours (the usual one) is answered from the end.
//!
//! # Time and order
//! Sequence numbers follow append order; a record's time is taken just
//! before its append, so two records can be out of time order by the length
//! of a commit. Time bounds are applied exactly to each record, and a scan
//! only treats a record older than [`TIME_SLACK_MS`] before the range as the
//! end of it.

use std::sync::Arc;

use strongroom_store::{AuditStore, StoreError, StoredAuditRecord};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{AuditEvent, Outcome};

/// Most records one search reads before answering.
pub const SCAN_BUDGET: usize = 50_000;
/// How far out of time order two records may be.
pub const TIME_SLACK_MS: i64 = 5 * 60 * 1000;
/// Records read per store call.
const PAGE: usize = 1_000;

/// What to look for. Every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The actor's principal id or name.
    pub actor: Option<String>,
    /// Only records in these tenants (`None`: any tenant, and records of
    /// none, such as logins).
    pub tenants: Option<Vec<String>>,
    /// Records whose target, or one of whose batch items' targets, is one
    /// of these (a token, a voucher's tokens and ids, an order id …).
    pub subjects: Vec<String>,
    /// The action, exactly (`secret.reveal`), or a family ending in `.*`
    /// (`order.*`).
    pub action: Option<String>,
    /// Allowed, denied or failed.
    pub outcome: Option<Outcome>,
    /// From this time (Unix ms), inclusive.
    pub since_ms: Option<i64>,
    /// Up to this time (Unix ms), exclusive.
    pub until_ms: Option<i64>,
}

impl AuditFilter {
    /// True if `event`, recorded at `at_ms`, is one the filter asks for.
    pub fn matches(&self, event: &AuditEvent, at_ms: i64) -> bool {
        if self.since_ms.is_some_and(|since| at_ms < since)
            || self.until_ms.is_some_and(|until| at_ms >= until)
        {
            return false;
        }
        if let Some(actor) = &self.actor
            && event.actor != *actor
            && event.actor_name.as_deref() != Some(actor.as_str())
        {
            return false;
        }
        if let Some(tenants) = &self.tenants
            && !event
                .tenant
                .as_ref()
                .is_some_and(|t| tenants.iter().any(|allowed| allowed == t))
        {
            return false;
        }
        if let Some(action) = &self.action {
            let hit = match action.strip_suffix('*') {
                Some(family) => event.action.starts_with(family),
                None => event.action == *action,
            };
            if !hit {
                return false;
            }
        }
        if self.outcome.is_some_and(|o| o != event.outcome) {
            return false;
        }
        if !self.subjects.is_empty() {
            let is_subject = |t: &Option<String>| {
                t.as_ref()
                    .is_some_and(|t| self.subjects.iter().any(|s| s == t))
            };
            let in_items = event
                .items
                .as_ref()
                .is_some_and(|items| items.iter().any(|i| is_subject(&i.target)));
            if !is_subject(&event.target) && !in_items {
                return false;
            }
        }
        true
    }
}

/// A record found, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRecord {
    /// Sequence number: its place in the chain, for de-duplication and
    /// for `verify`.
    pub seq: u64,
    /// What it says.
    pub event: AuditEvent,
}

/// One page of a search, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Matching records, newest first.
    pub records: Vec<FoundRecord>,
    /// Where to go on from (`before=` of the next search), or `None` when
    /// the log holds nothing more that could match.
    pub next_before: Option<u64>,
    /// Records read to answer.
    pub scanned: usize,
}

/// A stored record's event and its time as Unix ms, or `None` if the body
/// is not a record.
pub fn parse_record(record: &StoredAuditRecord) -> Option<(AuditEvent, i64)> {
    let event = AuditEvent::from_body(&record.body)?;
    let ms = time_ms(&event.time)?;
    Some((event, ms))
}

/// A record's RFC 3339 time as Unix ms.
pub fn time_ms(time: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(time, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Up to `limit` matching records with `seq < before` (the whole log when
/// `before` is `None`), newest first, reading at most `budget` records.
pub async fn search(
    store: &Arc<dyn AuditStore>,
    filter: &AuditFilter,
    before: Option<u64>,
    limit: usize,
    budget: usize,
) -> Result<SearchPage, StoreError> {
    let mut page = SearchPage {
        records: Vec::new(),
        next_before: None,
        scanned: 0,
    };
    let limit = limit.max(1);
    let mut cursor = before.unwrap_or(u64::MAX);
    loop {
        let want = PAGE.min(budget.saturating_sub(page.scanned)).max(1);
        let batch = store.read_back(cursor, want).await?;
        let got = batch.len();
        for record in batch {
            page.scanned += 1;
            cursor = record.seq;
            // A body that is not a record is for `verify` to report.
            let Some((event, at)) = parse_record(&record) else {
                continue;
            };
            if filter
                .since_ms
                .is_some_and(|since| at < since.saturating_sub(TIME_SLACK_MS))
            {
                return Ok(page);
            }
            if filter.matches(&event, at) {
                page.records.push(FoundRecord {
                    seq: record.seq,
                    event,
                });
                if page.records.len() >= limit {
                    page.next_before = (record.seq > 1).then_some(record.seq);
                    return Ok(page);
                }
            }
        }
        if got < want || cursor <= 1 {
            return Ok(page);
        }
        if page.scanned >= budget {
            page.next_before = Some(cursor);
            return Ok(page);
        }
    }
}

/// The first sequence number whose record is from `since_ms` (less the
/// slack) or later: where an export of a time range starts reading. A binary
/// search, one record read per step.
pub async fn first_seq_from(store: &Arc<dyn AuditStore>, since_ms: i64) -> Result<u64, StoreError> {
    let Some(last) = store.read_back(u64::MAX, 1).await?.pop() else {
        return Ok(1);
    };
    let target = since_ms.saturating_sub(TIME_SLACK_MS);
    let (mut lo, mut hi) = (1u64, last.seq.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let before_target = match store.read_from(mid, 1).await?.first() {
            Some(record) => parse_record(record).is_some_and(|(_, at)| at < target),
            None => false,
        };
        if before_target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Reads the records of a time range oldest first, a page at a time: an
/// export, or a forwarder catching up.
pub struct ExportCursor {
    store: Arc<dyn AuditStore>,
    filter: AuditFilter,
    next_seq: u64,
    done: bool,
}

impl ExportCursor {
    /// Starts at the first record that can be in `filter`'s time range.
    pub async fn start(
        store: Arc<dyn AuditStore>,
        filter: AuditFilter,
    ) -> Result<Self, StoreError> {
        let next_seq = match filter.since_ms {
            Some(since) => first_seq_from(&store, since).await?,
            None => 1,
        };
        Ok(Self {
            store,
            filter,
            next_seq,
            done: false,
        })
    }

    /// The next matching records, oldest first; empty once the range is
    /// read.
    pub async fn next_page(&mut self) -> Result<Vec<FoundRecord>, StoreError> {
        let mut found = Vec::new();
        while !self.done && found.is_empty() {
            let batch = self.store.read_from(self.next_seq, PAGE).await?;
            self.done = batch.len() < PAGE;
            for record in batch {
                self.next_seq = record.seq.saturating_add(1);
                let Some((event, at)) = parse_record(&record) else {
                    continue;
                };
                if self
                    .filter
                    .until_ms
                    .is_some_and(|until| at >= until.saturating_add(TIME_SLACK_MS))
                {
                    self.done = true;
                    break;
                }
                if self.filter.matches(&event, at) {
                    found.push(FoundRecord {
                        seq: record.seq,
                        event,
                    });
                }
            }
        }
        Ok(found)
    }
}
