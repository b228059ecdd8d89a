//! The storefront's orders: allocate a voucher, hand its code over.
//!
//! # Allocation
//! The central store takes the available voucher of the product and face
//! value whose code expires first, in the same transaction that records the
//! order (see `strongroom_store::OrderStore::place_order`): concurrent orders
//! never share a voucher, on one node or many.
//!
//! # Idempotency
//! An order is unique per client and `external_ref`, and keeps a SHA-256 of
//! what was asked. The same request again gets the original order and its
//! voucher; the same reference with anything else changed is refused
//! (`order.idempotency_conflict`), because answering it with the first
//! order would hand over a voucher the caller did not ask for.
//!
//! # Delivery
//! The voucher is reserved, then its code's reveal window is opened for
//! [`OrderConfig::delivered_window_secs`], then the order is marked delivered,
//! and only then is the code revealed (`delivery: "code"`, which needs
//! `secrets:reveal` too) or a reveal link signed (`delivery: "link"`). If
//! anything stops half-way, a retry of the same request resumes where it
//! stopped, and a reservation nobody resumes is released after
//! [`OrderConfig::reservation_secs`] with its window closed again.

use std::sync::Arc;

use strongroom_audit::{AuditEvent, Outcome};
use strongroom_crypto::digest::sha256_hex;
use strongroom_crypto::random;
use strongroom_store::{
    LinkView, OrderFilter, OrderRecord, PlaceOutcome, ProductRecord, TenantScope, VoucherEvent,
};
use strongroom_vault::{
    Permission, PermissionSet, Principal, Redaction, RequestContext, SecretBytes, Vault, VaultError,
};

use crate::guard::check_reason;
use crate::money::currency_exponent;
use crate::{VoucherError, guard};

/// How orders behave.
#[derive(Debug, Clone)]
pub struct OrderConfig {
    /// How long a delivered code can be revealed, seconds; then it is
    /// dormant until a security officer re-opens it.
    pub delivered_window_secs: u64,
    /// A reservation not delivered within this is released, seconds.
    pub reservation_secs: u64,
    /// How long a reveal link works, seconds (never past the window).
    pub link_ttl_secs: u64,
    /// How many times a reveal link can be opened.
    pub link_views: i64,
    /// Redeliveries of one voucher allowed in 24 hours.
    pub max_redeliveries_per_day: i64,
    /// Delivered vouchers older than this move to the archive vault, seconds.
    pub archive_after_secs: u64,
}

impl Default for OrderConfig {
    fn default() -> Self {
        Self {
            delivered_window_secs: 72 * 3600,
            reservation_secs: 120,
            link_ttl_secs: 72 * 3600,
            link_views: 3,
            max_redeliveries_per_day: 3,
            archive_after_secs: 30 * 86_400,
        }
    }
}

/// How the code reaches the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In the response, to the caller (who needs `secrets:reveal`).
    Code,
    /// As a signed, expiring, limited-view link to a page showing the code.
    Link,
}

impl Delivery {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Code => "code",
            Delivery::Link => "link",
        }
    }
}

/// An order as asked.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Tenant; may be left out by a caller bound to one.
    pub tenant: Option<String>,
    /// The caller's reference: unique per caller, the idempotency key.
    pub external_ref: String,
    /// The product.
    pub sku: String,
    /// Face value in minor units.
    pub face_value: i64,
    /// ISO 4217 code (must be the product's).
    pub currency: String,
    /// The storefront's reference of its customer.
    pub customer_ref: String,
    /// How to hand the code over.
    pub delivery: Delivery,
}

/// A placed (or found again) order and what it hands over.
#[derive(Debug)]
pub struct Placed {
    /// The order.
    pub order: OrderRecord,
    /// False when this is an earlier order returned for a repeated request.
    pub created: bool,
    /// The code (`delivery: "code"`, order delivered).
    pub code: Option<SecretBytes>,
    /// The PIN, if the voucher has one (as the code).
    pub pin: Option<SecretBytes>,
    /// The reveal link's text (`delivery: "link"`, order delivered).
    pub link: Option<String>,
    /// Until when the code can be revealed, Unix ms.
    pub revealable_until: Option<i64>,
}

/// What a reveal link shows.
#[derive(Debug)]
pub struct LinkPage {
    /// The code.
    pub code: SecretBytes,
    /// The PIN, if any.
    pub pin: Option<SecretBytes>,
    /// The product's SKU.
    pub sku: String,
    /// Face value in minor units.
    pub face_value: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Views left after this one.
    pub views_left: i64,
    /// When the link stops working, Unix ms.
    pub expires_at: i64,
}

/// Why a reveal link shows nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a link this vault made (or altered).
    Invalid,
    /// Past its expiry, or the code's reveal window closed.
    Expired,
    /// Opened as many times as allowed.
    UsedUp,
    /// A newer link was sent for the order (a redelivery).
    Replaced,
    /// The vault is sealed or a store failed: try again later.
    Unavailable,
    /// The principal that placed the order is frozen after a security
    /// alert: its links show nothing until a security officer lifts it.
    Held,
}

/// Longest `external_ref` and `customer_ref`.
const MAX_REF_CHARS: usize = 200;
/// Most orders one listing returns.
pub const MAX_LIST: u32 = 500;

fn check_ref(what: &str, value: &str) -> Result<(), VoucherError> {
    if value.is_empty()
        || value.chars().count() > MAX_REF_CHARS
        || value.chars().any(char::is_control)
    {
        return Err(VoucherError::Invalid(format!(
            "{what} is 1-{MAX_REF_CHARS} characters, without control characters"
        )));
    }
    Ok(())
}

/// The vault tokens an order hands over: its code and, if any, its PIN.
fn order_tokens(order: &OrderRecord) -> Vec<&str> {
    std::iter::once(order.token.as_str())
        .chain(order.pin_token.as_deref())
        .collect()
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The storefront's orders on one vault.
#[derive(Clone)]
pub struct Orders {
    vault: Arc<Vault>,
    config: OrderConfig,
    /// Suppliers that buy a code for an order that finds no stock.
    supply: Option<Arc<crate::supply::Supply>>,
}

impl Orders {
    /// Orders kept in `vault`'s central store.
    pub fn new(vault: Arc<Vault>, config: OrderConfig) -> Self {
        Self {
            vault,
            config,
            supply: None,
        }
    }

    /// Orders that, finding no stock of a product a supplier keeps on
    /// demand, buy one code within the on-demand budget.
    pub fn with_supply(mut self, supply: Arc<crate::supply::Supply>) -> Self {
        self.supply = Some(supply);
        self
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        ctx: &RequestContext,
        who: Option<&Principal>,
        action: &str,
        tenant: Option<&str>,
        target: Option<&str>,
        outcome: Outcome,
        reason: Option<String>,
    ) -> Result<(), VoucherError> {
        let vault = &self.vault;
        guard::record(vault, ctx, who, action, tenant, target, outcome, reason).await
    }

    /// Records a refusal (or failure) of `action` on `on` (tenant, target)
    /// with its stable `code`.
    async fn refuse(
        &self,
        ctx: &RequestContext,
        who: Option<&Principal>,
        action: &str,
        on: (Option<&str>, Option<&str>),
        outcome: Outcome,
        code: &str,
    ) -> Result<(), VoucherError> {
        let reason = Some(code.to_owned());
        self.audit(ctx, who, action, on.0, on.1, outcome, reason)
            .await
    }

    /// Checks `permission`, recording a refusal.
    async fn authorize(
        &self,
        ctx: &RequestContext,
        who: &Principal,
        action: &str,
        permission: Permission,
    ) -> Result<(), VoucherError> {
        guard::require(&self.vault, ctx, who, action, permission).await
    }

    /// Places an order, or returns the caller's earlier order with the same
    /// reference if the request is the same.
    pub async fn place(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        new: NewOrder,
    ) -> Result<Placed, VoucherError> {
        const ACTION: &str = "order.place";
        self.authorize(ctx, who, ACTION, Permission::PlaceOrders)
            .await?;
        if new.delivery == Delivery::Code {
            // Refused before a voucher is taken, not after.
            self.authorize(ctx, who, ACTION, Permission::Reveal).await?;
        }
        let tenant = match who.resolve_tenant(new.tenant.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                let reason = Some(e.code().into());
                self.audit(ctx, Some(who), ACTION, None, None, Outcome::Denied, reason)
                    .await?;
                return Err(e.into());
            }
        };
        check_ref("external_ref", &new.external_ref)?;
        check_ref("customer_ref", &new.customer_ref)?;
        currency_exponent(&new.currency)?;
        let currency = new.currency.clone();
        let product = self.product(&tenant, &new.sku).await?;
        if product.currency != currency {
            return Err(VoucherError::Invalid(format!(
                "{} is sold in {}, not {currency}",
                product.sku, product.currency
            )));
        }
        if !product.denominations.contains(&new.face_value) {
            return Err(VoucherError::Invalid(format!(
                "{} comes in face values {:?} (minor units of {})",
                product.sku, product.denominations, product.currency
            )));
        }
        let face_value = new.face_value.to_string();
        let request_hash = sha256_hex(&[
            tenant.as_bytes(),
            product.sku.as_bytes(),
            face_value.as_bytes(),
            currency.as_bytes(),
            new.customer_ref.as_bytes(),
            new.delivery.as_str().as_bytes(),
        ]);
        let now = self.vault.clock().now_ms();
        let order = OrderRecord {
            id: random::timed_token("or_", u64::try_from(now).unwrap_or(0))
                .map_err(VaultError::from)?,
            tenant: tenant.clone(),
            client_id: who.id.clone(),
            external_ref: new.external_ref,
            request_hash,
            product_id: product.id.clone(),
            sku: product.sku.clone(),
            face_value: new.face_value,
            currency,
            customer_ref: new.customer_ref,
            delivery: new.delivery.as_str().to_owned(),
            state: "reserved".into(),
            voucher_id: String::new(),
            token: String::new(),
            pin_token: None,
            expires_at: None,
            created_at: now,
            reserved_until: now.saturating_add(secs_ms(self.config.reservation_secs)),
            delivered_at: 0,
            updated_at: now,
            link_views_left: 0,
            link_expires_at: 0,
            cancel_reason: None,
            reopen_requested_by: String::new(),
            reopen_reason: String::new(),
        };
        let asked_hash = order.request_hash.clone();
        let threshold = product.low_stock_threshold;
        let central = &self.vault.stores().central;
        let mut placed = central.place_order(order.clone(), threshold).await?;
        if matches!(placed, PlaceOutcome::OutOfStock)
            && let Some(supply) = &self.supply
        {
            let bought = supply
                .buy_on_demand(ctx, &product, new.face_value)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(sku = %product.sku, code = e.code(), "on-demand purchase failed");
                    false
                });
            if bought {
                // Its times from now, not from before the wait.
                let mut order = order;
                let now = self.vault.clock().now_ms();
                order.created_at = now;
                order.updated_at = now;
                order.reserved_until = now.saturating_add(secs_ms(self.config.reservation_secs));
                placed = central.place_order(order, threshold).await?;
            }
        }
        match placed {
            PlaceOutcome::OutOfStock => {
                let target = format!("{}/{}", product.sku, new.face_value);
                self.refuse(
                    ctx,
                    Some(who),
                    ACTION,
                    (Some(&tenant), Some(&target)),
                    Outcome::Failed,
                    "order.out_of_stock",
                )
                .await?;
                Err(VoucherError::OutOfStock)
            }
            PlaceOutcome::Existing(order) if order.request_hash != asked_hash => {
                self.refuse(
                    ctx,
                    Some(who),
                    ACTION,
                    (Some(&tenant), Some(&order.id)),
                    Outcome::Denied,
                    "order.idempotency_conflict",
                )
                .await?;
                Err(VoucherError::IdempotencyConflict)
            }
            PlaceOutcome::Existing(order) => {
                self.audit(
                    ctx,
                    Some(who),
                    ACTION,
                    Some(&tenant),
                    Some(&order.id),
                    Outcome::Allowed,
                    Some(format!("repeated request: voucher {}", order.voucher_id)),
                )
                .await?;
                self.deliver(who, ctx, order, false, Vec::new()).await
            }
            PlaceOutcome::Placed {
                order,
                available_after,
            } => {
                // Written with the delivery's own records, in one append.
                let mut along = vec![self.vault.event(
                    ctx,
                    Some(who),
                    ACTION,
                    Some(&tenant),
                    Some(&order.id),
                    Outcome::Allowed,
                    Some(format!("voucher {}", order.voucher_id)),
                )];
                if let Some(placed) = along.first_mut() {
                    placed.customer = Some(order.customer_ref.clone());
                }
                // Exactly at the crossing: one event per fall below, not one
                // per order while stock stays low.
                if threshold > 0 && available_after == threshold - 1 {
                    along.push(self.stock_low(ctx, who, &product, new.face_value, available_after));
                }
                self.deliver(who, ctx, order, true, along).await
            }
        }
    }

    fn stock_low(
        &self,
        ctx: &RequestContext,
        who: &Principal,
        product: &ProductRecord,
        face_value: i64,
        available: i64,
    ) -> AuditEvent {
        tracing::warn!(
            tenant = %product.tenant,
            sku = %product.sku,
            face_value,
            available,
            threshold = product.low_stock_threshold,
            "stock.low"
        );
        self.vault.event(
            ctx,
            Some(who),
            "stock.low",
            Some(&product.tenant),
            Some(&format!("{}/{face_value}", product.sku)),
            Outcome::Allowed,
            Some(format!(
                "{available} available, below the threshold of {}",
                product.low_stock_threshold
            )),
        )
    }

    /// The product of `tenant` with `sku`.
    async fn product(&self, tenant: &str, sku: &str) -> Result<ProductRecord, VoucherError> {
        crate::guard::product_of(&self.vault, tenant, |p| p.sku == sku)
            .await?
            .ok_or(VoucherError::NotFound("no product with that SKU"))
    }

    /// Takes an order as far as delivery: if it is still reserved, the
    /// vault grants (and audits, with `along`) opening the code's window and
    /// the order is marked delivered with it; then the code is handed over.
    async fn deliver(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        order: OrderRecord,
        created: bool,
        along: Vec<AuditEvent>,
    ) -> Result<Placed, VoucherError> {
        let mut order = order;
        if order.state != "reserved" && !along.is_empty() {
            self.vault.record_all(&along).await?;
        }
        // The code and PIN when this call delivered them itself.
        let mut handed: Option<(Vec<SecretBytes>, i64)> = None;
        if order.state == "reserved" {
            let now = self.vault.clock().now_ms();
            let until = now.saturating_add(secs_ms(self.config.delivered_window_secs));
            let reason = format!("order {} delivered", order.id);
            let tokens = order_tokens(&order);
            let by_code = order.delivery == "code";
            let grant = self
                .vault
                .grant_delivery_window(
                    who,
                    ctx,
                    &order.tenant,
                    &tokens,
                    until,
                    by_code,
                    &reason,
                    along,
                )
                .await?;
            let window = grant.change();
            let link = (order.delivery == "link").then(|| {
                let ttl = self
                    .config
                    .link_ttl_secs
                    .min(self.config.delivered_window_secs);
                (self.config.link_views, now.saturating_add(secs_ms(ttl)))
            });
            let central = &self.vault.stores().central;
            order = match central
                .mark_delivered(&order.id, &order.tenant, &who.id, now, link, window)
                .await?
            {
                Some(delivered) => {
                    if by_code {
                        let values = self.vault.open_granted(ctx, who, &grant).await?;
                        handed = Some((values, grant.until()));
                    }
                    delivered
                }
                // A concurrent repeat delivered it, or it was released.
                None => central
                    .order_by_id(&order.id, &TenantScope::one(&order.tenant))
                    .await?
                    .ok_or(VoucherError::OrderNotFound)?,
            };
        }
        let mut placed = Placed {
            created,
            code: None,
            pin: None,
            link: None,
            revealable_until: None,
            order,
        };
        if placed.order.state != "delivered" {
            return Ok(placed);
        }
        let o = &placed.order;
        if o.delivery == "link" {
            placed.link = Some(self.vault.sign_link(&o.id, o.link_expires_at)?);
            return Ok(placed);
        }
        if let Some((values, until)) = handed {
            let mut values = values.into_iter();
            placed.code = values.next();
            placed.pin = values.next();
            placed.revealable_until = Some(until);
            return Ok(placed);
        }
        // A repeated request: the code is revealed again, if its window is
        // still open.
        let purpose = format!("order {}", o.id);
        let code = self
            .vault
            .reveal(who, ctx, &o.token, &purpose, Redaction::None)
            .await?;
        let pin = match &o.pin_token {
            Some(t) => Some(
                self.vault
                    .reveal(who, ctx, t, &purpose, Redaction::None)
                    .await?
                    .value,
            ),
            None => None,
        };
        placed.revealable_until = Some(code.window_closes_at);
        placed.code = Some(code.value);
        placed.pin = pin;
        Ok(placed)
    }

    /// One order of the caller's tenants (never its code).
    pub async fn get(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<OrderRecord, VoucherError> {
        const ACTION: &str = "order.read";
        self.authorize(ctx, who, ACTION, Permission::ReadOrders)
            .await?;
        let found = self
            .vault
            .stores()
            .central
            .order_by_id(id, &TenantScope::of(&who.tenants))
            .await?;
        match found {
            Some(o) => Ok(o),
            None => {
                self.refuse(
                    ctx,
                    Some(who),
                    ACTION,
                    (None, Some(id)),
                    Outcome::Denied,
                    "order.not_found",
                )
                .await?;
                Err(VoucherError::OrderNotFound)
            }
        }
    }

    /// A voucher's transitions, for an order the caller may see.
    pub async fn history(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        order: &OrderRecord,
    ) -> Result<Vec<VoucherEvent>, VoucherError> {
        self.authorize(ctx, who, "order.read", Permission::ReadOrders)
            .await?;
        Ok(self
            .vault
            .stores()
            .central
            .voucher_events(&order.voucher_id, &order.tenant)
            .await?)
    }

    /// Orders of the caller's tenants, newest first. `sku` narrows to one
    /// product (in `tenant`, or the caller's only tenant).
    pub async fn list(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: Option<&str>,
        sku: Option<&str>,
        filter: OrderFilter,
    ) -> Result<Vec<OrderRecord>, VoucherError> {
        self.authorize(ctx, who, "order.list", Permission::ReadOrders)
            .await?;
        let mut filter = filter;
        if filter.limit == 0 || filter.limit > MAX_LIST {
            return Err(VoucherError::Invalid(format!("limit is 1 to {MAX_LIST}")));
        }
        if let Some(state) = &filter.state
            && !matches!(state.as_str(), "reserved" | "delivered" | "cancelled")
        {
            return Err(VoucherError::Invalid(
                "state is reserved, delivered or cancelled".into(),
            ));
        }
        let scope = match tenant {
            Some(t) => TenantScope::one(&who.resolve_tenant(Some(t))?),
            None => TenantScope::of(&who.tenants),
        };
        if let Some(sku) = sku {
            let tenant = match &scope {
                TenantScope::Only(t) if t.len() == 1 => t.concat(),
                _ => return Err(VaultError::TenantRequired.into()),
            };
            filter.product_id = Some(self.product(&tenant, sku).await?.id);
        }
        let orders = self
            .vault
            .stores()
            .central
            .list_orders(&scope, &filter)
            .await?;
        let event = self.vault.event(
            ctx,
            Some(who),
            "order.list",
            None,
            None,
            Outcome::Allowed,
            Some(format!("{} orders", orders.len())),
        );
        self.vault.record(event).await?;
        Ok(orders)
    }

    /// Cancels a reserved order: its voucher goes back to stock, dormant.
    /// A delivered order cannot be cancelled: its code has been handed over.
    pub async fn cancel(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<OrderRecord, VoucherError> {
        const ACTION: &str = "order.cancel";
        self.authorize(ctx, who, ACTION, Permission::PlaceOrders)
            .await?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(VoucherError::Invalid(
                "reason is required (1 to 500 characters)".into(),
            ));
        }
        let central = &self.vault.stores().central;
        let Some(order) = central
            .order_by_id(id, &TenantScope::of(&who.tenants))
            .await?
        else {
            self.refuse(
                ctx,
                Some(who),
                ACTION,
                (None, Some(id)),
                Outcome::Denied,
                "order.not_found",
            )
            .await?;
            return Err(VoucherError::OrderNotFound);
        };
        self.audit(
            ctx,
            Some(who),
            ACTION,
            Some(&order.tenant),
            Some(id),
            Outcome::Allowed,
            Some(reason.to_owned()),
        )
        .await?;
        self.release(who, ctx, &order, reason)
            .await?
            .ok_or_else(|| {
                VoucherError::OrderState(format!(
                    "order {} is {}: only a reserved order can be cancelled",
                    order.id, order.state
                ))
            })
    }

    /// Cancels a reserved order and closes its code's window again.
    async fn release(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        order: &OrderRecord,
        reason: &str,
    ) -> Result<Option<OrderRecord>, VoucherError> {
        // The window closes with the cancellation, in one transaction: a
        // delivery that opened it half-way leaves nothing open behind.
        let now = self.vault.clock().now_ms();
        let why = format!("order {} cancelled", order.id);
        let tokens = order_tokens(order);
        let grant = self
            .vault
            .grant_delivery_window(
                who,
                ctx,
                &order.tenant,
                &tokens,
                now,
                false,
                &why,
                Vec::new(),
            )
            .await?;
        let window = grant.change();
        Ok(self
            .vault
            .stores()
            .central
            .cancel_order(&order.id, &order.tenant, &who.id, reason, now, window)
            .await?)
    }

    /// An order of the caller's tenants, auditing a miss under `action`.
    async fn find(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        action: &str,
        id: &str,
    ) -> Result<OrderRecord, VoucherError> {
        let found = self
            .vault
            .stores()
            .central
            .order_by_id(id, &TenantScope::of(&who.tenants))
            .await?;
        match found {
            Some(o) => Ok(o),
            None => {
                let reason = Some("order.not_found".into());
                self.audit(
                    ctx,
                    Some(who),
                    action,
                    None,
                    Some(id),
                    Outcome::Denied,
                    reason,
                )
                .await?;
                Err(VoucherError::OrderNotFound)
            }
        }
    }

    /// Asks for a delivered order's code to be re-opened after its window
    /// closed (permission `orders:request_reopen`, support's). A security
    /// officer other than the asker approves ([`Orders::approve_reopen`]).
    pub async fn request_reopen(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<OrderRecord, VoucherError> {
        const ACTION: &str = "order.reopen_request";
        self.authorize(ctx, who, ACTION, Permission::RequestReopen)
            .await?;
        let reason = check_reason(reason)?;
        let order = self.find(who, ctx, ACTION, id).await?;
        let reason_text = Some(reason.to_owned());
        self.audit(
            ctx,
            Some(who),
            ACTION,
            Some(&order.tenant),
            Some(id),
            Outcome::Allowed,
            reason_text,
        )
        .await?;
        self.vault
            .stores()
            .central
            .request_reopen(id, &order.tenant, &who.id, reason)
            .await?
            .ok_or_else(|| {
                VoucherError::OrderState(format!(
                    "order {id} is {}: only a delivered order's code can be re-opened",
                    order.state
                ))
            })
    }

    /// Approves a waiting re-opening: the code's (and PIN's) window opens
    /// again for the delivered window. Needs `secrets:reactivate`, and
    /// someone other than who asked.
    pub async fn approve_reopen(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<OrderRecord, VoucherError> {
        const ACTION: &str = "order.reopen_approve";
        self.authorize(ctx, who, ACTION, Permission::Reactivate)
            .await?;
        let order = self.find(who, ctx, ACTION, id).await?;
        if order.reopen_requested_by.is_empty() {
            return Err(VoucherError::OrderState(format!(
                "no re-opening of order {id} is waiting for approval"
            )));
        }
        if order.reopen_requested_by == who.id {
            let reason = Some("order.same_person".into());
            self.audit(
                ctx,
                Some(who),
                ACTION,
                Some(&order.tenant),
                Some(id),
                Outcome::Denied,
                reason,
            )
            .await?;
            return Err(VoucherError::SamePerson);
        }
        let reason = format!(
            "order {id} re-opened: {} (asked by {})",
            order.reopen_reason, order.reopen_requested_by
        );
        // Recorded before it takes effect (the request is used up here).
        self.audit(
            ctx,
            Some(who),
            ACTION,
            Some(&order.tenant),
            Some(id),
            Outcome::Allowed,
            Some(reason.clone()),
        )
        .await?;
        if !self
            .vault
            .stores()
            .central
            .clear_reopen(id, &order.tenant, &order.reopen_requested_by)
            .await?
        {
            return Err(VoucherError::OrderState(format!(
                "the re-opening of order {id} was decided meanwhile"
            )));
        }
        for token in order_tokens(&order) {
            let (window, asker) = (
                self.config.delivered_window_secs,
                &order.reopen_requested_by,
            );
            self.vault
                .reactivate_on_request(who, ctx, token, window, &reason, asker)
                .await?;
        }
        let mut order = order;
        order.reopen_requested_by.clear();
        order.reopen_reason.clear();
        Ok(order)
    }

    /// Hands a delivered order's code over again, from the live vault or
    /// the archive: the code itself (`delivery: code`, with
    /// `secrets:reveal`) or a fresh reveal link. The code's window must be
    /// open (re-opened under four eyes once it closed); at most
    /// [`OrderConfig::max_redeliveries_per_day`] per voucher; every
    /// redelivery joins the voucher's history.
    pub async fn redeliver(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<Placed, VoucherError> {
        const ACTION: &str = "order.redeliver";
        self.authorize(ctx, who, ACTION, Permission::PlaceOrders)
            .await?;
        let reason = check_reason(reason)?;
        let order = self.find(who, ctx, ACTION, id).await?;
        if order.delivery == "code" {
            self.authorize(ctx, who, ACTION, Permission::Reveal).await?;
        }
        if order.state != "delivered" {
            return Err(VoucherError::OrderState(format!(
                "order {id} is {}: only a delivered order can be redelivered",
                order.state
            )));
        }
        let now = self.vault.clock().now_ms();
        let open = self
            .vault
            .secret_row(&order.token, &TenantScope::one(&order.tenant), ctx)
            .await?
            .found()
            .is_some_and(|s| now < s.window_closes_at);
        if !open {
            let reason = Some("vault.dormant".into());
            self.audit(
                ctx,
                Some(who),
                ACTION,
                Some(&order.tenant),
                Some(id),
                Outcome::Denied,
                reason,
            )
            .await?;
            return Err(VaultError::Dormant.into());
        }
        // A new link has a new expiry (which its MAC covers), never the
        // old one's: the old link then stops working.
        let link = (order.delivery == "link").then(|| {
            let ttl = self.config.link_ttl_secs;
            let expires = now
                .saturating_add(secs_ms(ttl))
                .max(order.link_expires_at.saturating_add(1));
            (self.config.link_views, expires)
        });
        // Recorded before the store changes anything (a fresh link's views).
        self.audit(
            ctx,
            Some(who),
            ACTION,
            Some(&order.tenant),
            Some(id),
            Outcome::Allowed,
            Some(reason.to_owned()),
        )
        .await?;
        let max = self.config.max_redeliveries_per_day;
        let central = &self.vault.stores().central;
        if !central
            .record_redelivery(&order, &who.id, reason, now, max, link)
            .await?
        {
            let reason = Some("order.redelivery_limit".into());
            self.audit(
                ctx,
                Some(who),
                ACTION,
                Some(&order.tenant),
                Some(id),
                Outcome::Denied,
                reason,
            )
            .await?;
            return Err(VoucherError::RedeliveryLimit);
        }
        let mut order = order;
        if let Some((views, expires)) = link {
            order.link_views_left = views;
            order.link_expires_at = expires;
        }
        self.deliver(who, ctx, order, false, Vec::new()).await
    }

    /// Releases reservations never delivered within their time (a request
    /// that died half-way). Returns how many.
    pub async fn release_stale(&self, ctx: &RequestContext) -> Result<u64, VoucherError> {
        let system = Principal::system(
            "reservations",
            PermissionSet::EMPTY.with(Permission::PlaceOrders),
        );
        let mut released = 0;
        loop {
            let now = self.vault.clock().now_ms();
            let stale = self
                .vault
                .stores()
                .central
                .stale_reservations(now, 100)
                .await?;
            let batch = stale.len();
            for order in stale {
                // One order that cannot be released (its code deleted, say)
                // must not hold up the others.
                match self
                    .release(&system, ctx, &order, "reservation expired before delivery")
                    .await
                {
                    Ok(Some(_)) => {
                        released += 1;
                        tracing::warn!(order = %order.id, "released a reservation never delivered");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(order = %order.id, code = e.code(), "could not release a stale reservation");
                    }
                }
            }
            if batch < 100 {
                return Ok(released);
            }
        }
    }

    /// Marks available vouchers whose code has expired as `expired`.
    /// Returns how many.
    pub async fn expire_stock(&self, ctx: &RequestContext) -> Result<u64, VoucherError> {
        let mut total = 0;
        loop {
            let now = self.vault.clock().now_ms();
            let n = self
                .vault
                .stores()
                .central
                .expire_vouchers(now, "system:expiry", 1000)
                .await?;
            total += n;
            if n < 1000 {
                break;
            }
        }
        if total > 0 {
            let event = self.vault.event(
                ctx,
                Some(&Principal::system("expiry", PermissionSet::EMPTY)),
                "voucher.expire",
                None,
                None,
                Outcome::Allowed,
                Some(format!("{total} vouchers past their code's expiry")),
            );
            self.vault.record(event).await?;
        }
        Ok(total)
    }

    /// Opens a reveal link: checks it, counts the view, reveals the code.
    /// `frozen` says whether a principal is frozen: the links of orders a
    /// frozen principal placed are held (a stolen storefront credential
    /// must not keep working through the links it made).
    pub async fn open_link(
        &self,
        ctx: &RequestContext,
        link: &str,
        frozen: impl Fn(&str) -> bool,
    ) -> Result<LinkPage, LinkRefusal> {
        let refuse = |why: LinkRefusal, target: Option<&str>| {
            let reason = match why {
                LinkRefusal::Invalid => "link.invalid",
                LinkRefusal::Expired => "link.expired",
                LinkRefusal::UsedUp => "link.used_up",
                LinkRefusal::Replaced => "link.replaced",
                LinkRefusal::Unavailable => "link.unavailable",
                LinkRefusal::Held => "link.held",
            };
            let event = self.vault.event(
                ctx,
                None,
                "order.link_view",
                None,
                target,
                Outcome::Denied,
                Some(reason.into()),
            );
            async move {
                match self.vault.record(event).await {
                    Ok(()) => why,
                    Err(_) => LinkRefusal::Unavailable,
                }
            }
        };
        let claim = match self.vault.verify_link(link) {
            Ok(c) => c,
            Err(VaultError::Sealed) => return Err(LinkRefusal::Unavailable),
            Err(_) => return Err(refuse(LinkRefusal::Invalid, None).await),
        };
        let id = claim.order_id().to_owned();
        let now = self.vault.clock().now_ms();
        if now >= claim.expires_at() {
            return Err(refuse(LinkRefusal::Expired, Some(&id)).await);
        }
        let central = &self.vault.stores().central;
        // Before a view is spent: a held link costs the customer nothing.
        match central.order_by_id(&id, &TenantScope::All).await {
            Ok(Some(o)) if frozen(&o.client_id) => {
                return Err(refuse(LinkRefusal::Held, Some(&id)).await);
            }
            Ok(_) => {}
            Err(_) => return Err(LinkRefusal::Unavailable),
        }
        match central.use_link_view(&id, claim.expires_at(), now).await {
            Ok(LinkView::Counted(_)) => {}
            Ok(LinkView::UsedUp) => return Err(refuse(LinkRefusal::UsedUp, Some(&id)).await),
            Ok(LinkView::Expired) => return Err(refuse(LinkRefusal::Expired, Some(&id)).await),
            Ok(LinkView::Replaced) => return Err(refuse(LinkRefusal::Replaced, Some(&id)).await),
            Ok(LinkView::Missing) => return Err(refuse(LinkRefusal::Invalid, Some(&id)).await),
            Err(_) => return Err(LinkRefusal::Unavailable),
        }
        let order = match central.order_by_id(&id, &TenantScope::All).await {
            Ok(Some(o)) => o,
            Ok(None) => return Err(refuse(LinkRefusal::Invalid, Some(&id)).await),
            Err(_) => return Err(LinkRefusal::Unavailable),
        };
        let reveal = |token: String| {
            let (claim, tenant) = (claim.clone(), order.tenant.clone());
            async move {
                match self
                    .vault
                    .reveal_for_link(ctx, &claim, &tenant, &token)
                    .await
                {
                    Ok(r) => Ok(r.value),
                    // The reveal recorded its own refusal.
                    Err(VaultError::Dormant) => Err(LinkRefusal::Expired),
                    Err(_) => Err(LinkRefusal::Unavailable),
                }
            }
        };
        let code = reveal(order.token.clone()).await?;
        let pin = match &order.pin_token {
            Some(t) => Some(reveal(t.clone()).await?),
            None => None,
        };
        Ok(LinkPage {
            code,
            pin,
            sku: order.sku,
            face_value: order.face_value,
            currency: order.currency,
            views_left: order.link_views_left,
            expires_at: order.link_expires_at,
        })
    }
}
