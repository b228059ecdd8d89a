//! Data classes: what kind of secret a record holds.
//!
//! Each class has its own key scope per tenant and its own token prefix.
//! Card data (`pan`, `cvv`) gets format-preserving and ephemeral tokens of its
//! own and is not accepted by the generic secrets path.

use crate::VaultError;

/// A class of secret the secrets API stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataClass {
    /// A digital gift-voucher code: bearer value.
    VoucherCode,
    /// Any other secret (API keys, PINs kept apart from their codes, …).
    Generic,
    /// A supplier's API credential: stored and read only through the
    /// vault's supplier-credential calls, never revealed to a caller.
    SupplierCredential,
}

impl DataClass {
    /// The class's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::VoucherCode => "voucher_code",
            DataClass::Generic => "generic",
            DataClass::SupplierCredential => "supplier_credential",
        }
    }

    /// The readable token prefix.
    pub fn token_prefix(self) -> &'static str {
        match self {
            DataClass::VoucherCode => "sr_vc_",
            DataClass::Generic => "sr_gen_",
            DataClass::SupplierCredential => "sr_sup_",
        }
    }

    /// A class whose keys may be managed (rotated): every class the
    /// secrets API takes, and supplier credentials.
    pub fn for_keys(name: &str) -> Result<Self, VaultError> {
        match name {
            "supplier_credential" => Ok(DataClass::SupplierCredential),
            _ => Self::parse(name),
        }
    }

    /// Parses a class name from a request.
    pub fn parse(name: &str) -> Result<Self, VaultError> {
        match name {
            "voucher_code" => Ok(DataClass::VoucherCode),
            "generic" => Ok(DataClass::Generic),
            "supplier_credential" => Err(VaultError::Invalid(
                "supplier credentials are set with PUT /v1/suppliers/{name}/credential and read only by the server".into(),
            )),
            "pan" | "cvv" => Err(VaultError::Invalid(format!(
                "class '{name}' is card data and is not accepted by the secrets API"
            ))),
            _ => Err(VaultError::Invalid(format!(
                "unknown class '{name}'; classes are: voucher_code, generic"
            ))),
        }
    }
}
