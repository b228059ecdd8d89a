//! What a relay caller may see of the upstream's answer.
//!
//! The answer is **decoded first, then scanned**: a JSON answer is parsed
//! (so `\u0034\u0031…` is digits again) and every string, object key and
//! number is scrubbed; a plain-text answer is scrubbed as text. Any other
//! content type is refused, since the relay cannot know how it encodes the
//! card. Scrubbing replaces:
//!
//! * the card's number, as a run of its digits in order with any separators
//!   between them (spaces, dots, dashes, slashes, Unicode spaces or dashes:
//!   anything that is not a letter or digit, up to [`MAX_GAP`] characters)
//!   or none, in any grouping (4-4-4-4, Amex 4-6-5, …), ASCII or full-width
//!   digits, by its mask (BIN and last four);
//! * any other card number (12 to 19 contiguous digits passing Luhn), masked;
//! * the CVV, as a digit run of its own, by `***`;
//! * the holder's name, whole or each word of three letters or more, in any
//!   case, by `***`;
//! * the expiry, as `MM/YY`, `MM/YYYY`, `YYYY-MM` (any of `/-. ` between),
//!   and as the values of keys that name an expiry (`exp_month: 3`), by `**`.

use serde_json::Value;
use strongroom_vault::cards::RelayCard;

/// Most separator characters accepted between two digits of a card number.
pub const MAX_GAP: usize = 3;

/// Why an answer cannot be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

/// The upstream's answer, decoded by `content_type` and scrubbed of the card.
pub fn redact_answer(
    bytes: &[u8],
    content_type: Option<&str>,
    card: &RelayCard,
) -> Result<Value, Unreadable> {
    let kind = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json_type = kind == "application/json" || kind.ends_with("+json");
    if json_type || kind.is_empty() {
        if let Ok(mut value) = serde_json::from_slice::<Value>(bytes) {
            scrub_value(&mut value, None, card);
            return withheld_if_card(value, card);
        }
        if json_type {
            return Err(Unreadable(
                "the upstream said JSON but sent something else".into(),
            ));
        }
    }
    if kind.is_empty() || kind == "text/plain" {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Unreadable("the upstream's text answer is not UTF-8".into()))?;
        return withheld_if_card(Value::String(scrub_text(text, card)), card);
    }
    // Not the type itself: the upstream chose it, and it could carry the card.
    Err(Unreadable(
        "the upstream answered a content type the relay cannot decode to mask the card: \
         only JSON and plain text are passed back"
            .into(),
    ))
}

fn withheld_if_card(value: Value, card: &RelayCard) -> Result<Value, Unreadable> {
    if still_holds_card(&value, card) {
        return Err(Unreadable(
            "the upstream's answer holds the card's number in a form the relay cannot mask, \
             so it is withheld"
                .into(),
        ));
    }
    Ok(value)
}

/// The last net: the card's digits, in order, anywhere in the scrubbed
/// answer once everything but digits is dropped (a number split across
/// values, or across more than [`MAX_GAP`] characters). Such an answer is
/// withheld whole.
fn still_holds_card(value: &Value, card: &RelayCard) -> bool {
    let digits: String = value
        .to_string()
        .chars()
        .filter_map(digit)
        .filter_map(|d| char::from_digit(d, 10))
        .collect();
    digits.contains(card.pan.as_str())
}

fn scrub_value(value: &mut Value, key: Option<&str>, card: &RelayCard) {
    match value {
        Value::String(s) => {
            *s = if names_expiry(key) && is_expiry_value(s, card) {
                "**".into()
            } else {
                scrub_text(s, card)
            };
        }
        Value::Number(n) => {
            let text = n.to_string();
            if names_expiry(key) && is_expiry_value(&text, card) {
                *value = Value::String("**".into());
            } else {
                let scrubbed = scrub_text(&text, card);
                if scrubbed != text {
                    *value = Value::String(scrubbed);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, key, card)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut v) in old {
                scrub_value(&mut v, Some(&k), card);
                map.insert(scrub_text(&k, card), v);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn names_expiry(key: Option<&str>) -> bool {
    key.is_some_and(|k| k.to_ascii_lowercase().contains("exp"))
}

fn is_expiry_value(text: &str, card: &RelayCard) -> bool {
    let t = text.trim();
    let Ok(n) = t.parse::<u32>() else {
        return false;
    };
    n == card.expiry_month || n == card.expiry_year || n == card.expiry_year % 100
}

/// `text` with the card (number, CVV, holder, expiry) and any other card
/// number replaced.
pub fn scrub_text(text: &str, card: &RelayCard) -> String {
    let chars: Vec<char> = text.chars().collect();
    let pan: Vec<u32> = card.pan.chars().filter_map(|c| c.to_digit(10)).collect();
    let masked = strongroom_cards::pan::mask(&card.pan);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        match match_digits(&chars, i, &pan) {
            Some(end) => {
                out.push_str(&masked);
                i = end;
            }
            None => {
                if let Some(c) = chars.get(i) {
                    out.push(*c);
                }
                i += 1;
            }
        }
    }
    let mut out = crate::relay::mask_pans(&out);
    if let Some(cvv) = &card.cvv {
        out = crate::relay::replace_digit_run(&out, cvv, "***");
    }
    if let Some(holder) = &card.holder {
        out = mask_holder(&out, holder);
    }
    mask_expiry(&out, card)
}

/// A digit's value, ASCII or full-width.
fn digit(c: char) -> Option<u32> {
    match c {
        '0'..='9' => c.to_digit(10),
        '\u{ff10}'..='\u{ff19}' => Some(c as u32 - 0xff10),
        _ => None,
    }
}

/// If the digits of `pan` start at `from`, separated by at most
/// [`MAX_GAP`] non-alphanumeric characters each, the index after the last.
/// Glued to other digits it still counts: the card is in there.
fn match_digits(chars: &[char], from: usize, pan: &[u32]) -> Option<usize> {
    if pan.is_empty() {
        return None;
    }
    let mut i = from;
    for (n, want) in pan.iter().enumerate() {
        if n > 0 {
            let mut gap = 0;
            while let Some(c) = chars.get(i) {
                if digit(*c).is_some() || c.is_alphanumeric() || gap == MAX_GAP {
                    break;
                }
                gap += 1;
                i += 1;
            }
        }
        if chars.get(i).and_then(|c| digit(*c)) != Some(*want) {
            return None;
        }
        i += 1;
    }
    Some(i)
}

/// `text` with the holder's name, and each of its words of three letters
/// or more, replaced whatever their case.
fn mask_holder(text: &str, holder: &str) -> String {
    let mut words: Vec<&str> = holder
        .split_whitespace()
        .filter(|w| w.chars().count() >= 3)
        .collect();
    let whole = holder.trim();
    if !whole.is_empty() {
        words.insert(0, whole);
    }
    words.iter().fold(text.to_owned(), |acc, w| {
        replace_ignoring_case(&acc, w, "***")
    })
}

fn replace_ignoring_case(text: &str, needle: &str, with: &str) -> String {
    let lower_text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let lower_needle: Vec<char> = needle.chars().flat_map(char::to_lowercase).collect();
    let original: Vec<char> = text.chars().collect();
    // Lower-casing can change lengths (rarely): then compare as is.
    if lower_text.len() != original.len() || lower_needle.is_empty() {
        return text.replace(needle, with);
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < original.len() {
        if lower_text.get(i..i + lower_needle.len()) == Some(lower_needle.as_slice()) {
            out.push_str(with);
            i += lower_needle.len();
        } else {
            if let Some(c) = original.get(i) {
                out.push(*c);
            }
            i += 1;
        }
    }
    out
}

/// `text` with the card's expiry replaced in its usual written forms.
fn mask_expiry(text: &str, card: &RelayCard) -> String {
    let (m, y) = (card.expiry_month, card.expiry_year);
    let mut out = text.to_owned();
    for sep in ["/", "-", ".", " "] {
        for form in [
            format!("{m:02}{sep}{y}"),
            format!("{y}{sep}{m:02}"),
            format!("{m:02}{sep}{:02}", y % 100),
            format!("{m}{sep}{:02}", y % 100),
        ] {
            out = out.replace(&form, "**/**");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use zeroize::Zeroizing;

    fn card(pan: &str) -> RelayCard {
        RelayCard {
            tenant: "acme".into(),
            pan: Zeroizing::new(pan.into()),
            expiry_month: 3,
            expiry_year: 2030,
            holder: Some("Ada Lovelace".into()),
            cvv: Some(Zeroizing::new("737".into())),
        }
    }

    /// The card's digits, in order, found in any one string of `value`
    /// once everything but digits is dropped.
    fn leaks(value: &Value, pan: &str) -> bool {
        match value {
            Value::String(s) => s
                .chars()
                .filter_map(digit)
                .map(|d| char::from_digit(d, 10).unwrap_or('x'))
                .collect::<String>()
                .contains(pan),
            Value::Number(n) => n.to_string().contains(pan),
            Value::Array(items) => items.iter().any(|v| leaks(v, pan)),
            Value::Object(map) => map
                .iter()
                .any(|(k, v)| leaks(&Value::String(k.clone()), pan) || leaks(v, pan)),
            _ => false,
        }
    }

    #[test]
    fn the_groupings_testers_used_come_back_masked() {
        let amex = card("378282246310005");
        for (text, pan) in [("3782 822463 10005", &amex), ("3782-822463-10005", &amex)] {
            let shown = scrub_text(text, pan);
            // Fifteen digits: five shown first, so six stay hidden.
            assert_eq!(shown, "37828******0005", "{text}");
        }
        let visa = card("4111111111111111");
        for text in [
            "4111.1111.1111.1111",
            "4111 1111 1111 1111",
            "4111\u{2009}1111\u{2009}1111\u{2009}1111",
            "4\u{2010}111\u{2010}1111\u{2010}1111\u{2010}1111",
            "４１１１１１１１１１１１１１１１",
        ] {
            assert_eq!(scrub_text(text, &visa), "411111******1111", "{text}");
        }
        // JSON escapes are decoded before scanning.
        let escaped = br#"{"card":"\u0034\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031","n":4111111111111111}"#;
        let shown = redact_answer(escaped, Some("application/json"), &visa).unwrap();
        assert_eq!(
            shown,
            json!({"card": "411111******1111", "n": "411111******1111"})
        );
    }

    #[test]
    fn holder_expiry_and_cvv_are_masked_and_other_text_kept() {
        let c = card("4111111111111111");
        let answer = json!({"name": "ADA LOVELACE", "last": "lovelace", "exp_month": 3, "exp_year": 2030,
            "expiry": "03/30", "long": "03/2030", "cvc_check": "737", "amount": 1999, "status": "ok",
            "4111111111111111": "as a key"});
        let bytes = serde_json::to_vec(&answer).unwrap();
        let shown = redact_answer(&bytes, Some("application/json; charset=utf-8"), &c).unwrap();
        assert_eq!(
            shown,
            json!({"name": "***", "last": "***", "exp_month": "**", "exp_year": "**", "expiry": "**/**",
                "long": "**/**", "cvc_check": "***", "amount": 1999, "status": "ok",
                "411111******1111": "as a key"})
        );
    }

    #[test]
    fn a_number_split_across_values_is_withheld() {
        let c = card("4111111111111111");
        let split = br#"{"pan":["4111","1111","1111","1111"]}"#;
        assert!(redact_answer(split, Some("application/json"), &c).is_err());
        let spread = b"4111\r\n    1111\r\n    1111\r\n    1111";
        assert!(redact_answer(spread, Some("text/plain"), &c).is_err());
    }

    #[test]
    fn answers_the_relay_cannot_decode_are_refused() {
        let c = card("4111111111111111");
        assert!(redact_answer(b"<card>4111</card>", Some("application/xml"), &c).is_err());
        assert!(redact_answer(b"not json", Some("application/json"), &c).is_err());
        assert!(redact_answer(&[0xff, 0xfe], Some("text/plain"), &c).is_err());
        assert_eq!(
            redact_answer(b"card 4111 1111 1111 1111 ok", Some("text/plain"), &c).unwrap(),
            json!("card 411111******1111 ok")
        );
    }

    /// A card number written out with random separators and groupings,
    /// and each digit possibly JSON-escaped.
    fn written(pan: &'static str) -> impl Strategy<Value = String> {
        let seps = prop::sample::select(vec![
            "", " ", "-", ".", "/", "\u{00a0}", "\u{2009}", "\u{2013}", " - ",
        ]);
        (prop::collection::vec((seps, any::<bool>(), any::<bool>()), pan.len())).prop_map(
            move |choices| {
                let mut out = String::new();
                for (i, (c, (sep, split, escape))) in pan.chars().zip(choices).enumerate() {
                    if i > 0 && split {
                        for s in sep.chars() {
                            out.push_str(&format!("\\u{:04x}", s as u32));
                        }
                    }
                    if escape {
                        out.push_str(&format!("\\u{:04x}", c as u32));
                    } else {
                        out.push(c);
                    }
                }
                out
            },
        )
    }

    proptest! {
        #[test]
        fn the_cards_digits_never_come_back(visa in written("4111111111111111"),
                                            amex in written("378282246310005"),
                                            prefix in "[a-z :]{0,8}", suffix in "[a-z :]{0,8}") {
            for (shape, pan) in [(visa, "4111111111111111"), (amex, "378282246310005")] {
                let body = format!(r#"{{"echo":"{prefix}{shape}{suffix}","nested":[{{"{shape}":1}}]}}"#);
                let shown = redact_answer(body.as_bytes(), Some("application/json"), &card(pan)).unwrap();
                prop_assert!(!leaks(&shown, pan), "{} -> {}", body, shown);
            }
        }
    }
}
