//! The detectors: pure functions of the audit stream, each keeping a little
//! state per principal (or address, tenant, customer) in memory.
//!
//! They judge each record by the time written in it, not the time they see
//! it, so a replayed stream gives the same findings and tests need no clock.
//! Memory is bounded: per-key state is dropped once idle for longer than it
//! can matter, swept every [`SWEEP_EVERY`] records.

use std::collections::{HashMap, VecDeque};

use serde_json::json;
use strongroom_audit::{AuditEvent, Outcome};

use crate::config::{BurstConfig, WatchConfig};
use crate::{Severity, Subject};

/// Records between two sweeps of idle state.
const SWEEP_EVERY: u64 = 10_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Something a detector found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The detector's name (`reveal_rate`, …).
    pub detector: &'static str,
    /// How urgent.
    pub severity: Severity,
    /// Who or what it is about.
    pub subject: Subject,
    /// Tenant of the record that triggered it.
    pub tenant: Option<String>,
    /// One line for a person.
    pub summary: String,
    /// The figures behind it.
    pub details: serde_json::Value,
}

/// All detectors, with their state.
#[derive(Debug)]
pub struct Detectors {
    config: WatchConfig,
    rates: HashMap<String, RateState>,
    delivery_rates: HashMap<String, RateState>,
    runs: HashMap<String, RunState>,
    hours: HashMap<String, HourState>,
    denied: Windows,
    logins: Windows,
    targets: Windows,
    redeliveries: Windows,
    customers: Windows,
    card_probes: Windows,
    /// Last alert per (detector, subject), Unix ms.
    raised: HashMap<(&'static str, String), i64>,
    /// Alerts raised in the current minute, and the minute.
    minute: (i64, u32),
    /// Findings dropped for the per-minute limit, not yet reported.
    suppressed: u64,
    seen: u64,
}

/// Most alerts the detectors raise in a minute. Someone spraying refusals
/// from many addresses makes one alert per address: past this, findings are
/// counted and reported, not raised one by one.
pub const MAX_ALERTS_PER_MINUTE: u32 = 60;

impl Detectors {
    /// Detectors configured by `config`.
    pub fn new(config: WatchConfig) -> Self {
        let w = |b: &BurstConfig| Windows::new(b.window_secs, b.threshold);
        let targets = Windows::new(
            config.suspicious_targets.window_secs,
            config
                .suspicious_targets
                .foreign_tenant
                .max(config.suspicious_targets.dormant)
                .max(config.suspicious_targets.archived),
        );
        Self {
            denied: w(&config.denied),
            logins: w(&config.failed_logins),
            redeliveries: w(&config.redelivery),
            customers: w(&config.customer_vouchers),
            card_probes: w(&config.card_probing),
            targets,
            config,
            rates: HashMap::new(),
            delivery_rates: HashMap::new(),
            runs: HashMap::new(),
            hours: HashMap::new(),
            raised: HashMap::new(),
            minute: (0, 0),
            suppressed: 0,
            seen: 0,
        }
    }

    /// Judges one durable audit record; returns what should be raised (each
    /// detector at most once per subject within the cooldown).
    pub fn observe(&mut self, event: &AuditEvent) -> Vec<Finding> {
        let Some(at) = strongroom_audit::search::time_ms(&event.time) else {
            return Vec::new();
        };
        self.seen += 1;
        if self.seen.is_multiple_of(SWEEP_EVERY) {
            self.sweep(at);
        }
        let mut found = Vec::new();
        self.reveal_rates(event, at, &mut found);
        self.sequential(event, &mut found);
        self.off_hours(event, at, &mut found);
        self.denied_bursts(event, at, &mut found);
        self.suspicious_targets(event, at, &mut found);
        self.redeliveries(event, at, &mut found);
        self.customer_vouchers(event, at, &mut found);
        self.card_probing(event, at, &mut found);
        supplier_events(event, &mut found);
        tampered_rows(event, &mut found);
        let cooldown = secs_ms(self.config.cooldown_secs);
        found.retain(|f| {
            let key = (f.detector, f.subject.key());
            match self.raised.get(&key) {
                Some(last) if at - last < cooldown => false,
                _ => {
                    self.raised.insert(key, at);
                    true
                }
            }
        });
        let minute = at.div_euclid(60_000);
        if self.minute.0 != minute {
            self.minute = (minute, 0);
        }
        found.retain(|_| {
            if self.minute.1 < MAX_ALERTS_PER_MINUTE {
                self.minute.1 += 1;
                true
            } else {
                self.suppressed += 1;
                false
            }
        });
        found
    }

    /// Findings dropped for [`MAX_ALERTS_PER_MINUTE`] since the last call.
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }

    /// Reveals a caller chose (`reveal_rate`, which freezes by default) and
    /// the vault's deliveries for orders (`delivery_rate`, which does not: a
    /// flash sale must not stop the shop), each against its own baseline.
    fn reveal_rates(&mut self, event: &AuditEvent, at: i64, found: &mut Vec<Finding>) {
        let reveal = matches!(
            event.action.as_str(),
            "secret.reveal" | "card.reveal" | "card.relay"
        );
        if !reveal || event.outcome != Outcome::Allowed {
            return;
        }
        let Some(principal) = principal_of(event) else {
            return;
        };
        let (c, rates, detector, what) = if is_delivery(event) {
            (
                &self.config.delivery_rate,
                &mut self.delivery_rates,
                "delivery_rate",
                "delivered the codes of",
            )
        } else {
            (
                &self.config.reveal_rate,
                &mut self.rates,
                "reveal_rate",
                "revealed",
            )
        };
        if !c.enabled {
            return;
        }
        let bucket_ms = secs_ms(c.bucket_secs).max(1);
        let state = rates
            .entry(principal.to_owned())
            .or_insert_with(|| RateState::new(at / bucket_ms));
        state.advance(at / bucket_ms, c);
        state.count += 1;
        state.last_at = at;
        if state.alerted {
            return;
        }
        let count = state.count as f64;
        let sigma = state.var.sqrt().max(state.mean.sqrt()).max(1.0);
        let threshold = state.mean + c.k_sigma * sigma;
        let over_cap = state.count > c.hard_cap;
        let anomalous = state.seen >= u64::from(c.warmup_buckets)
            && count > threshold
            && count - state.mean >= c.min_excess as f64;
        if !(over_cap || anomalous) {
            return;
        }
        state.alerted = true;
        let per_sec = count / c.bucket_secs.max(1) as f64;
        let why = if over_cap {
            format!("above the hard cap of {}", c.hard_cap)
        } else {
            format!(
                "{:.1} standard deviations above its usual {:.1}",
                (count - state.mean) / sigma,
                state.mean
            )
        };
        found.push(Finding {
            detector,
            severity: c.severity,
            subject: Subject::Principal(principal.to_owned()),
            tenant: event.tenant.clone(),
            summary: format!(
                "{} {what} {} secrets in {} s ({per_sec:.0}/s), {why}",
                name_of(event),
                state.count,
                c.bucket_secs
            ),
            details: json!({
                "reveals": state.count,
                "bucket_secs": c.bucket_secs,
                "baseline_mean": round2(state.mean),
                "baseline_sigma": round2(sigma),
                "threshold": round2(threshold),
                "hard_cap": c.hard_cap,
                "buckets_learned": state.seen,
            }),
        });
    }

    fn sequential(&mut self, event: &AuditEvent, found: &mut Vec<Finding>) {
        let c = &self.config.sequential;
        let chosen_by_caller = match event.action.as_str() {
            // A delivery's reveal is of the voucher the vault picked.
            "secret.reveal" => !is_delivery(event),
            "card.reveal" => true,
            "secret.read_metadata" => true,
            _ => false,
        };
        if !c.enabled || !chosen_by_caller || event.outcome != Outcome::Allowed {
            return;
        }
        let (Some(principal), Some(token)) = (principal_of(event), event.target.as_deref()) else {
            return;
        };
        let run = self.runs.entry(principal.to_owned()).or_default();
        run.step(token);
        if run.length == c.run_length {
            found.push(Finding {
                detector: "sequential_access",
                severity: c.severity,
                subject: Subject::Principal(principal.to_owned()),
                tenant: event.tenant.clone(),
                summary: format!(
                    "{} read {} tokens in a row in {} order, as a walk through a listing would",
                    name_of(event),
                    run.length,
                    if run.ascending {
                        "ascending"
                    } else {
                        "descending"
                    }
                ),
                details: json!({ "run_length": run.length, "last_token": token }),
            });
        }
    }

    fn off_hours(&mut self, event: &AuditEvent, at: i64, found: &mut Vec<Finding>) {
        let c = &self.config.off_hours;
        let Some(principal) = principal_of(event) else {
            return;
        };
        if !c.enabled {
            return;
        }
        let hour = usize::try_from(at.rem_euclid(DAY_MS) / HOUR_MS).unwrap_or(0);
        let state = self
            .hours
            .entry(principal.to_owned())
            .or_insert_with(|| HourState::new(at));
        state.last_at = at;
        let judged = state.total >= f64::from(c.min_events)
            && at - state.first_at >= i64::from(c.min_history_days) * DAY_MS;
        if judged {
            let share = state.share_around(hour);
            if share < c.min_share {
                found.push(Finding {
                    detector: "off_hours",
                    severity: c.severity,
                    subject: Subject::Principal(principal.to_owned()),
                    tenant: event.tenant.clone(),
                    summary: format!(
                        "{} is active at {hour:02}:00 UTC, when it has done {:.2}% of its work \
                         (with the hours either side)",
                        name_of(event),
                        share * 100.0
                    ),
                    details: json!({
                        "hour_utc": hour,
                        "share": round4(share),
                        "min_share": c.min_share,
                        "action": event.action,
                    }),
                });
            }
        }
        state.add(hour);
    }

    fn denied_bursts(&mut self, event: &AuditEvent, at: i64, found: &mut Vec<Finding>) {
        if event.outcome != Outcome::Denied {
            return;
        }
        let reason = event.reason.as_deref().unwrap_or_default();
        // A frozen principal's refusals are the freeze working.
        if reason == "auth.principal_frozen" {
            return;
        }
        let address = Subject::Address(address_block(event.client_addr.as_deref()));
        let login = matches!(
            event.action.as_str(),
            "auth.login" | "auth.token" | "auth.step_up" | "auth.authenticate"
        );
        let (config, windows, detector, what) = if login {
            (
                &self.config.failed_logins,
                &mut self.logins,
                "failed_logins",
                "failed logins or token requests",
            )
        } else {
            (
                &self.config.denied,
                &mut self.denied,
                "denied_burst",
                "refused requests",
            )
        };
        if !config.enabled {
            return;
        }
        // A failed login names the account tried, not who tried it: anyone
        // can fail to log in as anyone, so those failures are counted per
        // address and per account (which no alert can freeze), never
        // against the principal. Other refusals are the caller's own.
        let keys = match (login, principal_of(event)) {
            (true, Some(account)) => vec![address, Subject::Account(account.to_owned())],
            (false, Some(p)) => vec![Subject::Principal(p.to_owned())],
            (_, None) => vec![address],
        };
        for key in keys {
            let count = windows.hit(&key.key(), at);
            if count > config.threshold as usize {
                found.push(Finding {
                    detector,
                    severity: config.severity,
                    subject: key.clone(),
                    tenant: event.tenant.clone(),
                    summary: format!(
                        "more than {} {what} by {} within {} s; the last: {} ({reason})",
                        config.threshold,
                        key.describe(),
                        config.window_secs,
                        event.action
                    ),
                    details: json!({
                        "count": count,
                        "window_secs": config.window_secs,
                        "last_action": event.action,
                        "last_reason": reason,
                    }),
                });
            }
        }
    }

    fn suspicious_targets(&mut self, event: &AuditEvent, at: i64, found: &mut Vec<Finding>) {
        let c = &self.config.suspicious_targets;
        if !c.enabled || !event.action.starts_with("secret.") {
            return;
        }
        let Some(principal) = principal_of(event) else {
            return;
        };
        let reason = event.reason.as_deref().unwrap_or_default();
        let (kind, threshold, what) = match event.outcome {
            Outcome::Denied if reason.contains("other tenant") => (
                "foreign_tenant",
                c.foreign_tenant,
                "another tenant's tokens",
            ),
            Outcome::Denied if reason == "vault.dormant" => (
                "dormant",
                c.dormant,
                "dormant tokens (reveal window closed)",
            ),
            Outcome::Allowed if reason.contains("archived") => {
                ("archived", c.archived, "archived (delivered) codes")
            }
            _ => return,
        };
        let count = self.targets.hit(&format!("{kind}:{principal}"), at);
        if count >= threshold.max(1) as usize {
            found.push(Finding {
                detector: "suspicious_targets",
                severity: c.severity,
                subject: Subject::Principal(principal.to_owned()),
                tenant: event.tenant.clone(),
                summary: format!(
                    "{} made {count} attempt(s) on {what} within {} s",
                    name_of(event),
                    c.window_secs
                ),
                details: json!({
                    "kind": kind,
                    "count": count,
                    "window_secs": c.window_secs,
                    "last_token": event.target,
                }),
            });
        }
    }

    fn redeliveries(&mut self, event: &AuditEvent, at: i64, found: &mut Vec<Finding>) {
        let c = &self.config.redelivery;
        if !c.enabled || event.action != "order.redeliver" || event.outcome != Outcome::Allowed {
            return;
        }
        let tenant = event.tenant.clone().unwrap_or_default();
        let count = self.redeliveries.hit(&tenant, at);
        if count > c.threshold as usize {
            found.push(Finding {
                detector: "redelivery_spike",
                severity: c.severity,
                subject: Subject::Tenant(tenant.clone()),
                tenant: Some(tenant),
                summary: format!(
                    "more than {} redeliveries in tenant {} within {} s (the last by {})",
                    c.threshold,
                    event.tenant.as_deref().unwrap_or_default(),
                    c.window_secs,
                    name_of(event)
                ),
                details: json!({
                    "count": count,
                    "window_secs": c.window_secs,
                    "last_order": event.target,
                    "last_actor": event.actor,
                }),
            });
        }
    }

    fn customer_vouchers(&mut self, event: &AuditEvent, at: i64, found: &mut Vec<Finding>) {
        let c = &self.config.customer_vouchers;
        if !c.enabled || event.action != "order.place" || event.outcome != Outcome::Allowed {
            return;
        }
        let (Some(customer), Some(tenant)) = (event.customer.as_deref(), event.tenant.as_deref())
        else {
            return;
        };
        let subject = Subject::Customer {
            tenant: tenant.to_owned(),
            reference: customer.to_owned(),
        };
        let count = self.customers.hit(&subject.key(), at);
        if count > c.threshold as usize {
            found.push(Finding {
                detector: "customer_vouchers",
                severity: c.severity,
                subject,
                tenant: Some(tenant.to_owned()),
                summary: format!(
                    "customer '{customer}' received more than {} vouchers within {} s",
                    c.threshold, c.window_secs
                ),
                details: json!({
                    "count": count,
                    "window_secs": c.window_secs,
                    "last_order": event.target,
                    "placed_by": event.actor,
                }),
            });
        }
    }

    /// One principal tokenizing many cards that share a BIN and last four:
    /// the audit note of `card.tokenize` starts with the masked number. A
    /// caller who holds a card's fingerprint (returned at tokenization)
    /// could otherwise try the hidden digits until a fingerprint matches.
    fn card_probing(&mut self, event: &AuditEvent, at: i64, found: &mut Vec<Finding>) {
        let c = &self.config.card_probing;
        if !c.enabled || event.action != "card.tokenize" || event.outcome != Outcome::Allowed {
            return;
        }
        let (Some(principal), Some(note)) = (principal_of(event), event.reason.as_deref()) else {
            return;
        };
        let masked = note.split(';').next().unwrap_or_default().trim();
        if masked.is_empty() {
            return;
        }
        let tenant = event.tenant.clone().unwrap_or_default();
        let count = self
            .card_probes
            .hit(&format!("{principal}\u{0}{tenant}\u{0}{masked}"), at);
        if count > c.threshold as usize {
            found.push(Finding {
                detector: "card_probing",
                severity: c.severity,
                subject: Subject::Principal(principal.to_owned()),
                tenant: Some(tenant),
                summary: format!(
                    "{} tokenized more than {} cards {masked} within {} s: trying the hidden digits of one card?",
                    name_of(event),
                    c.threshold,
                    c.window_secs
                ),
                details: json!({
                    "count": count,
                    "window_secs": c.window_secs,
                    "masked": masked,
                    "last_token": event.target,
                }),
            });
        }
    }

    /// Drops state idle for longer than it can matter.
    fn sweep(&mut self, now: i64) {
        let c = &self.config;
        let rate_horizon = secs_ms(c.reveal_rate.bucket_secs)
            .saturating_mul(i64::from(c.reveal_rate.baseline_buckets))
            .saturating_mul(4);
        self.rates.retain(|_, s| now - s.last_at < rate_horizon);
        self.delivery_rates
            .retain(|_, s| now - s.last_at < rate_horizon);
        // A principal unseen for a month starts its hours afresh.
        self.hours.retain(|_, h| now - h.last_at < 30 * DAY_MS);
        self.runs.retain(|_, r| now - r.last_at < HOUR_MS);
        for w in [
            &mut self.denied,
            &mut self.logins,
            &mut self.targets,
            &mut self.redeliveries,
            &mut self.customers,
            &mut self.card_probes,
        ] {
            w.sweep(now);
        }
        let cooldown = secs_ms(c.cooldown_secs);
        self.raised.retain(|_, last| now - *last < cooldown);
    }
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The principal behind a record, if one was authenticated: not a
/// customer's reveal link (`link:…`, one per order) nor Strongroom itself.
fn principal_of(event: &AuditEvent) -> Option<&str> {
    let a = event.actor.as_str();
    let not_a_principal = a.is_empty()
        || a == "anonymous"
        || a == crate::WATCH_ACTOR
        || a.starts_with("link:")
        || a.starts_with("system:");
    (!not_a_principal).then_some(a)
}

/// A reveal the vault made for an order's delivery (marked by the vault).
fn is_delivery(event: &AuditEvent) -> bool {
    event.reason.as_deref() == Some(strongroom_vault::DELIVERY_NOTE)
}

/// The address refusals are counted by: an IPv4 address, or the /64 of an
/// IPv6 one (one subscriber's many addresses are one source).
fn address_block(addr: Option<&str>) -> String {
    match addr.and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V6(v6)) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
        Some(v4) => v4.to_string(),
        None => addr.unwrap_or("unknown").to_owned(),
    }
}

fn name_of(event: &AuditEvent) -> String {
    match &event.actor_name {
        Some(name) => format!("{name} ({})", event.actor),
        None => event.actor.clone(),
    }
}

/// What the supplier side records for people to act on: a purchase waiting
/// over a spend limit, a low balance, a supplier's circuit opening, a
/// reconciliation mismatch. Each is about the purchase or the supplier
/// (never a principal: nobody is frozen for them).
fn supplier_events(event: &AuditEvent, found: &mut Vec<Finding>) {
    let (severity, subject, what) = match (event.action.as_str(), event.outcome) {
        ("supplier.purchase", Outcome::Denied) => (
            Severity::Medium,
            format!("purchase:{}", event.target.as_deref().unwrap_or_default()),
            "a purchase waits for a security officer",
        ),
        ("supplier.low_balance", _) => (
            Severity::Medium,
            format!("supplier:{}", event.target.as_deref().unwrap_or_default()),
            "a supplier's balance is low",
        ),
        ("supplier.circuit_open", _) => (
            Severity::High,
            format!("supplier:{}", event.target.as_deref().unwrap_or_default()),
            "a supplier keeps failing and is no longer called",
        ),
        ("supplier.reconcile_mismatch", _) => (
            Severity::High,
            format!("purchase:{}", event.target.as_deref().unwrap_or_default()),
            "reconciliation found a mismatch",
        ),
        _ => return,
    };
    found.push(Finding {
        detector: "suppliers",
        severity,
        subject: Subject::Component(subject),
        tenant: event.tenant.clone(),
        summary: format!(
            "{what}: {}",
            event
                .reason
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>()
        ),
        details: json!({
            "action": event.action,
            "target": event.target,
        }),
    });
}

/// A stored row that failed its seal check (`store.tampered`): someone
/// wrote to a store behind the vault's back. Always critical, one alert per
/// row; it freezes nobody (the writer is not a principal of ours).
fn tampered_rows(event: &AuditEvent, found: &mut Vec<Finding>) {
    if event.action != "store.tampered" {
        return;
    }
    let row = event.target.as_deref().unwrap_or("store");
    found.push(Finding {
        detector: "store_tampered",
        severity: Severity::Critical,
        subject: Subject::Component(format!("store:{row}")),
        tenant: event.tenant.clone(),
        summary: format!(
            "a stored record failed its integrity check and was refused ({row}): \
             someone changed the store outside Strongroom"
        ),
        details: json!({
            "row": row,
            "reason": event.reason,
            "request_id": event.request_id,
        }),
    });
}

/// One principal's reveal counts: the open bucket and the baseline of the
/// closed ones.
#[derive(Debug)]
struct RateState {
    bucket: i64,
    count: u64,
    alerted: bool,
    mean: f64,
    var: f64,
    /// Buckets learned.
    seen: u64,
    last_at: i64,
}

impl RateState {
    fn new(bucket: i64) -> Self {
        Self {
            bucket,
            count: 0,
            alerted: false,
            mean: 0.0,
            var: 0.0,
            seen: 0,
            last_at: 0,
        }
    }

    /// Closes the open bucket (and any empty ones since) into the baseline
    /// when `bucket` is a later one.
    fn advance(&mut self, bucket: i64, c: &crate::config::RevealRateConfig) {
        if bucket <= self.bucket {
            return;
        }
        let alpha = 2.0 / (f64::from(c.baseline_buckets.max(1)) + 1.0);
        // An anomalous bucket is learned only up to the threshold it broke:
        // growth is learned, slowly; a thief cannot train the baseline up.
        let sigma = self.var.sqrt().max(self.mean.sqrt()).max(1.0);
        let ceiling = self.mean + c.k_sigma * sigma;
        let closed = if self.seen >= u64::from(c.warmup_buckets) {
            (self.count as f64).min(ceiling.max(c.min_excess as f64))
        } else {
            (self.count as f64).min(c.hard_cap as f64)
        };
        self.learn(closed, alpha);
        let empty = (bucket - self.bucket - 1).min(i64::from(c.baseline_buckets) * 4);
        for _ in 0..empty {
            self.learn(0.0, alpha);
        }
        self.bucket = bucket;
        self.count = 0;
        self.alerted = false;
    }

    /// Exponentially weighted mean and variance (West, 1979).
    fn learn(&mut self, x: f64, alpha: f64) {
        if self.seen == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let diff = x - self.mean;
            let step = alpha * diff;
            self.mean += step;
            self.var = (1.0 - alpha) * (self.var + diff * step);
        }
        self.seen += 1;
    }
}

/// A principal's run of tokens in sorted order.
#[derive(Debug, Default)]
struct RunState {
    last: String,
    length: u32,
    ascending: bool,
    last_at: i64,
}

impl RunState {
    fn step(&mut self, token: &str) {
        use std::cmp::Ordering;
        match (token.cmp(self.last.as_str()), self.length) {
            (_, 0) => self.length = 1,
            (Ordering::Equal, _) => {}
            (Ordering::Greater, 1) => {
                self.ascending = true;
                self.length = 2;
            }
            (Ordering::Less, 1) => {
                self.ascending = false;
                self.length = 2;
            }
            (Ordering::Greater, _) if self.ascending => self.length += 1,
            (Ordering::Less, _) if !self.ascending => self.length += 1,
            (Ordering::Greater, _) => {
                self.ascending = true;
                self.length = 2;
            }
            (Ordering::Less, _) => {
                self.ascending = false;
                self.length = 2;
            }
        }
        token.clone_into(&mut self.last);
    }
}

/// A principal's activity by hour of day.
#[derive(Debug)]
struct HourState {
    counts: [f64; 24],
    total: f64,
    first_at: i64,
    last_at: i64,
}

impl HourState {
    /// Counts are halved past this total, so the histogram follows a
    /// principal whose hours change, and never overflows.
    const HALVE_AT: f64 = 100_000.0;

    fn new(at: i64) -> Self {
        Self {
            counts: [0.0; 24],
            total: 0.0,
            first_at: at,
            last_at: at,
        }
    }

    fn add(&mut self, hour: usize) {
        if let Some(c) = self.counts.get_mut(hour) {
            *c += 1.0;
            self.total += 1.0;
        }
        if self.total >= Self::HALVE_AT {
            for c in &mut self.counts {
                *c /= 2.0;
            }
            self.total /= 2.0;
        }
    }

    /// Share of the history in `hour` and the hours either side.
    fn share_around(&self, hour: usize) -> f64 {
        let around: f64 = [hour + 23, hour, hour + 1]
            .iter()
            .filter_map(|h| self.counts.get(h % 24))
            .sum();
        if self.total > 0.0 {
            around / self.total
        } else {
            1.0
        }
    }
}

/// Sliding-window counters: for each key, the times of its latest events,
/// at most `keep` of them (enough to tell whether more than a threshold
/// fell in the window).
#[derive(Debug)]
struct Windows {
    window_ms: i64,
    keep: usize,
    map: HashMap<String, VecDeque<i64>>,
}

impl Windows {
    fn new(window_secs: u64, threshold: u32) -> Self {
        Self {
            window_ms: secs_ms(window_secs),
            keep: usize::try_from(threshold)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
            map: HashMap::new(),
        }
    }

    /// Records an event of `key` at `at`; returns how many of its kept
    /// events fall within the window (at most `keep`).
    fn hit(&mut self, key: &str, at: i64) -> usize {
        let times = self.map.entry(key.to_owned()).or_default();
        times.push_back(at);
        while times.len() > self.keep {
            times.pop_front();
        }
        while times.front().is_some_and(|t| at - t >= self.window_ms) {
            times.pop_front();
        }
        times.len()
    }

    fn sweep(&mut self, now: i64) {
        let window = self.window_ms;
        self.map
            .retain(|_, times| times.back().is_some_and(|t| now - t < window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RevealRateConfig;

    const T0: i64 = 1_790_000_000_000;

    fn event(actor: &str, action: &str, outcome: Outcome, at: i64) -> AuditEvent {
        AuditEvent {
            time: strongroom_vault::rfc3339(at),
            request_id: "r".into(),
            actor: actor.into(),
            actor_name: Some(format!("{actor}-name")),
            action: action.into(),
            tenant: Some("acme".into()),
            target: Some("tok".into()),
            outcome,
            reason: None,
            purpose: Some("test".into()),
            customer: None,
            client_addr: Some("10.0.0.1".into()),
            items: None,
        }
    }

    fn reveal(actor: &str, at: i64) -> AuditEvent {
        event(actor, "secret.reveal", Outcome::Allowed, at)
    }

    fn quick() -> WatchConfig {
        let fast = |severity| RevealRateConfig {
            bucket_secs: 1,
            warmup_buckets: 10,
            min_excess: 10,
            severity,
            ..RevealRateConfig::default()
        };
        WatchConfig {
            reveal_rate: fast(Severity::Critical),
            delivery_rate: fast(Severity::High),
            ..WatchConfig::default()
        }
    }

    /// `per_sec` reveals a second by `actor` for `secs` seconds from `start`.
    fn steady(d: &mut Detectors, actor: &str, start: i64, secs: i64, per_sec: i64) -> usize {
        let mut raised = 0;
        for s in 0..secs {
            for i in 0..per_sec {
                let at = start + s * 1000 + i * (1000 / per_sec);
                raised += d.observe(&reveal(actor, at)).len();
            }
        }
        raised
    }

    #[test]
    fn a_jump_from_five_to_two_hundred_a_second_is_caught_within_the_second() {
        let mut d = Detectors::new(quick());
        assert_eq!(
            steady(&mut d, "svc", T0, 120, 5),
            0,
            "steady traffic is normal"
        );
        let start = T0 + 120_000;
        let mut caught_after = None;
        for i in 0..200 {
            let f = d.observe(&reveal("svc", start + i * 5));
            if let Some(f) = f.first() {
                assert_eq!(f.detector, "reveal_rate");
                assert_eq!(f.severity, Severity::Critical);
                assert_eq!(f.subject, Subject::Principal("svc".into()));
                caught_after = Some(i);
                break;
            }
        }
        let n = caught_after.expect("the jump is caught");
        assert!(n < 40, "caught after {n} reveals");
    }

    #[test]
    fn steady_and_slowly_varying_traffic_raises_nothing() {
        let mut d = Detectors::new(quick());
        // Poisson-like wobble: 3 to 7 a second, for ten minutes.
        let mut raised = 0;
        for s in 0..600i64 {
            let n = 3 + (s * 7 + s / 3) % 5;
            for i in 0..n {
                raised += d.observe(&reveal("svc", T0 + s * 1000 + i * 100)).len();
            }
        }
        assert_eq!(raised, 0);
    }

    #[test]
    fn the_hard_cap_applies_during_warm_up() {
        let mut config = quick();
        config.reveal_rate.hard_cap = 50;
        let mut d = Detectors::new(config);
        let raised: Vec<Finding> = (0..60)
            .flat_map(|i| d.observe(&reveal("new", T0 + i)))
            .collect();
        assert_eq!(raised.len(), 1);
        assert!(
            raised[0].summary.contains("hard cap"),
            "{}",
            raised[0].summary
        );
    }

    #[test]
    fn one_alert_per_subject_within_the_cooldown() {
        let mut d = Detectors::new(quick());
        steady(&mut d, "svc", T0, 60, 5);
        let burst = |d: &mut Detectors, from: i64| {
            (0..400)
                .map(|i| d.observe(&reveal("svc", from + i * 5)).len())
                .sum::<usize>()
        };
        assert_eq!(burst(&mut d, T0 + 60_000), 1);
        assert_eq!(burst(&mut d, T0 + 62_000), 0, "within the cooldown");
        assert_eq!(burst(&mut d, T0 + 60_000 + 700_000), 1, "after it");
    }

    #[test]
    fn walking_tokens_in_order_is_flagged_but_random_order_is_not() {
        let mut d = Detectors::new(WatchConfig::default());
        let mut raised = Vec::new();
        for i in 0..60 {
            let mut e = reveal("thief", T0 + i * 1000);
            e.target = Some(format!("tok_{i:06}"));
            raised.extend(d.observe(&e));
        }
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].detector, "sequential_access");
        let mut d = Detectors::new(WatchConfig::default());
        let mut raised = 0;
        for i in 0..2000u64 {
            let mut e = reveal("svc", T0 + i as i64 * 1000);
            // A scrambled order, as tokens of unrelated orders come.
            e.target = Some(format!("tok_{:06}", (i * 7919) % 10_007));
            raised += d.observe(&e).len();
        }
        assert_eq!(raised, 0);
    }

    #[test]
    fn deliveries_in_stock_order_are_not_a_walk_but_a_caller_cannot_pass_for_one() {
        let mut d = Detectors::new(WatchConfig::default());
        let mut raised = 0;
        for i in 0..100 {
            let mut e = reveal("shop", T0 + i * 1000);
            e.target = Some(format!("tok_{i:06}"));
            e.reason = Some(strongroom_vault::DELIVERY_NOTE.into());
            raised += d.observe(&e).len();
        }
        assert_eq!(raised, 0);
        // A purpose is the caller's to write; it proves nothing.
        let mut d = Detectors::new(WatchConfig::default());
        let mut raised = 0;
        for i in 0..100 {
            let mut e = reveal("thief", T0 + i * 1000);
            e.target = Some(format!("tok_{i:06}"));
            e.purpose = Some(format!("order or_{i}"));
            raised += d.observe(&e).len();
        }
        assert_eq!(raised, 1);
    }

    #[test]
    fn a_flash_sale_is_reported_but_freezes_nothing() {
        let mut d = Detectors::new(quick());
        let delivery = |at| {
            let mut e = reveal("shop", at);
            e.reason = Some(strongroom_vault::DELIVERY_NOTE.into());
            e
        };
        let mut raised = Vec::new();
        for s in 0..60 {
            for i in 0..5 {
                raised.extend(d.observe(&delivery(T0 + s * 1000 + i * 200)));
            }
        }
        for i in 0..300 {
            raised.extend(d.observe(&delivery(T0 + 60_000 + i * 3)));
        }
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0].detector, "delivery_rate");
        assert_eq!(raised[0].severity, Severity::High);
        assert!(!WatchConfig::default().freeze_at.freezes(raised[0].severity));
    }

    #[test]
    fn reveal_links_and_the_system_are_no_principals() {
        let mut d = Detectors::new(WatchConfig::default());
        for i in 0..1000 {
            let mut e = reveal(&format!("link:or_{i}"), T0 + i);
            e.action = "order.link_view".into();
            d.observe(&e);
            d.observe(&reveal("system:archive", T0 + i));
        }
        assert!(d.hours.is_empty() && d.rates.is_empty());
    }

    #[test]
    fn a_spray_of_refusals_is_limited_to_sixty_alerts_a_minute() {
        let mut d = Detectors::new(WatchConfig::default());
        let mut raised = 0;
        for addr in 0..100 {
            for i in 0..21 {
                let mut e = event("anonymous", "secret.reveal", Outcome::Denied, T0 + i);
                e.client_addr = Some(format!("10.1.{}.{}", addr / 256, addr % 256));
                raised += d.observe(&e).len();
            }
        }
        assert_eq!(raised, MAX_ALERTS_PER_MINUTE as usize);
        assert_eq!(d.take_suppressed(), 40);
        assert_eq!(d.take_suppressed(), 0);
    }

    #[test]
    fn work_at_an_unusual_hour_is_flagged_once_the_hours_are_known() {
        let mut d = Detectors::new(WatchConfig::default());
        let day0 = T0 - T0.rem_euclid(DAY_MS);
        let mut raised = 0;
        // Ten working days, 09:00 to 17:00 UTC, 10 requests an hour.
        for day in 0..10 {
            for hour in 9..17 {
                for i in 0..10 {
                    let at = day0 + day * DAY_MS + hour * HOUR_MS + i * 60_000;
                    let e = event("alice", "order.read", Outcome::Allowed, at);
                    raised += d.observe(&e).len();
                }
            }
        }
        assert_eq!(raised, 0, "usual hours");
        let night = day0 + 10 * DAY_MS + 3 * HOUR_MS;
        let f = d.observe(&event("alice", "order.read", Outcome::Allowed, night));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].detector, "off_hours");
        let evening = day0 + 11 * DAY_MS + 17 * HOUR_MS + 5 * 60_000;
        assert!(
            d.observe(&event("alice", "order.read", Outcome::Allowed, evening))
                .is_empty(),
            "an hour next to the usual ones is not off-hours"
        );
    }

    #[test]
    fn a_new_principal_has_no_off_hours() {
        let mut d = Detectors::new(WatchConfig::default());
        let mut raised = 0;
        for i in 0..2000 {
            let e = event("svc", "secret.reveal", Outcome::Allowed, T0 + i * 60_000);
            raised += d
                .observe(&e)
                .iter()
                .filter(|f| f.detector == "off_hours")
                .count();
        }
        assert_eq!(raised, 0, "under seven days of history");
    }

    #[test]
    fn bursts_of_refusals_and_of_failed_logins() {
        let mut d = Detectors::new(WatchConfig::default());
        let mut found = Vec::new();
        for i in 0..21 {
            found.extend(d.observe(&event(
                "svc",
                "secret.reveal",
                Outcome::Denied,
                T0 + i * 100,
            )));
        }
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].detector, "denied_burst");
        let mut found = Vec::new();
        // Someone guessing alice's password from eleven addresses: counted
        // against the account, which no alert freezes, not the principal.
        for i in 0..11 {
            let mut e = event("pr_alice", "auth.login", Outcome::Denied, T0 + i * 1000);
            e.client_addr = Some(format!("10.0.0.{i}"));
            found.extend(d.observe(&e));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].detector, "failed_logins");
        assert_eq!(found[0].subject, Subject::Account("pr_alice".into()));
        assert_eq!(found[0].subject.principal(), None);
        // One IPv6 subscriber rotating through its /64 is one address.
        let mut d = Detectors::new(WatchConfig::default());
        let from_one_block: usize = (0..11)
            .map(|i| {
                let mut e = event("anonymous", "auth.login", Outcome::Denied, T0 + i);
                e.client_addr = Some(format!("2001:db8:1:2::{i:x}"));
                d.observe(&e).len()
            })
            .sum();
        assert_eq!(from_one_block, 1);
        // Spread out beyond the window, the same number is no burst.
        let mut d = Detectors::new(WatchConfig::default());
        let spread: usize = (0..30)
            .map(|i| {
                d.observe(&event(
                    "svc",
                    "secret.reveal",
                    Outcome::Denied,
                    T0 + i * 10_000,
                ))
                .len()
            })
            .sum();
        assert_eq!(spread, 0);
    }

    #[test]
    fn a_frozen_principals_refusals_are_not_a_burst() {
        let mut d = Detectors::new(WatchConfig::default());
        let raised: usize = (0..100)
            .map(|i| {
                let mut e = event("svc", "auth.authenticate", Outcome::Denied, T0 + i);
                e.reason = Some("auth.principal_frozen".into());
                d.observe(&e).len()
            })
            .sum();
        assert_eq!(raised, 0);
    }

    #[test]
    fn foreign_dormant_and_archived_targets() {
        let mut d = Detectors::new(WatchConfig::default());
        let mut e = event("svc", "secret.reveal", Outcome::Denied, T0);
        e.reason = Some("secret.not_found: other tenant".into());
        let f = d.observe(&e);
        assert_eq!(f.len(), 1, "one probe of another tenant");
        assert_eq!(f[0].details["kind"], "foreign_tenant");
        let mut d = Detectors::new(WatchConfig::default());
        let dormant: Vec<usize> = (0..5)
            .map(|i| {
                let mut e = event("svc", "secret.reveal", Outcome::Denied, T0 + i);
                e.reason = Some("vault.dormant".into());
                d.observe(&e).len()
            })
            .collect();
        assert_eq!(dormant, [0, 0, 0, 0, 1]);
        let mut d = Detectors::new(WatchConfig::default());
        let archived: Vec<usize> = (0..3)
            .map(|i| {
                let mut e = event("svc", "secret.reveal", Outcome::Allowed, T0 + i);
                e.reason = Some("archived".into());
                d.observe(&e).len()
            })
            .collect();
        assert_eq!(archived, [0, 0, 1]);
    }

    #[test]
    fn redelivery_spikes_and_one_customer_getting_many_vouchers() {
        let mut d = Detectors::new(WatchConfig::default());
        let raised: Vec<Finding> = (0..21)
            .flat_map(|i| d.observe(&event("shop", "order.redeliver", Outcome::Allowed, T0 + i)))
            .collect();
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].subject, Subject::Tenant("acme".into()));
        let mut d = Detectors::new(WatchConfig::default());
        let mut raised = Vec::new();
        for i in 0..11 {
            let mut e = event("shop", "order.place", Outcome::Allowed, T0 + i * 60_000);
            e.customer = Some("cust-42".into());
            raised.extend(d.observe(&e));
            let mut other = e.clone();
            other.customer = Some(format!("cust-{i}"));
            raised.extend(d.observe(&other));
        }
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].detector, "customer_vouchers");
        assert_eq!(
            raised[0].subject,
            Subject::Customer {
                tenant: "acme".into(),
                reference: "cust-42".into()
            }
        );
    }

    #[test]
    fn many_cards_of_one_bin_and_last_four_from_one_caller_are_probing() {
        let mut d = Detectors::new(WatchConfig::default());
        let tokenize = |actor: &str, masked: &str, at: i64| {
            let mut e = event(actor, "card.tokenize", Outcome::Allowed, at);
            e.reason = Some(format!("{masked}; cvv held 10 min"));
            e
        };
        // A shop's customers: many cards, few sharing BIN and last four.
        let mut raised = 0;
        for i in 0..200i64 {
            let masked = format!("411111******{:04}", i % 50);
            raised += d
                .observe(&tokenize("svc:shop", &masked, T0 + i * 1000))
                .len();
        }
        assert_eq!(raised, 0);
        // One caller trying 21 middles of one card within the hour.
        let mut found = Vec::new();
        for i in 0..21i64 {
            found.extend(d.observe(&tokenize("svc:prober", "555555******4444", T0 + i * 100)));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].detector, "card_probing");
        assert_eq!(found[0].subject, Subject::Principal("svc:prober".into()));
        assert!(
            !found[0].summary.contains("5555555"),
            "{}",
            found[0].summary
        );
    }

    #[test]
    fn idle_state_is_swept() {
        let mut d = Detectors::new(quick());
        for i in 0..100 {
            d.observe(&reveal(&format!("p{i}"), T0));
        }
        assert_eq!(d.rates.len(), 100);
        d.sweep(T0 + 10 * DAY_MS);
        assert!(d.rates.is_empty());
    }
}
