//! The running watch: the tap on the audit stream, the task that runs the
//! detectors, and what it does with a finding.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use strongroom_audit::{AuditError, AuditEvent, LiveTap, Outcome};
use strongroom_store::{AlertRecord, FreezeRecord};
use strongroom_vault::{Vault, rfc3339};
use tokio::sync::mpsc;

use crate::config::WatchConfig;
use crate::detect::{Detectors, Finding};
use crate::freezes::{FreezeOutcome, Freezes};
use crate::webhook::WebhookSender;
use crate::{Severity, Subject, WATCH_ACTOR, WatchError};

/// Batches of records waiting for the detectors. At one batch per request,
/// this is a second or more of a busy node's traffic; records are queued
/// without their batch items (the detectors judge requests), so a full
/// queue holds tens of megabytes, not gigabytes.
const QUEUE_BATCHES: usize = 16_384;

/// Shortest time between two `watch_overloaded` alerts.
const OVERLOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What the watch has seen and done, for metrics.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Records the detectors judged.
    pub observed: AtomicU64,
    /// Records the detectors never saw because they had fallen behind.
    pub missed: AtomicU64,
    /// Failed audit appends.
    pub audit_failures: AtomicU64,
    /// The newest finding that the audit log was cut, not yet raised.
    pub audit_cut: Mutex<Option<String>>,
    /// Findings not raised for the per-minute limit on alerts.
    pub suppressed: AtomicU64,
    /// Alerts raised, by detector.
    pub alerts: Mutex<BTreeMap<&'static str, u64>>,
    /// Last sequence number each forwarder delivered.
    pub forwarder_cursors: Mutex<BTreeMap<String, u64>>,
    /// Audit records written, by action: allowed, denied, failed.
    events: std::sync::RwLock<std::collections::HashMap<String, Arc<[AtomicU64; 3]>>>,
}

impl WatchStats {
    /// Counts durable records by action and outcome (a read lock and an
    /// atomic add on the request path; the write lock once per action).
    fn count(&self, event: &AuditEvent) {
        let slot = match event.outcome {
            Outcome::Allowed => 0,
            Outcome::Denied => 1,
            Outcome::Failed => 2,
        };
        let found = self
            .events
            .read()
            .ok()
            .and_then(|m| m.get(event.action.as_str()).cloned());
        let counters = match found {
            Some(c) => c,
            None => match self.events.write() {
                Ok(mut m) => m.entry(event.action.clone()).or_default().clone(),
                Err(_) => return,
            },
        };
        if let Some(c) = counters.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records written so far, by (action, outcome).
    pub fn events_by_action(&self) -> BTreeMap<(String, &'static str), u64> {
        let mut out = BTreeMap::new();
        if let Ok(m) = self.events.read() {
            for (action, counters) in m.iter() {
                for (outcome, c) in ["allowed", "denied", "failed"].iter().zip(counters.iter()) {
                    let n = c.load(Ordering::Relaxed);
                    if n > 0 {
                        out.insert((action.clone(), *outcome), n);
                    }
                }
            }
        }
        out
    }

    /// Alerts raised so far, by detector.
    pub fn alerts_by_detector(&self) -> BTreeMap<&'static str, u64> {
        self.alerts.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

type Batch = Vec<(u64, AuditEvent)>;

/// What the detectors' task is handed.
enum Message {
    /// Records just made durable.
    Records(Batch),
    /// A finding from outside the stream (a forwarder that cannot deliver).
    Finding(Finding),
}

/// The tap on the audit stream and the handle of the detectors' task.
pub struct Watch {
    queue: Option<mpsc::Sender<Message>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stats: Arc<WatchStats>,
    freezes: Arc<Freezes>,
    config: WatchConfig,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

impl LiveTap for Watch {
    fn observe(&self, records: &[(u64, &AuditEvent)]) {
        for (_, event) in records {
            self.stats.count(event);
        }
        let Some(queue) = &self.queue else { return };
        let batch: Batch = records
            .iter()
            .map(|(s, e)| (*s, without_items(e)))
            .collect();
        if queue.try_send(Message::Records(batch)).is_err() {
            self.stats
                .missed
                .fetch_add(records.len() as u64, Ordering::Relaxed);
        }
    }

    fn append_failed(&self, error: &AuditError) {
        self.stats.audit_failures.fetch_add(1, Ordering::Relaxed);
        if let AuditError::Cut(what) = error
            && let Ok(mut cut) = self.stats.audit_cut.lock()
        {
            *cut = Some(what.clone());
        }
        tracing::error!(error = %error, "audit store failure: operations are refused until it recovers");
        let Some(queue) = &self.queue else { return };
        // An empty batch wakes the task, which then reads the counter.
        let _ = queue.try_send(Message::Records(Vec::new()));
    }
}

impl Watch {
    /// Starts the detectors' task for `vault` and registers the watch as its
    /// live tap (before the vault is unsealed). With detection disabled,
    /// freezes are still enforced and may be set by hand. Must run inside a
    /// Tokio runtime.
    pub fn start(
        config: WatchConfig,
        vault: Arc<Vault>,
        freezes: Arc<Freezes>,
    ) -> Result<Arc<Self>, WatchError> {
        let webhook = config
            .webhook
            .as_ref()
            .map(WebhookSender::start)
            .transpose()?;
        let stats = Arc::new(WatchStats::default());
        let mut task = None;
        let queue = if config.enabled {
            let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
            let raiser = Raiser {
                vault: vault.clone(),
                freezes: freezes.clone(),
                stats: stats.clone(),
                webhook,
                config: config.clone(),
            };
            task = Some(tokio::spawn(run(
                rx,
                Detectors::new(config.clone()),
                raiser,
            )));
            Some(tx)
        } else {
            None
        };
        let watch = Arc::new(Self {
            queue,
            task: Mutex::new(task),
            stats,
            freezes,
            config,
        });
        if !vault.set_live_tap(watch.clone()) {
            return Err(WatchError::Config(
                "the vault already has a live tap".into(),
            ));
        }
        Ok(watch)
    }

    /// Stops the detectors' task (the server is shutting down); records
    /// still queued are not judged.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
    }

    /// Raises a finding made outside the audit stream (a forwarder that
    /// cannot deliver), through the same path as the detectors' but with
    /// no cooldown or per-minute limit. False if it could not be queued
    /// (the queue is full): the caller should report it again later.
    pub fn report(&self, finding: Finding) -> bool {
        match &self.queue {
            Some(queue) => match queue.try_send(Message::Finding(finding)) {
                Ok(()) => true,
                Err(e) => {
                    let summary = match e.into_inner() {
                        Message::Finding(f) => f.summary,
                        Message::Records(_) => String::new(),
                    };
                    tracing::error!("watch queue full; not yet raised: {summary}");
                    false
                }
            },
            // Detection off: the log is all there is.
            None => {
                tracing::error!(detector = finding.detector, "{}", finding.summary);
                true
            }
        }
    }

    /// Notes how far forwarder `name` has delivered the log (for metrics).
    pub fn note_forwarder_cursor(&self, name: &str, seq: u64) {
        if let Ok(mut cursors) = self.stats.forwarder_cursors.lock() {
            cursors.insert(name.to_owned(), seq);
        }
    }

    /// What the watch has seen and done.
    pub fn stats(&self) -> &Arc<WatchStats> {
        &self.stats
    }

    /// The frozen principals.
    pub fn freezes(&self) -> &Arc<Freezes> {
        &self.freezes
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &WatchConfig {
        &self.config
    }
}

async fn run(mut rx: mpsc::Receiver<Message>, mut detectors: Detectors, raiser: Raiser) {
    let (mut missed_seen, mut failures_seen) = (0u64, 0u64);
    let mut audit_down = false;
    let mut last_overload = None;
    while let Some(message) = rx.recv().await {
        let batch = match message {
            Message::Records(batch) => {
                // A record was written: the audit store works (again).
                if !batch.is_empty() {
                    audit_down = false;
                }
                batch
            }
            Message::Finding(finding) => {
                raiser.raise(finding, 0).await;
                Vec::new()
            }
        };
        for (seq, event) in batch {
            if event.actor == WATCH_ACTOR {
                continue;
            }
            raiser.stats.observed.fetch_add(1, Ordering::Relaxed);
            for finding in detectors.observe(&event) {
                raiser.raise(finding, seq).await;
            }
        }
        let suppressed = detectors.take_suppressed();
        if suppressed > 0 {
            raiser
                .stats
                .suppressed
                .fetch_add(suppressed, Ordering::Relaxed);
            tracing::warn!(
                suppressed,
                "more than {} alerts in a minute; the rest were counted, not raised",
                crate::detect::MAX_ALERTS_PER_MINUTE
            );
        }
        // At most one a minute: while the queue is full, the alert's own
        // record is missed too.
        let missed = raiser.stats.missed.load(Ordering::Relaxed);
        let quiet =
            last_overload.is_none_or(|at: std::time::Instant| at.elapsed() >= OVERLOAD_EVERY);
        if missed > missed_seen && quiet {
            last_overload = Some(std::time::Instant::now());
            let finding = Finding {
                detector: "watch_overloaded",
                severity: Severity::High,
                subject: Subject::Component("watch".into()),
                tenant: None,
                summary: format!(
                    "the detectors fell behind and missed {} audit records; they are in the \
                     audit log, but were not judged",
                    missed - missed_seen
                ),
                details: json!({ "missed_total": missed }),
            };
            missed_seen = missed;
            raiser.raise(finding, 0).await;
        }
        // A cut log is its own alert: records are gone, not just late.
        let cut = raiser
            .stats
            .audit_cut
            .lock()
            .ok()
            .and_then(|mut c| c.take());
        if let Some(what) = cut {
            let finding = Finding {
                detector: "audit_chain_cut",
                severity: Severity::Critical,
                subject: Subject::Component("audit_log".into()),
                tenant: None,
                summary: what.chars().take(400).collect(),
                details: json!({ "what": what }),
            };
            raiser.raise(finding, 0).await;
        }
        // One alert per outage: the alert's own audit record fails too
        // while the store is down, and must not raise another.
        let failures = raiser.stats.audit_failures.load(Ordering::Relaxed);
        if failures > failures_seen && !audit_down {
            audit_down = true;
            let finding = Finding {
                detector: "audit_store_failure",
                severity: Severity::Critical,
                subject: Subject::Component("audit_store".into()),
                tenant: None,
                summary: "audit appends are failing; every operation they record is refused \
                          until the audit store works again"
                    .into(),
                details: json!({ "failures_total": failures }),
            };
            raiser.raise(finding, 0).await;
        }
        failures_seen = failures_seen.max(failures);
    }
}

/// Turns a finding into an alert, a freeze, records, a log line and a
/// webhook call.
struct Raiser {
    vault: Arc<Vault>,
    freezes: Arc<Freezes>,
    stats: Arc<WatchStats>,
    webhook: Option<WebhookSender>,
    config: WatchConfig,
}

impl Raiser {
    async fn raise(&self, f: Finding, seq: u64) {
        let now = self.vault.clock().now_ms();
        let id =
            match strongroom_crypto::random::timed_token("al_", u64::try_from(now).unwrap_or(0)) {
                Ok(id) => id,
                Err(e) => {
                    tracing::error!(error = %e, detector = f.detector, "could not name an alert");
                    return;
                }
            };
        let central = &self.vault.stores().central;
        // Contain first: the principal is refused from this moment.
        let mut froze = false;
        if let Some(principal) = f.subject.principal()
            && self.config.freeze_at.freezes(f.severity)
        {
            let freeze = FreezeRecord {
                principal_id: principal.to_owned(),
                frozen_at: now,
                alert_id: id.clone(),
                frozen_by: WATCH_ACTOR.into(),
                reason: f.summary.clone(),
            };
            froze = match self.freezes.freeze(central.as_ref(), freeze).await {
                Ok(FreezeOutcome::Changed) => true,
                Ok(FreezeOutcome::Unchanged) => false,
                Err(e) => {
                    // Frozen on this node all the same.
                    tracing::error!(error = %e, principal, "freeze could not be stored");
                    true
                }
            };
        }
        let alert = AlertRecord {
            id: id.clone(),
            created_at: now,
            detector: f.detector.to_owned(),
            severity: f.severity.as_str().to_owned(),
            subject: f.subject.key(),
            tenant: f.tenant.clone(),
            summary: f.summary.clone(),
            details: f.details.to_string(),
            audit_seq: i64::try_from(seq).unwrap_or(0),
            status: "open".into(),
            acknowledged_by: String::new(),
            acknowledged_at: 0,
            note: String::new(),
            froze,
        };
        if let Ok(mut counts) = self.stats.alerts.lock() {
            *counts.entry(f.detector).or_default() += 1;
        }
        tracing::warn!(
            alert = %id,
            detector = f.detector,
            severity = f.severity.as_str(),
            subject = %alert.subject,
            froze,
            "{}",
            f.summary
        );
        let body = alert_json(&alert).to_string().into_bytes();
        if let Err(e) = central.insert_alert(alert).await {
            tracing::error!(alert = %id, error = %e, "alert could not be stored");
        }
        let mut events = vec![watch_event(
            now,
            "alert.raised",
            f.tenant.as_deref(),
            &id,
            format!(
                "{} {}: {}",
                f.detector,
                f.severity.as_str(),
                f.subject.key()
            ),
        )];
        if froze && let Some(principal) = f.subject.principal() {
            events.push(watch_event(
                now,
                "principal.freeze",
                f.tenant.as_deref(),
                principal,
                format!("alert {id} ({})", f.detector),
            ));
        }
        if let Err(e) = self.vault.record_all(&events).await {
            tracing::error!(alert = %id, error = %e, "alert could not be audited");
        }
        if let Some(webhook) = &self.webhook {
            webhook.send(id, body);
        }
    }
}

/// A record as the detectors need it: a batch's items left behind.
fn without_items(e: &AuditEvent) -> AuditEvent {
    AuditEvent {
        time: e.time.clone(),
        request_id: String::new(),
        actor: e.actor.clone(),
        actor_name: e.actor_name.clone(),
        action: e.action.clone(),
        tenant: e.tenant.clone(),
        target: e.target.clone(),
        outcome: e.outcome,
        reason: e.reason.clone(),
        purpose: e.purpose.clone(),
        customer: e.customer.clone(),
        client_addr: e.client_addr.clone(),
        items: None,
    }
}

fn watch_event(
    now: i64,
    action: &str,
    tenant: Option<&str>,
    target: &str,
    reason: String,
) -> AuditEvent {
    AuditEvent {
        time: rfc3339(now),
        request_id: String::new(),
        actor: WATCH_ACTOR.into(),
        actor_name: None,
        action: action.into(),
        tenant: tenant.map(str::to_owned),
        target: Some(target.to_owned()),
        outcome: Outcome::Allowed,
        reason: Some(reason),
        purpose: None,
        customer: None,
        client_addr: None,
        items: None,
    }
}

/// An alert as the API, the CLI and the webhook show it.
pub fn alert_json(a: &AlertRecord) -> Value {
    let details: Value = serde_json::from_str(&a.details).unwrap_or(Value::Null);
    let mut v = json!({
        "id": a.id,
        "created_at": rfc3339(a.created_at),
        "detector": a.detector,
        "severity": a.severity,
        "subject": a.subject,
        "tenant": a.tenant,
        "summary": a.summary,
        "details": details,
        "audit_seq": a.audit_seq,
        "status": a.status,
        "froze_subject": a.froze,
    });
    if a.status == "acknowledged"
        && let Some(map) = v.as_object_mut()
    {
        map.insert(
            "acknowledged".into(),
            json!({
                "by": a.acknowledged_by,
                "at": rfc3339(a.acknowledged_at),
                "note": a.note,
            }),
        );
    }
    v
}
