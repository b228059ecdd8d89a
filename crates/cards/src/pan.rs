//! Primary account numbers: validation, masking, and tokens that keep the
//! card's shape.
//!
//! # The token
//! A PAN token has the PAN's length, its first six digits (the BIN: which
//! bank, which network, what the gateway routes on) and last four (what a
//! customer recognises), and random digits between, drawn again until the
//! whole number **fails** the Luhn check. A PAN under 16 digits keeps fewer
//! leading digits (15 → 5, 12 → 2), so that six are always hidden: with
//! two hidden, as 6 + 4 of a 12-digit card would leave, the Luhn digit
//! narrows the card down to ten candidates. No real card number fails Luhn, so
//! a token can never be mistaken for — or charged as — a card, and a system
//! that validates card numbers refuses it.
//!
//! # Why random digits, not format-preserving encryption
//! FF1 (NIST SP 800-38G) would make the middle digits a keyed function of the
//! PAN: the same card always gets the same token, so tokens leak which
//! payments share a card, and anyone who obtains the key turns every token
//! back into a card number without touching the vault. The middle of a
//! 16-digit PAN is also just six digits, a domain small enough that FF1 with
//! it is below the size SP 800-38G Rev. 1 recommends. Random digits carry no
//! information about the PAN at all; the vault keeps the mapping, and a
//! uniqueness check on insert keeps two cards from sharing a token.
//! Recognising a returning card is done with a keyed fingerprint of the PAN,
//! not by the token.

use zeroize::Zeroizing;

use crate::CardError;

/// Shortest PAN accepted (ISO/IEC 7812 allows 8, but no payment network
/// issues fewer than 12 digits).
pub const MIN_PAN_LEN: usize = 12;
/// Longest PAN (ISO/IEC 7812).
pub const MAX_PAN_LEN: usize = 19;
/// Digits a token keeps at the start (of a PAN of 16 digits or more).
pub const BIN_LEN: usize = 6;
/// Digits a token and a mask always hide: with fewer, the Luhn digit and
/// the shown ones would leave an attacker a handful of candidates.
pub const MIN_HIDDEN: usize = 6;

/// How many leading digits may be shown of a PAN of `len` digits: the BIN,
/// or less for a short PAN, so that at least [`MIN_HIDDEN`] stay hidden.
pub fn shown_prefix(len: usize) -> usize {
    BIN_LEN.min(len.saturating_sub(LAST_LEN + MIN_HIDDEN))
}
/// Digits a token keeps at the end.
pub const LAST_LEN: usize = 4;

/// A validated primary account number. Its digits are zeroed when dropped
/// and never printed by `Debug`.
pub struct Pan(Zeroizing<String>);

impl std::fmt::Debug for Pan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl Pan {
    /// Checks a PAN as given: digits only, 12 to 19 of them, passing Luhn.
    pub fn parse(text: &str) -> Result<Self, CardError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::NotDigits);
        }
        if !(MIN_PAN_LEN..=MAX_PAN_LEN).contains(&text.len()) {
            return Err(CardError::Length(text.len()));
        }
        if !luhn_valid(text) {
            return Err(CardError::Luhn);
        }
        Ok(Self(Zeroizing::new(text.to_owned())))
    }

    /// The digits, for sealing or for the relay; handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// How many digits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a PAN has at least 12 digits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The leading digits a token keeps: the BIN (first six), fewer for
    /// a PAN under 16 digits (see [`shown_prefix`]).
    pub fn bin(&self) -> &str {
        self.0.get(..shown_prefix(self.0.len())).unwrap_or_default()
    }

    /// The last four digits.
    pub fn last4(&self) -> &str {
        self.0.get(self.0.len() - LAST_LEN..).unwrap_or_default()
    }

    /// BIN and last four with `*` between: what may be shown.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// `digits` with all but the first six and last four replaced by `*` (PCI
/// DSS 3.4.1's most that may be displayed), fewer leading digits for a
/// PAN under 16 digits so that six stay hidden.
pub fn mask(digits: &str) -> String {
    let n = digits.len();
    let shown = shown_prefix(n);
    digits
        .char_indices()
        .map(|(i, c)| {
            if i < shown || i + LAST_LEN >= n {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// The Luhn (mod 10) check over ASCII digits.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let Some(d) = char::from(b).to_digit(10) else {
            return false;
        };
        sum += if i % 2 == 1 {
            let twice = d * 2;
            if twice > 9 { twice - 9 } else { twice }
        } else {
            d
        };
    }
    sum.is_multiple_of(10)
}

/// A fresh token for `pan`: same length, same BIN and last four, random
/// digits between, failing Luhn. Call again for another candidate if the
/// vault already holds this one.
pub fn new_token(pan: &Pan) -> Result<String, CardError> {
    let digits = pan.expose();
    let middle_len = digits.len() - pan.bin().len() - LAST_LEN;
    loop {
        let mut token = String::with_capacity(digits.len());
        token.push_str(pan.bin());
        token.push_str(&random_digits(middle_len)?);
        token.push_str(pan.last4());
        // Nine draws in ten fail Luhn already.
        if !luhn_valid(&token) {
            return Ok(token);
        }
    }
}

/// Whether `text` has the shape of a PAN token: 12 to 19 digits failing
/// Luhn (so never a card number).
pub fn is_token(text: &str) -> bool {
    (MIN_PAN_LEN..=MAX_PAN_LEN).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && !luhn_valid(text)
}

/// `n` uniformly random decimal digits (rejection sampling of random bytes,
/// so no digit is likelier than another).
fn random_digits(n: usize) -> Result<String, CardError> {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let bytes = strongroom_crypto::random::bytes::<16>().map_err(|_| CardError::Random)?;
        for b in bytes {
            // 250 = 25 × 10: bytes from 250 up would favour 0 to 5.
            if b < 250 && out.len() < n {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test card numbers published by the networks (they pass Luhn).
    const VISA: &str = "4111111111111111";
    const AMEX: &str = "378282246310005";
    const MASTERCARD: &str = "5555555555554444";
    const DINERS_14: &str = "30569309025904";

    #[test]
    fn luhn_accepts_real_numbers_and_refuses_one_changed_digit() {
        for pan in [
            VISA,
            AMEX,
            MASTERCARD,
            DINERS_14,
            "6011111111111117",
            "4000056655665556",
        ] {
            assert!(luhn_valid(pan), "{pan}");
            let mut changed: Vec<u8> = pan.bytes().collect();
            changed[3] = if changed[3] == b'9' {
                b'0'
            } else {
                changed[3] + 1
            };
            assert!(!luhn_valid(std::str::from_utf8(&changed).unwrap()), "{pan}");
        }
    }

    #[test]
    fn only_digits_of_a_card_length_passing_luhn_are_a_pan() {
        assert!(Pan::parse(VISA).is_ok());
        assert!(matches!(
            Pan::parse("4111 1111 1111 1111"),
            Err(CardError::NotDigits)
        ));
        assert!(matches!(
            Pan::parse("4111-1111-1111-1111"),
            Err(CardError::NotDigits)
        ));
        assert!(matches!(Pan::parse(""), Err(CardError::NotDigits)));
        assert!(matches!(
            Pan::parse("４１１１１１１１１１１１１１１１"),
            Err(CardError::NotDigits)
        ));
        assert!(matches!(
            Pan::parse("42424242424"),
            Err(CardError::Length(11))
        ));
        assert!(matches!(
            Pan::parse("41111111111111111111"),
            Err(CardError::Length(20))
        ));
        assert!(matches!(
            Pan::parse("4111111111111112"),
            Err(CardError::Luhn)
        ));
    }

    #[test]
    fn a_token_keeps_shape_bin_and_last_four_and_fails_luhn() {
        for text in [
            VISA,
            AMEX,
            MASTERCARD,
            DINERS_14,
            "6011000990139424",
            "3566002020360505",
        ] {
            let pan = Pan::parse(text).unwrap();
            for _ in 0..200 {
                let token = new_token(&pan).unwrap();
                assert_eq!(token.len(), text.len());
                let kept = shown_prefix(text.len());
                assert!(
                    token.starts_with(&text[..kept]) && token.ends_with(&text[text.len() - 4..])
                );
                assert!(text.len() - kept - 4 >= MIN_HIDDEN);
                assert!(token.bytes().all(|b| b.is_ascii_digit()));
                assert!(!luhn_valid(&token), "{token} passes Luhn");
                assert!(is_token(&token));
                assert_ne!(token, text);
            }
        }
        assert!(!is_token(VISA), "a card number is never a token");
    }

    #[test]
    fn tokens_of_one_card_differ_and_spread_over_the_middle_digits() {
        let pan = Pan::parse(VISA).unwrap();
        let tokens: std::collections::HashSet<String> =
            (0..2000).map(|_| new_token(&pan).unwrap()).collect();
        // 900,000 possible middles: 2,000 draws collide rarely.
        assert!(tokens.len() > 1990, "{}", tokens.len());
        let mut counts = [0u32; 10];
        for t in &tokens {
            for d in t[6..12].bytes() {
                counts[usize::from(d - b'0')] += 1;
            }
        }
        // About 1,200 of each digit; a biased generator would show.
        assert!(
            counts.iter().all(|&c| (1000..1400).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn masking_shows_bin_and_last_four_only() {
        let pan = Pan::parse(VISA).unwrap();
        assert_eq!(pan.masked(), "411111******1111");
        // A 15-digit card keeps five leading digits, so six stay hidden.
        assert_eq!(mask(AMEX), "37828******0005");
        assert_eq!(mask("424242424242"), "42******4242");
        assert_eq!(format!("{pan:?}"), "Pan(411111******1111)");
        assert_eq!((pan.bin(), pan.last4()), ("411111", "1111"));
    }
}
