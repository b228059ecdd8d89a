//! Card data for a payment gateway: primary account numbers (PANs) and card
//! verification values (CVVs), held to PCI DSS.
//!
//! * [`pan`]: validation (digits, length, Luhn), masking to BIN and last
//!   four, and tokens that keep the card's shape but fail Luhn, so they can
//!   never be taken for a card.
//! * [`cvv`]: CVVs held in memory only, for minutes, usable once.
//! * [`shared`]: CVVs sealed in the process and kept in a store shared by
//!   several nodes (Redis), for minutes, taken once.
//!
//! No I/O: the vault seals PANs and keeps their tokens; this crate decides
//! what a valid card and a safe token are.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod cvv;
pub mod pan;
pub mod shared;

pub use cvv::CvvVault;
pub use pan::Pan;
pub use shared::SharedCvvStore;

/// Why card data was refused. Messages never contain the data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// The PAN holds something other than the digits 0 to 9.
    #[error("the card number must be digits only (no spaces or dashes)")]
    NotDigits,
    /// The PAN has too few or too many digits.
    #[error("the card number has {0} digits; card numbers have 12 to 19")]
    Length(usize),
    /// The PAN fails the Luhn check: mistyped.
    #[error("the card number fails its check digit (Luhn): it was mistyped")]
    Luhn,
    /// The expiry month or year is impossible or past.
    #[error("{0}")]
    Expiry(String),
    /// The CVV is not 3 or 4 digits.
    #[error("the CVV must be 3 or 4 digits")]
    Cvv,
    /// A CVV lifetime outside 1 to 60 minutes.
    #[error("a CVV is kept 1 to 60 minutes, not {0}")]
    CvvTtl(u32),
    /// The random generator failed.
    #[error("no randomness available")]
    Random,
    /// Too many CVVs held, or a lock was poisoned.
    #[error("card service unavailable")]
    Unavailable,
    /// The shared CVV store (Redis) failed; the message names the store's
    /// error, never a value.
    #[error("the shared CVV store is unavailable: {0}")]
    SharedStore(String),
}

/// Checks an expiry: month 1 to 12, and not before `(year, month)` now, and
/// at most 20 years ahead. Two-digit years are refused (ambiguous).
pub fn check_expiry(month: u32, year: u32, now: (u32, u32)) -> Result<(), CardError> {
    let (this_year, this_month) = now;
    if !(1..=12).contains(&month) {
        return Err(CardError::Expiry(format!(
            "expiry_month must be 1 to 12, not {month}"
        )));
    }
    if year < 1000 {
        return Err(CardError::Expiry(
            "expiry_year must have four digits (2029, not 29)".into(),
        ));
    }
    if (year, month) < (this_year, this_month) {
        return Err(CardError::Expiry("the card has expired".into()));
    }
    if year > this_year + 20 {
        return Err(CardError::Expiry(format!(
            "expiry_year {year} is more than 20 years ahead"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_is_a_real_month_not_past_nor_far() {
        let now = (2026, 11);
        assert!(
            check_expiry(11, 2026, now).is_ok(),
            "valid through its month"
        );
        assert!(check_expiry(1, 2030, now).is_ok());
        assert!(check_expiry(10, 2026, now).is_err());
        assert!(check_expiry(13, 2027, now).is_err());
        assert!(check_expiry(0, 2027, now).is_err());
        assert!(check_expiry(5, 29, now).is_err());
        assert!(check_expiry(5, 2047, now).is_err());
    }
}
