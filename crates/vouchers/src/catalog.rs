//! The catalogue: retailers, their products (SKUs) and the face values each
//! product comes in. Everything is per tenant; names and SKUs are unique
//! within one.

use std::sync::Arc;

use strongroom_audit::Outcome;
use strongroom_crypto::random;
use strongroom_store::{ProductRecord, RetailerRecord, StoreError, TenantScope};
use strongroom_vault::{Permission, Principal, RequestContext, Vault, VaultError};

use crate::money::{check_face_value, currency_exponent};
use crate::{VoucherError, guard};

/// Most face values one product may list.
pub const MAX_DENOMINATIONS: usize = 50;

/// A product to add.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// Tenant; may be left out by a caller bound to one.
    pub tenant: Option<String>,
    /// The retailer, by id (`rt_…`) or by name.
    pub retailer: String,
    /// Unique within the tenant: 1-64 of `A-Z a-z 0-9 . _ -`.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Face values in minor units.
    pub denominations: Vec<i64>,
    /// Low-stock threshold per denomination (default 0: never low).
    pub low_stock_threshold: Option<i64>,
}

/// The catalogue of a vault.
#[derive(Clone)]
pub struct Catalog {
    vault: Arc<Vault>,
}

fn check_name(what: &str, name: &str) -> Result<String, VoucherError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(VoucherError::Invalid(format!(
            "a {what} name is 1-100 characters, without control characters"
        )));
    }
    Ok(name.to_owned())
}

fn check_sku(sku: &str) -> Result<(), VoucherError> {
    let ok = !sku.is_empty()
        && sku.len() <= 64
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VoucherError::Invalid(
            "a SKU is 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'".into(),
        ))
    }
}

impl Catalog {
    /// The catalogue kept in `vault`'s central store.
    pub fn new(vault: Arc<Vault>) -> Self {
        Self { vault }
    }

    // The fields of one audit record, as `Vault::event` takes them.
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        ctx: &RequestContext,
        who: &Principal,
        action: &str,
        tenant: Option<&str>,
        target: Option<&str>,
        outcome: Outcome,
        reason: Option<String>,
    ) -> Result<(), VoucherError> {
        let vault = &self.vault;
        guard::record(
            vault,
            ctx,
            Some(who),
            action,
            tenant,
            target,
            outcome,
            reason,
        )
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

    /// Adds a retailer to a tenant.
    pub async fn add_retailer(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: Option<&str>,
        name: &str,
    ) -> Result<RetailerRecord, VoucherError> {
        const ACTION: &str = "catalog.add_retailer";
        self.authorize(ctx, who, ACTION, Permission::ManageCatalog)
            .await?;
        let tenant = match who.resolve_tenant(tenant) {
            Ok(t) => t,
            Err(e) => {
                self.audit(
                    ctx,
                    who,
                    ACTION,
                    None,
                    None,
                    Outcome::Denied,
                    Some(e.code().into()),
                )
                .await?;
                return Err(e.into());
            }
        };
        let name = check_name("retailer", name)?;
        let record = RetailerRecord {
            id: random::token("rt_").map_err(VaultError::from)?,
            tenant: tenant.clone(),
            name,
            created_at: self.vault.clock().now_ms(),
            created_by: who.id.clone(),
        };
        self.audit(
            ctx,
            who,
            ACTION,
            Some(&tenant),
            Some(&record.id),
            Outcome::Allowed,
            Some(format!("name={}", record.name)),
        )
        .await?;
        match self
            .vault
            .stores()
            .central
            .insert_retailer(record.clone())
            .await
        {
            Ok(()) => Ok(record),
            Err(StoreError::Conflict(_)) => {
                self.audit(
                    ctx,
                    who,
                    ACTION,
                    Some(&tenant),
                    Some(&record.id),
                    Outcome::Failed,
                    Some("catalog.exists".into()),
                )
                .await?;
                Err(VoucherError::Exists(
                    "this tenant already has a retailer of that name",
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The retailers of the caller's tenants.
    pub async fn retailers(
        &self,
        who: &Principal,
        ctx: &RequestContext,
    ) -> Result<Vec<RetailerRecord>, VoucherError> {
        self.authorize(ctx, who, "catalog.list", Permission::ReadCatalog)
            .await?;
        Ok(self
            .vault
            .stores()
            .central
            .list_retailers(&TenantScope::of(&who.tenants))
            .await?)
    }

    /// The products of the caller's tenants.
    pub async fn products(
        &self,
        who: &Principal,
        ctx: &RequestContext,
    ) -> Result<Vec<ProductRecord>, VoucherError> {
        self.authorize(ctx, who, "catalog.list", Permission::ReadCatalog)
            .await?;
        Ok(self
            .vault
            .stores()
            .central
            .list_products(&TenantScope::of(&who.tenants))
            .await?)
    }

    /// One product of the caller's tenants, by SKU.
    pub async fn product(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: Option<&str>,
        sku: &str,
    ) -> Result<ProductRecord, VoucherError> {
        self.authorize(ctx, who, "catalog.list", Permission::ReadCatalog)
            .await?;
        let scope = match tenant {
            Some(t) => TenantScope::one(&who.resolve_tenant(Some(t))?),
            None => TenantScope::of(&who.tenants),
        };
        let found: Vec<ProductRecord> = self
            .vault
            .stores()
            .central
            .list_products(&scope)
            .await?
            .into_iter()
            .filter(|p| p.sku == sku)
            .collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(VoucherError::NotFound("no product with that SKU")),
            _ => Err(VoucherError::Vault(VaultError::TenantRequired)),
        }
    }

    /// Adds a product to a retailer of the tenant.
    pub async fn add_product(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        new: NewProduct,
    ) -> Result<ProductRecord, VoucherError> {
        const ACTION: &str = "catalog.add_product";
        self.authorize(ctx, who, ACTION, Permission::ManageCatalog)
            .await?;
        let tenant = match who.resolve_tenant(new.tenant.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                self.audit(
                    ctx,
                    who,
                    ACTION,
                    None,
                    None,
                    Outcome::Denied,
                    Some(e.code().into()),
                )
                .await?;
                return Err(e.into());
            }
        };
        check_sku(&new.sku)?;
        let name = check_name("product", &new.name)?;
        currency_exponent(&new.currency)?;
        let mut denominations = new.denominations.clone();
        if denominations.is_empty() || denominations.len() > MAX_DENOMINATIONS {
            return Err(VoucherError::Invalid(format!(
                "give 1 to {MAX_DENOMINATIONS} face values, in minor units (2500 for 25.00)"
            )));
        }
        for d in &denominations {
            check_face_value(*d)?;
        }
        denominations.sort_unstable();
        denominations.dedup();
        let threshold = new.low_stock_threshold.unwrap_or(0);
        if !(0..=1_000_000).contains(&threshold) {
            return Err(VoucherError::Invalid(
                "low_stock_threshold is 0 (never low) to 1000000".into(),
            ));
        }
        let central = &self.vault.stores().central;
        let retailer = central
            .list_retailers(&TenantScope::one(&tenant))
            .await?
            .into_iter()
            .find(|r| r.id == new.retailer || r.name == new.retailer);
        let Some(retailer) = retailer else {
            return Err(VoucherError::NotFound(
                "no retailer of that id or name in this tenant",
            ));
        };
        let record = ProductRecord {
            id: random::token("pr_").map_err(VaultError::from)?,
            tenant: tenant.clone(),
            retailer_id: retailer.id,
            sku: new.sku,
            name,
            currency: new.currency,
            denominations,
            low_stock_threshold: threshold,
            created_at: self.vault.clock().now_ms(),
            created_by: who.id.clone(),
        };
        self.audit(
            ctx,
            who,
            ACTION,
            Some(&tenant),
            Some(&record.id),
            Outcome::Allowed,
            Some(format!("sku={}", record.sku)),
        )
        .await?;
        match central.insert_product(record.clone()).await {
            Ok(()) => Ok(record),
            Err(StoreError::Conflict(_)) => {
                self.audit(
                    ctx,
                    who,
                    ACTION,
                    Some(&tenant),
                    Some(&record.id),
                    Outcome::Failed,
                    Some("catalog.exists".into()),
                )
                .await?;
                Err(VoucherError::Exists(
                    "this tenant already has a product with that SKU",
                ))
            }
            Err(e) => Err(e.into()),
        }
    }
}
