//! Card verification values: kept in memory only, for minutes, usable once.
//!
//! PCI DSS 3.3.1 forbids keeping a CVV after authorisation, in any form. So
//! a CVV never reaches a store, a file or a log: it is held here, in this
//! process's memory (zeroed when taken, expired or dropped), behind a token
//! that works once and expires after a configured number of minutes
//! (default 10, at most 60). It is never revealed through the ordinary
//! reveal endpoint; only the relay consumes it, on its way to the processor.
//! A restart forgets every CVV, which is what the rule asks.

use std::collections::HashMap;
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::CardError;

/// Minutes a CVV token lives unless told otherwise.
pub const DEFAULT_TTL_MINS: u32 = 10;
/// The longest a CVV may be kept, minutes.
pub const MAX_TTL_MINS: u32 = 60;
/// Prefix of CVV tokens.
pub const TOKEN_PREFIX: &str = "cvv_";
/// Most CVVs held at once: past this, new ones are refused rather than
/// memory growing without bound.
pub const MAX_HELD: usize = 1_000_000;

struct Held {
    cvv: Zeroizing<String>,
    tenant: String,
    /// The card it was given with: it is used with that card only.
    card: String,
    expires_at_ms: i64,
}

/// CVVs waiting for their one use.
#[derive(Default)]
pub struct CvvVault {
    held: Mutex<HashMap<String, Held>>,
}

impl std::fmt::Debug for CvvVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CvvVault({} held)", self.len())
    }
}

/// Checks a CVV as given: 3 or 4 digits.
pub fn check_cvv(cvv: &str) -> Result<(), CardError> {
    if (3..=4).contains(&cvv.len()) && cvv.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(CardError::Cvv)
    }
}

impl CvvVault {
    /// Holds `cvv` for `tenant` for `ttl_mins` from `now_ms`; returns its
    /// token.
    pub fn put(
        &self,
        tenant: &str,
        card: &str,
        cvv: &str,
        now_ms: i64,
        ttl_mins: u32,
    ) -> Result<String, CardError> {
        check_cvv(cvv)?;
        if !(1..=MAX_TTL_MINS).contains(&ttl_mins) {
            return Err(CardError::CvvTtl(ttl_mins));
        }
        let token =
            strongroom_crypto::random::token(TOKEN_PREFIX).map_err(|_| CardError::Random)?;
        let held = Held {
            cvv: Zeroizing::new(cvv.to_owned()),
            tenant: tenant.to_owned(),
            card: card.to_owned(),
            expires_at_ms: now_ms.saturating_add(i64::from(ttl_mins) * 60_000),
        };
        let mut map = self.held.lock().map_err(|_| CardError::Unavailable)?;
        if map.len() >= MAX_HELD {
            map.retain(|_, h| h.expires_at_ms > now_ms);
            if map.len() >= MAX_HELD {
                return Err(CardError::Unavailable);
            }
        }
        map.insert(token.clone(), held);
        Ok(token)
    }

    /// The CVV of `token` in `tenant`, once: taking it removes it. `None`
    /// for an unknown, used, expired or other tenant's token. An expired one
    /// is dropped on the way; another tenant's attempt leaves it in place
    /// (a probe must not destroy a customer's CVV).
    pub fn take(
        &self,
        tenant: &str,
        card: &str,
        token: &str,
        now_ms: i64,
    ) -> Option<Zeroizing<String>> {
        let mut map = self.held.lock().ok()?;
        let held = map.get(token)?;
        if held.expires_at_ms <= now_ms {
            map.remove(token);
            return None;
        }
        if held.tenant != tenant || held.card != card {
            return None;
        }
        map.remove(token).map(|h| h.cvv)
    }

    /// Drops (and zeroes) every expired CVV; returns how many.
    pub fn sweep(&self, now_ms: i64) -> usize {
        let Ok(mut map) = self.held.lock() else {
            return 0;
        };
        let before = map.len();
        map.retain(|_, h| h.expires_at_ms > now_ms);
        before - map.len()
    }

    /// Forgets every CVV (the vault was sealed).
    pub fn clear(&self) {
        if let Ok(mut map) = self.held.lock() {
            map.clear();
        }
    }

    /// How many CVVs are held.
    pub fn len(&self) -> usize {
        self.held.lock().map_or(0, |m| m.len())
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_790_000_000_000;

    #[test]
    fn a_cvv_is_taken_once() {
        let v = CvvVault::default();
        let token = v
            .put("acme", "card-1", "123", T0, DEFAULT_TTL_MINS)
            .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && !token.contains("123"));
        assert_eq!(
            v.take("acme", "card-1", &token, T0 + 1).unwrap().as_str(),
            "123"
        );
        assert!(v.take("acme", "card-1", &token, T0 + 2).is_none(), "used");
        assert!(v.is_empty());
    }

    #[test]
    fn a_cvv_expires_and_is_forgotten() {
        let v = CvvVault::default();
        let token = v.put("acme", "card-1", "1234", T0, 10).unwrap();
        let kept = v.put("acme", "card-1", "999", T0, 60).unwrap();
        assert!(
            v.take("acme", "card-1", &token, T0 + 10 * 60_000).is_none(),
            "expired at ten minutes"
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v.sweep(T0 + 61 * 60_000), 1);
        assert!(v.take("acme", "card-1", &kept, T0 + 61 * 60_000).is_none());
    }

    #[test]
    fn another_tenant_cannot_take_it() {
        let v = CvvVault::default();
        let token = v.put("acme", "card-1", "123", T0, 10).unwrap();
        assert!(v.take("other", "card-1", &token, T0).is_none());
        assert!(
            v.take("acme", "card-2", &token, T0).is_none(),
            "another card's"
        );
        assert!(
            v.take("acme", "card-1", &token, T0).is_some(),
            "the probe did not consume it"
        );
    }

    #[test]
    fn only_three_or_four_digits_for_at_most_an_hour() {
        let v = CvvVault::default();
        for bad in ["12", "12345", "12a", "", "١٢٣"] {
            assert!(
                matches!(v.put("acme", "card-1", bad, T0, 10), Err(CardError::Cvv)),
                "{bad}"
            );
        }
        assert!(matches!(
            v.put("acme", "card-1", "123", T0, 0),
            Err(CardError::CvvTtl(0))
        ));
        assert!(matches!(
            v.put("acme", "card-1", "123", T0, 61),
            Err(CardError::CvvTtl(61))
        ));
        assert!(v.put("acme", "card-1", "123", T0, 60).is_ok());
    }
}
