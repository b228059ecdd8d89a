//! Abuse limits: token buckets per principal, per client address, and a
//! stricter one per address on the endpoints that take passwords, codes and
//! key shares.
//!
//! # What is counted where
//! * Every request counts against its client address (`per_address`);
//!   requests to the endpoints that take secrets (`/v1/auth/token`,
//!   `login`, `step-up`, `enrol`, `enrol/confirm`, `/v1/sys/unseal`,
//!   `/v1/sys/bootstrap`) count against `auth_per_address` instead, which is
//!   small: those are the endpoints a guesser would use.
//! * Every authenticated request counts against its principal
//!   (`per_principal`, or the largest `per_role` rate of its roles), checked
//!   right after the token, before any work.
//!
//! A refused request gets `429 request.rate_limited` with `Retry-After`.
//! The first refusal of a key in a minute is written to the audit log; the
//! rest of that minute's are only counted, so a flood cannot flood the log.
//!
//! The buckets are GCRA. By default they live in memory (`governor`), per
//! node: with several nodes behind a balancer each enforces its own share.
//! With `redis_url` set they live in Redis, one set for all nodes, updated
//! by one Lua script per check (atomic, on Redis's own clock), under keys
//! named by the vault's id so vaults can share a Redis. If Redis does not
//! answer within 50 ms the node falls back to its own buckets for that
//! request and says so in its log: an abuse limit must not turn a Redis
//! outage into a vault outage.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_sec: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Rate {
    /// `per_sec` sustained, `burst` at once.
    pub const fn new(per_sec: u32, burst: u32) -> Self {
        Self { per_sec, burst }
    }

    fn quota(self) -> Option<Quota> {
        let per_sec = NonZeroU32::new(self.per_sec)?;
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Some(Quota::per_second(per_sec).allow_burst(burst))
    }
}

/// The limits, as configured (`[ratelimit]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Off only for measurements; on by default.
    pub enabled: bool,
    /// Each principal, unless a role of it says more.
    pub per_principal: Rate,
    /// Each client address, for every request but the ones below.
    pub per_address: Rate,
    /// Each client address, on the endpoints that take passwords, codes,
    /// client secrets, key shares and the bootstrap token.
    pub auth_per_address: Rate,
    /// Per role (`ingest = { per_sec = 20000, burst = 40000 }`): a
    /// principal gets the largest rate among its roles.
    pub per_role: BTreeMap<String, Rate>,
    /// Keep the buckets in this Redis, shared by every node
    /// (`redis://host:6379`, `rediss://` for TLS).
    pub redis_url: Option<String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_principal: Rate::new(2_000, 4_000),
            per_address: Rate::new(5_000, 10_000),
            auth_per_address: Rate::new(10, 30),
            per_role: BTreeMap::new(),
            redis_url: None,
        }
    }
}

/// A refusal: wait this long.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    /// Whole seconds to wait (at least 1), for `Retry-After`.
    pub retry_after_secs: u64,
    /// Whether this is the first refusal of the key this minute (audit it).
    pub first_this_minute: bool,
}

/// The buckets of one node (or their Redis).
pub struct RateLimits {
    config: RateLimitConfig,
    /// One keyed limiter per configured rate, made once: every rate a
    /// check can ask for comes from the configuration.
    limiters: HashMap<Rate, DefaultKeyedRateLimiter<String>>,
    audited: Mutex<HashMap<String, Instant>>,
    shared: std::sync::OnceLock<Shared>,
}

/// Buckets in Redis.
struct Shared {
    connection: redis::aio::ConnectionManager,
    prefix: String,
    script: redis::Script,
}

/// GCRA on Redis's clock, in microseconds. KEYS[1]: the bucket; ARGV[1]:
/// microseconds between requests at the sustained rate; ARGV[2]: the burst.
/// Returns 0 when allowed, else the microseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return math.ceil(wait) end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return 0
";

/// How long a check waits for Redis before using this node's buckets.
const REDIS_TIMEOUT: Duration = Duration::from_millis(50);

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The endpoints that take a password, code, client secret, key share or
/// the bootstrap token: what a guesser would call.
const AUTH_PATHS: [&str; 7] = [
    "/v1/auth/token",
    "/v1/auth/login",
    "/v1/auth/step-up",
    "/v1/auth/enrol",
    "/v1/auth/enrol/confirm",
    "/v1/sys/unseal",
    "/v1/sys/bootstrap",
];

/// Whether a path is one of the endpoints with the stricter address limit.
pub fn is_auth_path(path: &str) -> bool {
    AUTH_PATHS.contains(&path.trim_end_matches('/'))
}

impl RateLimits {
    /// Buckets for `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        let rates = [
            config.per_principal,
            config.per_address,
            config.auth_per_address,
        ]
        .into_iter()
        .chain(config.per_role.values().copied());
        let limiters = rates
            .filter_map(|rate| Some((rate, RateLimiter::keyed(rate.quota()?))))
            .collect();
        Self {
            config,
            limiters,
            audited: Mutex::new(HashMap::new()),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Connects the configured Redis, if any; buckets are then shared by
    /// every node of the vault `vault_id`. Fails if Redis cannot be reached
    /// at start, so a wrong URL is found at once.
    pub async fn connect_shared(&self, vault_id: &str) -> Result<(), redis::RedisError> {
        let Some(url) = &self.config.redis_url else {
            return Ok(());
        };
        let client = redis::Client::open(url.as_str())?;
        let settings = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let connection = redis::aio::ConnectionManager::new_with_config(client, settings).await?;
        let _ = self.shared.set(Shared {
            connection,
            prefix: format!("strongroom:{vault_id}:ratelimit:"),
            script: redis::Script::new(GCRA),
        });
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// The rate of a principal with these roles.
    pub fn principal_rate(&self, roles: &[String]) -> Rate {
        roles
            .iter()
            .filter_map(|r| self.config.per_role.get(r).copied())
            .max_by_key(|r| (r.per_sec, r.burst))
            .unwrap_or(self.config.per_principal)
    }

    /// The rate for a request to `path` from one address.
    pub fn address_rate(&self, path: &str) -> Rate {
        if is_auth_path(path) {
            self.config.auth_per_address
        } else {
            self.config.per_address
        }
    }

    /// Takes one token from `key`'s bucket at `rate` (keys are namespaced by
    /// the caller: `principal:…`, `address:…`).
    pub async fn check(&self, key: String, rate: Rate) -> Result<(), Limited> {
        if !self.config.enabled {
            return Ok(());
        }
        if let Some(shared) = self.shared.get() {
            let interval = 1_000_000u64 / u64::from(rate.per_sec.max(1));
            let mut connection = shared.connection.clone();
            let checked = tokio::time::timeout(
                REDIS_TIMEOUT,
                shared
                    .script
                    .key(format!("{}{key}", shared.prefix))
                    .arg(interval.max(1))
                    .arg(rate.burst.max(1))
                    .invoke_async::<u64>(&mut connection),
            )
            .await;
            match checked {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(wait_us)) => {
                    return Err(self.limited(key, Duration::from_micros(wait_us)));
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "rate limit store failed; using this node's buckets");
                }
                Err(_) => {
                    tracing::warn!("rate limit store too slow; using this node's buckets");
                }
            }
        }
        self.check_local(key, rate)
    }

    fn check_local(&self, key: String, rate: Rate) -> Result<(), Limited> {
        let Some(limiter) = self.limiters.get(&rate) else {
            // A rate of 0 per second (no limiter) refuses everything.
            return Err(self.limited(key, Duration::from_secs(60)));
        };
        match limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(self.limited(key, wait))
            }
        }
    }

    fn limited(&self, key: String, wait: Duration) -> Limited {
        let now = Instant::now();
        let first_this_minute = match self.audited.lock() {
            Ok(mut audited) => {
                let fresh = audited
                    .get(&key)
                    .is_none_or(|at| now.duration_since(*at) >= Duration::from_secs(60));
                if fresh {
                    audited.insert(key, now);
                }
                fresh
            }
            Err(_) => true,
        };
        Limited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            first_this_minute,
        }
    }

    /// Forgets idle buckets and old audit marks, so memory follows the
    /// number of recent callers, not of all callers ever.
    pub fn prune(&self) {
        for limiter in self.limiters.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Ok(mut audited) = self.audited.lock() {
            let now = Instant::now();
            audited.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_burst_and_names_the_wait() {
        let limits = RateLimits::new(RateLimitConfig {
            per_principal: Rate::new(1, 3),
            ..Default::default()
        });
        let rate = limits.principal_rate(&["ingest".to_owned()]);
        for _ in 0..3 {
            limits.check_local("principal:a".into(), rate).unwrap();
        }
        let refused = limits.check_local("principal:a".into(), rate).unwrap_err();
        assert_eq!(refused.retry_after_secs, 1);
        assert!(refused.first_this_minute);
        assert!(
            !limits
                .check_local("principal:a".into(), rate)
                .unwrap_err()
                .first_this_minute
        );
        // Another key has its own bucket.
        limits.check_local("principal:b".into(), rate).unwrap();
    }

    #[test]
    fn a_role_may_raise_the_rate_and_the_largest_wins() {
        let mut per_role = BTreeMap::new();
        per_role.insert("ingest".to_owned(), Rate::new(500, 1000));
        per_role.insert("auditor".to_owned(), Rate::new(50, 100));
        let limits = RateLimits::new(RateLimitConfig {
            per_role,
            ..Default::default()
        });
        assert_eq!(
            limits.principal_rate(&["auditor".to_owned(), "ingest".to_owned()]),
            Rate::new(500, 1000)
        );
        assert_eq!(
            limits.principal_rate(&["admin".to_owned()]),
            RateLimitConfig::default().per_principal
        );
        assert!(is_auth_path("/v1/auth/login"));
        assert!(!is_auth_path("/v1/auth/whoami"));
        assert!(!is_auth_path("/v1/secrets"));
    }
}
