//! Signed checkpoints of the chain head.
//!
//! The chain alone proves that no record was changed *by someone without the
//! chain key*. Two things it cannot show: records cut off the end, and a
//! chain rewritten from some record on by someone who holds the key (a
//! compromised node has it in memory) or restored from an older copy. A
//! checkpoint closes both: it is an Ed25519 signature over (vault, sequence
//! number, MAC of that record), taken periodically and kept outside the
//! audit store. Later, if the record with that number is missing or carries
//! another MAC, the log was cut or rewritten at or before it — whatever the
//! chain says about itself. Because the MAC of record `n` commits to every
//! record before it, one checkpoint vouches for the whole prefix.
//!
//! The signature uses a key pair derived from the root key; the public key
//! travels with the checkpoint, and the verifier compares it with the one
//! it derives (or was given) itself, so a checkpoint signed by anyone else
//! is refused.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strongroom_crypto::sign::{self, SigningKey};
use strongroom_store::{AuditStore, StoreError};

/// Purpose label for deriving the checkpoint signing key from the root key.
pub const CHECKPOINT_KEY_PURPOSE: &str = "audit-checkpoint-ed25519-v1";

/// What the signature covers, besides the fields: names the format.
const DOMAIN: &str = "strongroom audit checkpoint v1";

/// A signed statement: in vault `vault_id`, audit record `seq` had MAC `mac`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The vault's id.
    pub vault_id: String,
    /// Sequence number of the chain head signed.
    pub seq: u64,
    /// That record's chain MAC, hex.
    pub mac: String,
    /// When it was signed (RFC 3339).
    pub signed_at: String,
    /// The signer's Ed25519 public key, hex.
    pub public_key: String,
    /// Ed25519 signature, hex.
    pub signature: String,
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.as_bytes())
        .ok()
}

impl Checkpoint {
    /// Signs record `seq` with MAC `mac` of vault `vault_id`.
    pub fn sign(key: &SigningKey, vault_id: &str, seq: u64, mac: &[u8], signed_at: &str) -> Self {
        let mut c = Self {
            vault_id: vault_id.to_owned(),
            seq,
            mac: hex(mac),
            signed_at: signed_at.to_owned(),
            public_key: hex(&key.public_key()),
            signature: String::new(),
        };
        c.signature = hex(&key.sign(&c.message()));
        c
    }

    /// The bytes signed: every field but the signature, one per line, after
    /// a line naming the format.
    fn message(&self) -> Vec<u8> {
        format!(
            "{DOMAIN}\n{}\n{}\n{}\n{}\n{}",
            self.vault_id, self.seq, self.mac, self.signed_at, self.public_key
        )
        .into_bytes()
    }

    /// Checks the signature, and that it was made with `expected_key` (the
    /// vault's public key, as derived from its root key or published).
    pub fn check_signature(&self, expected_key: &[u8]) -> Result<(), CheckpointProblem> {
        // The signed message is line-separated: no field may hold a line
        // break, or one field could pass for two.
        if [&self.vault_id, &self.mac, &self.signed_at, &self.public_key]
            .iter()
            .any(|f| f.contains(['\n', '\r']) || f.is_empty())
        {
            return Err(CheckpointProblem::Malformed);
        }
        let key = unhex(&self.public_key).ok_or(CheckpointProblem::Malformed)?;
        if key != expected_key {
            return Err(CheckpointProblem::WrongKey);
        }
        let sig = unhex(&self.signature).ok_or(CheckpointProblem::Malformed)?;
        sign::verify(&key, &self.message(), &sig).map_err(|_| CheckpointProblem::BadSignature)
    }

    /// Whether the log in `store` still holds record `seq` with the MAC
    /// signed (the signature is checked separately).
    pub async fn check_log(
        &self,
        store: &Arc<dyn AuditStore>,
    ) -> Result<Result<(), CheckpointProblem>, StoreError> {
        let Some(mac) = unhex(&self.mac) else {
            return Ok(Err(CheckpointProblem::Malformed));
        };
        let found = store.read_from(self.seq, 1).await?;
        Ok(match found.first() {
            Some(rec) if rec.seq == self.seq && rec.mac == mac => Ok(()),
            Some(rec) if rec.seq == self.seq => Err(CheckpointProblem::Rewritten(self.seq)),
            _ => Err(CheckpointProblem::Truncated(self.seq)),
        })
    }
}

/// Why a checkpoint does not vouch for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointProblem {
    /// The file is not a checkpoint.
    #[error("the checkpoint is malformed")]
    Malformed,
    /// Signed by a key that is not this vault's.
    #[error("the checkpoint was not signed by this vault's key")]
    WrongKey,
    /// The signature does not match its contents: the file was edited.
    #[error("the checkpoint's signature does not match its contents")]
    BadSignature,
    /// The record signed is gone: the log was cut at or before it.
    #[error("record {0}, which the checkpoint signed, is missing: the log was cut")]
    Truncated(u64),
    /// The record signed has another MAC: the log was rewritten at or before it.
    #[error("record {0} differs from the one the checkpoint signed: the log was rewritten")]
    Rewritten(u64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongroom_crypto::KeyBytes;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_seed(&KeyBytes::new([byte; 32])).unwrap()
    }

    #[test]
    fn any_edit_of_a_checkpoint_breaks_its_signature() {
        let k = key(1);
        let c = Checkpoint::sign(&k, "v1", 41, &[9u8; 32], "2026-11-30T12:00:00.000Z");
        assert_eq!(c.check_signature(&k.public_key()), Ok(()));
        let mut later = c.clone();
        later.seq = 40;
        assert_eq!(
            later.check_signature(&k.public_key()),
            Err(CheckpointProblem::BadSignature)
        );
        let mut other_mac = c.clone();
        other_mac.mac = hex(&[8u8; 32]);
        assert_eq!(
            other_mac.check_signature(&k.public_key()),
            Err(CheckpointProblem::BadSignature)
        );
        // Re-signed by another key: refused for not being the vault's.
        let forged = Checkpoint::sign(&key(2), "v1", 40, &[8u8; 32], "2026-11-30T12:00:00.000Z");
        assert_eq!(
            forged.check_signature(&k.public_key()),
            Err(CheckpointProblem::WrongKey)
        );
    }
}
