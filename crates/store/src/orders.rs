//! The storage port of orders and of each voucher's life after import.
//!
//! Allocation is the central store's job because only the database can make
//! it atomic across nodes: one transaction records the order (unless the
//! same client's reference exists) and takes the voucher, so two orders can
//! never hold one voucher and a retried order finds its first voucher.

use async_trait::async_trait;

use crate::{StoreResult, TenantScope};

/// An order of the storefront, and the voucher it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    /// Stable id (`or_…`), time-ordered.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// The principal that placed it: with `external_ref`, the idempotency key.
    pub client_id: String,
    /// The caller's own reference, unique per client.
    pub external_ref: String,
    /// SHA-256 (hex) of what was asked, to tell a retry from a new request.
    pub request_hash: String,
    /// The product's id.
    pub product_id: String,
    /// The product's SKU, as asked.
    pub sku: String,
    /// Face value in minor units.
    pub face_value: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The storefront's reference of its customer (not a secret).
    pub customer_ref: String,
    /// `code` or `link`.
    pub delivery: String,
    /// `reserved`, `delivered` or `cancelled`.
    pub state: String,
    /// The voucher allocated.
    pub voucher_id: String,
    /// The vault token of the voucher's code.
    pub token: String,
    /// The vault token of its PIN, if any.
    pub pin_token: Option<String>,
    /// When the voucher's code expires, Unix ms.
    pub expires_at: Option<i64>,
    /// Placed, Unix ms.
    pub created_at: i64,
    /// A reservation not delivered by then is released, Unix ms.
    pub reserved_until: i64,
    /// Delivered, Unix ms (0: not yet).
    pub delivered_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// Views left of the reveal link (link delivery).
    pub link_views_left: i64,
    /// When the reveal link stops working, Unix ms (0: no link).
    pub link_expires_at: i64,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<String>,
    /// Who asked for the code's closed window to be re-opened (empty: no
    /// request waiting).
    pub reopen_requested_by: String,
    /// Why.
    pub reopen_reason: String,
}

/// What placing an order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceOutcome {
    /// A voucher was reserved for the new order.
    Placed {
        /// The order, in state `reserved`.
        order: OrderRecord,
        /// Allocatable vouchers of the product and face value left, counted
        /// up to the `count_below` asked for (so the count stays cheap).
        available_after: i64,
    },
    /// The client placed an order with that reference before: this one.
    Existing(OrderRecord),
    /// No voucher could be allocated; nothing was recorded.
    OutOfStock,
}

/// What the audit log knows a voucher by: its id, the tokens of its code
/// and PIN, and the import that brought it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherIdentity {
    /// The voucher.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Token of its code.
    pub token: String,
    /// Token of its PIN, if it has one.
    pub pin_token: Option<String>,
    /// The import that stocked it.
    pub import_id: String,
    /// State now.
    pub state: String,
    /// When it was stocked, Unix ms.
    pub created_at: i64,
}

/// One change of a voucher's state (or a redelivery): who made it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherEvent {
    /// `transition`, or `redelivery` (the state stays).
    pub kind: String,
    /// The voucher.
    pub voucher_id: String,
    /// Tenant.
    pub tenant: String,
    /// When, Unix ms.
    pub at: i64,
    /// Principal id (or `system:…` for the server's own jobs).
    pub actor: String,
    /// State before.
    pub from_state: String,
    /// State after.
    pub to_state: String,
    /// Why, for a person.
    pub reason: String,
    /// The order concerned, if any.
    pub order_id: Option<String>,
}

/// Which orders a listing returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only in this state.
    pub state: Option<String>,
    /// Only for this customer.
    pub customer_ref: Option<String>,
    /// Only of this product (by id).
    pub product_id: Option<String>,
    /// Only with this external reference.
    pub external_ref: Option<String>,
    /// Only placed at or after, Unix ms.
    pub since: Option<i64>,
    /// Only placed before, Unix ms.
    pub until: Option<i64>,
    /// Only older than this order id (the previous page's last).
    pub before_id: Option<String>,
    /// Most orders returned.
    pub limit: u32,
}

/// The outcome of opening a reveal link once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkView {
    /// Counted; this many views are left.
    Counted(i64),
    /// Every view has been used.
    UsedUp,
    /// Past its expiry.
    Expired,
    /// A newer link was issued for the order (a redelivery): this one no
    /// longer works.
    Replaced,
    /// No delivered link order of that id.
    Missing,
}

/// Orders and voucher transitions, kept in the central store.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// In one transaction: if `order.client_id` already has an order with
    /// `order.external_ref`, returns it. Otherwise takes the available
    /// voucher of `order.product_id` and `order.face_value` whose code
    /// expires first (codes without expiry last; none already expired at
    /// `order.created_at`), reserves it for the order, stores the order with
    /// that voucher and records the transition, and counts the allocatable
    /// vouchers left up to `count_below`.
    async fn place_order(&self, order: OrderRecord, count_below: i64) -> StoreResult<PlaceOutcome>;

    /// An order by id, if its tenant is in `scope`.
    async fn order_by_id(&self, id: &str, scope: &TenantScope) -> StoreResult<Option<OrderRecord>>;

    /// Orders of the tenants in `scope` matching `filter`, newest first.
    async fn list_orders(
        &self,
        scope: &TenantScope,
        filter: &OrderFilter,
    ) -> StoreResult<Vec<OrderRecord>>;

    /// Marks a reserved order and its voucher delivered (recording the
    /// transition), with its reveal link's views and expiry when delivered by
    /// link, and in the same transaction sets the reveal windows of
    /// `window` (the voucher's code and PIN, as the vault granted and
    /// sealed). Returns the order as it now stands; `None` (and
    /// nothing changed) if it is not a reserved order of `tenant`.
    #[allow(clippy::too_many_arguments)]
    async fn mark_delivered(
        &self,
        id: &str,
        tenant: &str,
        actor: &str,
        at: i64,
        link: Option<(i64, i64)>,
        window: WindowChange,
    ) -> StoreResult<Option<OrderRecord>>;

    /// Cancels a reserved order of `tenant` and returns its voucher to stock
    /// (recording the transition), closing the windows of `window` in the
    /// same transaction. Returns the cancelled order;
    /// `None` (and nothing changed) if it is not a reserved order of `tenant`.
    #[allow(clippy::too_many_arguments)]
    async fn cancel_order(
        &self,
        id: &str,
        tenant: &str,
        actor: &str,
        reason: &str,
        at: i64,
        window: WindowChange,
    ) -> StoreResult<Option<OrderRecord>>;

    /// Up to `limit` reserved orders whose reservation ended before `now`.
    async fn stale_reservations(&self, now: i64, limit: u32) -> StoreResult<Vec<OrderRecord>>;

    /// Counts one view of a delivered order's reveal link at `now`, if it
    /// is the order's current link (the one expiring at `expires_at`), has
    /// views left and has not expired; atomically across nodes.
    async fn use_link_view(&self, id: &str, expires_at: i64, now: i64) -> StoreResult<LinkView>;

    /// Marks up to `limit` available vouchers whose code expired before
    /// `now` as expired, recording each transition. Returns how many.
    async fn expire_vouchers(&self, now: i64, actor: &str, limit: u32) -> StoreResult<u64>;

    /// A voucher's id, tokens and import, if it is in `scope`.
    async fn voucher_identity(
        &self,
        voucher_id: &str,
        scope: &TenantScope,
    ) -> StoreResult<Option<VoucherIdentity>>;

    /// A voucher's transitions, oldest first, if its tenant is `tenant`.
    async fn voucher_events(
        &self,
        voucher_id: &str,
        tenant: &str,
    ) -> StoreResult<Vec<VoucherEvent>>;

    /// Up to `limit` delivered orders, delivered at or before `before`, whose
    /// voucher is not archived yet, oldest first.
    async fn archivable(&self, before: i64, limit: u32) -> StoreResult<Vec<OrderRecord>>;

    /// How many orders [`OrderStore::archivable`] would find without a limit.
    async fn count_archivable(&self, before: i64) -> StoreResult<i64>;

    /// Moves a delivered voucher of `tenant` to `archived`, recording it.
    /// False if it is not delivered.
    async fn mark_archived(
        &self,
        voucher_id: &str,
        tenant: &str,
        actor: &str,
        at: i64,
    ) -> StoreResult<bool>;

    /// Records a request to re-open a delivered order's code; the order
    /// as it now stands, or `None` if it is not a delivered order of
    /// `tenant`.
    async fn request_reopen(
        &self,
        id: &str,
        tenant: &str,
        by: &str,
        reason: &str,
    ) -> StoreResult<Option<OrderRecord>>;

    /// Clears a re-open request, if it is still the one `by` made. False
    /// if another decision came first.
    async fn clear_reopen(&self, id: &str, tenant: &str, by: &str) -> StoreResult<bool>;

    /// Voids every voucher of an import of `tenant` that is still in stock
    /// (available, or expired), recording each with `reason`. Returns how
    /// many.
    async fn void_import(
        &self,
        import_id: &str,
        tenant: &str,
        actor: &str,
        reason: &str,
        at: i64,
    ) -> StoreResult<u64>;

    /// Makes the vouchers an all-or-nothing import staged available, in one
    /// transaction. Returns how many.
    async fn promote_staged(&self, import_id: &str, tenant: &str) -> StoreResult<u64>;

    /// Up to `limit` vouchers an import staged: (voucher id, code token,
    /// PIN token).
    async fn staged(
        &self,
        import_id: &str,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, Option<String>)>>;

    /// Removes staged vouchers (an all-or-nothing import that stocks
    /// nothing); only rows still staged by `import_id`.
    async fn remove_staged(&self, import_id: &str, ids: &[String]) -> StoreResult<u64>;

    /// Records a redelivery of a delivered order's voucher (event kind
    /// `redelivery`), unless `max_per_day` were recorded for the voucher in
    /// the 24 hours before `at`; with `link`, the order gets a fresh reveal
    /// link's views and expiry. Atomic across nodes. False if the limit
    /// was reached (nothing recorded).
    async fn record_redelivery(
        &self,
        order: &OrderRecord,
        actor: &str,
        reason: &str,
        at: i64,
        max_per_day: i64,
        link: Option<(i64, i64)>,
    ) -> StoreResult<bool>;
}

/// Reveal windows an order's delivery or cancellation moves, as the vault
/// granted them: each secret's token with the seal its row must carry and
/// the one it gets. A row whose seal differs is not changed, and then nothing
/// of the order is (the change was decided on a state that no longer holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowChange {
    /// (token, seal swap) of each secret.
    pub rows: Vec<(String, crate::SealSwap)>,
    /// When their windows close, Unix ms.
    pub closes_at: i64,
}
