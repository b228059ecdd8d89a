//! Moving delivered codes from the live vault to the archive vault.
//!
//! The archive is a store of its own, with its own file (or schema) and
//! credentials, and its records are sealed under the tenant's `archive` key,
//! not the key of the code's class: stealing the live vault yields nothing
//! archived, and the archive alone yields nothing without the root key.
//!
//! An archived envelope is stored as the archive key's version (4 bytes,
//! big-endian) followed by the envelope, whose associated data binds tenant,
//! class, token and that version, as for live records. The central record
//! does not change: the token, its fingerprint (so an archived code is still
//! a duplicate), its reveal window and its history stay as they were. A
//! reveal finds no live envelope and reads the archive instead.
//!
//! Order of writes: the archived copy is durable before the live one is
//! removed, so a crash between the two leaves the code in both (and the next
//! run removes the live copy), never in neither.

use strongroom_audit::Outcome;
use strongroom_crypto::SecretBytes;
use strongroom_crypto::aead::context;
use strongroom_store::{Scoped, SecretRecord, SecretState, TenantScope};

use crate::policy::{Permission, Principal};
use crate::seal::Unsealed;
use crate::secrets::record_context;
use crate::{RequestContext, Vault, VaultError};

/// Key scope class of archived records.
pub const ARCHIVE_CLASS: &str = "archive";

/// Length of the key-version prefix of an archived envelope.
const VERSION_LEN: usize = 4;

fn archive_context(tenant: &str, class: &str, token: &str, version: u32) -> Vec<u8> {
    context(
        "archived-record",
        &[
            tenant.as_bytes(),
            class.as_bytes(),
            token.as_bytes(),
            &version.to_be_bytes(),
        ],
    )
}

impl Vault {
    /// Moves a secret of `tenant` (an order's delivered code or PIN) to the
    /// archive vault: sealed again under the tenant's archive key, then
    /// removed from the live vault. Needs `vouchers:archive`; audited. Safe
    /// to repeat: an already archived secret only has its live copy removed
    /// (left by an interrupted run), if any.
    pub async fn archive(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: &str,
        token: &str,
    ) -> Result<(), VaultError> {
        let u = self.unsealed()?;
        const ACTION: &str = "secret.archive";
        let checked = match who.require(Permission::ArchiveVouchers) {
            Err(e) => Err(e),
            Ok(()) => match self
                .secret_row(token, &TenantScope::one(tenant), ctx)
                .await?
            {
                Scoped::Found(rec) if rec.state == SecretState::Active => Ok(rec),
                _ => Err(VaultError::NotFound),
            },
        };
        let rec = match checked {
            Ok(rec) => rec,
            Err(e) => {
                u.audit
                    .append_one(self.event(
                        ctx,
                        Some(who),
                        ACTION,
                        Some(tenant),
                        Some(token),
                        Outcome::Denied,
                        Some(e.code().into()),
                    ))
                    .await?;
                return Err(e);
            }
        };
        if self.stores.archive.get(token).await?.is_none() {
            u.audit
                .append_one(self.event(
                    ctx,
                    Some(who),
                    ACTION,
                    Some(tenant),
                    Some(token),
                    Outcome::Allowed,
                    None,
                ))
                .await?;
            let value = self.open_record(&u, &rec).await?;
            let (version, key) = u.keyring.current(tenant, ARCHIVE_CLASS).await?;
            let envelope = key.seal(
                &archive_context(tenant, &rec.class, token, version),
                value.expose(),
            )?;
            let mut stored = Vec::with_capacity(VERSION_LEN + envelope.len());
            stored.extend_from_slice(&version.to_be_bytes());
            stored.extend_from_slice(&envelope);
            self.stores
                .archive
                .put_many(vec![(token.to_owned(), stored)])
                .await?;
        }
        // The archived copy must open before the live one goes: a damaged
        // or planted record must not leave the code readable nowhere.
        self.open_archived(&u, &rec).await?;
        self.stores.vault.delete(token).await?;
        Ok(())
    }

    /// Opens a record's envelope wherever it is: the live vault, or, once
    /// archived, the archive vault (after every check and its audit record).
    pub(crate) async fn open_record(
        &self,
        u: &Unsealed,
        rec: &SecretRecord,
    ) -> Result<SecretBytes, VaultError> {
        Ok(self.open_record_from(u, rec).await?.0)
    }

    /// As [`Vault::open_record`], and whether it came from the archive (a
    /// delivered code read again, which the detectors watch).
    pub(crate) async fn open_record_from(
        &self,
        u: &Unsealed,
        rec: &SecretRecord,
    ) -> Result<(SecretBytes, bool), VaultError> {
        if let Some(envelope) = self.stores.vault.get(&rec.token).await? {
            let key = u
                .keyring
                .get(&rec.tenant, &rec.class, rec.key_version)
                .await?;
            let ad = record_context(&rec.tenant, &rec.class, &rec.token, rec.key_version);
            return Ok((key.open(&ad, &envelope)?, false));
        }
        Ok((self.open_archived(u, rec).await?, true))
    }

    /// Opens a record's archived envelope.
    async fn open_archived(
        &self,
        u: &Unsealed,
        rec: &SecretRecord,
    ) -> Result<SecretBytes, VaultError> {
        let stored = self
            .stores
            .archive
            .get(&rec.token)
            .await?
            .ok_or(VaultError::Integrity)?;
        let (version, envelope) = stored
            .split_first_chunk::<VERSION_LEN>()
            .ok_or(VaultError::Integrity)?;
        let version = u32::from_be_bytes(*version);
        let key = u.keyring.get(&rec.tenant, ARCHIVE_CLASS, version).await?;
        Ok(key.open(
            &archive_context(&rec.tenant, &rec.class, &rec.token, version),
            envelope,
        )?)
    }
}
