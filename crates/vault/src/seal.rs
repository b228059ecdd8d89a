//! Initialising, sealing and unsealing.
//!
//! The root key exists in clear only in memory, between a successful unseal
//! and the next seal. At rest it exists as Shamir shares held by custodians
//! (or, for development only, a key file). The vault store keeps a *check
//! value*, a fixed string sealed under a key derived from the root key, so a
//! set of shares that rebuilds the wrong key is caught before it is used.

use std::sync::Arc;

use strongroom_audit::{AUDIT_KEY_PURPOSE, AuditLog};
use strongroom_crypto::aead::{EnvelopeKey, context};
use strongroom_crypto::shamir::{self, Share};
use strongroom_crypto::{KeyBytes, kdf, random};
use strongroom_store::{RecordStore, StoreSet};
use zeroize::Zeroizing;

use crate::keyring::Keyring;
use crate::{Clock, VaultError};

const CHECK_PURPOSE: &str = "root-check-v1";
const CHECK_PLAINTEXT: &[u8] = b"strongroom root key check";
/// Purpose label for the key that signs access tokens.
pub const TOKEN_SIGNING_PURPOSE: &str = "access-token-signing-v1";
/// Purpose label for the key that seals people's TOTP seeds.
pub const OPERATOR_SECRET_PURPOSE: &str = "operator-secret-v1";
/// Purpose label for the key that signs customers' reveal links.
pub const LINK_SIGNING_PURPOSE: &str = "reveal-link-v1";
/// Purpose label of the key that seals CVVs kept in a shared store.
pub const CVV_SEAL_PURPOSE: &str = "cvv-shared-seal-v1";
/// Purpose label of the key that names CVVs kept in a shared store.
pub const CVV_NAME_PURPOSE: &str = "cvv-shared-name-v1";

/// Names of the values kept in the vault store's meta table.
mod meta {
    pub const VAULT_ID: &str = "vault_id";
    pub const SEAL_METHOD: &str = "seal_method";
    pub const THRESHOLD: &str = "threshold";
    pub const SHARES: &str = "shares";
    pub const ROOT_CHECK: &str = "root_check";
}

/// How the root key is protected at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealMethod {
    /// Split into `shares` Shamir shares; any `threshold` unseal.
    Shamir {
        /// Shares needed to unseal.
        threshold: u8,
        /// Shares printed.
        shares: u8,
    },
    /// A key file on disk. For development only: whoever reads the file holds every secret.
    DevKeyFile,
}

/// What `initialize` hands back exactly once.
pub struct Initialized {
    /// The new vault's id (not secret).
    pub vault_id: String,
    /// Printable shares, for [`SealMethod::Shamir`].
    pub shares: Vec<Zeroizing<String>>,
    /// The root key: for [`SealMethod::DevKeyFile`] to be written to the key
    /// file, and for bootstrapping the first administrator. Drop it promptly.
    pub root_key: KeyBytes,
}

/// Seal state as reported to anyone (no authentication needed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SealStatus {
    /// Whether the vault has been initialised.
    pub initialized: bool,
    /// Whether the vault is sealed.
    pub sealed: bool,
    /// Shares needed to unseal.
    pub threshold: u8,
    /// Shares printed at initialisation.
    pub shares: u8,
    /// Shares accepted so far in the current unseal attempt.
    pub progress: u8,
    /// `shamir` or `dev-key-file`.
    pub seal_method: String,
    /// The vault's id, which every share names.
    pub vault_id: Option<String>,
}

/// Everything an unsealed vault holds in memory.
pub struct Unsealed {
    /// Data and fingerprint keys.
    pub keyring: Keyring,
    /// The writable audit log.
    pub audit: AuditLog,
    /// Key that signs and verifies access tokens.
    pub token_signing_key: Arc<KeyBytes>,
    /// Key that seals people's TOTP seeds.
    pub operator_key: strongroom_crypto::aead::EnvelopeKey,
    /// Key of the audit chain, for verification.
    pub audit_key: KeyBytes,
    /// Key that signs customers' reveal links.
    pub link_key: strongroom_crypto::mac::MacKey,
    /// Key that signs checkpoints of the audit chain.
    pub checkpoint_key: strongroom_crypto::sign::SigningKey,
    /// Key that seals CVVs before they go to a shared store (Redis).
    pub cvv_key: strongroom_crypto::aead::EnvelopeKey,
    /// Key that names CVVs in a shared store (so its keys reveal no token).
    pub cvv_name_key: strongroom_crypto::mac::MacKey,
    /// Makes and checks the seals of access-deciding central rows.
    pub row_seals: Arc<crate::rows::RowSeals>,
    /// Unseal time, Unix ms: access tokens issued before it are refused, so
    /// sealing in an emergency also retires every outstanding token.
    pub unsealed_at_ms: i64,
}

/// Creates a vault in empty stores. Fails if the stores are already initialised.
pub async fn initialize(stores: &StoreSet, method: SealMethod) -> Result<Initialized, VaultError> {
    if stores.vault.get_meta(meta::VAULT_ID).await?.is_some() {
        return Err(VaultError::AlreadyInitialized);
    }
    let root = KeyBytes::generate()?;
    let vault_id = random::hex_id::<6>()?;
    let check = check_key(&root)?.seal(&check_context(&vault_id), CHECK_PLAINTEXT)?;
    let (method_name, threshold, count) = match method {
        SealMethod::Shamir { threshold, shares } => ("shamir", threshold, shares),
        SealMethod::DevKeyFile => ("dev-key-file", 0, 0),
    };
    let shares = match method {
        SealMethod::Shamir { threshold, shares } => {
            shamir::split(&root, threshold, shares, &vault_id)
                .map_err(|e| VaultError::Invalid(e.to_string()))?
        }
        SealMethod::DevKeyFile => Vec::new(),
    };
    let v = &stores.vault;
    v.put_meta(meta::SEAL_METHOD, method_name.as_bytes().to_vec())
        .await?;
    v.put_meta(meta::THRESHOLD, vec![threshold]).await?;
    v.put_meta(meta::SHARES, vec![count]).await?;
    v.put_meta(meta::ROOT_CHECK, check).await?;
    // A new vault has no row from before row seals: from the start, a row
    // without a seal was written behind its back.
    let marker = crate::rows::RowSeals::derive(&root)?.marker(&vault_id);
    v.put_meta(crate::rows::ROWS_SEALED_META, marker).await?;
    // Written last: its presence is what marks the vault initialised.
    v.put_meta(meta::VAULT_ID, vault_id.as_bytes().to_vec())
        .await?;
    Ok(Initialized {
        vault_id,
        shares,
        root_key: root,
    })
}

fn check_key(root: &KeyBytes) -> Result<EnvelopeKey, VaultError> {
    Ok(EnvelopeKey::new(&kdf::derive(root, CHECK_PURPOSE)?)?)
}

fn check_context(vault_id: &str) -> Vec<u8> {
    context("root-check", &[vault_id.as_bytes()])
}

/// The persistent, non-secret facts about an initialised vault.
#[derive(Debug, Clone)]
pub struct VaultIdentity {
    /// Vault id.
    pub vault_id: String,
    /// `shamir` or `dev-key-file`.
    pub seal_method: String,
    /// Shares needed.
    pub threshold: u8,
    /// Shares printed.
    pub shares: u8,
    root_check: Vec<u8>,
}

impl VaultIdentity {
    /// Reads the identity; `None` if the vault is not initialised.
    pub async fn load(store: &Arc<dyn RecordStore>) -> Result<Option<Self>, VaultError> {
        let Some(id) = store.get_meta(meta::VAULT_ID).await? else {
            return Ok(None);
        };
        let text = |b: Option<Vec<u8>>| b.and_then(|b| String::from_utf8(b).ok());
        let byte = |b: Option<Vec<u8>>| b.and_then(|b| b.first().copied()).unwrap_or(0);
        Ok(Some(Self {
            vault_id: text(Some(id)).ok_or(VaultError::Integrity)?,
            seal_method: text(store.get_meta(meta::SEAL_METHOD).await?)
                .ok_or(VaultError::Integrity)?,
            threshold: byte(store.get_meta(meta::THRESHOLD).await?),
            shares: byte(store.get_meta(meta::SHARES).await?),
            root_check: store
                .get_meta(meta::ROOT_CHECK)
                .await?
                .ok_or(VaultError::Integrity)?,
        }))
    }

    /// Confirms `root` is this vault's root key.
    pub fn check_root(&self, root: &KeyBytes) -> Result<(), VaultError> {
        check_key(root)?
            .open(&check_context(&self.vault_id), &self.root_check)
            .map(|_| ())
            .map_err(|_| VaultError::UnsealFailed)
    }

    /// Checks a share belongs to this vault.
    pub fn parse_share(&self, text: &str) -> Result<Share, VaultError> {
        let share = Share::parse(text).map_err(|e| VaultError::InvalidShare(e.to_string()))?;
        if share.vault_id() != self.vault_id {
            return Err(VaultError::InvalidShare(format!(
                "this share belongs to vault {}, not to this vault ({})",
                share.vault_id(),
                self.vault_id
            )));
        }
        Ok(share)
    }

    /// Rebuilds and checks the root key from shares.
    pub fn combine(&self, shares: &[Share]) -> Result<KeyBytes, VaultError> {
        let root = shamir::combine(shares).map_err(|e| VaultError::InvalidShare(e.to_string()))?;
        self.check_root(&root)?;
        Ok(root)
    }
}

/// Derives the audit chain key (for offline verification).
pub fn audit_key(root: &KeyBytes) -> Result<KeyBytes, VaultError> {
    Ok(kdf::derive(root, AUDIT_KEY_PURPOSE)?)
}

/// Derives the audit checkpoint signing key (for offline verification).
pub fn checkpoint_key(root: &KeyBytes) -> Result<strongroom_crypto::sign::SigningKey, VaultError> {
    let seed = kdf::derive(root, strongroom_audit::checkpoint::CHECKPOINT_KEY_PURPOSE)?;
    Ok(strongroom_crypto::sign::SigningKey::from_seed(&seed)?)
}

/// Builds the in-memory state of an unsealed vault from a checked root key.
pub async fn open_unsealed(
    root: &KeyBytes,
    stores: &StoreSet,
    clock: Arc<dyn Clock>,
) -> Result<Unsealed, VaultError> {
    let keyring = Keyring::load(root, stores.vault.clone(), clock.clone()).await?;
    let audit_key = audit_key(root)?;
    // The head this vault last sealed outside the audit store; appends go
    // on from it, and the keeper seals each newer one.
    let head_key = Arc::new(strongroom_crypto::mac::MacKey::new(&audit_key));
    let sealed_head = strongroom_audit::head::load(&stores.vault, &head_key)
        .await?
        .and_then(Result::ok);
    let keeper =
        strongroom_audit::head::HeadKeeper::spawn(stores.vault.clone(), head_key, sealed_head);
    let audit = AuditLog::new(stores.audit.clone(), &audit_key).with_head(Arc::new(keeper));
    let token_signing_key = Arc::new(kdf::derive(root, TOKEN_SIGNING_PURPOSE)?);
    let operator_key =
        strongroom_crypto::aead::EnvelopeKey::new(&kdf::derive(root, OPERATOR_SECRET_PURPOSE)?)?;
    Ok(Unsealed {
        keyring,
        audit,
        token_signing_key,
        operator_key,
        audit_key,
        link_key: strongroom_crypto::mac::MacKey::new(&kdf::derive(root, LINK_SIGNING_PURPOSE)?),
        checkpoint_key: checkpoint_key(root)?,
        cvv_key: strongroom_crypto::aead::EnvelopeKey::new(&kdf::derive(root, CVV_SEAL_PURPOSE)?)?,
        cvv_name_key: strongroom_crypto::mac::MacKey::new(&kdf::derive(root, CVV_NAME_PURPOSE)?),
        row_seals: Arc::new(crate::rows::RowSeals::derive(root)?),
        unsealed_at_ms: clock.now_ms(),
    })
}
