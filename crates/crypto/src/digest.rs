//! SHA-256 of public data: what a request asked for, to tell a retry from a
//! different request. Never for secrets, which are fingerprinted with a
//! keyed MAC instead (see [`crate::mac`]).

use aws_lc_rs::digest;
use data_encoding::HEXLOWER;

/// SHA-256 (lower-case hex) of `parts`, each prefixed by its length so
/// that part boundaries are unambiguous.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    HEXLOWER.encode(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_between_parts_count() {
        assert_ne!(sha256_hex(&[b"ab", b"c"]), sha256_hex(&[b"a", b"bc"]));
        assert_eq!(sha256_hex(&[b"ab", b"c"]), sha256_hex(&[b"ab", b"c"]));
        assert_eq!(sha256_hex(&[]).len(), 64);
    }
}
