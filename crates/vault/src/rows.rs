//! Row seals: the central store is untrusted for writes as well as reads.
//!
//! Every row whose content decides access carries a MAC, made here under a
//! key derived from the root key, over the row's table, its id and every
//! field that decides access. A writer to the store (plain SQL on
//! `central.db`, or the central role on PostgreSQL) cannot make one, so a
//! principal inserted by hand, a role widened, a reveal window pushed out or
//! a row copied onto another id fails its check the moment it is read for a
//! decision, and is never acted on.
//!
//! What is bound, per table (the rest may change harmlessly; the reasons are
//! in `docs/architecture.md`, "Row seals"):
//!
//! | table | bound |
//! |---|---|
//! | secrets | token, tenant, class, key version, reveal window, state, creator, metadata |
//! | principals | id, client id, name, kind, roles, tenants, secret hashes, previous secret's end, disabled, pending, creator, creation time |
//! | custom roles | name, permissions, pending permissions, requester, creator, version |
//! | operators | principal, password hash, enrolment hash, sealed TOTP seed, enrolled, locked |
//! | recovery codes | principal, code id, hash |
//!
//! The encoding is the length-prefixed concatenation of [`MacKey::tag`], so
//! no two different rows (or a field moved into its neighbour) give the same
//! input; lists are JSON arrays, numbers decimal, flags `0`/`1`. A version
//! label starts every input, so the encoding can change without ambiguity.

use strongroom_crypto::KeyBytes;
use strongroom_crypto::mac::MacKey;
use strongroom_store::{
    CustomRoleRecord, OperatorRecord, PrincipalRecord, RecoveryCodeRecord, SecretRecord,
    UnsealedRow,
};

/// Key-derivation purpose of the row-seal key.
pub const ROW_SEAL_PURPOSE: &str = "row-seal-v1";

/// Vault-store meta name recording that every row has been sealed once, so
/// a row without a seal found later was written behind the vault's back.
pub const ROWS_SEALED_META: &str = "rows_sealed_v1";

const LABEL: &[u8] = b"strongroom.row.v1";

/// A row of one of the sealed tables, as read or about to be written.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    /// A secret's central row.
    Secret(&'a SecretRecord),
    /// A principal.
    Principal(&'a PrincipalRecord),
    /// A custom role.
    Role(&'a CustomRoleRecord),
    /// A person's login record.
    Operator(&'a OperatorRecord),
    /// A recovery code of the person with this principal id.
    RecoveryCode(&'a str, &'a RecoveryCodeRecord),
}

impl<'a> Row<'a> {
    /// The row a migration found.
    pub fn of(row: &'a UnsealedRow) -> Self {
        match row {
            UnsealedRow::Secret(r) => Row::Secret(r),
            UnsealedRow::Principal(r) => Row::Principal(r),
            UnsealedRow::Role(r) => Row::Role(r),
            UnsealedRow::Operator(r) => Row::Operator(r),
            UnsealedRow::RecoveryCode(id, c) => Row::RecoveryCode(id, c),
        }
    }

    /// `table/id`, for audit records and alerts (never a value).
    pub fn name(&self) -> String {
        match self {
            Row::Secret(r) => format!("secrets/{}", r.token),
            Row::Principal(r) => format!("principals/{}", r.id),
            Row::Role(r) => format!("custom_roles/{}", r.name),
            Row::Operator(r) => format!("operators/{}", r.principal_id),
            // Not the code id: it is the code's first four characters.
            Row::RecoveryCode(id, _) => format!("recovery_codes/{id}"),
        }
    }

    /// The seal the row carries.
    pub fn stored_seal(&self) -> &'a [u8] {
        match self {
            Row::Secret(r) => &r.seal,
            Row::Principal(r) => &r.seal,
            Row::Role(r) => &r.seal,
            Row::Operator(r) => &r.seal,
            Row::RecoveryCode(_, c) => &c.seal,
        }
    }

    /// The tenant a secret's row belongs to, for the audit record.
    pub fn tenant(&self) -> Option<&'a str> {
        match self {
            Row::Secret(r) => Some(&r.tenant),
            _ => None,
        }
    }

    /// The MAC input: the table, then the id, then every bound field.
    fn parts(&self) -> Vec<Vec<u8>> {
        fn flag(b: bool) -> Vec<u8> {
            vec![if b { b'1' } else { b'0' }]
        }
        fn num(n: impl ToString) -> Vec<u8> {
            n.to_string().into_bytes()
        }
        fn text(s: &str) -> Vec<u8> {
            s.as_bytes().to_vec()
        }
        fn list(items: &[String]) -> Vec<u8> {
            serde_json::to_vec(items).unwrap_or_default()
        }
        let mut parts = vec![LABEL.to_vec()];
        match self {
            Row::Secret(r) => parts.extend([
                text("secrets"),
                text(&r.token),
                text(&r.tenant),
                text(&r.class),
                num(r.key_version),
                num(r.window_closes_at),
                text(r.state.as_str()),
                text(&r.created_by),
                // Metadata decides too: a voucher's code is known as stock
                // (re-opened only under four eyes) by its `sku`, and an
                // import recognises its own codes by `import`.
                r.metadata
                    .as_deref()
                    .map_or_else(|| text("-"), |m| [b"+", m.as_bytes()].concat()),
            ]),
            Row::Principal(r) => parts.extend([
                text("principals"),
                text(&r.id),
                text(&r.client_id),
                text(&r.name),
                text(&r.kind),
                list(&r.roles),
                list(&r.tenants),
                text(&r.secret_hash),
                text(&r.previous_secret_hash),
                num(r.previous_valid_until),
                flag(r.disabled),
                flag(r.pending_approval),
                text(&r.created_by),
                num(r.created_at),
            ]),
            Row::Role(r) => parts.extend([
                text("custom_roles"),
                text(&r.name),
                list(&r.permissions),
                r.pending.as_deref().map_or_else(|| text("-"), list),
                text(&r.requested_by),
                text(&r.created_by),
                num(r.version),
            ]),
            Row::Operator(r) => parts.extend([
                text("operators"),
                text(&r.principal_id),
                text(&r.password_hash),
                text(&r.enrolment_hash),
                r.totp_sealed.clone(),
                flag(r.enrolled),
                flag(r.locked),
            ]),
            Row::RecoveryCode(id, c) => parts.extend([
                text("recovery_codes"),
                text(id),
                text(&c.code_id),
                text(&c.hash),
            ]),
        }
        parts
    }
}

/// A stored record whose row carries a seal.
pub trait SealedRow {
    /// The row, for sealing and checking.
    fn row(&self) -> Row<'_>;
    /// Gives the record its new seal.
    fn set_seal(&mut self, seal: Vec<u8>);
}

macro_rules! sealed_row {
    ($($ty:ty => $variant:ident),*) => {$(
        impl SealedRow for $ty {
            fn row(&self) -> Row<'_> {
                Row::$variant(self)
            }
            fn set_seal(&mut self, seal: Vec<u8>) {
                self.seal = seal;
            }
        }
    )*};
}

sealed_row!(
    SecretRecord => Secret,
    PrincipalRecord => Principal,
    CustomRoleRecord => Role,
    OperatorRecord => Operator
);

/// A record that gives itself its seal (inside the vault, which holds the
/// key already).
pub(crate) trait Sealed: Sized {
    /// The record with the seal `seals` make for it.
    fn sealed(self, seals: &RowSeals) -> Self;
}

impl<T: SealedRow> Sealed for T {
    fn sealed(mut self, seals: &RowSeals) -> Self {
        let seal = seals.seal(self.row());
        self.set_seal(seal);
        self
    }
}

impl crate::Vault {
    /// `record` with the seal its row must carry: for every write of a
    /// sealed row (insert, or the new state of a compare-and-swap).
    pub fn sealed<T: SealedRow>(&self, record: T) -> Result<T, crate::VaultError> {
        Ok(record.sealed(&self.unsealed()?.row_seals))
    }

    /// A record read for a decision, its seal checked (see
    /// [`crate::Vault::check_row`]); `None` stays `None`.
    pub async fn checked<T: SealedRow>(
        &self,
        found: Option<T>,
        ctx: &crate::RequestContext,
    ) -> Result<Option<T>, crate::VaultError> {
        if let Some(record) = &found {
            self.check_row(record.row(), ctx).await?;
        }
        Ok(found)
    }

    /// Replaces a principal read as `current` by `changed`, sealed, only if
    /// the row is still `current`. False if it changed meanwhile or is gone.
    pub async fn replace_principal(
        &self,
        current: &PrincipalRecord,
        changed: PrincipalRecord,
    ) -> Result<bool, crate::VaultError> {
        let changed = self.sealed(changed)?;
        Ok(self
            .stores()
            .central
            .replace_principal(changed, &current.seal)
            .await?)
    }

    /// Replaces a login record read as `current` by `changed`, sealed, only
    /// if the row is still `current`. False if it changed meanwhile or is gone.
    pub async fn replace_operator(
        &self,
        current: &OperatorRecord,
        changed: OperatorRecord,
    ) -> Result<bool, crate::VaultError> {
        let changed = self.sealed(changed)?;
        Ok(self
            .stores()
            .central
            .replace_operator(changed, &current.seal)
            .await?)
    }

    /// A recovery code of `principal_id`, sealed for storing.
    pub fn sealed_recovery_code(
        &self,
        principal_id: &str,
        mut code: RecoveryCodeRecord,
    ) -> Result<RecoveryCodeRecord, crate::VaultError> {
        code.seal = self.seal_row(Row::RecoveryCode(principal_id, &code))?;
        Ok(code)
    }
}

/// Makes and checks row seals; held only while the vault is unsealed.
#[derive(Debug)]
pub struct RowSeals {
    key: MacKey,
}

impl RowSeals {
    /// The row-seal key of a root key.
    pub(crate) fn derive(root: &KeyBytes) -> Result<Self, strongroom_crypto::CryptoError> {
        Ok(Self {
            key: MacKey::new(&strongroom_crypto::kdf::derive(root, ROW_SEAL_PURPOSE)?),
        })
    }

    /// The seal `row` must carry.
    pub fn seal(&self, row: Row<'_>) -> Vec<u8> {
        let parts = row.parts();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        self.key.tag(&refs).to_vec()
    }

    /// True if the row carries its own seal (in constant time).
    pub fn verify(&self, row: Row<'_>) -> bool {
        let parts = row.parts();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        self.key.verify(&refs, row.stored_seal()).is_ok()
    }

    /// The value of the [`ROWS_SEALED_META`] marker: a MAC, so the marker
    /// cannot be written by anyone without the root key either.
    pub(crate) fn marker(&self, vault_id: &str) -> Vec<u8> {
        self.key
            .tag(&[LABEL, b"rows-sealed", vault_id.as_bytes()])
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongroom_store::SecretState;

    fn principal() -> PrincipalRecord {
        PrincipalRecord {
            id: "p_1".into(),
            client_id: "c_1".into(),
            name: "svc".into(),
            roles: vec!["ingest".into()],
            tenants: vec!["acme".into()],
            secret_hash: "$argon2id$x".into(),
            created_at: 1,
            disabled: false,
            created_by: "p_0".into(),
            pending_approval: false,
            kind: "service".into(),
            previous_secret_hash: String::new(),
            previous_valid_until: 0,
            seal: Vec::new(),
        }
    }

    #[test]
    fn a_seal_binds_every_access_field_and_the_id() {
        let seals = RowSeals::derive(&KeyBytes::new([7; 32])).unwrap();
        let mut p = principal();
        p.seal = seals.seal(Row::Principal(&p));
        assert!(seals.verify(Row::Principal(&p)));
        let changes: [fn(&mut PrincipalRecord); 9] = [
            |p| p.id = "p_2".into(),
            |p| p.roles = vec!["fulfilment".into()],
            |p| p.roles = vec!["ingest".into(), "fulfilment".into()],
            |p| p.tenants = vec!["*".into()],
            |p| p.secret_hash = "$argon2id$y".into(),
            |p| p.disabled = true,
            |p| p.pending_approval = true,
            |p| p.kind = "user".into(),
            |p| p.created_by = String::new(),
        ];
        for change in changes {
            let mut q = p.clone();
            change(&mut q);
            assert!(!seals.verify(Row::Principal(&q)));
        }
        // Another root key, another seal.
        let other = RowSeals::derive(&KeyBytes::new([8; 32])).unwrap();
        assert!(!other.verify(Row::Principal(&p)));
    }

    #[test]
    fn fields_cannot_slide_into_their_neighbours() {
        let seals = RowSeals::derive(&KeyBytes::new([7; 32])).unwrap();
        let s = SecretRecord {
            token: "sr_vc_a".into(),
            tenant: "ac".into(),
            class: "me".into(),
            key_version: 1,
            fingerprint: None,
            fingerprint_unique: true,
            metadata: None,
            created_at: 0,
            window_closes_at: 10,
            created_by: "p".into(),
            state: SecretState::Active,
            seal: Vec::new(),
        };
        let mut t = s.clone();
        t.tenant = "a".into();
        t.class = "cme".into();
        assert_ne!(seals.seal(Row::Secret(&s)), seals.seal(Row::Secret(&t)));
    }
}
