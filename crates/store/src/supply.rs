//! The storage port of buying from suppliers: purchases (what was asked
//! for, by whom, within which spend limit), their lines (one supplier order
//! each, under its own client reference), and which vault token holds each
//! supplier's credential.
//!
//! A purchase is reserved against its supplier's daily spend limit in the
//! same transaction that records it, so two replenishments running at once
//! on two nodes can never both spend the last of a day's limit.

use async_trait::async_trait;

use crate::StoreResult;

/// States of a purchase.
pub mod purchase_state {
    /// Over a spend limit: waits for a security officer.
    pub const AWAITING_APPROVAL: &str = "awaiting_approval";
    /// A security officer approved it over the limit; not bought yet.
    pub const APPROVED: &str = "approved";
    /// Being bought.
    pub const BUYING: &str = "buying";
    /// Every code received.
    pub const COMPLETE: &str = "complete";
    /// Some codes received, some lines failed or are unsettled.
    pub const PARTIAL: &str = "partial";
    /// Nothing bought.
    pub const FAILED: &str = "failed";
    /// Some line's outcome could not be settled (the supplier could not be
    /// asked whether it took the order): counted at full cost until
    /// reconciliation settles it.
    pub const UNSETTLED: &str = "unsettled";
    /// A security officer declined it.
    pub const DECLINED: &str = "declined";
    /// States whose whole cost counts against the day's spend: the supplier
    /// has not (or not surely) said what it charged.
    pub const COMMITTED: [&str; 3] = [APPROVED, BUYING, UNSETTLED];
    /// States of a purchase still open: its codes are on order.
    pub const OPEN: [&str; 4] = [AWAITING_APPROVAL, APPROVED, BUYING, UNSETTLED];
}

/// One purchase from a supplier: `quantity` codes of one product and face
/// value, bought as that many supplier orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRecord {
    /// `pu_…`, time-ordered. Also the `import_id` of the vouchers it stocked.
    pub id: String,
    /// Tenant whose stock it fills.
    pub tenant: String,
    /// The supplier's configured name.
    pub supplier: String,
    /// The product's id.
    pub product_id: String,
    /// Face value of each code, minor units.
    pub face_value: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Codes asked for.
    pub quantity: i64,
    /// What it may cost (face value × quantity): what the spend limit
    /// counts until the supplier says what it charged.
    pub cost: i64,
    /// `replenishment` or `order`.
    pub purpose: String,
    /// See [`purchase_state`].
    pub state: String,
    /// UTC day it counts against (`YYYY-MM-DD`).
    pub day: String,
    /// Who asked (a principal id, or `system:replenish`).
    pub requested_by: String,
    /// The security officer who approved it over the limit, or empty.
    pub approved_by: String,
    /// What the supplier charged so far, minor units.
    pub charged: i64,
    /// Codes received and stocked.
    pub codes_received: i64,
    /// The last thing worth knowing (a refusal, a supplier's error).
    pub note: String,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Last changed, Unix ms.
    pub updated_at: i64,
}

/// One supplier order of a purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseLineRecord {
    /// The purchase.
    pub purchase_id: String,
    /// Line number, from 1.
    pub line: i64,
    /// Our client reference, unique: the supplier's idempotency key.
    pub reference: String,
    /// The supplier's order id, once known.
    pub supplier_order: String,
    /// `placing`, `pending` (codes to collect later), `complete`, `failed`
    /// or `unknown` (the outcome could not be settled; reconciliation lists
    /// it).
    pub state: String,
    /// What the supplier charged for it, minor units.
    pub charged: i64,
    /// Codes received for it.
    pub codes: i64,
    /// The supplier's error, if any.
    pub note: String,
    /// Last changed, Unix ms.
    pub updated_at: i64,
}

/// What [`SupplyStore::reserve_purchase`] does besides the spend limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveRule {
    /// Replenishment: nothing is recorded while another replenishment of
    /// the same tenant, product and face value is open (two nodes topping
    /// up the same shortfall buy it once); over the limit, the purchase is
    /// recorded to wait for approval.
    Replenishment,
    /// A code for one order: over the limit nothing is recorded (an order
    /// cannot wait for a person, and retries must not fill the approvers'
    /// queue).
    OnDemand,
}

/// How [`SupplyStore::reserve_purchase`] recorded a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Within the limit, in the state given.
    Reserved,
    /// Over the limit: recorded as awaiting approval (replenishment) or not
    /// at all (on demand).
    OverLimit,
    /// Not recorded: a replenishment of the same product and face value is
    /// still open.
    AlreadyOnOrder,
}

/// Which purchases to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseFilter {
    /// Only these tenants'.
    pub scope: crate::TenantScope,
    /// Only in this state.
    pub state: Option<String>,
    /// Only of this UTC day.
    pub day: Option<String>,
    /// Only this supplier's.
    pub supplier: Option<String>,
}

/// Which vault token holds a supplier's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplierCredentialRecord {
    /// The supplier's configured name.
    pub supplier: String,
    /// The vault token of the credential.
    pub token: String,
    /// Who set it.
    pub set_by: String,
    /// When, Unix ms.
    pub set_at: i64,
}

/// Purchases, their lines and supplier credentials.
#[async_trait]
pub trait SupplyStore: Send + Sync {
    /// Records `purchase`, within `daily_limit` of its supplier and currency
    /// when one is given: if what the supplier's purchases of that day
    /// already committed plus `purchase.cost` would exceed it, the purchase
    /// is treated as `rule` says. Atomic against every other purchase of
    /// the same supplier and day, and of the same product and face value.
    async fn reserve_purchase(
        &self,
        purchase: PurchaseRecord,
        daily_limit: Option<i64>,
        rule: ReserveRule,
    ) -> StoreResult<Reservation>;

    /// What `supplier`'s purchases of `day` in `currency` have committed:
    /// the cost of those being bought or unsettled; for the others, what
    /// they were charged or the face value of the codes received, whichever
    /// is more (a supplier that reports no charge still spends).
    async fn spent(&self, supplier: &str, day: &str, currency: &str) -> StoreResult<i64>;

    /// Moves a purchase from `from` to `to` with `approved_by` set (when not
    /// empty); false if it was not in `from`.
    async fn transition_purchase(
        &self,
        id: &str,
        from: &str,
        to: &str,
        approved_by: &str,
        at: i64,
    ) -> StoreResult<bool>;

    /// Writes a purchase's outcome (state, charged, codes received, note)
    /// if it is still in state `from`; false if another writer moved it.
    async fn settle_purchase(&self, purchase: &PurchaseRecord, from: &str) -> StoreResult<bool>;

    /// One purchase.
    async fn purchase(&self, id: &str) -> StoreResult<Option<PurchaseRecord>>;

    /// Up to `limit` purchases matching `filter`, newest first.
    async fn list_purchases(
        &self,
        filter: &PurchaseFilter,
        limit: usize,
    ) -> StoreResult<Vec<PurchaseRecord>>;

    /// Inserts or replaces a line.
    async fn put_purchase_line(&self, line: PurchaseLineRecord) -> StoreResult<()>;

    /// The lines of a purchase, by line number.
    async fn purchase_lines(&self, purchase_id: &str) -> StoreResult<Vec<PurchaseLineRecord>>;

    /// Vouchers in the store whose source (`import_id`) is `source`, in any
    /// state.
    async fn vouchers_from(&self, source: &str) -> StoreResult<i64>;

    /// Records which token holds a supplier's credential; returns the token
    /// it replaces, if any.
    async fn set_supplier_credential(
        &self,
        record: SupplierCredentialRecord,
    ) -> StoreResult<Option<String>>;

    /// Which token holds `supplier`'s credential.
    async fn supplier_credential(
        &self,
        supplier: &str,
    ) -> StoreResult<Option<SupplierCredentialRecord>>;
}
