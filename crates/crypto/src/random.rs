//! Randomness from the operating system's CSPRNG (through aws-lc-rs), and the
//! random identifiers built from it.

use data_encoding::{BASE32_DNSSEC, BASE32_NOPAD, HEXLOWER};

use crate::CryptoError;

/// Fills `out` with bytes from the OS CSPRNG.
pub fn fill(out: &mut [u8]) -> Result<(), CryptoError> {
    aws_lc_rs::rand::fill(out).map_err(|_| CryptoError::Random)
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

/// An opaque token: `prefix` followed by 128 random bits in lower-case base32
/// (26 characters). 128 bits make guessing one hopeless at any rate an API can
/// serve, and base32 needs no escaping. For identifiers and credentials.
pub fn token(prefix: &str) -> Result<String, CryptoError> {
    let raw = bytes::<16>()?;
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    out.push_str(&BASE32_NOPAD.encode(&raw).to_ascii_lowercase());
    Ok(out)
}

/// Characters after the prefix of a secret's token: 22 bytes in base32hex.
pub const TIMED_TOKEN_CHARS: usize = 36;

/// Random bytes in a secret's token.
const TIMED_TOKEN_RANDOM: usize = 16;

/// A secret's token: `prefix`, then 22 bytes in lower-case base32hex
/// (36 characters): the creation time in milliseconds (6 bytes) followed by
/// 128 random bits.
///
/// The time comes first so that tokens sort by creation and each store's
/// token index grows at one edge: with fully random tokens every insert
/// rewrote a page of its own, and that write amplification, not the
/// cryptography, limited throughput. What the time gives away is when the
/// secret was stored, which its metadata shows its holder anyway; nothing in
/// a token depends on the secret. The 128 random bits are what make a token
/// unguessable, exactly as for a fully random token: even knowing the
/// millisecond, a guess hits one of the tokens made in it with probability
/// n / 2^128. base32hex keeps sort order and needs no escaping in URLs.
pub fn timed_token(prefix: &str, time_ms: u64) -> Result<String, CryptoError> {
    let mut tokens = timed_tokens(prefix, time_ms, 1)?;
    tokens.pop().ok_or(CryptoError::Random)
}

/// `count` tokens as [`timed_token`] makes them, from one call to the CSPRNG
/// (whose per-call cost dominated when a batch asked once per token).
pub fn timed_tokens(prefix: &str, time_ms: u64, count: usize) -> Result<Vec<String>, CryptoError> {
    let mut random = vec![0u8; TIMED_TOKEN_RANDOM * count];
    fill(&mut random)?;
    let mut raw = [0u8; 6 + TIMED_TOKEN_RANDOM];
    let (head, _) = raw.split_at_mut(6);
    head.copy_from_slice(time_ms.to_be_bytes().get(2..).unwrap_or(&[0; 6]));
    let tokens = random
        .chunks_exact(TIMED_TOKEN_RANDOM)
        .map(|bits| {
            if let Some(tail) = raw.get_mut(6..) {
                tail.copy_from_slice(bits);
            }
            let mut out = String::with_capacity(prefix.len() + TIMED_TOKEN_CHARS);
            out.push_str(prefix);
            BASE32_DNSSEC.encode_append(&raw, &mut out);
            out
        })
        .collect();
    Ok(tokens)
}

/// A random identifier of `N` bytes in lower-case hex (request ids, vault ids).
pub fn hex_id<const N: usize>() -> Result<String, CryptoError> {
    Ok(HEXLOWER.encode(&bytes::<N>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_prefixed_and_128_bit() {
        let a = token("p_").unwrap();
        assert!(a.starts_with("p_"));
        assert_eq!(a.len(), 2 + 26);
        assert_ne!(a, token("p_").unwrap());
    }

    #[test]
    fn secret_tokens_carry_the_time_then_128_random_bits() {
        let a = timed_token("sr_vc_", 1_700_000_000_000).unwrap();
        let b = timed_token("sr_vc_", 1_700_000_000_000).unwrap();
        assert!(a.starts_with("sr_vc_"));
        assert_eq!(a.len(), "sr_vc_".len() + TIMED_TOKEN_CHARS);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        let decode = |t: &str| {
            BASE32_DNSSEC
                .decode(&t.as_bytes()["sr_vc_".len()..])
                .unwrap()
        };
        let (da, db) = (decode(&a), decode(&b));
        assert_eq!(da.len(), 6 + 16);
        // The first six bytes are the time, the other sixteen random.
        assert_eq!(da[..6], 1_700_000_000_000u64.to_be_bytes()[2..]);
        assert_eq!(da[..6], db[..6]);
        assert_ne!(da[6..], db[6..]);
        // Random bits look random: over many tokens each of the 128 bit
        // positions is set about half the time.
        let many = timed_tokens("sr_vc_", 1, 2000).unwrap();
        for bit in 0..128 {
            let set = many
                .iter()
                .filter(|t| decode(t)[6 + bit / 8] & (0x80 >> (bit % 8)) != 0)
                .count();
            assert!(
                (800..1200).contains(&set),
                "bit {bit} set {set} times of 2000"
            );
        }
    }

    #[test]
    fn a_batch_of_tokens_is_all_distinct() {
        let batch = timed_tokens("sr_vc_", 42, 1000).unwrap();
        assert_eq!(batch.len(), 1000);
        let distinct: std::collections::HashSet<_> = batch.iter().collect();
        assert_eq!(distinct.len(), 1000);
        assert!(
            batch
                .iter()
                .all(|t| t.len() == 6 + TIMED_TOKEN_CHARS && t.starts_with("sr_vc_"))
        );
    }

    #[test]
    fn tokens_sort_by_creation_time() {
        let mut earlier = Vec::new();
        for ms in [
            1u64,
            2,
            1_000,
            1_700_000_000_000,
            1_700_000_000_001,
            (1 << 48) - 1,
        ] {
            let t = timed_token("sr_gen_", ms).unwrap();
            if let Some(prev) = earlier.last() {
                assert!(prev < &t, "{prev} !< {t}");
            }
            earlier.push(t);
        }
    }
}
