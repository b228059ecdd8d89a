//! `[suppliers]`: the suppliers codes are bought from, how they are reached
//! and limited, and what each keeps in stock; and the server's own
//! replenishment and daily reconciliation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use strongroom_audit::Outcome;
use strongroom_supplier_http::rest::{Rest, RestSettings};
use strongroom_supplier_http::runa::{Runa, RunaSettings};
use strongroom_supplier_http::tango::{Tango, TangoSettings};
use strongroom_supplier_http::{Transport, TransportSettings};
use strongroom_suppliers::backoff::Backoff;
use strongroom_suppliers::breaker::Transition;
use strongroom_suppliers::{Limits, Resilient, SupplierConnector};
use strongroom_vault::{RequestContext, Vault};
use strongroom_vouchers::supply::{Supplier, Supply, SupplyRule, VaultCredential};

/// `[suppliers]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppliersSettings {
    /// How often the server replenishes what is below its minimum (0:
    /// never; `strongroom suppliers replenish` by hand).
    #[serde(default = "default_replenish_every")]
    pub replenish_every_secs: u64,
    /// Reconcile the previous UTC day once a day, after 00:15 UTC.
    #[serde(default = "yes")]
    pub reconcile_daily: bool,
    /// Seconds a purchase waits for an order the supplier completes later
    /// before leaving it to reconciliation.
    #[serde(default = "default_collect_within")]
    pub collect_within_secs: u64,
    /// Seconds an order that found no stock waits for a code bought on
    /// demand (a purchase still under way then stocks it for later).
    #[serde(default = "default_on_demand_within")]
    pub on_demand_within_secs: u64,
    /// The suppliers.
    #[serde(default)]
    pub supplier: Vec<SupplierSettings>,
}

impl Default for SuppliersSettings {
    fn default() -> Self {
        Self {
            replenish_every_secs: default_replenish_every(),
            reconcile_daily: true,
            collect_within_secs: default_collect_within(),
            on_demand_within_secs: default_on_demand_within(),
            supplier: Vec::new(),
        }
    }
}

fn default_replenish_every() -> u64 {
    300
}

fn default_on_demand_within() -> u64 {
    8
}

fn default_collect_within() -> u64 {
    30
}

fn yes() -> bool {
    true
}

fn default_timeout() -> u64 {
    20
}

fn default_rate() -> f64 {
    1.0
}

fn default_concurrency() -> usize {
    2
}

fn default_breaker_failures() -> u32 {
    5
}

fn default_cool_down() -> u64 {
    60
}

/// Which API a supplier speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Runa's v2 order API.
    Runa,
    /// Tango Card's RaaS v2.
    Tango,
    /// A retailer's own API, described in `rest`.
    Rest,
}

/// `[[suppliers.supplier]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupplierSettings {
    /// Unique name (a-z, 0-9, '-', '_'); the credential is set under it.
    pub name: String,
    /// `runa`, `tango` or `rest`.
    pub kind: Kind,
    /// The tenant whose stock it fills.
    pub tenant: String,
    /// `https://…` (plain `http://` only to a loopback address).
    pub base_url: String,
    /// CA certificates (PEM) to trust for it instead of the public web's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds allowed for one request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Requests started per second at most (Tango Card: 1).
    #[serde(default = "default_rate")]
    pub requests_per_sec: f64,
    /// Requests in flight at most.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Failures in a row that open the circuit.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// Seconds an open circuit stays open.
    #[serde(default = "default_cool_down")]
    pub breaker_cool_down_secs: u64,
    /// Spend allowed per UTC day, one entry per currency: `"5000.00 GBP"`.
    /// A purchase in a currency not listed always needs approval.
    pub daily_limit: Vec<String>,
    /// Raise `supplier.low_balance` below these: `"1000.00 GBP"`.
    #[serde(default)]
    pub low_balance: Vec<String>,
    /// Runa's settings.
    #[serde(default)]
    pub runa: Option<RunaSettings>,
    /// Tango Card's settings (required for `kind = "tango"`).
    #[serde(default)]
    pub tango: Option<TangoSettings>,
    /// The REST connector's description (required for `kind = "rest"`).
    #[serde(default)]
    pub rest: Option<RestSettings>,
    /// What it keeps in stock.
    #[serde(default)]
    pub product: Vec<ProductSettings>,
}

/// `[[suppliers.supplier.product]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSettings {
    /// The product's SKU in the supplier's tenant.
    pub sku: String,
    /// The supplier's id for it (Tango `utid`, Runa product code).
    pub supplier_product: String,
    /// Face values to keep, as amounts (`"25.00"`); empty: all of the
    /// product's.
    #[serde(default)]
    pub face_values: Vec<String>,
    /// An order that finds no stock buys one code from this supplier
    /// (within `on_demand_within_secs`).
    #[serde(default)]
    pub on_demand: bool,
    /// Replenish when fewer are available than this…
    pub min_stock: i64,
    /// …up to this many.
    pub target_stock: i64,
}

/// `"5000.00 GBP"` → (`GBP`, 500000).
fn amount_in(text: &str, what: &str) -> Result<(String, i64)> {
    let (amount, currency) = text.trim().split_once(' ').with_context(|| {
        format!("{what} '{text}': write an amount and a currency, e.g. \"5000.00 GBP\"")
    })?;
    let currency = currency.trim().to_owned();
    let minor = strongroom_vouchers::import::parse_amount(amount.trim(), &currency)
        .map_err(|e| anyhow::anyhow!("{what} '{text}': {e}"))?;
    Ok((currency, minor))
}

fn plain_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SuppliersSettings {
    /// Checks what can be checked before the stores are open.
    pub fn check(&self) -> Result<()> {
        let mut names = std::collections::HashSet::new();
        for s in &self.supplier {
            let what = format!("suppliers.supplier '{}'", s.name);
            if !plain_id(&s.name) || !names.insert(s.name.clone()) {
                bail!("{what}: names are unique, 1-64 of a-z, A-Z, 0-9, '-', '_', '.'");
            }
            if !(1..=120).contains(&s.timeout_secs) {
                bail!("{what}: timeout_secs is 1 to 120");
            }
            if !(s.requests_per_sec > 0.0 && s.requests_per_sec <= 1000.0) {
                bail!("{what}: requests_per_sec is above 0, at most 1000");
            }
            if !(1..=64).contains(&s.concurrency) || s.breaker_failures == 0 {
                bail!("{what}: concurrency is 1 to 64 and breaker_failures at least 1");
            }
            if s.daily_limit.is_empty() {
                bail!("{what}: daily_limit is required, e.g. [\"5000.00 GBP\"]");
            }
            for l in s.daily_limit.iter().chain(&s.low_balance) {
                amount_in(l, &what)?;
            }
            if let Some(url) = s.tango.as_ref().and_then(|t| t.token_url.as_deref())
                && !url.starts_with("https://")
            {
                bail!("{what}: token_url must be https:// (the client secret is sent to it)");
            }
            match s.kind {
                Kind::Tango if s.tango.is_none() => {
                    bail!(
                        "{what}: a tango supplier needs [suppliers.supplier.tango] customer and account"
                    )
                }
                Kind::Rest if s.rest.is_none() => {
                    bail!("{what}: a rest supplier needs [suppliers.supplier.rest]")
                }
                _ => {}
            }
            for p in &s.product {
                for fv in &p.face_values {
                    let ok = fv
                        .split_once('.')
                        .map_or(fv.as_str(), |(w, _)| w)
                        .parse::<u64>()
                        .is_ok();
                    if !ok || fv.chars().any(|c| !c.is_ascii_digit() && c != '.') {
                        bail!(
                            "{what}: product {}: face value '{fv}' is an amount like 25.00",
                            p.sku
                        );
                    }
                }
                if !plain_id(&p.supplier_product) {
                    bail!(
                        "{what}: supplier_product '{}' is 1-64 of a-z, A-Z, 0-9, '-', '_', '.'",
                        p.supplier_product
                    );
                }
                if p.min_stock < 0 || p.target_stock < p.min_stock || p.target_stock > 100_000 {
                    bail!(
                        "{what}: product {}: 0 <= min_stock <= target_stock <= 100000",
                        p.sku
                    );
                }
            }
        }
        Ok(())
    }

    /// The suppliers, with their connectors, for `vault`.
    pub fn build(&self, vault: &Arc<Vault>) -> Result<Supply> {
        let mut suppliers = Vec::new();
        for s in &self.supplier {
            let what = format!("suppliers.supplier '{}'", s.name);
            let tls = match &s.ca_file {
                Some(ca) => {
                    Some(strongroom_watch::tls::client_config(ca).with_context(|| what.clone())?)
                }
                None => None,
            };
            let http = Transport::new(TransportSettings {
                name: s.name.clone(),
                base_url: s.base_url.clone(),
                tls,
                timeout: Duration::from_secs(s.timeout_secs),
            })?;
            let credential = Arc::new(VaultCredential::new(vault.clone(), &s.name));
            let connector: Arc<dyn SupplierConnector> = match s.kind {
                Kind::Runa => Arc::new(Runa::new(
                    http,
                    s.runa.clone().unwrap_or_default(),
                    credential,
                )),
                Kind::Tango => Arc::new(Tango::new(
                    http,
                    s.tango
                        .clone()
                        .with_context(|| format!("{what}: [tango] is missing"))?,
                    credential,
                )),
                Kind::Rest => Arc::new(Rest::new(
                    http,
                    s.rest
                        .clone()
                        .with_context(|| format!("{what}: [rest] is missing"))?,
                    credential,
                )?),
            };
            let rules = s
                .product
                .iter()
                .map(|p| SupplyRule {
                    sku: p.sku.clone(),
                    supplier_product: p.supplier_product.clone(),
                    face_values: p.face_values.clone(),
                    on_demand: p.on_demand,
                    min_stock: p.min_stock,
                    target_stock: p.target_stock,
                })
                .collect();
            let on_transition = circuit_events(vault.clone(), s.tenant.clone());
            let interval = Duration::from_secs_f64(1.0 / s.requests_per_sec);
            suppliers.push(Supplier {
                name: s.name.clone(),
                tenant: s.tenant.clone(),
                connector,
                discipline: Arc::new(Resilient::new(
                    &s.name,
                    Limits {
                        backoff: Backoff::default(),
                        interval,
                        concurrency: s.concurrency,
                        breaker_failures: s.breaker_failures,
                        breaker_cool_down: Duration::from_secs(s.breaker_cool_down_secs),
                    },
                    on_transition,
                )),
                daily_limits: parse_amounts(&s.daily_limit, &what)?,
                low_balance: parse_amounts(&s.low_balance, &what)?,
                products: rules,
            });
        }
        Ok(Supply::new(vault.clone(), suppliers)
            .collecting_within(Duration::from_secs(self.collect_within_secs.min(600)))
            .on_demand_within(Duration::from_secs(self.on_demand_within_secs.clamp(1, 60))))
    }
}

fn parse_amounts(list: &[String], what: &str) -> Result<HashMap<String, i64>> {
    list.iter().map(|l| amount_in(l, what)).collect()
}

/// Records each circuit transition (`supplier.circuit_open` when a
/// supplier is cut off, which the watch raises as an alert).
fn circuit_events(
    vault: Arc<Vault>,
    tenant: String,
) -> strongroom_suppliers::resilient::OnTransition {
    Box::new(move |name: &str, t: Transition| {
        let (action, outcome) = match t {
            Transition::Opened => ("supplier.circuit_open", Outcome::Failed),
            Transition::Closed => ("supplier.circuit_closed", Outcome::Allowed),
        };
        tracing::warn!(supplier = name, transition = ?t, "supplier circuit");
        let vault = vault.clone();
        let (name, tenant) = (name.to_owned(), tenant.clone());
        tokio::spawn(async move {
            let ctx = RequestContext {
                request_id: format!("supplier-{name}"),
                client_addr: None,
            };
            let event = vault.event(
                &ctx,
                None,
                action,
                Some(&tenant),
                Some(&name),
                outcome,
                None,
            );
            if let Err(e) = vault.record(event).await {
                tracing::error!(error = %e, "could not record a supplier circuit transition");
            }
        });
    })
}

/// The server's replenishment and daily reconciliation.
pub fn spawn_scheduler(
    supply: Arc<Supply>,
    vault: Arc<Vault>,
    settings: &SuppliersSettings,
) -> Option<tokio::task::JoinHandle<()>> {
    if supply.suppliers().is_empty() {
        return None;
    }
    let every = settings.replenish_every_secs;
    let reconcile_daily = settings.reconcile_daily;
    Some(tokio::spawn(async move {
        let ctx = RequestContext {
            request_id: "suppliers".into(),
            client_addr: None,
        };
        let mut last_replenish = tokio::time::Instant::now();
        let mut reconciled = String::new();
        let mut first = true;
        loop {
            tokio::time::sleep(Duration::from_secs(if first { 5 } else { 30 })).await;
            first = false;
            if !vault.is_unsealed() {
                continue;
            }
            if every > 0 && last_replenish.elapsed() >= Duration::from_secs(every) {
                last_replenish = tokio::time::Instant::now();
                match supply.replenish_all(&ctx).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(codes = n, "replenished stock from suppliers"),
                    Err(e) => tracing::warn!(code = e.code(), "replenishment failed"),
                }
            }
            let now = vault.clock().now_ms();
            let yesterday = strongroom_vouchers::supply::day_of(now - 86_400_000);
            let past_quarter = now.rem_euclid(86_400_000) >= 15 * 60_000;
            if reconcile_daily && past_quarter && reconciled != yesterday {
                let who = strongroom_vouchers::supply::replenisher();
                match supply.reconcile(&who, &ctx, &yesterday).await {
                    Ok(r) => {
                        reconciled = yesterday;
                        if !r.mismatches.is_empty() {
                            tracing::warn!(day = %r.day, mismatches = r.mismatches.len(), "reconciliation found mismatches");
                        }
                    }
                    Err(e) => tracing::warn!(code = e.code(), "reconciliation failed"),
                }
            }
        }
    }))
}
