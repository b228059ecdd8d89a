//! Buying codes from suppliers, straight into the vault and into stock.
//!
//! A purchase is `quantity` codes of one product and face value from one
//! supplier. It is first reserved against the supplier's daily spend limit
//! (atomically, in the central store): over the limit it waits for a
//! security officer, who is never the person who asked. Then the balance is
//! checked, and each code is bought as its own supplier order under a
//! client reference derived from the purchase id and line, through the
//! supplier's call discipline (pace, retries of transient failures only,
//! circuit breaker) and the buying-once rule (an unclear outcome is looked
//! up by reference before anything is bought again). Each code received is
//! tokenized at once; the purchase id is the source of the vouchers it
//! stocked, which is what reconciliation counts.
//!
//! Everything worth a person's attention is an audit record the watch turns
//! into an alert: a purchase over a limit, a low balance, a supplier's
//! circuit opening, a reconciliation mismatch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use strongroom_audit::Outcome;
use strongroom_crypto::random;
use strongroom_store::{
    ProductRecord, PurchaseFilter, PurchaseLineRecord, PurchaseRecord, Reservation, ReserveRule,
    SupplierCredentialRecord, TenantScope, VoucherRecord, purchase_state as state,
};
use strongroom_suppliers::{
    CollectedCode, Money, OrderStatus, PlacedOrder, PurchaseRequest, Purpose, Resilient,
    SupplierConnector, SupplierError, buy_once, client_reference,
};
use strongroom_vault::{
    NewSecret, OnDuplicate, Permission, PermissionSet, Principal, RequestContext, SecretBytes,
    Vault, VaultError,
};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::{VoucherError, guard};

/// Unsettled lines are asked about again for this long after their
/// purchase (well within the suppliers' idempotency windows).
const ASK_AGAIN_WITHIN_MS: i64 = 25 * 86_400_000;

/// A line not found by its reference is taken as never placed once it has
/// been left alone this long.
const NOT_FOUND_AFTER_MS: i64 = 10 * 60 * 1000;

/// How long an order that found no stock waits, by default, for a code
/// bought on demand.
pub const ON_DEMAND_WITHIN: Duration = Duration::from_secs(8);

/// A purchase `buying` for longer than this was cut short.
const STALE_BUYING_MS: i64 = 15 * 60 * 1000;

/// Most codes one purchase may ask for.
pub const MAX_QUANTITY: i64 = 1000;

/// How long a pending (asynchronous) order is waited for within one
/// purchase, by default, before it is left for reconciliation to collect.
pub const COLLECT_WITHIN: Duration = Duration::from_secs(30);

/// One product a supplier keeps in stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplyRule {
    /// The product's SKU in the supplier's tenant.
    pub sku: String,
    /// The supplier's id for it (Tango `utid`, Runa product code).
    pub supplier_product: String,
    /// Face values to keep, as amounts (`25.00`) read in the product's
    /// currency; empty: every one of the product.
    pub face_values: Vec<String>,
    /// Buy one code for an order that finds none (within the on-demand
    /// time budget).
    pub on_demand: bool,
    /// Replenish when fewer are available than this.
    pub min_stock: i64,
    /// …up to this many.
    pub target_stock: i64,
}

/// A supplier as the business uses it.
pub struct Supplier {
    /// Configured name.
    pub name: String,
    /// The tenant whose stock it fills (and whose vault keeps its
    /// credential).
    pub tenant: String,
    /// Its API.
    pub connector: Arc<dyn SupplierConnector>,
    /// Its call discipline.
    pub discipline: Arc<Resilient>,
    /// Spend allowed per UTC day, by currency (minor units). A currency not
    /// listed has a limit of 0: every purchase in it needs approval.
    pub daily_limits: HashMap<String, i64>,
    /// Below this available balance (per currency, minor units) a
    /// `supplier.low_balance` event is raised.
    pub low_balance: HashMap<String, i64>,
    /// What it keeps in stock.
    pub products: Vec<SupplyRule>,
}

/// What became of a purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseOutcome {
    /// The purchase as recorded.
    pub purchase: PurchaseRecord,
    /// Its lines.
    pub lines: Vec<PurchaseLineRecord>,
}

/// One product and face value below its minimum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplenishLine {
    /// Tenant.
    pub tenant: String,
    /// SKU.
    pub sku: String,
    /// Face value, minor units.
    pub face_value: i64,
    /// Currency.
    pub currency: String,
    /// Supplier.
    pub supplier: String,
    /// Available now.
    pub available: i64,
    /// On order (purchases being bought, unsettled, approved or awaiting
    /// approval).
    pub on_order: i64,
    /// Minimum.
    pub min_stock: i64,
    /// Target.
    pub target_stock: i64,
    /// Codes to buy now (0 if none).
    pub to_order: i64,
}

/// One difference reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The purchase.
    pub purchase_id: String,
    /// Its supplier.
    pub supplier: String,
    /// Line, or 0 for the purchase as a whole.
    pub line: i64,
    /// `charged_without_codes`, `unsettled`, `received_not_in_stock`,
    /// `charged_over_face_value`, `codes_without_charge`.
    pub kind: String,
    /// For a person.
    pub detail: String,
}

/// Reconciliation of one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// The UTC day.
    pub day: String,
    /// Purchases looked at.
    pub purchases: usize,
    /// Codes ordered, charged (minor units, all currencies summed per
    /// currency), received, in stock.
    pub ordered: i64,
    /// Codes received.
    pub received: i64,
    /// Vouchers in the store from those purchases.
    pub in_stock: i64,
    /// Charged per currency.
    pub charged: Vec<(String, i64)>,
    /// What does not add up.
    pub mismatches: Vec<Mismatch>,
}

/// A supplier credential read from the vault when a connector needs it,
/// kept (zeroized on drop) for a minute so that a burst of calls is one
/// audited reveal.
pub struct VaultCredential {
    vault: Arc<Vault>,
    supplier: String,
    cached: Mutex<Option<(Zeroizing<String>, tokio::time::Instant)>>,
}

/// How long a credential read from the vault is reused.
const CREDENTIAL_REUSE: Duration = Duration::from_secs(60);

impl VaultCredential {
    /// The credential of `supplier`.
    pub fn new(vault: Arc<Vault>, supplier: &str) -> Self {
        Self {
            vault,
            supplier: supplier.to_owned(),
            cached: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl strongroom_suppliers::CredentialSource for VaultCredential {
    async fn credential(&self) -> Result<Zeroizing<String>, SupplierError> {
        let mut cached = self.cached.lock().await;
        if let Some((value, at)) = cached.as_ref()
            && at.elapsed() < CREDENTIAL_REUSE
        {
            return Ok(value.clone());
        }
        let missing = |why: &str| SupplierError::Rejected {
            supplier: self.supplier.clone(),
            code: "credential".into(),
            why: why.into(),
        };
        let record = self
            .vault
            .stores()
            .central
            .supplier_credential(&self.supplier)
            .await
            .map_err(|_| missing("the credential's record could not be read"))?
            .ok_or_else(|| {
                missing("no credential set: strongroom suppliers credential set NAME")
            })?;
        let ctx = RequestContext {
            request_id: format!("supplier-credential-{}", self.supplier),
            client_addr: None,
        };
        let revealed = self
            .vault
            .read_supplier_credential(&ctx, &record.token, &self.supplier)
            .await
            .map_err(|e| missing(&format!("the vault refused it ({})", e.code())))?;
        let value = Zeroizing::new(
            std::str::from_utf8(revealed.expose())
                .map_err(|_| missing("not text"))?
                .to_owned(),
        );
        *cached = Some((value.clone(), tokio::time::Instant::now()));
        Ok(value)
    }
}

/// The suppliers of a vault, and everything done with them.
pub struct Supply {
    vault: Arc<Vault>,
    suppliers: Vec<Arc<Supplier>>,
    /// One replenishment at a time in this process: two runs would both
    /// see the same shortfall.
    replenishing: Mutex<()>,
    /// How long a pending order is waited for within a purchase.
    collect_within: Duration,
    /// How long an order that found no stock waits for an on-demand code.
    on_demand_within: Duration,
}

/// The UTC day (`YYYY-MM-DD`) of a Unix-ms time.
pub fn day_of(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let d = at.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Checks a `YYYY-MM-DD` day.
pub fn check_day(day: &str) -> Result<(), VoucherError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(day, &format)
        .map(|_| ())
        .map_err(|_| VoucherError::Invalid("a day is YYYY-MM-DD".into()))
}

/// The identity purchases stock codes under.
fn stocker() -> Principal {
    Principal::system("suppliers", PermissionSet::EMPTY.with(Permission::Tokenize))
}

/// The identity of the server's own replenishment runs.
pub fn replenisher() -> Principal {
    Principal::system(
        "replenish",
        PermissionSet::EMPTY.with(Permission::BuyFromSuppliers),
    )
}

fn to_money(amount: i64, currency: &str) -> Money {
    Money {
        amount: u64::try_from(amount).unwrap_or(0),
        currency: currency.to_owned(),
    }
}

fn to_minor(m: &Money) -> i64 {
    i64::try_from(m.amount).unwrap_or(i64::MAX)
}

impl Supply {
    /// The suppliers `suppliers` of `vault`.
    pub fn new(vault: Arc<Vault>, suppliers: Vec<Supplier>) -> Self {
        Self {
            vault,
            suppliers: suppliers.into_iter().map(Arc::new).collect(),
            replenishing: Mutex::new(()),
            collect_within: COLLECT_WITHIN,
            on_demand_within: ON_DEMAND_WITHIN,
        }
    }

    /// Waits at most `within` for an on-demand code.
    pub fn on_demand_within(mut self, within: Duration) -> Self {
        self.on_demand_within = within;
        self
    }

    /// Runs `work` on a task of its own and waits for it: a purchase under
    /// way is finished and settled even if the request that started it is
    /// gone (a client that hung up, a proxy's timeout).
    async fn detached<T, F>(
        self: &Arc<Self>,
        work: impl FnOnce(Arc<Self>) -> F,
    ) -> Result<T, VoucherError>
    where
        F: std::future::Future<Output = Result<T, VoucherError>> + Send + 'static,
        T: Send + 'static,
    {
        let work = work(Arc::clone(self));
        tokio::spawn(async move {
            let done = work.await;
            // Said here too: whoever asked may be gone.
            if let Err(e) = &done {
                tracing::warn!(code = e.code(), error = %e, "a purchase failed");
            }
            done
        })
        .await
        .map_err(|e| VoucherError::PurchaseState(format!("the purchase stopped: {e}")))?
    }

    /// Buys one code of `product` at `face_value` for an order that found
    /// none, if a supplier keeps the product on demand. Waits at most the
    /// on-demand budget; a purchase still under way then goes on and stocks
    /// its code for a later order. Returns whether a code is in stock now.
    pub async fn buy_on_demand(
        self: &Arc<Self>,
        ctx: &RequestContext,
        product: &ProductRecord,
        face_value: i64,
    ) -> Result<bool, VoucherError> {
        let found = self.suppliers.iter().find_map(|s| {
            let rule = s.products.iter().find(|r| {
                r.on_demand
                    && s.tenant == product.tenant
                    && r.sku == product.sku
                    && (r.face_values.is_empty()
                        || r.face_values.iter().any(|fv| {
                            crate::import::parse_amount(fv, &product.currency).ok()
                                == Some(face_value)
                        }))
            })?;
            Some((Arc::clone(s), rule.supplier_product.clone()))
        });
        let Some((s, supplier_product)) = found else {
            return Ok(false);
        };
        let who = Principal::system(
            "on-demand",
            PermissionSet::EMPTY.with(Permission::BuyFromSuppliers),
        );
        let sku = product.sku.clone();
        let (ctx, product) = (ctx.clone(), product.clone());
        let this = Arc::clone(self);
        let purchase = tokio::spawn(async move {
            let done = this
                .buy(
                    &who,
                    &ctx,
                    &s,
                    &product,
                    &supplier_product,
                    face_value,
                    1,
                    Purpose::Order,
                )
                .await;
            if let Err(e) = &done {
                tracing::warn!(code = e.code(), error = %e, "an on-demand purchase failed");
            }
            done
        });
        match tokio::time::timeout(self.on_demand_within, purchase).await {
            Ok(Ok(Ok(Some(done)))) => Ok(done.purchase.codes_received > 0),
            Ok(Ok(Ok(None))) => Ok(false),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(e)) => Err(VoucherError::PurchaseState(format!(
                "the purchase stopped: {e}"
            ))),
            Err(_) => {
                tracing::warn!(%sku, "an on-demand code took longer than the order could wait; it will be stocked");
                Ok(false)
            }
        }
    }

    /// Waits at most `within` for a pending order within a purchase.
    pub fn collecting_within(mut self, within: Duration) -> Self {
        self.collect_within = within;
        self
    }

    /// The configured suppliers.
    pub fn suppliers(&self) -> &[Arc<Supplier>] {
        &self.suppliers
    }

    fn supplier(&self, name: &str) -> Result<&Arc<Supplier>, VoucherError> {
        self.suppliers
            .iter()
            .find(|s| s.name == name)
            .ok_or(VoucherError::SupplierNotFound)
    }

    /// Stores `value` as `supplier`'s credential (in the supplier's tenant,
    /// class `supplier_credential`, which only the server reads). The token
    /// it replaces is deleted.
    pub async fn set_credential(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        supplier: &str,
        value: SecretBytes,
    ) -> Result<(), VoucherError> {
        const ACTION: &str = "supplier.credential";
        guard::require(
            &self.vault,
            ctx,
            who,
            ACTION,
            Permission::ManageSupplierCredentials,
        )
        .await?;
        let s = match self.supplier(supplier) {
            Ok(s) => s,
            Err(e) => {
                return Err(self
                    .refuse(who, ctx, ACTION, (None, Some(supplier)), e.code(), e)
                    .await);
            }
        };
        // A supplier of another tenant is as good as unknown.
        if !who.may_act_in(&s.tenant) {
            let target = (Some(s.tenant.as_str()), Some(supplier));
            let e = VoucherError::SupplierNotFound;
            return Err(self
                .refuse(who, ctx, ACTION, target, "auth.wrong_tenant", e)
                .await);
        }
        if value.is_empty() || value.len() > 4096 {
            return Err(VoucherError::Invalid(
                "a credential is 1 to 4096 bytes".into(),
            ));
        }
        let holder =
            Principal::system("suppliers", PermissionSet::EMPTY.with(Permission::Tokenize));
        let stored = self
            .vault
            .keep_supplier_credential(&holder, ctx, &s.tenant, supplier, value)
            .await?;
        let now = self.vault.clock().now_ms();
        let replaced = self
            .vault
            .stores()
            .central
            .set_supplier_credential(SupplierCredentialRecord {
                supplier: supplier.to_owned(),
                token: stored.token.clone(),
                set_by: who.id.clone(),
                set_at: now,
            })
            .await?;
        guard::record(
            &self.vault,
            ctx,
            Some(who),
            ACTION,
            Some(&s.tenant),
            Some(supplier),
            Outcome::Allowed,
            Some(
                if replaced.is_some() {
                    "replaced"
                } else {
                    "set"
                }
                .into(),
            ),
        )
        .await?;
        if let Some(old) = replaced {
            let remover =
                Principal::system("suppliers", PermissionSet::EMPTY.with(Permission::Delete));
            if let Err(e) = self.vault.delete(&remover, ctx, &old).await {
                tracing::warn!(
                    supplier,
                    code = e.code(),
                    "the replaced credential could not be deleted"
                );
            }
        }
        Ok(())
    }

    /// Whether `supplier` has a credential set (never the credential).
    pub async fn credential_set(&self, supplier: &str) -> Result<Option<i64>, VoucherError> {
        Ok(self
            .vault
            .stores()
            .central
            .supplier_credential(supplier)
            .await?
            .map(|c| c.set_at))
    }

    /// The shortfall of every product a supplier keeps, in the caller's
    /// tenants: lines whose available stock is below the minimum have
    /// `to_order` codes to bring them to the target.
    pub async fn plan(&self, who: &Principal) -> Result<Vec<ReplenishLine>, VoucherError> {
        let central = &self.vault.stores().central;
        let scope = TenantScope::of(&who.tenants);
        let now = self.vault.clock().now_ms();
        let products = central.list_products(&scope).await?;
        let counts = central.stock_counts(&scope, now, now).await?;
        // Only open purchases matter (by state: the history grows, these
        // stay few).
        let mut open = Vec::new();
        for st in state::OPEN {
            let filter = PurchaseFilter {
                scope: scope.clone(),
                state: Some(st.into()),
                day: None,
                supplier: None,
            };
            open.extend(central.list_purchases(&filter, 10_000).await?);
        }
        let mut lines = Vec::new();
        for s in &self.suppliers {
            if !scope.admits(&s.tenant) {
                continue;
            }
            for rule in &s.products {
                let Some(p) = products
                    .iter()
                    .find(|p| p.tenant == s.tenant && p.sku == rule.sku)
                else {
                    continue;
                };
                let kept: Vec<i64> = rule
                    .face_values
                    .iter()
                    .filter_map(|fv| crate::import::parse_amount(fv, &p.currency).ok())
                    .collect();
                for fv in &p.denominations {
                    if !rule.face_values.is_empty() && !kept.contains(fv) {
                        continue;
                    }
                    let available: i64 = counts
                        .iter()
                        .filter(|c| {
                            c.product_id == p.id && c.face_value == *fv && c.state == "available"
                        })
                        .map(|c| c.count - c.expired)
                        .sum();
                    let on_order: i64 = open
                        .iter()
                        .filter(|o| {
                            o.product_id == p.id
                                && o.face_value == *fv
                                && matches!(
                                    o.state.as_str(),
                                    state::AWAITING_APPROVAL
                                        | state::APPROVED
                                        | state::BUYING
                                        | state::UNSETTLED
                                )
                        })
                        .map(|o| (o.quantity - o.codes_received).max(0))
                        .sum();
                    let to_order = if available < rule.min_stock {
                        (rule.target_stock - available - on_order).clamp(0, MAX_QUANTITY)
                    } else {
                        0
                    };
                    lines.push(ReplenishLine {
                        tenant: s.tenant.clone(),
                        sku: p.sku.clone(),
                        face_value: *fv,
                        currency: p.currency.clone(),
                        supplier: s.name.clone(),
                        available,
                        on_order,
                        min_stock: rule.min_stock,
                        target_stock: rule.target_stock,
                        to_order,
                    });
                }
            }
        }
        Ok(lines)
    }

    /// Replenishes one product and face value of the plan (nothing if it is
    /// not short). `None`: nothing to buy.
    pub async fn replenish_line(
        self: &Arc<Self>,
        who: &Principal,
        ctx: &RequestContext,
        tenant: Option<&str>,
        sku: &str,
        face_value: i64,
    ) -> Result<Option<PurchaseOutcome>, VoucherError> {
        const ACTION: &str = "supplier.replenish";
        guard::require(&self.vault, ctx, who, ACTION, Permission::BuyFromSuppliers).await?;
        let tenant = who.resolve_tenant(tenant)?;
        let _one_at_a_time = self.replenishing.lock().await;
        let plan = self.plan(who).await?;
        let Some(line) = plan
            .into_iter()
            .find(|l| l.tenant == tenant && l.sku == sku && l.face_value == face_value)
        else {
            return Err(VoucherError::NotFound(
                "no product of that SKU and face value is kept by a supplier in this tenant",
            ));
        };
        if line.to_order == 0 {
            return Ok(None);
        }
        let s = self.supplier(&line.supplier)?.clone();
        let Some(rule) = s.products.iter().find(|r| r.sku == sku) else {
            return Err(VoucherError::SupplierNotFound);
        };
        let product = self.product(&tenant, sku).await?;
        let (who, ctx) = (who.clone(), ctx.clone());
        let supplier_product = rule.supplier_product.clone();
        self.detached(move |this| async move {
            this.buy(
                &who,
                &ctx,
                &s,
                &product,
                &supplier_product,
                face_value,
                line.to_order,
                Purpose::Replenishment,
            )
            .await
        })
        .await
    }

    /// Replenishes everything short (the server's scheduler).
    pub async fn replenish_all(
        self: &Arc<Self>,
        ctx: &RequestContext,
    ) -> Result<usize, VoucherError> {
        let who = replenisher();
        // Unsettled purchases, and those cut short while buying, hold their
        // products back (nothing more is bought while one may be paid
        // for): ask about them first.
        let mut unsettled = Vec::new();
        let now = self.vault.clock().now_ms();
        for (state, stale_only) in [(state::UNSETTLED, false), (state::BUYING, true)] {
            let found = self
                .vault
                .stores()
                .central
                .list_purchases(
                    &PurchaseFilter {
                        scope: TenantScope::All,
                        state: Some(state.into()),
                        day: None,
                        supplier: None,
                    },
                    100,
                )
                .await?;
            unsettled.extend(
                found
                    .into_iter()
                    .filter(|p| !stale_only || now - p.updated_at > STALE_BUYING_MS),
            );
        }
        for p in unsettled {
            let id = p.id.clone();
            if let Err(e) = self.settle_again(ctx, p).await {
                tracing::warn!(purchase = %id, code = e.code(), "could not settle a purchase");
            }
        }
        let plan = self.plan(&who).await?;
        let mut bought = 0;
        for line in plan.into_iter().filter(|l| l.to_order > 0) {
            match self
                .replenish_line(&who, ctx, Some(&line.tenant), &line.sku, line.face_value)
                .await
            {
                Ok(Some(o)) => {
                    bought += usize::try_from(o.purchase.codes_received).unwrap_or(0);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(sku = %line.sku, supplier = %line.supplier, code = e.code(), "replenishment failed");
                }
            }
        }
        Ok(bought)
    }

    async fn product(&self, tenant: &str, sku: &str) -> Result<ProductRecord, VoucherError> {
        guard::product_of(&self.vault, tenant, |p| p.sku == sku)
            .await?
            .ok_or(VoucherError::NotFound(
                "no product of that SKU in this tenant",
            ))
    }

    /// Records and carries out a purchase (see the module documentation).
    #[allow(clippy::too_many_arguments)]
    async fn buy(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        s: &Arc<Supplier>,
        product: &ProductRecord,
        supplier_product: &str,
        face_value: i64,
        quantity: i64,
        purpose: Purpose,
    ) -> Result<Option<PurchaseOutcome>, VoucherError> {
        const ACTION: &str = "supplier.purchase";
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(VoucherError::Invalid(format!(
                "a purchase is 1 to {MAX_QUANTITY} codes"
            )));
        }
        let now = self.vault.clock().now_ms();
        let id = random::timed_token("pu_", u64::try_from(now).unwrap_or(0))
            .map_err(VaultError::from)?;
        let purchase = PurchaseRecord {
            id: id.clone(),
            tenant: product.tenant.clone(),
            supplier: s.name.clone(),
            product_id: product.id.clone(),
            face_value,
            currency: product.currency.clone(),
            quantity,
            cost: face_value.saturating_mul(quantity),
            purpose: match purpose {
                Purpose::Order => "order",
                Purpose::Replenishment => "replenishment",
            }
            .into(),
            state: state::BUYING.into(),
            day: day_of(now),
            requested_by: who.id.clone(),
            approved_by: String::new(),
            charged: 0,
            codes_received: 0,
            note: supplier_product.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let limit = s.daily_limits.get(&product.currency).copied().unwrap_or(0);
        let central = &self.vault.stores().central;
        // A replenishment never stacks on an open one of the same product
        // (another node may be buying the same shortfall); a code for an
        // order over the limit is simply not bought.
        let rule = match purpose {
            Purpose::Replenishment => ReserveRule::Replenishment,
            Purpose::Order => ReserveRule::OnDemand,
        };
        let reservation = central
            .reserve_purchase(purchase.clone(), Some(limit), rule)
            .await?;
        if reservation == Reservation::AlreadyOnOrder {
            return Ok(None);
        }
        if reservation == Reservation::OverLimit && rule == ReserveRule::OnDemand {
            guard::record(
                &self.vault,
                ctx,
                Some(who),
                ACTION,
                Some(&product.tenant),
                None,
                Outcome::Denied,
                Some(format!(
                    "over the daily spend limit of supplier {}: no {} {} bought on demand",
                    s.name,
                    crate::money::display(face_value, &product.currency),
                    product.sku
                )),
            )
            .await?;
            return Ok(None);
        }
        if reservation == Reservation::OverLimit {
            guard::record(
                &self.vault,
                ctx,
                Some(who),
                ACTION,
                Some(&product.tenant),
                Some(&id),
                Outcome::Denied,
                Some(format!(
                    "over the daily spend limit of supplier {}: {} codes of {} {} wait for a security officer's approval",
                    s.name,
                    quantity,
                    crate::money::display(face_value, &product.currency),
                    product.sku
                )),
            )
            .await?;
            return self.outcome(&id).await.map(Some);
        }
        guard::record(
            &self.vault,
            ctx,
            Some(who),
            ACTION,
            Some(&product.tenant),
            Some(&id),
            Outcome::Allowed,
            Some(format!(
                "supplier={} sku={} quantity={quantity} face_value={}",
                s.name, product.sku, face_value
            )),
        )
        .await?;
        self.carry_out(ctx, s, product, purchase).await.map(Some)
    }

    /// The purchase and its lines.
    pub async fn outcome(&self, id: &str) -> Result<PurchaseOutcome, VoucherError> {
        let central = &self.vault.stores().central;
        let purchase = central
            .purchase(id)
            .await?
            .ok_or(VoucherError::PurchaseNotFound)?;
        let lines = central.purchase_lines(id).await?;
        Ok(PurchaseOutcome { purchase, lines })
    }

    /// Checks the balance, buys each line, stocks the codes, settles.
    async fn carry_out(
        &self,
        ctx: &RequestContext,
        s: &Arc<Supplier>,
        product: &ProductRecord,
        mut purchase: PurchaseRecord,
    ) -> Result<PurchaseOutcome, VoucherError> {
        let central = &self.vault.stores().central;
        let supplier_product = purchase.note.clone();
        purchase.note.clear();
        if let Err(why) = self.check_balance(ctx, s, &purchase).await {
            purchase.state = state::FAILED.into();
            purchase.note = why;
            purchase.updated_at = self.vault.clock().now_ms();
            if central.settle_purchase(&purchase, state::BUYING).await? {
                self.settled(ctx, &purchase).await?;
            }
            return self.outcome(&purchase.id).await;
        }
        let mut unsettled = false;
        let mut stopped = None;
        for line in 1..=purchase.quantity {
            let reference = client_reference(
                if purchase.purpose == "order" {
                    Purpose::Order
                } else {
                    Purpose::Replenishment
                },
                &purchase.id,
                u32::try_from(line).unwrap_or(u32::MAX),
            )
            .ok_or_else(|| VoucherError::Invalid("purchase id too long for a reference".into()))?;
            let mut record = PurchaseLineRecord {
                purchase_id: purchase.id.clone(),
                line,
                reference: reference.clone(),
                supplier_order: String::new(),
                state: "placing".into(),
                charged: 0,
                codes: 0,
                note: String::new(),
                updated_at: self.vault.clock().now_ms(),
            };
            if let Some(why) = &stopped {
                record.state = "failed".into();
                record.note = format!("not placed: {why}");
                central.put_purchase_line(record).await?;
                continue;
            }
            central.put_purchase_line(record.clone()).await?;
            let request = PurchaseRequest {
                reference,
                product: supplier_product.clone(),
                face_value: to_money(purchase.face_value, &purchase.currency),
            };
            match buy_once(s.connector.as_ref(), &s.discipline, &request).await {
                Ok(order) => {
                    self.take_order(ctx, s, product, &purchase, &mut record, order)
                        .await?;
                    if record.state == "pending" {
                        unsettled = true;
                    }
                }
                Err(e) => {
                    record.note = e.to_string();
                    if matches!(e, SupplierError::Ambiguous { .. }) {
                        record.state = "unknown".into();
                        unsettled = true;
                    } else {
                        record.state = "failed".into();
                    }
                    if let SupplierError::Rejected { code, .. } = &e
                        && code == "RE010"
                    {
                        self.low_balance_event(ctx, s, &purchase.currency, None)
                            .await?;
                    }
                    // Whatever stopped this line would stop the next.
                    stopped = Some(e.to_string());
                }
            }
            record.updated_at = self.vault.clock().now_ms();
            purchase.charged = purchase.charged.saturating_add(record.charged);
            purchase.codes_received = purchase.codes_received.saturating_add(record.codes);
            central.put_purchase_line(record).await?;
            // What is received so far is kept as it comes (a purchase cut
            // short keeps its spend), and a purchase still at work is seen
            // to be (never taken for one that stopped).
            purchase.updated_at = self.vault.clock().now_ms();
            if !central.settle_purchase(&purchase, state::BUYING).await? {
                return Err(VoucherError::PurchaseState(
                    "the purchase was settled by someone else while being bought".into(),
                ));
            }
        }
        purchase.state = if unsettled {
            state::UNSETTLED
        } else if purchase.codes_received >= purchase.quantity {
            state::COMPLETE
        } else if purchase.codes_received > 0 {
            state::PARTIAL
        } else {
            state::FAILED
        }
        .into();
        if let Some(why) = stopped {
            purchase.note = why;
        }
        purchase.updated_at = self.vault.clock().now_ms();
        if central.settle_purchase(&purchase, state::BUYING).await? {
            self.settled(ctx, &purchase).await?;
        }
        self.outcome(&purchase.id).await
    }

    /// Audits how a purchase ended.
    async fn settled(&self, ctx: &RequestContext, p: &PurchaseRecord) -> Result<(), VoucherError> {
        let outcome = if p.state == state::FAILED {
            Outcome::Failed
        } else {
            Outcome::Allowed
        };
        guard::record(
            &self.vault,
            ctx,
            None,
            "supplier.purchase_settled",
            Some(&p.tenant),
            Some(&p.id),
            outcome,
            Some(format!(
                "supplier={} state={} codes={}/{} charged={}{}",
                p.supplier,
                p.state,
                p.codes_received,
                p.quantity,
                p.charged,
                if p.note.is_empty() {
                    String::new()
                } else {
                    format!("; {}", p.note)
                }
            )),
        )
        .await
    }

    /// Refuses a purchase the balance cannot pay; raises a low-balance
    /// event when what remains is under the threshold. A supplier that
    /// reports no balance for the currency is bought from (not every API
    /// has a balance); one whose balance cannot be read is not.
    async fn check_balance(
        &self,
        ctx: &RequestContext,
        s: &Arc<Supplier>,
        p: &PurchaseRecord,
    ) -> Result<(), String> {
        let balances = s
            .discipline
            .call(|_| s.connector.balance())
            .await
            .map_err(|e| format!("balance could not be read: {e}"))?;
        let Some(available) = balances
            .iter()
            .find(|b| b.available.currency == p.currency)
            .map(|b| to_minor(&b.available))
        else {
            return Ok(());
        };
        let threshold = s.low_balance.get(&p.currency).copied().unwrap_or(0);
        if available < p.cost || available - p.cost < threshold {
            self.low_balance_event(ctx, s, &p.currency, Some(available))
                .await
                .map_err(|e| e.to_string())?;
        }
        if available < p.cost {
            return Err(format!(
                "insufficient balance: {} available, {} needed",
                crate::money::display(available, &p.currency),
                crate::money::display(p.cost, &p.currency)
            ));
        }
        Ok(())
    }

    async fn low_balance_event(
        &self,
        ctx: &RequestContext,
        s: &Supplier,
        currency: &str,
        available: Option<i64>,
    ) -> Result<(), VoucherError> {
        guard::record(
            &self.vault,
            ctx,
            None,
            "supplier.low_balance",
            Some(&s.tenant),
            Some(&s.name),
            Outcome::Failed,
            Some(match available {
                Some(a) => format!(
                    "supplier {} balance {}",
                    s.name,
                    crate::money::display(a, currency)
                ),
                None => format!("supplier {} refused an order for lack of funds", s.name),
            }),
        )
        .await
    }

    /// Records what an order came to; stocks its codes.
    async fn take_order(
        &self,
        ctx: &RequestContext,
        s: &Arc<Supplier>,
        product: &ProductRecord,
        purchase: &PurchaseRecord,
        record: &mut PurchaseLineRecord,
        order: PlacedOrder,
    ) -> Result<(), VoucherError> {
        record.supplier_order = order.supplier_order.chars().take(200).collect();
        record.charged = order.charged.as_ref().map_or(0, to_minor);
        let mut status = order.status;
        // An asynchronous order: wait a little for it, within the purchase.
        let started = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(500);
        while matches!(status, OrderStatus::Pending) && started.elapsed() < self.collect_within {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            match s
                .discipline
                .call(|_| s.connector.collect(&order.supplier_order))
                .await
            {
                Ok(next) => status = next,
                Err(e) => {
                    record.note = e.to_string();
                    break;
                }
            }
        }
        match status {
            OrderStatus::Complete(codes) => {
                let (stocked, note) = self.stock(ctx, s, product, purchase, codes).await?;
                record.codes = stocked;
                record.state = "complete".into();
                record.note = note;
            }
            OrderStatus::Pending => {
                record.state = "pending".into();
            }
            OrderStatus::Failed { why } => {
                record.state = "failed".into();
                record.note = why;
            }
        }
        Ok(())
    }

    /// Tokenizes codes (and PINs, and claim URLs) and puts them in stock.
    /// Returns how many codes were received and a note of any that could
    /// not be stocked (a duplicate of a code already held).
    async fn stock(
        &self,
        ctx: &RequestContext,
        s: &Supplier,
        product: &ProductRecord,
        purchase: &PurchaseRecord,
        codes: Vec<CollectedCode>,
    ) -> Result<(i64, String), VoucherError> {
        let who = stocker();
        let received = i64::try_from(codes.len()).unwrap_or(i64::MAX);
        let mut notes = Vec::new();
        let metadata = || {
            let mut m = serde_json::Map::new();
            m.insert("purchase".into(), purchase.id.clone().into());
            m.insert("supplier".into(), s.name.clone().into());
            m.insert("sku".into(), product.sku.clone().into());
            Some(m)
        };
        let secret = |class: &str, value: &str, on_duplicate| NewSecret {
            tenant: Some(product.tenant.clone()),
            class: class.into(),
            value: SecretBytes::from_str_copy(value),
            metadata: metadata(),
            reveal_window_secs: Some(0),
            on_duplicate,
        };
        for c in codes {
            let code = self
                .vault
                .tokenize(
                    &who,
                    ctx,
                    secret("voucher_code", &c.code, OnDuplicate::Reject),
                )
                .await;
            let token = match code {
                Ok(t) => t.token,
                Err(VaultError::Duplicate { .. }) => {
                    notes.push("a code already held was received again".to_owned());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let pin_token = match &c.pin {
                Some(pin) => Some(
                    self.vault
                        .tokenize(&who, ctx, secret("generic", pin, OnDuplicate::Allow))
                        .await?
                        .token,
                ),
                None => None,
            };
            if let Some(url) = &c.claim_url
                && url.as_str() != c.code.as_str()
            {
                let mut kept = secret("generic", url, OnDuplicate::Allow);
                if let Some(m) = kept.metadata.as_mut() {
                    m.insert("claim_url_of".into(), token.clone().into());
                }
                self.vault.tokenize(&who, ctx, kept).await?;
            }
            let expires_at = match c.expires_at.as_deref() {
                Some(text) => match crate::import::parse_expiry(text) {
                    Ok(at) => Some(at),
                    Err(_) => {
                        notes.push("an expiry date that could not be read".to_owned());
                        None
                    }
                },
                None => None,
            };
            let now = self.vault.clock().now_ms();
            let added = self
                .vault
                .stores()
                .central
                .insert_vouchers(vec![VoucherRecord {
                    id: random::timed_token("vc_", u64::try_from(now).unwrap_or(0))
                        .map_err(VaultError::from)?,
                    tenant: product.tenant.clone(),
                    product_id: product.id.clone(),
                    face_value: purchase.face_value,
                    currency: purchase.currency.clone(),
                    token,
                    pin_token,
                    expires_at,
                    serial: None,
                    state: "available".into(),
                    import_id: purchase.id.clone(),
                    created_at: now,
                }])
                .await?;
            if added.first() != Some(&true) {
                notes.push("a code could not be put in stock".to_owned());
            }
        }
        notes.dedup();
        Ok((received, notes.join("; ")))
    }

    /// Approves a purchase waiting over a spend limit and carries it out.
    /// Needs `suppliers:approve_spend`, and someone other than whoever
    /// asked for it.
    pub async fn approve(
        self: &Arc<Self>,
        who: &Principal,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<PurchaseOutcome, VoucherError> {
        const ACTION: &str = "supplier.approve";
        guard::require(&self.vault, ctx, who, ACTION, Permission::ApproveSpend).await?;
        let central = &self.vault.stores().central;
        let purchase = match self.visible(who, id).await {
            Ok(p) => p,
            Err(e) => {
                return Err(self
                    .refuse(who, ctx, ACTION, (None, Some(id)), e.code(), e)
                    .await);
            }
        };
        if purchase.requested_by == who.id {
            let e = VoucherError::SpendSamePerson;
            let target = (Some(purchase.tenant.as_str()), Some(id));
            return Err(self.refuse(who, ctx, ACTION, target, e.code(), e).await);
        }
        // Everything the purchase needs is found before it changes state.
        let s = self.supplier(&purchase.supplier)?.clone();
        let product = guard::product_of(&self.vault, &purchase.tenant, |p| {
            p.id == purchase.product_id
        })
        .await?
        .ok_or(VoucherError::NotFound("the purchase's product is gone"))?;
        let note = format!(
            "requested by {}; {} codes, {}",
            purchase.requested_by,
            purchase.quantity,
            crate::money::display(purchase.cost, &purchase.currency)
        );
        self.decide(who, ctx, ACTION, &purchase, state::APPROVED, note)
            .await?;
        let now = self.vault.clock().now_ms();
        if !central
            .transition_purchase(id, state::APPROVED, state::BUYING, "", now)
            .await?
        {
            return Err(VoucherError::PurchaseState(
                "the purchase was taken by another approval".into(),
            ));
        }
        let mut buying = purchase;
        buying.state = state::BUYING.into();
        let ctx = ctx.clone();
        self.detached(move |this| async move { this.carry_out(&ctx, &s, &product, buying).await })
            .await
    }

    /// Declines a purchase waiting over a spend limit.
    pub async fn decline(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<PurchaseOutcome, VoucherError> {
        const ACTION: &str = "supplier.decline";
        guard::require(&self.vault, ctx, who, ACTION, Permission::ApproveSpend).await?;
        let reason = guard::check_reason(reason)?;
        let purchase = match self.visible(who, id).await {
            Ok(p) => p,
            Err(e) => {
                return Err(self
                    .refuse(who, ctx, ACTION, (None, Some(id)), e.code(), e)
                    .await);
            }
        };
        self.decide(
            who,
            ctx,
            ACTION,
            &purchase,
            state::DECLINED,
            reason.to_owned(),
        )
        .await?;
        self.outcome(id).await
    }

    /// Moves a purchase awaiting approval to `to` (approved or declined)
    /// on `who`'s decision, and records it with `note`.
    async fn decide(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        action: &str,
        purchase: &PurchaseRecord,
        to: &str,
        note: String,
    ) -> Result<(), VoucherError> {
        let now = self.vault.clock().now_ms();
        let moved = self
            .vault
            .stores()
            .central
            .transition_purchase(&purchase.id, state::AWAITING_APPROVAL, to, &who.id, now)
            .await?;
        if !moved {
            return Err(VoucherError::PurchaseState(format!(
                "the purchase is {}, not awaiting approval",
                purchase.state
            )));
        }
        guard::record(
            &self.vault,
            ctx,
            Some(who),
            action,
            Some(&purchase.tenant),
            Some(&purchase.id),
            Outcome::Allowed,
            Some(note),
        )
        .await
    }

    /// A purchase in the caller's tenants.
    async fn visible(&self, who: &Principal, id: &str) -> Result<PurchaseRecord, VoucherError> {
        let purchase = self
            .vault
            .stores()
            .central
            .purchase(id)
            .await?
            .ok_or(VoucherError::PurchaseNotFound)?;
        if !TenantScope::of(&who.tenants).admits(&purchase.tenant) {
            return Err(VoucherError::PurchaseNotFound);
        }
        Ok(purchase)
    }

    /// One purchase and its lines, for a holder of `suppliers:buy` or
    /// `suppliers:approve_spend`.
    pub async fn get(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<PurchaseOutcome, VoucherError> {
        const ACTION: &str = "supplier.purchase_read";
        self.may_see(who, ctx, ACTION).await?;
        if let Err(e) = self.visible(who, id).await {
            return Err(self
                .refuse(who, ctx, ACTION, (None, Some(id)), e.code(), e)
                .await);
        }
        self.outcome(id).await
    }

    /// Who may see suppliers and purchases: buyers and approvers. A
    /// refusal is audited.
    async fn may_see(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        action: &str,
    ) -> Result<(), VoucherError> {
        if who.has(Permission::BuyFromSuppliers) || who.has(Permission::ApproveSpend) {
            return Ok(());
        }
        let e = VaultError::Forbidden(Permission::BuyFromSuppliers.name());
        let code = e.code();
        Err(self
            .refuse(who, ctx, action, (None, None), code, e.into())
            .await)
    }

    /// Records a refusal (of `tenant` and `target`, for `reason`) and
    /// returns `error`, or the audit's failure if it could not be recorded.
    async fn refuse(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        action: &str,
        (tenant, target): (Option<&str>, Option<&str>),
        reason: &str,
        error: VoucherError,
    ) -> VoucherError {
        let recorded = guard::record(
            &self.vault,
            ctx,
            Some(who),
            action,
            tenant,
            target,
            Outcome::Denied,
            Some(reason.to_owned()),
        )
        .await;
        match recorded {
            Ok(()) => error,
            Err(e) => e,
        }
    }

    /// Purchases in the caller's tenants, newest first.
    pub async fn list(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        state: Option<&str>,
        day: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PurchaseRecord>, VoucherError> {
        self.may_see(who, ctx, "supplier.purchase_list").await?;
        if let Some(d) = day {
            check_day(d)?;
        }
        Ok(self
            .vault
            .stores()
            .central
            .list_purchases(
                &PurchaseFilter {
                    scope: TenantScope::of(&who.tenants),
                    state: state.map(str::to_owned),
                    day: day.map(str::to_owned),
                    supplier: None,
                },
                limit.clamp(1, 1000),
            )
            .await?)
    }

    /// Each supplier's circuit, today's spend and limit, credential state.
    pub async fn status(
        &self,
        who: &Principal,
        ctx: &RequestContext,
    ) -> Result<Vec<SupplierStatus>, VoucherError> {
        self.may_see(who, ctx, "supplier.list").await?;
        let scope = TenantScope::of(&who.tenants);
        let today = day_of(self.vault.clock().now_ms());
        let mut out = Vec::new();
        for s in self.suppliers.iter().filter(|s| scope.admits(&s.tenant)) {
            let mut spend = Vec::new();
            for (currency, limit) in &s.daily_limits {
                let spent = self
                    .vault
                    .stores()
                    .central
                    .spent(&s.name, &today, currency)
                    .await?;
                spend.push((currency.clone(), spent, *limit));
            }
            spend.sort();
            out.push(SupplierStatus {
                name: s.name.clone(),
                tenant: s.tenant.clone(),
                circuit: format!("{:?}", s.discipline.state()).to_lowercase(),
                credential_set_at: self.credential_set(&s.name).await?,
                today: today.clone(),
                spend,
                products: s.products.iter().map(|r| r.sku.clone()).collect(),
            });
        }
        Ok(out)
    }

    /// Compares, for every purchase of `day` in the caller's tenants, what
    /// was ordered, charged, received and is in stock. Lines left pending
    /// or unknown are first asked about again (collected, or looked up by
    /// reference). Every mismatch is returned and recorded as a
    /// `supplier.reconcile_mismatch` event.
    pub async fn reconcile(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        day: &str,
    ) -> Result<Reconciliation, VoucherError> {
        const ACTION: &str = "supplier.reconcile";
        guard::require(&self.vault, ctx, who, ACTION, Permission::BuyFromSuppliers).await?;
        check_day(day)?;
        let central = &self.vault.stores().central;
        let purchases = central
            .list_purchases(
                &PurchaseFilter {
                    scope: TenantScope::of(&who.tenants),
                    state: None,
                    day: Some(day.to_owned()),
                    supplier: None,
                },
                100_000,
            )
            .await?;
        let mut report = Reconciliation {
            day: day.to_owned(),
            purchases: purchases.len(),
            ordered: 0,
            received: 0,
            in_stock: 0,
            charged: Vec::new(),
            mismatches: Vec::new(),
        };
        let mut charged: std::collections::BTreeMap<String, i64> = Default::default();
        for p in purchases {
            if matches!(p.state.as_str(), state::AWAITING_APPROVAL | state::DECLINED) {
                continue;
            }
            // A purchase still `buying` long after it started was cut short
            // (the server stopped mid-way): settled like an unsettled one.
            let stale = p.state == state::BUYING
                && self.vault.clock().now_ms() - p.updated_at > STALE_BUYING_MS;
            let p = if p.state == state::UNSETTLED || stale {
                self.settle_again(ctx, p).await?
            } else {
                p
            };
            let lines = central.purchase_lines(&p.id).await?;
            let in_stock = central.vouchers_from(&p.id).await?;
            report.ordered = report.ordered.saturating_add(p.quantity);
            report.received = report.received.saturating_add(p.codes_received);
            report.in_stock = report.in_stock.saturating_add(in_stock);
            let sum = charged.entry(p.currency.clone()).or_default();
            *sum = sum.saturating_add(p.charged);
            let mut found = |line: i64, kind: &str, detail: String| {
                report.mismatches.push(Mismatch {
                    purchase_id: p.id.clone(),
                    supplier: p.supplier.clone(),
                    line,
                    kind: kind.to_owned(),
                    detail,
                });
            };
            for l in &lines {
                if l.charged > 0 && l.codes == 0 {
                    found(
                        l.line,
                        "charged_without_codes",
                        format!(
                            "order {} ({}) charged {} but no code was received",
                            l.supplier_order,
                            l.reference,
                            crate::money::display(l.charged, &p.currency)
                        ),
                    );
                } else if matches!(l.state.as_str(), "unknown" | "pending" | "placing") {
                    found(
                        l.line,
                        "unsettled",
                        format!(
                            "reference {} is {}: ask the supplier what became of it",
                            l.reference, l.state
                        ),
                    );
                } else if l.codes > 0 && l.charged == 0 {
                    found(
                        l.line,
                        "codes_without_charge",
                        format!(
                            "order {} delivered codes but reported no charge",
                            l.supplier_order
                        ),
                    );
                }
                if l.charged > p.face_value.saturating_mul(l.codes.max(1)) {
                    found(
                        l.line,
                        "charged_over_face_value",
                        format!(
                            "order {} charged {} for codes worth {}",
                            l.supplier_order,
                            crate::money::display(l.charged, &p.currency),
                            crate::money::display(
                                p.face_value.saturating_mul(l.codes),
                                &p.currency
                            )
                        ),
                    );
                }
            }
            if p.codes_received != in_stock {
                found(
                    0,
                    "received_not_in_stock",
                    format!(
                        "{} codes received, {} vouchers in the store from this purchase",
                        p.codes_received, in_stock
                    ),
                );
            }
        }
        report.charged = charged.into_iter().collect();
        for m in &report.mismatches {
            let tenant = self
                .suppliers
                .iter()
                .find(|s| s.name == m.supplier)
                .map(|s| s.tenant.clone());
            guard::record(
                &self.vault,
                ctx,
                Some(who),
                "supplier.reconcile_mismatch",
                tenant.as_deref(),
                Some(&m.purchase_id),
                Outcome::Failed,
                Some(format!(
                    "day={} supplier={} line={} {}: {}",
                    day, m.supplier, m.line, m.kind, m.detail
                )),
            )
            .await?;
        }
        guard::record(
            &self.vault,
            ctx,
            Some(who),
            ACTION,
            None,
            None,
            Outcome::Allowed,
            Some(format!(
                "day={} purchases={} ordered={} received={} in_stock={} mismatches={}",
                day,
                report.purchases,
                report.ordered,
                report.received,
                report.in_stock,
                report.mismatches.len()
            )),
        )
        .await?;
        Ok(report)
    }

    /// Asks the supplier again about a purchase's pending and unknown
    /// lines: collects what completed, finds by reference what was placed.
    async fn settle_again(
        &self,
        ctx: &RequestContext,
        mut p: PurchaseRecord,
    ) -> Result<PurchaseRecord, VoucherError> {
        let Ok(s) = self.supplier(&p.supplier).map(Arc::clone) else {
            return Ok(p);
        };
        // Past the suppliers' idempotency windows (Runa keeps a key 30
        // days), asking again could buy again: left for a person.
        let now = self.vault.clock().now_ms();
        if now - p.created_at > ASK_AGAIN_WITHIN_MS {
            return Ok(p);
        }
        let central = &self.vault.stores().central;
        let Some(product) =
            guard::product_of(&self.vault, &p.tenant, |x| x.id == p.product_id).await?
        else {
            return Ok(p);
        };
        let supplier_product = s
            .products
            .iter()
            .find(|r| r.sku == product.sku)
            .map(|r| r.supplier_product.clone())
            .unwrap_or_default();
        let mut still = false;
        for mut l in central.purchase_lines(&p.id).await? {
            let was = l.state.clone();
            let answer = match l.state.as_str() {
                "pending" => s
                    .discipline
                    .call(|_| s.connector.collect(&l.supplier_order))
                    .await
                    .map(|status| {
                        Some(PlacedOrder {
                            supplier_order: l.supplier_order.clone(),
                            reference: l.reference.clone(),
                            charged: Some(to_money(l.charged, &p.currency)),
                            status,
                        })
                    }),
                "unknown" | "placing" => {
                    let request = PurchaseRequest {
                        reference: l.reference.clone(),
                        product: supplier_product.clone(),
                        face_value: to_money(p.face_value, &p.currency),
                    };
                    s.discipline
                        .call(|_| s.connector.find_order(&request))
                        .await
                }
                _ => continue,
            };
            match answer {
                Ok(Some(order)) => {
                    self.take_order(ctx, &s, &product, &p, &mut l, order)
                        .await?;
                }
                // A supplier's search may lag its orders: "not found" is
                // believed only of a line left alone for a while.
                Ok(None) if now - l.updated_at > NOT_FOUND_AFTER_MS => {
                    l.state = "failed".into();
                    l.note = "the supplier has no order of this reference".into();
                }
                Ok(None) => {
                    l.note = "not found by reference yet".into();
                }
                Err(e) => l.note = e.to_string(),
            }
            if matches!(l.state.as_str(), "pending" | "unknown" | "placing") {
                still = true;
            }
            // The time of the last change of state, not of the last question.
            if l.state != was {
                l.updated_at = self.vault.clock().now_ms();
            }
            central.put_purchase_line(l).await?;
        }
        // The totals from every line, whatever was written before (a
        // purchase cut short may have written none).
        let lines = central.purchase_lines(&p.id).await?;
        p.charged = lines.iter().fold(0i64, |t, l| t.saturating_add(l.charged));
        p.codes_received = lines.iter().fold(0i64, |t, l| t.saturating_add(l.codes));
        let from = p.state.clone();
        p.state = if still {
            state::UNSETTLED
        } else if p.codes_received >= p.quantity {
            state::COMPLETE
        } else if p.codes_received > 0 {
            state::PARTIAL
        } else {
            state::FAILED
        }
        .into();
        p.updated_at = self.vault.clock().now_ms();
        if !central.settle_purchase(&p, &from).await? {
            // Another writer settled it meanwhile: theirs stands.
            return central
                .purchase(&p.id)
                .await?
                .ok_or(VoucherError::PurchaseNotFound);
        }
        Ok(p)
    }
}

/// A supplier as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplierStatus {
    /// Name.
    pub name: String,
    /// Tenant it fills.
    pub tenant: String,
    /// `closed`, `open` or `halfopen`.
    pub circuit: String,
    /// When its credential was set, if it was.
    pub credential_set_at: Option<i64>,
    /// The UTC day of `spend`.
    pub today: String,
    /// (currency, spent today, daily limit), minor units.
    pub spend: Vec<(String, i64, i64)>,
    /// SKUs it keeps in stock.
    pub products: Vec<String>,
}
