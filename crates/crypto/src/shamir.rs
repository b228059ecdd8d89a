//! Splitting the root key into k-of-n Shamir shares (GF(256), via `vsss-rs`)
//! and the printable share format custodians keep.
//!
//! A printed share reads `srs1-<vault id>-<index>-<payload>-<check>`:
//! * `vault id` ties the share to one vault, so a share from another
//!   installation is refused by name rather than silently producing a wrong key;
//! * `index` is the share's x-coordinate, shown so custodians can tell shares apart;
//! * `payload` is the share in lower-case base32;
//! * `check` is 4 bytes of SHA-256 over the rest, which catches typing errors.
//!
//! The check is not a security control (anyone can recompute it): a share set
//! that combines to the wrong key is caught by the vault's key check value.

use aws_lc_rs::digest::{SHA256, digest};
use data_encoding::{BASE32_NOPAD, HEXLOWER};
use vsss_rs::Gf256;
use zeroize::Zeroizing;

use crate::{CryptoError, KEY_LEN, KeyBytes};

const PREFIX: &str = "srs1";

/// One parsed share. Its payload is secret and zeroed on drop.
pub struct Share {
    vault_id: String,
    index: u8,
    payload: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("vault_id", &self.vault_id)
            .field("index", &self.index)
            .field("payload", &"[redacted]")
            .finish()
    }
}

impl Share {
    /// The vault this share belongs to.
    pub fn vault_id(&self) -> &str {
        &self.vault_id
    }

    /// The share's index (1-based x-coordinate).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Parses a printed share, checking its format and checksum.
    /// Surrounding white space is ignored.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let parts: Vec<&str> = text.split('-').collect();
        let [prefix, vault_id, index, payload, check] = parts.as_slice() else {
            return Err(CryptoError::InvalidShare(
                "expected srs1-<vault>-<index>-<payload>-<check>",
            ));
        };
        if *prefix != PREFIX {
            return Err(CryptoError::InvalidShare(
                "unknown share format (expected srs1-…)",
            ));
        }
        let expected = checksum(vault_id, index, payload);
        if !check.eq_ignore_ascii_case(&expected) {
            return Err(CryptoError::InvalidShare(
                "checksum mismatch: the share was mistyped or truncated",
            ));
        }
        let index: u8 = index
            .parse()
            .map_err(|_| CryptoError::InvalidShare("index is not a number"))?;
        let payload = Zeroizing::new(
            BASE32_NOPAD
                .decode(Zeroizing::new(payload.to_ascii_uppercase()).as_bytes())
                .map_err(|_| CryptoError::InvalidShare("payload is not base32"))?,
        );
        if payload.len() != KEY_LEN + 1 || payload.first() != Some(&index) || index == 0 {
            return Err(CryptoError::InvalidShare(
                "payload has the wrong length or index",
            ));
        }
        Ok(Self {
            vault_id: (*vault_id).to_owned(),
            index,
            payload,
        })
    }
}

fn checksum(vault_id: &str, index: &str, payload: &str) -> String {
    let input = format!(
        "{PREFIX}-{vault_id}-{index}-{}",
        payload.to_ascii_lowercase()
    );
    let d = digest(&SHA256, input.as_bytes());
    HEXLOWER.encode(d.as_ref().get(..4).unwrap_or_default())
}

/// Splits `root` into `shares` printable shares, any `threshold` of which
/// rebuild it. Requires `2 <= threshold <= shares <= 255`: a single share
/// that is the whole key is not a split.
pub fn split(
    root: &KeyBytes,
    threshold: u8,
    shares: u8,
    vault_id: &str,
) -> Result<Vec<Zeroizing<String>>, CryptoError> {
    if threshold < 2 || threshold > shares {
        return Err(CryptoError::Sharing("need 2 <= threshold <= shares <= 255"));
    }
    if vault_id.is_empty() || vault_id.contains('-') {
        return Err(CryptoError::Sharing(
            "vault id must be non-empty and contain no '-'",
        ));
    }
    // `vsss-rs` takes a rand_core RNG; `SysRng` reads the OS CSPRNG (getrandom),
    // the same source aws-lc-rs uses.
    let rng = rand::rngs::SysRng;
    let raw = Gf256::split_bytes(
        usize::from(threshold),
        usize::from(shares),
        root.expose(),
        rand::rand_core::UnwrapErr(rng),
    )
    .map_err(|_| CryptoError::Sharing("split failed"))?;
    raw.into_iter()
        .map(|bytes| {
            let bytes = Zeroizing::new(bytes);
            let index = *bytes.first().ok_or(CryptoError::Sharing("empty share"))?;
            let index = index.to_string();
            let payload = Zeroizing::new(BASE32_NOPAD.encode(&bytes).to_ascii_lowercase());
            let check = checksum(vault_id, &index, &payload);
            Ok(Zeroizing::new(format!(
                "{PREFIX}-{vault_id}-{index}-{}-{check}",
                payload.as_str()
            )))
        })
        .collect()
}

/// Rebuilds the root key from shares of one vault. Fewer shares than the
/// threshold, or shares of different splits, give a *wrong* key rather than an
/// error; the caller must check the result against a stored check value.
pub fn combine(shares: &[Share]) -> Result<KeyBytes, CryptoError> {
    let Some(first) = shares.first() else {
        return Err(CryptoError::Sharing("no shares"));
    };
    if shares.iter().any(|s| s.vault_id != first.vault_id) {
        return Err(CryptoError::InvalidShare(
            "shares belong to different vaults",
        ));
    }
    let mut indices: Vec<u8> = shares.iter().map(|s| s.index).collect();
    indices.sort_unstable();
    indices.dedup();
    if indices.len() != shares.len() {
        return Err(CryptoError::InvalidShare("the same share was given twice"));
    }
    let raw: Vec<Vec<u8>> = shares.iter().map(|s| s.payload.to_vec()).collect();
    let raw = Zeroizing::new(raw);
    let secret = Zeroizing::new(
        Gf256::combine_bytes(raw.as_slice()).map_err(|_| CryptoError::Sharing("combine failed"))?,
    );
    KeyBytes::from_slice(&secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(shares: &[Zeroizing<String>]) -> Vec<Share> {
        shares.iter().map(|s| Share::parse(s).unwrap()).collect()
    }

    #[test]
    fn any_threshold_subset_rebuilds_the_key() {
        let root = KeyBytes::generate().unwrap();
        let shares = split(&root, 3, 5, "abcd1234").unwrap();
        assert_eq!(shares.len(), 5);
        let parsed = parse_all(&shares);
        for combo in [[0, 1, 2], [0, 2, 4], [4, 3, 1]] {
            let subset: Vec<Share> = combo
                .iter()
                .map(|&i| Share::parse(&shares[i]).unwrap())
                .collect();
            assert_eq!(combine(&subset).unwrap().expose(), root.expose());
        }
        assert_eq!(parsed[2].index(), 3);
        assert_eq!(parsed[2].vault_id(), "abcd1234");
    }

    #[test]
    fn too_few_shares_do_not_give_the_key() {
        let root = KeyBytes::generate().unwrap();
        let shares = split(&root, 3, 5, "v1").unwrap();
        let two = parse_all(&shares[..2]);
        assert_ne!(
            combine(&two).map(|k| *k.expose()).ok(),
            Some(*root.expose())
        );
    }

    #[test]
    fn typos_wrong_format_and_mixed_vaults_are_refused() {
        let root = KeyBytes::generate().unwrap();
        let shares = split(&root, 2, 3, "v1").unwrap();
        let mut typo = shares[0].to_string();
        let pos = typo.len() - 12;
        let c = if &typo[pos..pos + 1] == "a" { "b" } else { "a" };
        typo.replace_range(pos..pos + 1, c);
        assert!(matches!(
            Share::parse(&typo),
            Err(CryptoError::InvalidShare(_))
        ));
        assert!(Share::parse("hello").is_err());
        assert!(Share::parse("").is_err());
        let other = split(&root, 2, 3, "v2").unwrap();
        let mixed = vec![
            Share::parse(&shares[0]).unwrap(),
            Share::parse(&other[1]).unwrap(),
        ];
        assert!(combine(&mixed).is_err());
        let dup = vec![
            Share::parse(&shares[0]).unwrap(),
            Share::parse(&shares[0]).unwrap(),
        ];
        assert!(combine(&dup).is_err());
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let root = KeyBytes::generate().unwrap();
        assert!(split(&root, 1, 3, "v").is_err());
        assert!(split(&root, 4, 3, "v").is_err());
        assert!(split(&root, 2, 3, "a-b").is_err());
    }

    #[test]
    fn debug_hides_the_payload() {
        let root = KeyBytes::generate().unwrap();
        let shares = split(&root, 2, 2, "v").unwrap();
        let s = Share::parse(&shares[0]).unwrap();
        let payload = shares[0].split('-').nth(3).unwrap().to_string();
        assert!(!format!("{s:?}").contains(&payload));
    }
}
