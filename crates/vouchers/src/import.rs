//! Importing codes from a retailer's CSV file into stock.
//!
//! # The file
//! A header row naming the columns, in any order: `sku`, `code`,
//! `face_value`, `currency` (required), `pin`, `expires_at`, `serial`
//! (optional). `face_value` is a decimal amount of the currency (`25.00`,
//! `500` for yen); `expires_at` is an ISO 8601 date (`2027-06-30`, valid
//! through that day, UTC) or an RFC 3339 time.
//!
//! # What happens
//! Each row is checked on its own: a bad row is reported (row number,
//! column, reason) and the others go on. Valid rows are stored in batches:
//! each code (and PIN) is tokenized by the vault, **dormant** (it cannot be
//! revealed until it is delivered), and a voucher holding only the token goes
//! into stock. A code the vault already holds, in this file or from before,
//! is a duplicate: its keyed fingerprint gives it away.
//!
//! # Interrupted imports
//! Codes reach the vault before their vouchers reach stock, and each
//! voucher is tied to its token by a unique index. If an import stops
//! between the two, running the same file again finds those codes in the
//! vault, sees that they came from an import and have no voucher yet, and
//! adds the vouchers: every code ends up in stock exactly once.

use std::collections::HashMap;
use std::sync::Arc;

use strongroom_audit::Outcome;
use strongroom_crypto::random;
use strongroom_store::{
    ImportRecord, ProductRecord, RetailerRecord, Scoped, StoreError, TenantScope, VoucherRecord,
};
use strongroom_vault::{
    NewSecret, OnDuplicate, Permission, Principal, RequestContext, SecretBytes, Tokenized, Vault,
    VaultError,
};

use crate::VoucherError;
use crate::money::currency_exponent;

/// Rows stored per batch: one vault batch and one stock insert each (the
/// vault's own batch limit).
pub const BATCH_ROWS: usize = 1000;
/// The job's counts are written to the store every this many batches (and
/// at the end), for whoever watches a long import.
const RECORD_EVERY_BATCHES: u64 = 20;
/// Problems listed in a report; the counts cover them all.
pub const MAX_LISTED_PROBLEMS: usize = 1000;
/// Longest code or PIN accepted, in bytes.
pub const MAX_CODE_BYTES: usize = 256;

/// The columns a file may have.
const REQUIRED: [&str; 4] = ["sku", "code", "face_value", "currency"];
const OPTIONAL: [&str; 3] = ["pin", "expires_at", "serial"];

/// What an import is asked to do.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Tenant; may be left out by a caller bound to one.
    pub tenant: Option<String>,
    /// The retailer whose codes the file holds, by id or name.
    pub retailer: String,
    /// Check every row, store nothing.
    pub dry_run: bool,
    /// Stock every row or none: valid rows are staged (not yet stock) and
    /// made available together at the end, or erased if any row was
    /// refused.
    pub all_or_nothing: bool,
}

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// Row number in the file, the header being row 1.
    pub row: u64,
    /// The column at fault (empty for the row as a whole).
    pub column: String,
    /// Why, for a person. Never contains the code.
    pub reason: String,
}

/// The outcome of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The job's id.
    pub import_id: String,
    /// `completed`, `dry_run`, `discarded` (all or nothing, and a row was
    /// refused: nothing stocked) or `failed`.
    pub status: String,
    /// Data rows read.
    pub rows: u64,
    /// Rows now in stock (or, in a dry run, that would be).
    pub accepted: u64,
    /// Rows refused for their content.
    pub rejected: u64,
    /// Rows whose code was already held.
    pub duplicates: u64,
    /// The first [`MAX_LISTED_PROBLEMS`] refused rows, duplicates included.
    pub problems: Vec<RowProblem>,
}

/// Column positions, from the header.
#[derive(Debug, Clone, Copy)]
struct Columns {
    sku: usize,
    code: usize,
    face_value: usize,
    currency: usize,
    pin: Option<usize>,
    expires_at: Option<usize>,
    serial: Option<usize>,
}

/// A row that passed its checks. Not `Debug`: it holds the code.
struct ValidRow {
    row: u64,
    product: usize,
    code: SecretBytes,
    pin: Option<SecretBytes>,
    face_value: i64,
    expires_at: Option<i64>,
    serial: Option<String>,
}

/// A running import: feed it the header, then the rows, then finish it.
pub struct ImportJob {
    vault: Arc<Vault>,
    who: Principal,
    ctx: RequestContext,
    record: ImportRecord,
    dry_run: bool,
    all_or_nothing: bool,
    products: Vec<ProductRecord>,
    by_sku: HashMap<String, usize>,
    columns: Option<Columns>,
    pending: Vec<ValidRow>,
    problems: Vec<RowProblem>,
    batches: u64,
    /// A dry run's fingerprints so far (their first 16 bytes: 16 bytes a
    /// row, and a collision among a file's rows is a 2^-128 chance), to
    /// find a code repeated within the file.
    seen: std::collections::HashSet<[u8; 16]>,
    /// The last batch's vouchers, on their way into stock.
    stocking: Option<Stocking>,
}

/// A batch of vouchers being inserted, and the file rows they came from.
struct Stocking {
    rows: Vec<u64>,
    insert: tokio::task::JoinHandle<Result<Vec<bool>, StoreError>>,
}

impl ImportJob {
    /// Checks the caller may import for the retailer, and opens the job.
    pub async fn start(
        vault: Arc<Vault>,
        who: &Principal,
        ctx: &RequestContext,
        options: ImportOptions,
    ) -> Result<Self, VoucherError> {
        const ACTION: &str = "voucher.import";
        let denied = |e: VaultError| async {
            let event = vault.event(
                ctx,
                Some(who),
                ACTION,
                None,
                None,
                Outcome::Denied,
                Some(e.code().into()),
            );
            vault.record(event).await?;
            Err::<Self, VoucherError>(e.into())
        };
        if let Err(e) = who.require(Permission::ImportVouchers) {
            return denied(e).await;
        }
        if !options.dry_run
            && let Err(e) = who.require(Permission::Tokenize)
        {
            return denied(e).await;
        }
        let tenant = match who.resolve_tenant(options.tenant.as_deref()) {
            Ok(t) => t,
            Err(e) => return denied(e).await,
        };
        if options.retailer.is_empty() {
            return Err(VoucherError::Invalid(
                "name the retailer whose codes these are: POST /v1/imports?retailer=NAME".into(),
            ));
        }
        let central = &vault.stores().central;
        let scope = TenantScope::one(&tenant);
        let retailer: Option<RetailerRecord> = central
            .list_retailers(&scope)
            .await?
            .into_iter()
            .find(|r| r.id == options.retailer || r.name == options.retailer);
        let Some(retailer) = retailer else {
            let event = vault.event(
                ctx,
                Some(who),
                ACTION,
                Some(&tenant),
                None,
                Outcome::Denied,
                Some("catalog.not_found: retailer".into()),
            );
            vault.record(event).await?;
            return Err(VoucherError::NotFound(
                "no retailer of that id or name in this tenant",
            ));
        };
        let products: Vec<ProductRecord> = central
            .list_products(&scope)
            .await?
            .into_iter()
            .filter(|p| p.retailer_id == retailer.id)
            .collect();
        let by_sku = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.sku.clone(), i))
            .collect();
        let now = vault.clock().now_ms();
        let record = ImportRecord {
            id: random::token("im_").map_err(VaultError::from)?,
            tenant: tenant.clone(),
            retailer_id: retailer.id.clone(),
            status: if options.dry_run {
                "dry_run"
            } else {
                "running"
            }
            .into(),
            rows: 0,
            accepted: 0,
            rejected: 0,
            duplicates: 0,
            created_by: who.id.clone(),
            created_at: now,
            finished_at: 0,
        };
        let event = vault.event(
            ctx,
            Some(who),
            ACTION,
            Some(&tenant),
            Some(&record.id),
            Outcome::Allowed,
            Some(format!(
                "retailer={} {}",
                retailer.name,
                if options.dry_run {
                    "dry run"
                } else {
                    "started"
                }
            )),
        );
        vault.record(event).await?;
        if !options.dry_run {
            central.put_import(record.clone()).await?;
        }
        Ok(Self {
            vault,
            who: who.clone(),
            ctx: ctx.clone(),
            record,
            dry_run: options.dry_run,
            all_or_nothing: options.all_or_nothing,
            products,
            by_sku,
            columns: None,
            pending: Vec::with_capacity(BATCH_ROWS),
            problems: Vec::new(),
            batches: 0,
            seen: std::collections::HashSet::new(),
            stocking: None,
        })
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Takes the header row. A file with a bad header is refused whole.
    pub fn header<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), VoucherError> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, name) in names.into_iter().enumerate() {
            let name = name.trim().to_ascii_lowercase();
            // Never repeated back: a file without a header has a code here.
            if !REQUIRED.contains(&name.as_str()) && !OPTIONAL.contains(&name.as_str()) {
                return Err(VoucherError::Invalid(format!(
                    "column {} of the header is not a known name; columns are sku, code, face_value, currency and optionally pin, expires_at, serial",
                    i + 1
                )));
            }
            if seen.insert(name.clone(), i).is_some() {
                return Err(VoucherError::Invalid(format!(
                    "column '{name}' appears twice in the header"
                )));
            }
        }
        let need = |name: &str| {
            seen.get(name).copied().ok_or_else(|| {
                VoucherError::Invalid(format!(
                    "the header has no '{name}' column (the first row must name the columns: sku, code, face_value, currency[, pin, expires_at, serial])"
                ))
            })
        };
        self.columns = Some(Columns {
            sku: need("sku")?,
            code: need("code")?,
            face_value: need("face_value")?,
            currency: need("currency")?,
            pin: seen.get("pin").copied(),
            expires_at: seen.get("expires_at").copied(),
            serial: seen.get("serial").copied(),
        });
        Ok(())
    }

    fn problem(&mut self, row: u64, column: &str, reason: impl Into<String>) {
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(RowProblem {
                row,
                column: column.to_owned(),
                reason: reason.into(),
            });
        }
    }

    /// Takes one data row (`row` is its number in the file, the header
    /// being 1). Storage happens in batches; an error here is for the whole
    /// import (the vault sealed, a store down), not for the row.
    pub async fn row(&mut self, row: u64, fields: &[&str]) -> Result<(), VoucherError> {
        let Some(columns) = self.columns else {
            return Err(VoucherError::Invalid("the file has no header row".into()));
        };
        self.record.rows += 1;
        match self.check(row, columns, fields) {
            Ok(valid) => self.pending.push(valid),
            Err((column, reason)) => {
                self.record.rejected += 1;
                self.problem(row, column, reason);
            }
        }
        if self.pending.len() >= BATCH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Counts a row that is not UTF-8 text as refused.
    pub fn not_text(&mut self, row: u64) {
        self.record.rows += 1;
        self.record.rejected += 1;
        self.problem(row, "", "the row is not UTF-8 text");
    }

    fn check(
        &self,
        row: u64,
        c: Columns,
        fields: &[&str],
    ) -> Result<ValidRow, (&'static str, String)> {
        let field = |i: usize| fields.get(i).map(|f| f.trim()).unwrap_or("");
        let optional = |i: Option<usize>| i.map(field).filter(|f| !f.is_empty());
        let sku = field(c.sku);
        let Some(&product) = self.by_sku.get(sku) else {
            // The row's own values are never repeated back in a report: a
            // row with a missing or extra field has a code in another column.
            return Err((
                "sku",
                if sku.is_empty() {
                    "empty".to_owned()
                } else {
                    "no product with this SKU for the retailer".to_owned()
                },
            ));
        };
        let p = self
            .products
            .get(product)
            .ok_or(("sku", "unknown product".to_owned()))?;
        let code = field(c.code);
        if code.is_empty() || code.len() > MAX_CODE_BYTES || code.chars().any(char::is_control) {
            return Err((
                "code",
                format!("must be 1 to {MAX_CODE_BYTES} bytes without control characters"),
            ));
        }
        let currency = field(c.currency);
        if currency != p.currency {
            return Err((
                "currency",
                format!("not the product's currency ({})", p.currency),
            ));
        }
        let face_value = parse_amount(field(c.face_value), &p.currency)
            .map_err(|reason| ("face_value", reason))?;
        if !p.denominations.contains(&face_value) {
            return Err(("face_value", format!("not a face value of {}", p.sku)));
        }
        let pin = match optional(c.pin) {
            Some(pin) if pin.len() > MAX_CODE_BYTES || pin.chars().any(char::is_control) => {
                return Err((
                    "pin",
                    format!("must be at most {MAX_CODE_BYTES} bytes without control characters"),
                ));
            }
            other => other.map(|p| SecretBytes::new(p.as_bytes().to_vec())),
        };
        let expires_at = match optional(c.expires_at) {
            None => None,
            Some(text) => {
                let at = parse_expiry(text).map_err(|reason| ("expires_at", reason))?;
                if at <= self.vault.clock().now_ms() {
                    return Err(("expires_at", "the code has already expired".to_owned()));
                }
                Some(at)
            }
        };
        let serial = optional(c.serial).map(str::to_owned);
        if serial.as_ref().is_some_and(|s| s.len() > 100) {
            return Err(("serial", "must be at most 100 characters".to_owned()));
        }
        // The serial is kept in clear; a code or PIN in its place must not be.
        if serial.is_some()
            && (serial.as_deref() == Some(code) || optional(c.pin) == serial.as_deref())
        {
            return Err(("serial", "must not repeat the code or PIN".to_owned()));
        }
        Ok(ValidRow {
            row,
            product,
            code: SecretBytes::new(code.as_bytes().to_vec()),
            pin,
            face_value,
            expires_at,
            serial,
        })
    }

    /// Stores the pending rows: codes first, then (for the rows whose code
    /// goes into stock) PINs, then the vouchers.
    async fn flush(&mut self) -> Result<(), VoucherError> {
        let rows = std::mem::take(&mut self.pending);
        if rows.is_empty() {
            return Ok(());
        }
        if self.dry_run {
            // Duplicates as storing would find them: held already (by keyed
            // fingerprint), or earlier in this file.
            let codes: Vec<&SecretBytes> = rows.iter().map(|r| &r.code).collect();
            let tenant = Some(self.record.tenant.as_str());
            let held = self
                .vault
                .find_held(&self.who, &self.ctx, tenant, "voucher_code", &codes)
                .await?;
            for (r, (fingerprint, held)) in rows.iter().zip(held) {
                let mut prefix = [0u8; 16];
                prefix.copy_from_slice(fingerprint.get(..16).unwrap_or(&[0; 16]));
                if held || !self.seen.insert(prefix) {
                    self.duplicate(r.row);
                } else {
                    self.record.accepted += 1;
                }
            }
            return Ok(());
        }
        let tenant = self.record.tenant.clone();
        let import_id = self.record.id.clone();
        let metadata = |p: &ProductRecord| {
            let mut m = serde_json::Map::new();
            m.insert("import".into(), import_id.clone().into());
            m.insert("sku".into(), p.sku.clone().into());
            m
        };
        let mut codes = Vec::with_capacity(rows.len());
        let mut rest = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(p) = self.products.get(r.product) else {
                continue;
            };
            codes.push(NewSecret {
                tenant: Some(tenant.clone()),
                class: "voucher_code".into(),
                value: r.code,
                metadata: Some(metadata(p)),
                reveal_window_secs: Some(0),
                on_duplicate: OnDuplicate::Reject,
            });
            rest.push((
                r.row,
                r.product,
                r.pin,
                r.face_value,
                r.expires_at,
                r.serial,
            ));
        }
        let stored = self
            .vault
            .tokenize_batch(&self.who, &self.ctx, codes)
            .await?;

        // Which rows go into stock, under which token.
        let mut in_batch = std::collections::HashSet::with_capacity(rest.len());
        let mut stocked = Vec::with_capacity(rest.len());
        for (result, (row, product, pin, face_value, expires_at, serial)) in
            stored.into_iter().zip(rest)
        {
            let token = match result {
                Ok(Tokenized { token, .. }) => token,
                Err(VaultError::Duplicate { existing }) => {
                    // Held already: stock only if an interrupted import of
                    // this retailer stored it and never made its voucher.
                    if self
                        .left_by_an_interrupted_import(&existing, product)
                        .await?
                    {
                        existing
                    } else {
                        self.duplicate(row);
                        continue;
                    }
                }
                Err(_) => {
                    self.record.rejected += 1;
                    self.problem(row, "code", "the vault refused the code");
                    continue;
                }
            };
            // The same code twice in one batch: the second is a duplicate.
            if !in_batch.insert(token.clone()) {
                self.duplicate(row);
                continue;
            }
            stocked.push((row, product, token, pin, face_value, expires_at, serial));
        }

        // PINs of those rows only; a row whose PIN cannot be kept is refused
        // (a voucher without its PIN could not be redeemed).
        let mut pin_tokens: Vec<Option<String>> = vec![None; stocked.len()];
        let mut pin_items = Vec::new();
        let mut pin_of = Vec::new();
        for (i, entry) in stocked.iter_mut().enumerate() {
            if let Some(pin) = entry.3.take()
                && let Some(p) = self.products.get(entry.1)
            {
                pin_items.push(NewSecret {
                    tenant: Some(tenant.clone()),
                    class: "generic".into(),
                    value: pin,
                    metadata: Some(metadata(p)),
                    reveal_window_secs: Some(0),
                    on_duplicate: OnDuplicate::Allow,
                });
                pin_of.push(i);
            }
        }
        let mut pin_failed = vec![false; stocked.len()];
        if !pin_items.is_empty() {
            let results = self
                .vault
                .tokenize_batch(&self.who, &self.ctx, pin_items)
                .await?;
            for (i, result) in pin_of.into_iter().zip(results) {
                match result {
                    Ok(t) => {
                        if let Some(slot) = pin_tokens.get_mut(i) {
                            *slot = Some(t.token);
                        }
                    }
                    Err(_) => {
                        if let Some(failed) = pin_failed.get_mut(i) {
                            *failed = true;
                        }
                    }
                }
            }
        }

        let now = self.vault.clock().now_ms();
        let mut vouchers = Vec::with_capacity(stocked.len());
        let mut rows_of = Vec::with_capacity(stocked.len());
        for (i, (row, product, token, _, face_value, expires_at, serial)) in
            stocked.into_iter().enumerate()
        {
            if pin_failed.get(i).copied().unwrap_or(false) {
                self.record.rejected += 1;
                self.problem(row, "pin", "the vault refused the PIN");
                continue;
            }
            let Some(p) = self.products.get(product) else {
                continue;
            };
            vouchers.push(VoucherRecord {
                // Time-ordered ids: new rows land at the right edge of the
                // primary key's B-tree instead of splitting pages anywhere.
                id: random::timed_token("vc_", u64::try_from(now).unwrap_or(0))
                    .map_err(VaultError::from)?,
                tenant: tenant.clone(),
                product_id: p.id.clone(),
                face_value,
                currency: p.currency.clone(),
                token,
                pin_token: pin_tokens.get_mut(i).and_then(Option::take),
                expires_at,
                serial,
                state: if self.all_or_nothing {
                    "staged"
                } else {
                    "available"
                }
                .into(),
                import_id: import_id.clone(),
                created_at: now,
            });
            rows_of.push(row);
        }
        // The vouchers go into stock while the next batch is read and
        // tokenized; its outcome is counted before that batch's. Codes
        // are still tokenized one batch after another, so which of two equal
        // codes is the duplicate does not depend on timing.
        self.count_stocked().await?;
        let central = Arc::clone(&self.vault.stores().central);
        self.stocking = Some(Stocking {
            rows: rows_of,
            insert: tokio::spawn(async move { central.insert_vouchers(vouchers).await }),
        });
        self.batches += 1;
        if self.batches.is_multiple_of(RECORD_EVERY_BATCHES) {
            self.vault
                .stores()
                .central
                .put_import(self.record.clone())
                .await?;
        }
        Ok(())
    }

    /// Waits for the batch going into stock, if any, and counts its rows.
    async fn count_stocked(&mut self) -> Result<(), VoucherError> {
        let Some(Stocking { rows, insert }) = self.stocking.take() else {
            return Ok(());
        };
        let added = insert.await.map_err(|e| StoreError::Backend {
            op: "insert vouchers",
            detail: e.to_string(),
        })??;
        for (was_added, row) in added.into_iter().zip(rows) {
            if was_added {
                self.record.accepted += 1;
            } else {
                // Its voucher exists: a duplicate after all (a file
                // imported before, or another import at the same time).
                self.duplicate(row);
            }
        }
        Ok(())
    }

    fn duplicate(&mut self, row: u64) {
        self.record.duplicates += 1;
        self.problem(row, "code", "duplicate: this code is already held");
    }

    /// True if the code behind `token` was left by an import that stopped
    /// before its voucher reached stock: stored by that import (its
    /// metadata names it) for this retailer and product, by the principal
    /// that ran it, still dormant, and that import never completed. Anything
    /// else holding the code, whoever stored it, makes the row a duplicate:
    /// a code someone else keeps must never become stock.
    async fn left_by_an_interrupted_import(
        &self,
        token: &str,
        product: usize,
    ) -> Result<bool, VoucherError> {
        // Its seal checked: metadata naming this import, written by SQL,
        // must not turn someone else's code into stock.
        let Scoped::Found(secret) = self
            .vault
            .secret_row(token, &TenantScope::one(&self.record.tenant), &self.ctx)
            .await?
        else {
            return Ok(false);
        };
        let metadata: Option<serde_json::Value> = secret
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok());
        let named = |key: &str| {
            metadata
                .as_ref()
                .and_then(|m| m.get(key))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let (Some(import_id), Some(sku)) = (named("import"), named("sku")) else {
            return Ok(false);
        };
        let same_product = self.products.get(product).is_some_and(|p| p.sku == sku);
        let dormant_since_stored = secret.window_closes_at <= secret.created_at;
        if secret.class != "voucher_code" || !same_product || !dormant_since_stored {
            return Ok(false);
        }
        let central = &self.vault.stores().central;
        let Some(earlier) = central
            .import_by_id(&self.record.tenant, &import_id)
            .await?
        else {
            return Ok(false);
        };
        Ok(earlier.retailer_id == self.record.retailer_id
            && earlier.created_by == secret.created_by
            && earlier.status != "completed"
            && earlier.status != "dry_run")
    }

    /// Stores what is pending and closes the job.
    pub async fn finish(mut self) -> Result<ImportReport, VoucherError> {
        if self.columns.is_none() {
            self.fail("request.invalid: empty file").await;
            return Err(VoucherError::Invalid(
                "the file is empty: it needs a header row and at least one row".into(),
            ));
        }
        let flushed = match self.flush().await {
            Ok(()) => self.count_stocked().await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            self.fail(e.code()).await;
            return Err(e);
        }
        self.record.finished_at = self.vault.clock().now_ms();
        if !self.dry_run {
            self.record.status = "completed".into();
            if self.all_or_nothing {
                let central = &self.vault.stores().central;
                if self.record.rejected + self.record.duplicates == 0 {
                    central
                        .promote_staged(&self.record.id, &self.record.tenant)
                        .await?;
                } else {
                    self.discard_staged().await?;
                    self.record.status = "discarded".into();
                    self.record.accepted = 0;
                }
            }
            self.vault
                .stores()
                .central
                .put_import(self.record.clone())
                .await?;
        }
        let r = &self.record;
        let event = self.vault.event(
            &self.ctx,
            Some(&self.who),
            "voucher.import",
            Some(&r.tenant),
            Some(&r.id),
            Outcome::Allowed,
            Some(format!(
                "{}: rows={} accepted={} rejected={} duplicates={}",
                r.status, r.rows, r.accepted, r.rejected, r.duplicates
            )),
        );
        self.vault.record(event).await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(ImportReport {
            import_id: r.id.clone(),
            status: r.status.clone(),
            rows: count(r.rows),
            accepted: count(r.accepted),
            rejected: count(r.rejected),
            duplicates: count(r.duplicates),
            problems: self.problems,
        })
    }

    /// Erases what an all-or-nothing import staged: its vouchers and the
    /// codes and PINs behind them.
    async fn discard_staged(&self) -> Result<(), VoucherError> {
        let central = &self.vault.stores().central;
        let (id, tenant) = (&self.record.id, &self.record.tenant);
        loop {
            let staged = central.staged(id, tenant, BATCH_ROWS as u32).await?;
            if staged.is_empty() {
                return Ok(());
            }
            let tokens: Vec<&str> = staged
                .iter()
                .flat_map(|(_, code, pin)| std::iter::once(code.as_str()).chain(pin.as_deref()))
                .collect();
            self.vault
                .discard_imported(&self.who, &self.ctx, tenant, id, &tokens)
                .await?;
            let ids: Vec<String> = staged.into_iter().map(|(v, _, _)| v).collect();
            central.remove_staged(id, &ids).await?;
        }
    }

    /// Marks the job failed (after an error that stopped it); an
    /// all-or-nothing import erases what it staged.
    pub async fn fail(&mut self, why: &str) {
        // Let a batch on its way into stock land first, so that what is
        // erased below includes it; its own error, if any, adds nothing.
        if let Some(Stocking { insert, .. }) = self.stocking.take() {
            let _ = insert.await;
        }
        if self.all_or_nothing
            && !self.dry_run
            && let Err(e) = self.discard_staged().await
        {
            tracing::error!(error = %e, import = %self.record.id, "could not erase what a failed all-or-nothing import staged");
        }
        self.record.status = "failed".into();
        self.record.finished_at = self.vault.clock().now_ms();
        if !self.dry_run
            && let Err(e) = self
                .vault
                .stores()
                .central
                .put_import(self.record.clone())
                .await
        {
            tracing::error!(error = %e, import = %self.record.id, "could not record a failed import");
        }
        let event = self.vault.event(
            &self.ctx,
            Some(&self.who),
            "voucher.import",
            Some(&self.record.tenant),
            Some(&self.record.id),
            Outcome::Failed,
            Some(why.to_owned()),
        );
        let _ = self.vault.record(event).await;
    }
}

/// A decimal amount (`25.00`, `25`, `0.5`) in minor units of `currency`.
pub fn parse_amount(text: &str, currency: &str) -> Result<i64, String> {
    let exponent = currency_exponent(currency).map_err(|e| e.to_string())?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // Never repeats the text: in a shifted row it may be part of a code.
    if !digits(whole) || (text.contains('.') && !digits(fraction)) {
        return Err("not an amount like 25.00".to_owned());
    }
    if fraction.len() > usize::from(exponent) {
        return Err(format!("more decimals than {currency} has ({exponent})"));
    }
    let scale = 10i64.pow(u32::from(exponent));
    let whole: i64 = whole
        .parse()
        .ok()
        .filter(|w: &i64| *w <= crate::money::MAX_FACE_VALUE)
        .ok_or_else(|| "too large".to_owned())?;
    let mut minor: i64 = 0;
    if !fraction.is_empty() {
        let padded = format!("{fraction:0<width$}", width = usize::from(exponent));
        minor = padded
            .parse()
            .map_err(|_| "not an amount like 25.00".to_owned())?;
    }
    Ok(whole * scale + minor)
}

/// An ISO 8601 date (valid through that day, UTC) or RFC 3339 time, in Unix
/// milliseconds.
pub fn parse_expiry(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let bad = || "not a date like 2027-06-30 or a time like 2027-06-30T12:00:00Z".to_owned();
    let at = if text.len() == 10 {
        let date = time::Date::parse(text, format_description!("[year]-[month]-[day]"))
            .map_err(|_| bad())?;
        date.next_day()
            .ok_or_else(bad)?
            .midnight()
            .assume_utc()
            .unix_timestamp()
            * 1000
            - 1
    } else {
        let t = time::OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())?
    };
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_minor_units() {
        assert_eq!(parse_amount("25.00", "GBP").unwrap(), 2500);
        assert_eq!(parse_amount("25", "GBP").unwrap(), 2500);
        assert_eq!(parse_amount("0.5", "GBP").unwrap(), 50);
        assert_eq!(parse_amount("500", "JPY").unwrap(), 500);
        for bad in ["", "25.", ".5", "25.001", "-5", "2,500", "1e3", "25.00 "] {
            assert!(parse_amount(bad, "GBP").is_err(), "{bad}");
        }
        assert!(parse_amount("1.5", "JPY").is_err());
    }

    #[test]
    fn expiry_dates_and_times() {
        // 2027-06-30 is valid through the end of that day, UTC.
        assert_eq!(parse_expiry("2027-06-30").unwrap(), 1_814_400_000_000 - 1);
        assert_eq!(
            parse_expiry("2027-06-30T12:00:00Z").unwrap(),
            1_814_356_800_000
        );
        for bad in ["30/06/2027", "2027-13-01", "tomorrow", "2027-06-30 12:00"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }
}
