//! Who may do what: built-in roles, permissions and tenant binding.
//!
//! Least privilege by default: no role implies reveal except `fulfilment`,
//! and `admin` (which manages principals) can neither reveal a secret nor read
//! its metadata. A principal acts only in the tenants it is bound to.

use serde::{Deserialize, Serialize};

use crate::VaultError;

/// Tenant binding that means "every tenant". Only for operator roles.
pub const ALL_TENANTS: &str = "*";

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Stores secrets (tokenize).
    Ingest,
    /// Reveals secrets while their window is open.
    Fulfilment,
    /// Re-opens reveal windows, rotates keys, deletes secrets, seals.
    SecurityOfficer,
    /// Manages principals; never reveals.
    Admin,
    /// Reads the audit log.
    Auditor,
    /// Sees secrets masked (the last few characters), never in full:
    /// customer support confirming which code a customer holds.
    Support,
}

/// An action that needs permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Store a secret.
    Tokenize,
    /// See a secret's value.
    Reveal,
    /// See a secret's value masked: only its last few characters.
    RevealMasked,
    /// See a secret's metadata (never its value).
    ReadMetadata,
    /// Delete a secret.
    Delete,
    /// Re-open a closed reveal window.
    Reactivate,
    /// Add a key version.
    RotateKeys,
    /// Create, list and disable principals.
    ManagePrincipals,
    /// Read and verify the audit log.
    ReadAudit,
    /// Seal the vault.
    Seal,
    /// Approve a principal that another person created with powers that
    /// need dual control (reveal, key management).
    ApprovePrincipals,
}

/// How long a person's second factor counts as recent for sensitive
/// actions: after this, `POST /v1/auth/step-up` with a fresh code.
pub const MFA_FRESH_SECS: i64 = 300;

impl Permission {
    /// Whether a person needs a second factor proven within
    /// [`MFA_FRESH_SECS`] for this: seeing secrets (even masked), reading
    /// the audit log, sealing, managing keys and principals. A stolen
    /// session alone then opens none of them for long.
    pub fn needs_recent_mfa(self) -> bool {
        matches!(
            self,
            Permission::Reveal
                | Permission::RevealMasked
                | Permission::ReadAudit
                | Permission::Seal
                | Permission::Reactivate
                | Permission::RotateKeys
                | Permission::ManagePrincipals
                | Permission::ApprovePrincipals
                | Permission::Delete
        )
    }

    /// Name used in messages and audit reasons.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Tokenize => "secret.tokenize",
            Permission::Reveal => "secret.reveal",
            Permission::RevealMasked => "secret.reveal_masked",
            Permission::ReadMetadata => "secret.read_metadata",
            Permission::Delete => "secret.delete",
            Permission::Reactivate => "secret.reactivate",
            Permission::RotateKeys => "key.rotate",
            Permission::ManagePrincipals => "principal.manage",
            Permission::ReadAudit => "audit.read",
            Permission::Seal => "sys.seal",
            Permission::ApprovePrincipals => "principal.approve",
        }
    }
}

impl Role {
    /// Every role, for listings and validation messages.
    pub const ALL: [Role; 6] = [
        Role::Ingest,
        Role::Fulfilment,
        Role::SecurityOfficer,
        Role::Admin,
        Role::Auditor,
        Role::Support,
    ];

    /// The permissions this role grants.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Ingest => &[Tokenize, ReadMetadata],
            Role::Fulfilment => &[Reveal, ReadMetadata],
            Role::SecurityOfficer => &[
                Reactivate,
                RotateKeys,
                Delete,
                ReadMetadata,
                Seal,
                ApprovePrincipals,
            ],
            Role::Admin => &[ManagePrincipals, Seal],
            Role::Auditor => &[ReadAudit, ReadMetadata],
            Role::Support => &[RevealMasked, ReadMetadata],
        }
    }

    /// Whether granting this role needs a second person's approval: roles
    /// that reveal secrets or manage keys. An administrator alone must never be
    /// able to give itself, or a credential it holds, the power to reveal.
    pub fn needs_approval(self) -> bool {
        matches!(self, Role::Fulfilment | Role::SecurityOfficer)
    }

    /// The role's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Fulfilment => "fulfilment",
            Role::SecurityOfficer => "security_officer",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Support => "support",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Result<Self, VaultError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| {
                VaultError::Invalid(format!(
                    "unknown role '{name}'; roles are: ingest, fulfilment, security_officer, admin, auditor, support"
                ))
            })
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Granted roles.
    pub roles: Vec<Role>,
    /// Tenants it may act in; [`ALL_TENANTS`] means all.
    pub tenants: Vec<String>,
    /// A person (logs in with a password and TOTP), not a service.
    pub human: bool,
    /// A person who proved their second factor within
    /// [`MFA_FRESH_SECS`]; always false for services.
    pub mfa_recent: bool,
}

impl Principal {
    /// True if any role grants `permission`.
    pub fn has(&self, permission: Permission) -> bool {
        self.roles
            .iter()
            .any(|r| r.permissions().contains(&permission))
    }

    /// Refuses with [`VaultError::Forbidden`] unless a role grants
    /// `permission`, and with [`VaultError::MfaRequired`] when a person asks
    /// for a sensitive one without a recent second factor.
    pub fn require(&self, permission: Permission) -> Result<(), VaultError> {
        if !self.has(permission) {
            return Err(VaultError::Forbidden(permission.name()));
        }
        if self.human && permission.needs_recent_mfa() && !self.mfa_recent {
            return Err(VaultError::MfaRequired);
        }
        Ok(())
    }

    /// True if the principal may act in `tenant`.
    pub fn may_act_in(&self, tenant: &str) -> bool {
        self.tenants.iter().any(|t| t == tenant || t == ALL_TENANTS)
    }

    /// The tenant a request acts in: the one named (if the principal may act
    /// there), else the principal's only tenant.
    pub fn resolve_tenant(&self, named: Option<&str>) -> Result<String, VaultError> {
        match named {
            Some(t) => {
                validate_tenant(t)?;
                if self.may_act_in(t) {
                    Ok(t.to_owned())
                } else {
                    Err(VaultError::Forbidden("acting in that tenant"))
                }
            }
            None => match self.tenants.as_slice() {
                [only] if only != ALL_TENANTS => Ok(only.clone()),
                _ => Err(VaultError::TenantRequired),
            },
        }
    }
}

/// Tenant names: 1–63 characters of `a-z 0-9 _ -`, starting with a letter or digit.
pub fn validate_tenant(name: &str) -> Result<(), VaultError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(VaultError::Invalid(
            "tenant names are 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(roles: &[Role], tenants: &[&str]) -> Principal {
        Principal {
            id: "p".into(),
            name: "p".into(),
            roles: roles.to_vec(),
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            human: false,
            mfa_recent: false,
        }
    }

    #[test]
    fn only_fulfilment_reveals() {
        for role in Role::ALL {
            assert_eq!(
                who(&[role], &["t"]).has(Permission::Reveal),
                role == Role::Fulfilment,
                "{role:?}"
            );
        }
        assert!(!who(&[Role::Admin], &["*"]).has(Permission::ReadMetadata));
    }

    #[test]
    fn tenant_resolution() {
        let one = who(&[Role::Ingest], &["shop"]);
        assert_eq!(one.resolve_tenant(None).unwrap(), "shop");
        assert!(one.resolve_tenant(Some("other")).is_err());
        let many = who(&[Role::Ingest], &["a", "b"]);
        assert!(matches!(
            many.resolve_tenant(None),
            Err(VaultError::TenantRequired)
        ));
        let all = who(&[Role::Ingest], &["*"]);
        assert_eq!(all.resolve_tenant(Some("x")).unwrap(), "x");
        assert!(all.resolve_tenant(Some("Bad Name")).is_err());
    }
}
