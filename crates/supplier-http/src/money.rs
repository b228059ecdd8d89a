//! Suppliers speak in decimal amounts (`25.00`), Strongroom in integer minor
//! units of an ISO 4217 currency. Never a float in between.

use iso_currency::Currency;
use strongroom_suppliers::Money;

/// Minor-unit digits of `currency` (2 for GBP, 0 for JPY).
pub fn exponent(currency: &str) -> Option<u32> {
    Currency::from_code(currency)
        .and_then(Currency::exponent)
        .map(u32::from)
}

/// `money` as a decimal amount: `2500 GBP` → `25.00`.
pub fn to_decimal(money: &Money) -> Option<String> {
    let exponent = exponent(&money.currency)?;
    if exponent == 0 {
        return Some(money.amount.to_string());
    }
    let scale = 10u64.checked_pow(exponent)?;
    Some(format!(
        "{}.{:0width$}",
        money.amount / scale,
        money.amount % scale,
        width = usize::try_from(exponent).ok()?
    ))
}

/// A decimal amount (`25`, `25.5`, `25.00`) in minor units of `currency`;
/// None if it is not one, or has more decimals than the currency.
pub fn from_decimal(text: &str, currency: &str) -> Option<Money> {
    let exponent = usize::try_from(exponent(currency)?).ok()?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (text.contains('.') && !digits(fraction)) {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > exponent {
        return None;
    }
    let scale = 10u64.checked_pow(u32::try_from(exponent).ok()?)?;
    let padded = format!("{fraction:0<exponent$}");
    let minor: u64 = if exponent == 0 {
        0
    } else {
        padded.parse().ok()?
    };
    Some(Money {
        amount: whole
            .parse::<u64>()
            .ok()?
            .checked_mul(scale)?
            .checked_add(minor)?,
        currency: currency.to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decimal_amounts_and_minor_units() {
        let gbp = |amount| Money {
            amount,
            currency: "GBP".into(),
        };
        assert_eq!(to_decimal(&gbp(2500)).unwrap(), "25.00");
        assert_eq!(to_decimal(&gbp(5)).unwrap(), "0.05");
        assert_eq!(from_decimal("25", "GBP").unwrap(), gbp(2500));
        assert_eq!(from_decimal("25.5", "GBP").unwrap(), gbp(2550));
        assert_eq!(from_decimal("25.500", "GBP").unwrap(), gbp(2550));
        assert_eq!(from_decimal("500", "JPY").unwrap().amount, 500);
        for bad in ["25.555", "-1", "1e3", "", ".5", "25.", "abc"] {
            assert!(from_decimal(bad, "GBP").is_none(), "{bad}");
        }
        assert!(from_decimal("1", "XXX").is_none());
    }
}
