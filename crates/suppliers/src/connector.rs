//! What every supplier connector offers, whatever the supplier's API looks
//! like: its catalogue, placing an order for N codes, finding an order by
//! our client reference (after an ambiguous failure), collecting codes of an
//! order that completes later, and the account balance.
//!
//! Codes, PINs and claim URLs (a claim URL is itself a credential) are held
//! in zeroizing strings from the moment they are parsed, and never appear
//! in a `Debug` output or an error.

use zeroize::Zeroizing;

use crate::SupplierError;

/// Amounts in minor units of a currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// Minor units (pence, cents).
    pub amount: u64,
    /// ISO 4217 code.
    pub currency: String,
}

/// The face values a product comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denominations {
    /// These values only.
    Fixed(Vec<u64>),
    /// Any value in this range (minor units, inclusive).
    Range {
        /// Smallest.
        min: u64,
        /// Largest.
        max: u64,
    },
}

/// A product a supplier sells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueItem {
    /// The supplier's product id (Tango Card `utid`, Runa product code).
    pub product: String,
    /// Its name.
    pub name: String,
    /// Currency of its face values.
    pub currency: String,
    /// The face values it comes in.
    pub denominations: Denominations,
}

/// An order to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRequest {
    /// Our client reference ([`crate::reference::client_reference`]): the
    /// same on every retry.
    pub reference: String,
    /// The supplier's product id.
    pub product: String,
    /// Face value of the code. One order buys one code: each code then has
    /// its own reference, and a lost answer puts at most one code in doubt.
    pub face_value: Money,
}

/// One code collected from a supplier.
pub struct CollectedCode {
    /// The code.
    pub code: Zeroizing<String>,
    /// Its PIN, if it has one.
    pub pin: Option<Zeroizing<String>>,
    /// A claim URL, if the supplier gives one: a credential too.
    pub claim_url: Option<Zeroizing<String>>,
    /// When it expires (RFC 3339), if the supplier says.
    pub expires_at: Option<String>,
    /// Its face value.
    pub face_value: Money,
}

impl std::fmt::Debug for CollectedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectedCode")
            .field("code", &"[redacted]")
            .field("pin", &self.pin.as_ref().map(|_| "[redacted]"))
            .field("claim_url", &self.claim_url.as_ref().map(|_| "[redacted]"))
            .field("expires_at", &self.expires_at)
            .field("face_value", &self.face_value)
            .finish()
    }
}

/// Where an order stands.
#[derive(Debug)]
pub enum OrderStatus {
    /// Complete: its codes.
    Complete(Vec<CollectedCode>),
    /// Accepted, codes to be collected later (asynchronous suppliers).
    Pending,
    /// The supplier failed or cancelled it: nothing to collect, nothing
    /// charged.
    Failed {
        /// The supplier's reason.
        why: String,
    },
}

/// An order as the supplier knows it.
#[derive(Debug)]
pub struct PlacedOrder {
    /// The supplier's own id for it.
    pub supplier_order: String,
    /// Our client reference.
    pub reference: String,
    /// What it charged, if it says.
    pub charged: Option<Money>,
    /// Where it stands.
    pub status: OrderStatus,
}

/// A supplier account's balance in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Available to spend.
    pub available: Money,
}

/// A supplier's API, as Strongroom uses it.
#[async_trait::async_trait]
pub trait SupplierConnector: Send + Sync {
    /// The supplier's configured name.
    fn name(&self) -> &str;

    /// Its catalogue.
    async fn catalogue(&self) -> Result<Vec<CatalogueItem>, SupplierError>;

    /// Places `request`. An answer that may or may not mean the order was
    /// placed is [`SupplierError::Ambiguous`]: never retried blindly.
    async fn place_order(&self, request: &PurchaseRequest) -> Result<PlacedOrder, SupplierError>;

    /// The order carrying `request`'s client reference, if the supplier has
    /// one. (Some suppliers are asked by sending the same request again
    /// under the same idempotency key, so the whole request is given.)
    async fn find_order(
        &self,
        request: &PurchaseRequest,
    ) -> Result<Option<PlacedOrder>, SupplierError>;

    /// The codes of an order that was pending.
    async fn collect(&self, supplier_order: &str) -> Result<OrderStatus, SupplierError>;

    /// The account's balances.
    async fn balance(&self) -> Result<Vec<Balance>, SupplierError>;
}

/// Where a connector gets its supplier credential from (an API key, an
/// OAuth client's `ID:SECRET`): asked each time one is needed, so a
/// credential changed in the vault is used from the next call.
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync {
    /// The credential, or a failure that stops the call (a missing
    /// credential is a rejection: retrying cannot help).
    async fn credential(&self) -> Result<Zeroizing<String>, SupplierError>;
}
