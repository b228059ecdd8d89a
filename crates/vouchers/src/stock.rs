//! The stock report: what is held, by product and face value, what it is
//! worth, what expires soon, and what runs low.

use std::collections::BTreeMap;
use std::sync::Arc;

use strongroom_audit::Outcome;
use strongroom_store::TenantScope;
use strongroom_vault::{Permission, Principal, RequestContext, Vault};

use crate::VoucherError;

/// The states a voucher can be in, in the order reports list them.
pub const STATES: [&str; 6] = [
    "available",
    "reserved",
    "delivered",
    "archived",
    "expired",
    "voided",
];

/// Longest look-ahead for codes about to expire.
pub const MAX_EXPIRING_DAYS: u32 = 3650;

/// Stock of one product and face value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLine {
    /// Tenant.
    pub tenant: String,
    /// SKU.
    pub sku: String,
    /// Product name.
    pub name: String,
    /// Face value in minor units.
    pub face_value: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Vouchers by state, in [`STATES`] order. An available voucher whose
    /// code has passed its expiry counts as expired.
    pub counts: [i64; 6],
    /// Available vouchers whose code expires within the look-ahead.
    pub expiring_soon: i64,
    /// The product's low-stock threshold.
    pub low_stock_threshold: i64,
    /// Fewer available vouchers than the threshold.
    pub low: bool,
}

/// The value held (available and reserved vouchers) in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// ISO 4217 code.
    pub currency: String,
    /// Sum of face values, minor units.
    pub face_value_total: i64,
    /// Vouchers counted.
    pub vouchers: i64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockReport {
    /// One line per product and face value (every face value of every
    /// product, held or not).
    pub lines: Vec<StockLine>,
    /// Value held per currency.
    pub exposure: Vec<Exposure>,
    /// The look-ahead of `expiring_soon`, days.
    pub expiring_within_days: u32,
}

/// Reads the stock report of the caller's tenants.
pub async fn report(
    vault: &Arc<Vault>,
    who: &Principal,
    ctx: &RequestContext,
    expiring_within_days: u32,
) -> Result<StockReport, VoucherError> {
    const ACTION: &str = "stock.report";
    crate::guard::require(vault, ctx, who, ACTION, Permission::ReadCatalog).await?;
    if expiring_within_days > MAX_EXPIRING_DAYS {
        return Err(VoucherError::Invalid(format!(
            "expiring_within_days is 0 to {MAX_EXPIRING_DAYS}"
        )));
    }
    let scope = TenantScope::of(&who.tenants);
    let central = &vault.stores().central;
    let now = vault.clock().now_ms();
    let cut_off = now.saturating_add(i64::from(expiring_within_days) * 86_400_000);
    let products = central.list_products(&scope).await?;
    let counts = central.stock_counts(&scope, now, cut_off).await?;

    // Every face value of every product gets a line, held or not: an empty
    // line is the one most worth seeing.
    let mut lines: BTreeMap<(String, String, i64), StockLine> = BTreeMap::new();
    let mut by_id = BTreeMap::new();
    for p in &products {
        by_id.insert(p.id.clone(), p);
        for d in &p.denominations {
            lines.insert(
                (p.tenant.clone(), p.sku.clone(), *d),
                StockLine {
                    tenant: p.tenant.clone(),
                    sku: p.sku.clone(),
                    name: p.name.clone(),
                    face_value: *d,
                    currency: p.currency.clone(),
                    counts: [0; 6],
                    expiring_soon: 0,
                    low_stock_threshold: p.low_stock_threshold,
                    low: false,
                },
            );
        }
    }
    let mut exposure: BTreeMap<String, Exposure> = BTreeMap::new();
    for c in counts {
        let Some(p) = by_id.get(&c.product_id) else {
            continue;
        };
        let line = lines
            .entry((c.tenant.clone(), p.sku.clone(), c.face_value))
            .or_insert_with(|| StockLine {
                tenant: c.tenant.clone(),
                sku: p.sku.clone(),
                name: p.name.clone(),
                face_value: c.face_value,
                currency: c.currency.clone(),
                counts: [0; 6],
                expiring_soon: 0,
                low_stock_threshold: p.low_stock_threshold,
                low: false,
            });
        let (state, count) = if c.state == "available" {
            // Past its own expiry, an available code is no longer stock.
            if let Some(expired) = line.counts.get_mut(4) {
                *expired += c.expired;
            }
            line.expiring_soon += c.expiring - c.expired;
            ("available", c.count - c.expired)
        } else {
            (c.state.as_str(), c.count)
        };
        if let Some(slot) = STATES
            .iter()
            .position(|s| *s == state)
            .and_then(|i| line.counts.get_mut(i))
        {
            *slot += count;
        }
        if matches!(state, "available" | "reserved") {
            let e = exposure
                .entry(c.currency.clone())
                .or_insert_with(|| Exposure {
                    currency: c.currency.clone(),
                    face_value_total: 0,
                    vouchers: 0,
                });
            e.face_value_total = e
                .face_value_total
                .saturating_add(count.saturating_mul(c.face_value));
            e.vouchers += count;
        }
    }
    let lines: Vec<StockLine> = lines
        .into_values()
        .map(|mut l| {
            l.low = l.counts.first().copied().unwrap_or(0) < l.low_stock_threshold;
            l
        })
        .collect();
    let event = vault.event(ctx, Some(who), ACTION, None, None, Outcome::Allowed, None);
    vault.record(event).await?;
    Ok(StockReport {
        lines,
        exposure: exposure.into_values().collect(),
        expiring_within_days,
    })
}

/// Voids every voucher of an import still in stock (a retailer recalled the
/// file's codes): they leave stock for good, each with `reason` in its
/// history. Needs `catalog:manage`. Returns how many.
pub async fn void_import(
    vault: &Arc<Vault>,
    who: &Principal,
    ctx: &RequestContext,
    tenant: Option<&str>,
    import_id: &str,
    reason: &str,
) -> Result<u64, VoucherError> {
    const ACTION: &str = "voucher.void";
    crate::guard::require(vault, ctx, who, ACTION, Permission::ManageCatalog).await?;
    let reason = crate::guard::check_reason(reason)?;
    let tenant = who.resolve_tenant(tenant)?;
    let central = &vault.stores().central;
    if central.import_by_id(&tenant, import_id).await?.is_none() {
        return Err(VoucherError::NotFound(
            "no import of that id in this tenant",
        ));
    }
    let why = Some(reason.to_owned());
    crate::guard::record(
        vault,
        ctx,
        Some(who),
        ACTION,
        Some(&tenant),
        Some(import_id),
        Outcome::Allowed,
        why,
    )
    .await?;
    let now = vault.clock().now_ms();
    Ok(central
        .void_import(import_id, &tenant, &who.id, reason, now)
        .await?)
}
