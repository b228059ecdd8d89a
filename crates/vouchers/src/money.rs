//! Face values: integer minor units and an ISO 4217 currency, never floats.

use iso_currency::Currency;

use crate::VoucherError;

/// The largest face value accepted, in minor units: a million units of the
/// currency (£1,000,000.00). Gift vouchers are far smaller; the bound keeps
/// sums of many of them far from overflowing.
pub const MAX_FACE_VALUE: i64 = 100_000_000;

/// Checks an ISO 4217 code and returns its number of minor-unit digits
/// (2 for GBP, 0 for JPY, 3 for KWD). Codes without minor units (precious
/// metals, funds) are refused: a voucher's value is money.
pub fn currency_exponent(code: &str) -> Result<u16, VoucherError> {
    Currency::from_code(code)
        .and_then(Currency::exponent)
        .ok_or_else(|| {
            VoucherError::Invalid(format!(
                "'{code}' is not an ISO 4217 currency code of money (e.g. GBP, EUR, USD, JPY)"
            ))
        })
}

/// Checks a face value in minor units.
pub fn check_face_value(minor_units: i64) -> Result<(), VoucherError> {
    if (1..=MAX_FACE_VALUE).contains(&minor_units) {
        Ok(())
    } else {
        Err(VoucherError::Invalid(format!(
            "a face value is a whole number of minor units (pence, cents) from 1 to {MAX_FACE_VALUE}"
        )))
    }
}

/// A face value for people: `25.00 GBP`, `500 JPY`.
pub fn display(minor_units: i64, currency: &str) -> String {
    let exponent = currency_exponent(currency).unwrap_or(2);
    if exponent == 0 {
        return format!("{minor_units} {currency}");
    }
    let scale = 10i64.pow(u32::from(exponent));
    format!(
        "{}.{:0width$} {currency}",
        minor_units / scale,
        minor_units % scale,
        width = usize::from(exponent)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_and_their_minor_units() {
        assert_eq!(currency_exponent("GBP").unwrap(), 2);
        assert_eq!(currency_exponent("JPY").unwrap(), 0);
        assert_eq!(currency_exponent("KWD").unwrap(), 3);
        for bad in ["gbp", "XXX", "XAU", "POUNDS", ""] {
            assert!(currency_exponent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn face_values_for_people() {
        assert_eq!(display(2500, "GBP"), "25.00 GBP");
        assert_eq!(display(5, "EUR"), "0.05 EUR");
        assert_eq!(display(500, "JPY"), "500 JPY");
        assert_eq!(display(1234, "KWD"), "1.234 KWD");
        assert!(check_face_value(0).is_err());
        assert!(check_face_value(MAX_FACE_VALUE + 1).is_err());
        assert!(check_face_value(2500).is_ok());
    }
}
