//! Back-off per client id for wrong client secrets.
//!
//! The address limits slow a guesser down per source address, but one who
//! has many addresses can spread guesses over them. So wrong secrets are
//! also counted per **client id**: after [`FREE_FAILURES`] in a row, each
//! further attempt for that client id must wait, 1 s doubling to at most
//! [`MAX_WAIT`], from the last failure. It is a back-off, not a lock-out: the
//! wait never grows past a minute, and a right secret after the wait clears
//! the count, so an attacker can slow a service's token requests down but
//! never shut it out for good. A refused attempt is answered `429` with
//! `Retry-After` and audited (once a minute per client id, like the other
//! limits).
//!
//! Only client ids that exist are tracked (the map is bounded by the number
//! of principals), counts are per node, and entries idle for ten minutes are
//! forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong secrets in a row that cost nothing.
pub const FREE_FAILURES: u32 = 10;
/// The longest wait between attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// When a refusal was last audited.
    audited: Option<Instant>,
}

/// Wrong-secret counts per client id.
#[derive(Debug, Default)]
pub struct ClientBackoff {
    failures: Mutex<HashMap<String, Failures>>,
}

impl ClientBackoff {
    /// How long `client_id` must still wait before its next attempt, if at
    /// all, and whether this is the first refusal of it this minute (audit it).
    pub fn wait(&self, client_id: &str, now: Instant) -> Option<(Duration, bool)> {
        let mut failures = self.failures.lock().ok()?;
        let f = failures.get_mut(client_id)?;
        let until = f.last + delay(f.count)?;
        if until <= now {
            return None;
        }
        let first = f
            .audited
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60));
        if first {
            f.audited = Some(now);
        }
        Some((until - now, first))
    }

    /// Counts a wrong secret for `client_id` (an existing principal's).
    pub fn failed(&self, client_id: &str, now: Instant) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            let f = failures.entry(client_id.to_owned()).or_insert(Failures {
                count: 0,
                last: now,
                audited: None,
            });
            f.count = f.count.saturating_add(1);
            f.last = now;
        }
    }

    /// A right secret: the count starts again.
    pub fn succeeded(&self, client_id: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(client_id);
        }
    }
}

/// The wait after `count` wrong secrets in a row.
fn delay(count: u32) -> Option<Duration> {
    let over = count.checked_sub(FREE_FAILURES)?;
    let secs = 1u64.checked_shl(over.min(6)).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_a_minute_and_a_right_secret_clears_them() {
        let b = ClientBackoff::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(b.wait("c", t0), None);
            b.failed("c", t0);
        }
        assert_eq!(b.wait("c", t0), Some((Duration::from_secs(1), true)));
        // Audited once a minute, not on every refusal.
        assert_eq!(b.wait("c", t0), Some((Duration::from_secs(1), false)));
        assert_eq!(b.wait("c", t0 + Duration::from_secs(1)), None);
        for _ in 0..20 {
            b.failed("c", t0);
        }
        // Never more than a minute: a back-off, not a lock-out.
        assert_eq!(b.wait("c", t0).map(|w| w.0), Some(MAX_WAIT));
        assert_eq!(b.wait("c", t0 + MAX_WAIT), None);
        assert_eq!(b.wait("other", t0), None);
        b.succeeded("c");
        assert_eq!(b.wait("c", t0), None);
    }
}
