//! Exponential back-off with full jitter.
//!
//! The wait before retry `n` (from 0) is drawn uniformly from
//! `[0, min(cap, base · 2^n)]`: many callers retrying a supplier at once
//! spread out instead of arriving together. A supplier's `Retry-After` is
//! obeyed instead when it is given, up to [`Backoff::max_retry_after`]; a
//! longer one is not waited for.

use std::time::Duration;

/// Retry policy for one supplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first retry's ceiling.
    pub base: Duration,
    /// No wait is drawn above this.
    pub cap: Duration,
    /// The longest `Retry-After` waited for.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The ceiling of the wait before retry `retry` (0 for the first).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry `retry`: the supplier's `retry_after` if given
    /// (`None` if it is longer than [`Backoff::max_retry_after`]), else a
    /// random draw below the ceiling.
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if let Some(hint) = retry_after {
            return (hint <= self.max_retry_after).then_some(hint);
        }
        let ceiling = self.ceiling(retry);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Some(Duration::ZERO);
        }
        let draw = strongroom_crypto::random::bytes::<8>()
            .map(u64::from_le_bytes)
            .unwrap_or(nanos / 2);
        Some(Duration::from_nanos(draw % (nanos + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(250));
        assert_eq!(b.ceiling(1), Duration::from_millis(500));
        assert_eq!(b.ceiling(3), Duration::from_secs(2));
        assert_eq!(b.ceiling(10), Duration::from_secs(10));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn waits_are_spread_below_the_ceiling() {
        let b = Backoff::default();
        let waits: Vec<Duration> = (0..200).map(|_| b.wait(2, None).unwrap()).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 150, "jittered: {}", distinct.len());
        assert!(waits.iter().any(|w| *w < Duration::from_millis(300)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(700)));
    }

    #[test]
    fn a_retry_after_is_obeyed_unless_too_long() {
        let b = Backoff::default();
        assert_eq!(
            b.wait(0, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(b.wait(0, Some(Duration::from_secs(600))), None);
    }
}
