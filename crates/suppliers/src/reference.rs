//! Client references: how a retry stays the same order.
//!
//! Every order sent to a supplier carries a reference derived only from our
//! own id for the purchase (an order, or a replenishment run and its line),
//! never from the attempt: a retry after a timeout sends the same
//! reference, and the supplier's idempotency (Tango Card `externalRefID`,
//! Runa `X-Idempotency-Key`, Tillo `client_request_id`) answers with the
//! original order instead of buying again.

/// The longest reference any modelled supplier accepts.
pub const MAX_LEN: usize = 64;

/// What a purchase is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A customer's order that found no stock (on-demand purchase).
    Order,
    /// A replenishment run topping stock up.
    Replenishment,
}

/// The client reference of purchase `id`, line `line` (a replenishment buys
/// several batches). Letters, digits, `-` and `_` only; at most [`MAX_LEN`].
/// `None` if `id` holds anything else or is too long: our ids never do.
pub fn client_reference(purpose: Purpose, id: &str, line: u32) -> Option<String> {
    let tag = match purpose {
        Purpose::Order => "o",
        Purpose::Replenishment => "r",
    };
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let reference = format!("sr-{tag}-{id}-{line}");
    (ok && reference.len() <= MAX_LEN).then_some(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_carries_the_same_reference() {
        let first = client_reference(Purpose::Replenishment, "rp-7f3a", 2).unwrap();
        let again = client_reference(Purpose::Replenishment, "rp-7f3a", 2).unwrap();
        assert_eq!(first, again);
        assert_eq!(first, "sr-r-rp-7f3a-2");
        assert_ne!(
            first,
            client_reference(Purpose::Replenishment, "rp-7f3a", 3).unwrap()
        );
        assert_ne!(
            first,
            client_reference(Purpose::Order, "rp-7f3a", 2).unwrap()
        );
    }

    #[test]
    fn odd_or_long_ids_make_no_reference() {
        assert!(client_reference(Purpose::Order, "a b", 0).is_none());
        assert!(client_reference(Purpose::Order, "", 0).is_none());
        assert!(client_reference(Purpose::Order, &"x".repeat(60), 0).is_none());
    }
}
