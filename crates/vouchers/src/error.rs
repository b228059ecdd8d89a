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
    /// No voucher of that product and face value can be allocated.
    #[error("no voucher of that product and face value is in stock")]
    OutOfStock,
    /// The client used this order reference before, for a different request.
    #[error(
        "this external_ref was used before for a different order; use a new reference, or repeat the original request exactly"
    )]
    IdempotencyConflict,
    /// No order of that id for this caller.
    #[error("no such order")]
    OrderNotFound,
    /// The order's state does not allow this; the message says why.
    #[error("{0}")]
    OrderState(String),
    /// Four eyes: whoever asked for a re-opening cannot approve it.
    #[error("a re-opening must be approved by someone other than who asked for it")]
    SamePerson,
    /// No supplier of that name is configured.
    #[error("no supplier of that name is configured")]
    SupplierNotFound,
    /// No purchase of that id for this caller.
    #[error("no such purchase")]
    PurchaseNotFound,
    /// The purchase's state does not allow this; the message says why.
    #[error("{0}")]
    PurchaseState(String),
    /// Four eyes: whoever asked for a purchase over a limit cannot approve it.
    #[error(
        "a purchase over a spend limit must be approved by someone other than who asked for it"
    )]
    SpendSamePerson,
    /// The voucher was redelivered as often as a day allows.
    #[error("this voucher has been redelivered as often as allowed in 24 hours; try again later")]
    RedeliveryLimit,
}

impl VoucherError {
    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            VoucherError::Vault(e) => e.code(),
            VoucherError::Invalid(_) => "request.invalid",
            VoucherError::Exists(_) => "catalog.exists",
            VoucherError::NotFound(_) => "catalog.not_found",
            VoucherError::OutOfStock => "order.out_of_stock",
            VoucherError::IdempotencyConflict => "order.idempotency_conflict",
            VoucherError::OrderNotFound => "order.not_found",
            VoucherError::OrderState(_) => "order.state",
            VoucherError::SamePerson => "order.same_person",
            VoucherError::RedeliveryLimit => "order.redelivery_limit",
            VoucherError::SupplierNotFound => "supplier.not_found",
            VoucherError::PurchaseNotFound => "purchase.not_found",
            VoucherError::PurchaseState(_) => "purchase.state",
            VoucherError::SpendSamePerson => "purchase.same_person",
        }
    }
}

impl From<StoreError> for VoucherError {
    fn from(e: StoreError) -> Self {
        VoucherError::Vault(VaultError::from(e))
    }
}
