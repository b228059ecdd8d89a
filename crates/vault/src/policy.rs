//! Who may do what: named permissions, roles as sets of them, tenant binding.
//!
//! Least privilege by default: of the built-in roles only `fulfilment`
//! reveals in full, and `admin` (which manages principals and roles) can
//! neither reveal a secret nor read its metadata. Administrators may define
//! custom roles; a role that can reveal or manage keys only takes effect once
//! a second person approves it (see [`PermissionSet::needs_approval`]). A
//! principal acts only in the tenants it is bound to.

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
    /// Reveals secrets while their window is open; places the storefront's
    /// orders.
    Fulfilment,
    /// Re-opens reveal windows, rotates keys, deletes secrets, seals,
    /// approves what needs a second person.
    SecurityOfficer,
    /// Manages principals and custom roles; never reveals.
    Admin,
    /// Reads the audit log.
    Auditor,
    /// Sees secrets masked (the last few characters), never in full:
    /// customer support confirming which code a customer holds.
    Support,
    /// Keeps the voucher catalogue (retailers, products, denominations)
    /// and the stock; never sees a code.
    StockManager,
}

/// An action that needs permission. Each has a stable name
/// (`secrets:reveal`, …) used in role definitions, messages and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Define and change custom roles.
    ManageRoles,
    /// Read and verify the audit log.
    ReadAudit,
    /// Seal the vault.
    Seal,
    /// Approve what needs a second person: principals created, and custom
    /// roles defined or changed, with powers that need dual control.
    ApprovePrincipals,
    /// See the voucher catalogue and stock levels.
    ReadCatalog,
    /// Add retailers and products to the catalogue.
    ManageCatalog,
    /// Import files of codes into stock (their codes also need
    /// `secrets:tokenize`).
    ImportVouchers,
    /// Place orders, which hand a voucher's code over: by reveal (which
    /// also needs `secrets:reveal`) or by a reveal link for the customer.
    PlaceOrders,
    /// See orders (never their codes).
    ReadOrders,
    /// Move delivered vouchers' codes to the archive vault (never seeing
    /// them).
    ArchiveVouchers,
    /// Ask for a delivered code's closed reveal window to be re-opened (a
    /// security officer approves).
    RequestReopen,
    /// See the alerts the detectors raised.
    ReadAlerts,
    /// Acknowledge an alert, with a note of what was found.
    AcknowledgeAlerts,
    /// Freeze a principal, and lift a freeze (the detectors' or a person's).
    FreezePrincipals,
    /// See a card number in full (others see BIN and last four). No
    /// built-in role has it: a custom role for a service, under dual
    /// control.
    RevealFullPan,
    /// Send cards to a configured payment processor through the relay,
    /// which puts the real values in (the caller never sees them).
    RelayCards,
    /// Score card payments for fraud risk (no card data involved).
    ScoreRisk,
    /// Buy codes from suppliers (replenish stock, reconcile), within the
    /// daily spend limits; see purchases and suppliers' state.
    BuyFromSuppliers,
    /// Approve a purchase over a spend limit (never one's own request).
    ApproveSpend,
    /// Set the credentials Strongroom uses with a supplier (kept in the
    /// vault; nobody can read them back).
    ManageSupplierCredentials,
}

/// How long a person's second factor counts as recent for sensitive
/// actions: after this, `POST /v1/auth/step-up` with a fresh code.
pub const MFA_FRESH_SECS: i64 = 300;

impl Permission {
    /// Every permission, in a fixed order (the bit order of [`PermissionSet`]).
    pub const ALL: [Permission; 28] = [
        Permission::Tokenize,
        Permission::Reveal,
        Permission::RevealMasked,
        Permission::ReadMetadata,
        Permission::Delete,
        Permission::Reactivate,
        Permission::RotateKeys,
        Permission::ManagePrincipals,
        Permission::ManageRoles,
        Permission::ReadAudit,
        Permission::Seal,
        Permission::ApprovePrincipals,
        Permission::ReadCatalog,
        Permission::ManageCatalog,
        Permission::ImportVouchers,
        Permission::PlaceOrders,
        Permission::ReadOrders,
        Permission::ArchiveVouchers,
        Permission::RequestReopen,
        Permission::ReadAlerts,
        Permission::AcknowledgeAlerts,
        Permission::FreezePrincipals,
        Permission::RevealFullPan,
        Permission::RelayCards,
        Permission::ScoreRisk,
        Permission::BuyFromSuppliers,
        Permission::ApproveSpend,
        Permission::ManageSupplierCredentials,
    ];

    /// Whether a person needs a second factor proven within
    /// [`MFA_FRESH_SECS`] for this: seeing secrets (even masked), reading
    /// the audit log, sealing, managing keys, principals and roles. A stolen
    /// session alone then opens none of them for long.
    pub fn needs_recent_mfa(self) -> bool {
        !matches!(
            self,
            Permission::Tokenize
                | Permission::ReadMetadata
                | Permission::ReadCatalog
                | Permission::ManageCatalog
                | Permission::ImportVouchers
                | Permission::ReadOrders
                | Permission::ArchiveVouchers
                | Permission::ScoreRisk
        )
    }

    /// Whether holding this needs a second person's approval: it reveals
    /// secrets (placing orders does, through reveal links), re-opens their
    /// windows, destroys them, manages keys, approves others or lifts the
    /// freeze of a principal the detectors contained. An administrator alone
    /// must never be able to give itself, or a credential it holds, any of
    /// these.
    pub fn needs_approval(self) -> bool {
        matches!(
            self,
            Permission::Reveal
                | Permission::PlaceOrders
                | Permission::Reactivate
                | Permission::RotateKeys
                | Permission::Delete
                | Permission::ApprovePrincipals
                | Permission::FreezePrincipals
                | Permission::RevealFullPan
                | Permission::RelayCards
                | Permission::ApproveSpend
                | Permission::ManageSupplierCredentials
        )
    }

    /// The stable name, e.g. `secrets:reveal`.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Tokenize => "secrets:tokenize",
            Permission::Reveal => "secrets:reveal",
            Permission::RevealMasked => "secrets:reveal_masked",
            Permission::ReadMetadata => "secrets:read_metadata",
            Permission::Delete => "secrets:delete",
            Permission::Reactivate => "secrets:reactivate",
            Permission::RotateKeys => "keys:rotate",
            Permission::ManagePrincipals => "principals:manage",
            Permission::ManageRoles => "roles:manage",
            Permission::ReadAudit => "audit:read",
            Permission::Seal => "sys:seal",
            Permission::ApprovePrincipals => "principals:approve",
            Permission::ReadCatalog => "catalog:read",
            Permission::ManageCatalog => "catalog:manage",
            Permission::ImportVouchers => "vouchers:import",
            Permission::PlaceOrders => "orders:place",
            Permission::ReadOrders => "orders:read",
            Permission::ArchiveVouchers => "vouchers:archive",
            Permission::RequestReopen => "orders:request_reopen",
            Permission::ReadAlerts => "alerts:read",
            Permission::AcknowledgeAlerts => "alerts:acknowledge",
            Permission::FreezePrincipals => "principals:freeze",
            Permission::RevealFullPan => "cards:reveal_full",
            Permission::RelayCards => "cards:relay",
            Permission::ScoreRisk => "risk:score",
            Permission::BuyFromSuppliers => "suppliers:buy",
            Permission::ApproveSpend => "suppliers:approve_spend",
            Permission::ManageSupplierCredentials => "suppliers:credentials",
        }
    }

    /// Parses a permission name.
    pub fn parse(name: &str) -> Result<Self, VaultError> {
        Permission::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
                VaultError::Invalid(format!(
                    "unknown permission '{name}'; permissions are: {}",
                    names.join(", ")
                ))
            })
    }

    /// The permission's bit in a [`PermissionSet`]: its place in the
    /// declaration, which [`Permission::ALL`] follows (a test checks it).
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of permissions: what a role grants, or what a principal holds
/// through all its roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PermissionSet(u32);

impl PermissionSet {
    /// No permission.
    pub const EMPTY: PermissionSet = PermissionSet(0);

    /// True if `permission` is in the set.
    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// The set with `permission` added.
    pub fn with(self, permission: Permission) -> Self {
        PermissionSet(self.0 | permission.bit())
    }

    /// Both sets together.
    pub fn union(self, other: PermissionSet) -> Self {
        PermissionSet(self.0 | other.0)
    }

    /// True if the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions in the set, in [`Permission::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// The names of the permissions in the set.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|p| p.name().to_owned()).collect()
    }

    /// Parses a list of permission names (duplicates are harmless).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, VaultError> {
        names.iter().try_fold(PermissionSet::EMPTY, |set, name| {
            Ok(set.with(Permission::parse(name.as_ref())?))
        })
    }

    /// Whether granting or defining a role with these permissions needs a
    /// second person's approval ([`Permission::needs_approval`]).
    pub fn needs_approval(self) -> bool {
        self.iter().any(Permission::needs_approval)
    }

    /// The permissions of `self` that `before` lacks.
    pub fn added_to(self, before: PermissionSet) -> Self {
        PermissionSet(self.0 & !before.0)
    }

    /// True if the set manages principals or roles.
    pub fn manages(self) -> bool {
        self.contains(Permission::ManagePrincipals) || self.contains(Permission::ManageRoles)
    }

    /// Whether these permissions mix administration (managing principals or
    /// roles) with any sight of secrets or any power that needs approval:
    /// one holder could then create principals and roles and approve them,
    /// a single person on both sides of dual control, or see the codes of
    /// the vault it administers.
    pub fn defeats_dual_control(self) -> bool {
        self.manages()
            && (self.needs_approval()
                || self.contains(Permission::RevealMasked)
                || self.contains(Permission::ReadMetadata))
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter()
            .fold(PermissionSet::EMPTY, PermissionSet::with)
    }
}

impl Role {
    /// Every role, for listings and validation messages.
    pub const ALL: [Role; 7] = [
        Role::Ingest,
        Role::Fulfilment,
        Role::SecurityOfficer,
        Role::Admin,
        Role::Auditor,
        Role::Support,
        Role::StockManager,
    ];

    /// The permissions this role grants.
    pub fn permissions(self) -> PermissionSet {
        use Permission::*;
        let list: &[Permission] = match self {
            Role::Ingest => &[Tokenize, ReadMetadata, ScoreRisk],
            Role::Fulfilment => &[Reveal, ReadMetadata, PlaceOrders, ReadOrders, ReadCatalog],
            Role::SecurityOfficer => &[
                Reactivate,
                RotateKeys,
                Delete,
                ReadMetadata,
                Seal,
                ApprovePrincipals,
                ReadAlerts,
                AcknowledgeAlerts,
                FreezePrincipals,
                ApproveSpend,
                ManageSupplierCredentials,
            ],
            Role::Admin => &[ManagePrincipals, ManageRoles, Seal],
            Role::Auditor => &[ReadAudit, ReadMetadata, ReadAlerts],
            Role::Support => &[
                RevealMasked,
                ReadMetadata,
                ReadCatalog,
                ReadOrders,
                RequestReopen,
            ],
            Role::StockManager => &[
                ReadCatalog,
                ManageCatalog,
                ImportVouchers,
                Tokenize,
                ReadOrders,
                ArchiveVouchers,
                BuyFromSuppliers,
            ],
        };
        list.iter().copied().collect()
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
            Role::StockManager => "stock_manager",
        }
    }

    /// The built-in role of that name, if any.
    pub fn builtin(name: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Parses a built-in role name.
    pub fn parse(name: &str) -> Result<Self, VaultError> {
        Role::builtin(name).ok_or_else(|| {
            VaultError::Invalid(format!(
                "unknown role '{name}'; built-in roles are: ingest, fulfilment, security_officer, admin, auditor, support, stock_manager"
            ))
        })
    }
}

/// Custom role names: 1-40 characters of `a-z 0-9 _ -`, starting with a
/// letter, and not a built-in role's name.
pub fn validate_role_name(name: &str) -> Result<(), VaultError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(VaultError::Invalid(
            "role names are 1-40 characters of a-z, 0-9, '_' and '-', starting with a letter"
                .into(),
        ));
    }
    if Role::builtin(name).is_some() {
        return Err(VaultError::Invalid(format!(
            "'{name}' is a built-in role and cannot be redefined"
        )));
    }
    Ok(())
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Names of the granted roles, built-in or custom.
    pub roles: Vec<String>,
    /// What the roles grant, resolved when the request arrived: a custom
    /// role's change applies from the next request.
    pub permissions: PermissionSet,
    /// Tenants it may act in; [`ALL_TENANTS`] means all.
    pub tenants: Vec<String>,
    /// A person (logs in with a password and TOTP), not a service.
    pub human: bool,
    /// A person who proved their second factor within
    /// [`MFA_FRESH_SECS`]; always false for services.
    pub mfa_recent: bool,
}

impl Principal {
    /// The identity of one of the server's own jobs (releasing stale
    /// reservations, archiving): acts in every tenant with exactly
    /// `permissions`, and is audited as `system:NAME`.
    pub fn system(name: &str, permissions: PermissionSet) -> Self {
        Principal {
            id: format!("system:{name}"),
            name: name.to_owned(),
            roles: Vec::new(),
            permissions,
            tenants: vec![ALL_TENANTS.to_owned()],
            human: false,
            mfa_recent: false,
        }
    }

    /// Whether this is one of the server's own jobs ([`Principal::system`]);
    /// no stored principal's id has the `system:` prefix.
    pub fn is_system(&self) -> bool {
        self.id.starts_with("system:")
    }

    /// True if any role grants `permission`.
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(permission)
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
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            permissions: roles
                .iter()
                .fold(PermissionSet::EMPTY, |set, r| set.union(r.permissions())),
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
    fn permission_names_round_trip_and_unknown_names_are_refused() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.name()).unwrap(), p);
        }
        for (i, p) in Permission::ALL.into_iter().enumerate() {
            assert_eq!(p.bit(), 1 << i, "{p:?}: ALL must follow the declaration");
        }
        let set = PermissionSet::parse(&["secrets:tokenize", "audit:read"]).unwrap();
        assert_eq!(set.names(), ["secrets:tokenize", "audit:read"]);
        let err = PermissionSet::parse(&["secrets:everything"]).unwrap_err();
        assert!(err.to_string().contains("secrets:reveal_masked"), "{err}");
    }

    #[test]
    fn what_needs_a_second_person() {
        for role in Role::ALL {
            let needs = role.permissions().needs_approval();
            assert_eq!(
                needs,
                matches!(role, Role::Fulfilment | Role::SecurityOfficer),
                "{role:?}"
            );
            assert!(!role.permissions().defeats_dual_control(), "{role:?}");
        }
        let masked_only = PermissionSet::parse(&["secrets:reveal_masked"]).unwrap();
        assert!(!masked_only.needs_approval());
        assert!(!masked_only.contains(Permission::Reveal));
        let admin_and_reveal = Role::Admin.permissions().with(Permission::Reveal);
        assert!(admin_and_reveal.defeats_dual_control());
        // Not even the masked value or the metadata, for an administrator.
        let admin_and_support = Role::Admin.permissions().union(Role::Support.permissions());
        assert!(admin_and_support.defeats_dual_control());
        let added = admin_and_reveal.added_to(Role::Admin.permissions());
        assert_eq!(added.names(), ["secrets:reveal"]);
    }

    #[test]
    fn custom_role_names() {
        assert!(validate_role_name("voucher-desk").is_ok());
        for bad in ["", "Admin", "1abc", "a b", "admin", "fulfilment"] {
            assert!(validate_role_name(bad).is_err(), "{bad}");
        }
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
