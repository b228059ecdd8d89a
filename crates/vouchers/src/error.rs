//! What can go wrong in the voucher business, each with a stable code.

use strongroom_store::StoreError;
use strongroom_vault::VaultError;

/// A voucher-business error.
#[derive(Debug, thiserror::Error)]
pub enum VoucherError {
    /// From the vault: permission, tenant, sealed, audit or store failures.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The request is invalid; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// It already exists (a retailer's name, a product's SKU, in a tenant).
    #[error("{0}")]
    Exists(&'static str),
    /// Nothing of that name for this caller.
    #[error("{0}")]
    NotFound(&'static str),
}

impl VoucherError {
    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            VoucherError::Vault(e) => e.code(),
            VoucherError::Invalid(_) => "request.invalid",
            VoucherError::Exists(_) => "catalog.exists",
            VoucherError::NotFound(_) => "catalog.not_found",
        }
    }
}

impl From<StoreError> for VoucherError {
    fn from(e: StoreError) -> Self {
        VoucherError::Vault(VaultError::from(e))
    }
}
