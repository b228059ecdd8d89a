//! What the detectors look for, and what an alert does: `[watch]` in the
//! server's configuration. Every default is documented in
//! `docs/monitoring.md`, with the reasoning behind it.

use serde::Deserialize;

use crate::Severity;

/// `[watch]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Run the detectors at all.
    pub enabled: bool,
    /// Alerts of this severity or above freeze the principal they are about
    /// (`never`: no automatic freezing).
    pub freeze_at: FreezeAt,
    /// One alert per detector and subject within this many seconds; later
    /// findings are counted into nothing (the first alert stands open).
    pub cooldown_secs: u64,
    /// Reveals per principal against its learned baseline.
    pub reveal_rate: RevealRateConfig,
    /// Codes delivered for orders per principal, likewise (high, not
    /// critical: a flash sale must not freeze the shop).
    pub delivery_rate: RevealRateConfig,
    /// Walking tokens in order.
    pub sequential: SequentialConfig,
    /// Activity in hours a principal is not usually active in.
    pub off_hours: OffHoursConfig,
    /// Bursts of refused requests.
    pub denied: BurstConfig,
    /// Bursts of failed logins and token requests.
    pub failed_logins: BurstConfig,
    /// Attempts on dormant, archived or another tenant's tokens.
    pub suspicious_targets: SuspiciousTargetsConfig,
    /// Redeliveries in one tenant.
    pub redelivery: BurstConfig,
    /// Vouchers ordered for one customer reference.
    pub customer_vouchers: BurstConfig,
    /// Cards of one BIN and last four tokenized by one principal: someone
    /// holding a card's fingerprint could try the middle digits until the
    /// fingerprint matches.
    pub card_probing: BurstConfig,
    /// Where alerts are sent besides the log and the store.
    pub webhook: Option<WebhookConfig>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            freeze_at: FreezeAt::At(Severity::Critical),
            cooldown_secs: 600,
            reveal_rate: RevealRateConfig::default(),
            delivery_rate: RevealRateConfig {
                severity: Severity::High,
                ..RevealRateConfig::default()
            },
            sequential: SequentialConfig::default(),
            off_hours: OffHoursConfig::default(),
            denied: BurstConfig {
                enabled: true,
                window_secs: 60,
                threshold: 20,
                severity: Severity::High,
            },
            failed_logins: BurstConfig {
                enabled: true,
                window_secs: 300,
                threshold: 10,
                severity: Severity::High,
            },
            suspicious_targets: SuspiciousTargetsConfig::default(),
            redelivery: BurstConfig {
                enabled: true,
                window_secs: 3600,
                threshold: 20,
                severity: Severity::Medium,
            },
            customer_vouchers: BurstConfig {
                enabled: true,
                window_secs: 86_400,
                threshold: 10,
                severity: Severity::Medium,
            },
            card_probing: BurstConfig {
                enabled: true,
                window_secs: 3600,
                threshold: 20,
                severity: Severity::High,
            },
            webhook: None,
        }
    }
}

/// The severity at which alerts freeze their principal, or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeAt {
    /// Alerts of this severity or above freeze.
    At(Severity),
    /// No automatic freezing.
    Never,
}

impl<'de> Deserialize<'de> for FreezeAt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "never" {
            return Ok(FreezeAt::Never);
        }
        Severity::parse(&text).map(FreezeAt::At).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "freeze_at must be low, medium, high, critical or never, not '{text}'"
            ))
        })
    }
}

impl FreezeAt {
    /// Whether an alert of `severity` freezes.
    pub fn freezes(self, severity: Severity) -> bool {
        match self {
            FreezeAt::At(at) => severity >= at,
            FreezeAt::Never => false,
        }
    }
}

/// `[watch.reveal_rate]`: reveals per principal, counted in buckets of
/// `bucket_secs`, against an exponentially weighted mean and variance of
/// the principal's past buckets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RevealRateConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Width of a counting bucket, seconds.
    pub bucket_secs: u64,
    /// How many buckets the baseline remembers (the weight of a new bucket
    /// is `2 / (n + 1)`).
    pub baseline_buckets: u32,
    /// Buckets a principal must have been seen for before the baseline is
    /// trusted; until then only the hard cap applies.
    pub warmup_buckets: u32,
    /// Alert when a bucket exceeds the mean by this many standard deviations.
    pub k_sigma: f64,
    /// … and by at least this many reveals (so a quiet principal's first
    /// few reveals are not an anomaly).
    pub min_excess: u64,
    /// Alert whenever a bucket holds more than this many reveals, whatever
    /// the baseline says (including during warm-up).
    pub hard_cap: u64,
    /// Severity of its alerts.
    pub severity: Severity,
}

impl Default for RevealRateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bucket_secs: 10,
            baseline_buckets: 360,
            warmup_buckets: 30,
            k_sigma: 6.0,
            min_excess: 100,
            hard_cap: 5_000,
            severity: Severity::Critical,
        }
    }
}

/// `[watch.sequential]`: a principal revealing (or reading the metadata of)
/// tokens in sorted order, as someone walking a listing or the store does.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SequentialConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Alert after this many tokens in a row, each after (or each before)
    /// the last.
    pub run_length: u32,
    /// Severity of its alerts.
    pub severity: Severity,
}

impl Default for SequentialConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            run_length: 50,
            severity: Severity::High,
        }
    }
}

/// `[watch.off_hours]`: a histogram of each principal's activity by hour of
/// day (UTC).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OffHoursConfig {
    /// Run this detector.
    pub enabled: bool,
    /// The principal must have been seen over at least this many days …
    pub min_history_days: u32,
    /// … and this many requests, before its hours are judged.
    pub min_events: u32,
    /// Alert when the hour (with its two neighbours) holds less than this
    /// share of the principal's history.
    pub min_share: f64,
    /// Severity of its alerts.
    pub severity: Severity,
}

impl Default for OffHoursConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_history_days: 7,
            min_events: 500,
            min_share: 0.01,
            severity: Severity::Medium,
        }
    }
}

/// More than `threshold` events within `window_secs`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BurstConfig {
    /// Run this detector.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Width of the sliding window, seconds.
    pub window_secs: u64,
    /// Alert when the window holds more than this many.
    pub threshold: u32,
    /// Severity of its alerts.
    pub severity: Severity,
}

fn yes() -> bool {
    true
}

/// `[watch.suspicious_targets]`: reveals of tokens a principal has no
/// business with.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SuspiciousTargetsConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Window the attempts below are counted in, seconds.
    pub window_secs: u64,
    /// Attempts on another tenant's tokens before an alert (one is already
    /// a probe: a principal's own tenant is all it is ever given).
    pub foreign_tenant: u32,
    /// Attempts on dormant tokens (closed reveal window) before an alert.
    pub dormant: u32,
    /// Reveals of archived (delivered) codes before an alert.
    pub archived: u32,
    /// Severity of its alerts.
    pub severity: Severity,
}

impl Default for SuspiciousTargetsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 600,
            foreign_tenant: 1,
            dormant: 5,
            archived: 3,
            severity: Severity::High,
        }
    }
}

/// `[watch.webhook]`: alerts POSTed as JSON, signed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…` (plain `http://` only to a loopback address).
    pub url: String,
    /// File holding the signing secret (at least 32 characters).
    pub secret_file: std::path::PathBuf,
    /// PEM file of the CAs trusted for an `https` receiver. Strongroom has
    /// no built-in root store: name your private CA, or the system bundle
    /// (`/etc/ssl/certs/ca-certificates.crt`) for a public receiver.
    pub ca_file: Option<std::path::PathBuf>,
}
