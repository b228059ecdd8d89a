//! Tokenize, reveal, describe, delete, reactivate and rotate.
//!
//! Order of writes when storing a secret, and why:
//! 1. the sealed envelope goes to the vault store and the audit record to the
//!    audit log, concurrently; both are durable before step 2;
//! 2. the central record makes the token live.
//!
//! So a live token always has its envelope, and no secret is stored without
//! its audit record. A crash between the steps leaves at most an unreachable
//! envelope, never a token that cannot be revealed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use strongroom_audit::{AuditEvent, AuditItem, Outcome};
use strongroom_crypto::aead::context;
use strongroom_crypto::{SecretBytes, random};
use strongroom_store::{InsertOutcome, Scoped, SecretRecord, SecretState, TenantScope};

use crate::policy::{Permission, Principal, validate_tenant};
use crate::rows::Sealed;
use crate::seal::Unsealed;
use crate::{DataClass, RequestContext, Vault, VaultError, event_at, rfc3339};

/// What to do when a value is already stored in the tenant and class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDuplicate {
    /// Refuse with `vault.duplicate`, naming the existing token (default).
    #[default]
    Reject,
    /// Return the existing token instead of storing again.
    ReturnExisting,
    /// Store a second, independent copy under a new token.
    Allow,
}

/// A secret to store.
#[derive(Debug)]
pub struct NewSecret {
    /// Tenant; may be left out when the caller is bound to one tenant.
    pub tenant: Option<String>,
    /// Data class name.
    pub class: String,
    /// The value.
    pub value: SecretBytes,
    /// Caller metadata: a JSON object, stored as text. Not secret.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Reveal window from now, in seconds; `Some(0)` stores it dormant.
    pub reveal_window_secs: Option<u64>,
    /// Duplicate handling.
    pub on_duplicate: OnDuplicate,
}

/// A stored (or already present) secret's token and facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// The token.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// Data class.
    pub class: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Reveal window end, Unix ms.
    pub window_closes_at: i64,
    /// Key version that sealed it.
    pub key_version: u32,
    /// True when this is an existing record returned on request.
    pub duplicate: bool,
}

/// A secret's metadata: never its value.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretInfo {
    /// The token.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// Data class.
    pub class: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Creating principal id.
    pub created_by: String,
    /// Reveal window end, Unix ms.
    pub window_closes_at: i64,
    /// Whether a reveal would be allowed now.
    pub revealable: bool,
    /// Key version that sealed it.
    pub key_version: u32,
    /// Caller metadata.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A revealed secret.
#[derive(Debug)]
pub struct Revealed {
    /// The token.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// Data class.
    pub class: String,
    /// The value (masked if asked).
    pub value: SecretBytes,
    /// Whether `value` is masked.
    pub redaction: Redaction,
    /// Reveal window end, Unix ms.
    pub window_closes_at: i64,
}

/// How much of a value a reveal shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redaction {
    /// The whole value (permission `secret.reveal`).
    None,
    /// Only the last few characters, the rest as `*` (permission
    /// `secret.reveal_masked`, or `secret.reveal`).
    Masked,
}

impl Redaction {
    /// The name used in requests and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Redaction::None => "none",
            Redaction::Masked => "masked",
        }
    }
}

/// Masks a value inside the vault: the last third of its characters (at
/// most four) stay and every other becomes `*`; a value shorter than six
/// characters shows nothing. The full value never leaves this crate.
fn mask(value: &SecretBytes) -> Result<SecretBytes, VaultError> {
    let text = std::str::from_utf8(value.expose()).map_err(|_| VaultError::Integrity)?;
    let count = text.chars().count();
    let shown = if count < 6 { 0 } else { (count / 3).min(4) };
    let masked: String = text
        .chars()
        .enumerate()
        .map(|(i, c)| if i + shown >= count { c } else { '*' })
        .collect();
    Ok(SecretBytes::new(masked.into_bytes()))
}

struct Prepared {
    index: usize,
    tenant: String,
    class: DataClass,
    value: SecretBytes,
    metadata: Option<String>,
    window_secs: u64,
    on_duplicate: OnDuplicate,
    fingerprint: [u8; 32],
}

pub(crate) fn record_context(tenant: &str, class: &str, token: &str, version: u32) -> Vec<u8> {
    context(
        "secret-record",
        &[
            tenant.as_bytes(),
            class.as_bytes(),
            token.as_bytes(),
            &version.to_be_bytes(),
        ],
    )
}

/// Audit action of one stored secret (and of each item of a single request).
const ITEM_ACTION: &str = "secret.tokenize";
/// Audit action of a batch request: one record, its items inside.
const BATCH_ACTION: &str = "secret.tokenize_batch";

/// What the audit log says about one item, and the tenant it belongs to.
type ItemRecord = (Option<String>, AuditItem);

/// The audit records of a tokenize request: one per item for a single
/// request; for a batch, one per tenant the items name (so each tenant's
/// auditors find their own, a probe of another tenant included), listing
/// its items in request order. `failure` is set when the request as a whole
/// failed; its items are then already marked failed.
fn audit_records(
    time: &str,
    ctx: &RequestContext,
    who: &Principal,
    items: Vec<ItemRecord>,
    batch: bool,
    failure: Option<&str>,
) -> Vec<AuditEvent> {
    let event = |action, tenant: Option<&str>, target: Option<&str>, outcome, reason| {
        event_at(
            time.to_owned(),
            ctx,
            Some(who),
            action,
            tenant,
            target,
            outcome,
            reason,
        )
    };
    if !batch {
        let mut events: Vec<AuditEvent> = items
            .into_iter()
            .map(|(tenant, i)| {
                event(
                    ITEM_ACTION,
                    tenant.as_deref(),
                    i.target.as_deref(),
                    i.outcome,
                    i.reason,
                )
            })
            .collect();
        if let Some(code) = failure {
            events.push(event(
                ITEM_ACTION,
                None,
                None,
                Outcome::Failed,
                Some(code.to_owned()),
            ));
        }
        return events;
    }
    let mut groups: Vec<(Option<String>, Vec<AuditItem>)> = Vec::new();
    for (tenant, item) in items {
        match groups.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, list)) => list.push(item),
            None => groups.push((tenant, vec![item])),
        }
    }
    if groups.is_empty() {
        groups.push((None, Vec::new()));
    }
    groups
        .into_iter()
        .map(|(tenant, mut items)| {
            items.sort_by_key(|i| i.item);
            let (outcome, reason) = batch_outcome(&items, failure);
            let mut record = event(BATCH_ACTION, tenant.as_deref(), None, outcome, Some(reason));
            record.items = Some(items);
            record
        })
        .collect()
}

/// A batch record's own outcome, so a reviewer filtering on outcome sees it:
/// allowed if any item was, denied if every item was refused, failed if the
/// request failed. The reason counts the items' outcomes.
fn batch_outcome(items: &[AuditItem], failure: Option<&str>) -> (Outcome, String) {
    let count = |o: Outcome| items.iter().filter(|i| i.outcome == o).count();
    let (allowed, denied, failed) = (
        count(Outcome::Allowed),
        count(Outcome::Denied),
        count(Outcome::Failed),
    );
    let tally = format!("{allowed} allowed, {denied} denied, {failed} failed");
    match failure {
        Some(code) => (Outcome::Failed, format!("{code}; {tally}")),
        None if allowed > 0 => (Outcome::Allowed, tally),
        None if failed > 0 => (Outcome::Failed, tally),
        None => (Outcome::Denied, tally),
    }
}

impl Vault {
    fn prepare_item(
        &self,
        who: &Principal,
        item: NewSecret,
        internal: Option<DataClass>,
    ) -> Result<(String, DataClass, NewSecret), VaultError> {
        let tenant = who.resolve_tenant(item.tenant.as_deref())?;
        // A class only the vault's own calls store (supplier credentials)
        // is never taken from a request.
        let class = match internal {
            Some(class) => class,
            None => DataClass::parse(&item.class)?,
        };
        if item.value.is_empty() || item.value.len() > self.config.max_value_bytes {
            return Err(VaultError::Invalid(format!(
                "value must be 1 to {} bytes",
                self.config.max_value_bytes
            )));
        }
        // 0: stored dormant, revealable only once a window is opened (stock
        // that is not yet anyone's to see).
        if let Some(w) = item.reveal_window_secs
            && w > self.config.max_reveal_window_secs
        {
            return Err(VaultError::Invalid(format!(
                "reveal_window_secs must be 1 to {}",
                self.config.max_reveal_window_secs
            )));
        }
        Ok((tenant, class, item))
    }

    /// Stores one secret. See [`Vault::tokenize_batch`].
    pub async fn tokenize(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        item: NewSecret,
    ) -> Result<Tokenized, VaultError> {
        let mut results = self.store_items(who, ctx, vec![item], false, None).await?;
        results
            .pop()
            .ok_or(VaultError::Invalid("empty batch".into()))?
    }

    /// Keeps a supplier's credential in `tenant` (class
    /// `supplier_credential`). No reveal returns it: only
    /// [`Vault::read_supplier_credential`], for the server's own calls to
    /// the supplier. Needs `secrets:tokenize` (the server's own identity).
    pub async fn keep_supplier_credential(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: &str,
        supplier: &str,
        value: SecretBytes,
    ) -> Result<Tokenized, VaultError> {
        let mut metadata = serde_json::Map::new();
        metadata.insert("supplier".into(), supplier.into());
        let item = NewSecret {
            tenant: Some(tenant.to_owned()),
            class: DataClass::SupplierCredential.as_str().into(),
            value,
            metadata: Some(metadata),
            reveal_window_secs: Some(self.config.max_reveal_window_secs),
            on_duplicate: OnDuplicate::Allow,
        };
        let mut results = self
            .store_items(
                who,
                ctx,
                vec![item],
                false,
                Some(DataClass::SupplierCredential),
            )
            .await?;
        results
            .pop()
            .ok_or(VaultError::Invalid("empty batch".into()))?
    }

    /// Reads a supplier credential kept by
    /// [`Vault::keep_supplier_credential`], audited as
    /// `supplier.credential_read` by `system:suppliers`. Any other token is
    /// refused.
    pub async fn read_supplier_credential(
        &self,
        ctx: &RequestContext,
        token: &str,
        supplier: &str,
    ) -> Result<SecretBytes, VaultError> {
        const ACTION: &str = "supplier.credential_read";
        let u = self.unsealed()?;
        let reader = Principal::system(
            "suppliers",
            crate::PermissionSet::EMPTY.with(Permission::Reveal),
        );
        let rec = self
            .authorize_on(&u, &reader, ctx, ACTION, Permission::Reveal, token)
            .await?;
        let record = |outcome: Outcome, reason: Option<String>| {
            self.event(
                ctx,
                Some(&reader),
                ACTION,
                Some(&rec.tenant),
                Some(token),
                outcome,
                reason,
            )
        };
        // The credential kept for this supplier, not another's.
        let named = rec
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
            .and_then(|m| {
                m.get("supplier")
                    .and_then(|s| s.as_str())
                    .map(str::to_owned)
            });
        if rec.class != DataClass::SupplierCredential.as_str() || named.as_deref() != Some(supplier)
        {
            u.audit
                .append_one(record(Outcome::Denied, Some("request.invalid".into())))
                .await?;
            return Err(VaultError::Invalid("not a supplier credential".into()));
        }
        match self.open_record_from(&u, &rec).await {
            Ok((value, _)) => {
                u.audit.append_one(record(Outcome::Allowed, None)).await?;
                Ok(value)
            }
            Err(e) => {
                u.audit
                    .append_one(record(Outcome::Failed, Some(e.code().into())))
                    .await?;
                Err(e)
            }
        }
    }

    /// Stores secrets; one result per item, in order. An item's failure does
    /// not affect the others. The outer error is for the whole request
    /// (sealed, not permitted, audit or store unavailable). The request is
    /// audited as one `secret.tokenize_batch` record listing every item.
    pub async fn tokenize_batch(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        items: Vec<NewSecret>,
    ) -> Result<Vec<Result<Tokenized, VaultError>>, VaultError> {
        self.store_items(who, ctx, items, true, None).await
    }

    async fn store_items(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        items: Vec<NewSecret>,
        batch: bool,
        internal: Option<DataClass>,
    ) -> Result<Vec<Result<Tokenized, VaultError>>, VaultError> {
        let u = self.unsealed()?;
        if let Err(e) = who.require(Permission::Tokenize) {
            let event = self.event(
                ctx,
                Some(who),
                if batch { BATCH_ACTION } else { ITEM_ACTION },
                None,
                None,
                Outcome::Denied,
                Some(e.code().into()),
            );
            u.audit.append_one(event).await?;
            return Err(e);
        }
        let now = self.clock.now_ms();
        // Every record of the request carries the same time, formatted once.
        let time = rfc3339(now);
        let ev = |item: usize,
                  tenant: Option<&str>,
                  target: Option<&str>,
                  outcome: Outcome,
                  reason: Option<String>|
         -> ItemRecord {
            (
                tenant.map(str::to_owned),
                AuditItem {
                    item,
                    target: target.map(str::to_owned),
                    outcome,
                    reason,
                },
            )
        };
        let count = items.len();
        let mut results: Vec<Option<Result<Tokenized, VaultError>>> =
            (0..count).map(|_| None).collect();
        let mut events: Vec<ItemRecord> = Vec::with_capacity(count);
        let mut prepared: Vec<Prepared> = Vec::with_capacity(count);

        // Refusals are collected in `events` and written with the rest. If a
        // later step fails, they are written anyway (with the failure) before
        // the error returns, so no refusal goes unrecorded.
        macro_rules! or_flush {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(err) => {
                        let err: VaultError = err.into();
                        // Nothing of this request was stored: items sealed so
                        // far are recorded as failed, not allowed, and a batch
                        // record accounts for the items not reached.
                        let note = format!("{}: request failed before storing", err.code());
                        for (_, e) in events.iter_mut().filter(|(_, e)| e.outcome == Outcome::Allowed) {
                            e.outcome = Outcome::Failed;
                            e.reason = Some(note.clone());
                        }
                        if batch {
                            let reached: HashSet<usize> = events.iter().map(|(_, e)| e.item).collect();
                            for item in (0..count).filter(|i| !reached.contains(i)) {
                                events.push(ev(item, None, None, Outcome::Failed, Some(note.clone())));
                            }
                        }
                        let records = audit_records(&time, ctx, who, events, batch, Some(err.code()));
                        if let Err(audit_err) = u.audit.append(&records).await {
                            tracing::error!(error = %audit_err, "could not record a failed tokenize");
                        }
                        return Err(err);
                    }
                }
            };
        }

        for (index, item) in items.into_iter().enumerate() {
            let named_tenant = item.tenant.clone();
            match self.prepare_item(who, item, internal) {
                Ok((tenant, class, item)) => {
                    let metadata = match item.metadata {
                        None => None,
                        Some(m) => {
                            let text = serde_json::Value::Object(m).to_string();
                            if text.len() > self.config.max_metadata_bytes {
                                let e = VaultError::Invalid(format!(
                                    "metadata must be at most {} bytes of JSON",
                                    self.config.max_metadata_bytes
                                ));
                                events.push(ev(
                                    index,
                                    Some(&tenant),
                                    None,
                                    Outcome::Denied,
                                    Some(e.code().into()),
                                ));
                                if let Some(slot) = results.get_mut(index) {
                                    *slot = Some(Err(e));
                                }
                                continue;
                            }
                            Some(text)
                        }
                    };
                    let fp_key = or_flush!(u.keyring.fingerprint_key(&tenant).await);
                    let fingerprint = fp_key.tag(&[class.as_str().as_bytes(), item.value.expose()]);
                    prepared.push(Prepared {
                        index,
                        tenant,
                        class,
                        value: item.value,
                        metadata,
                        window_secs: item
                            .reveal_window_secs
                            .unwrap_or(self.config.default_reveal_window_secs),
                        on_duplicate: item.on_duplicate,
                        fingerprint,
                    });
                }
                Err(e) => {
                    // Filed under the tenant the item was for: the caller's
                    // own, or the one it named (a refused probe of another
                    // tenant is that tenant's business).
                    let tenant = who
                        .resolve_tenant(named_tenant.as_deref())
                        .ok()
                        .or(named_tenant.filter(|t| validate_tenant(t).is_ok()));
                    events.push(ev(
                        index,
                        tenant.as_deref(),
                        None,
                        Outcome::Denied,
                        Some(e.code().into()),
                    ));
                    if let Some(slot) = results.get_mut(index) {
                        *slot = Some(Err(e));
                    }
                }
            }
        }

        // Existing records with the same fingerprint, looked up per (tenant, class).
        let mut existing: Vec<Option<String>> = vec![None; prepared.len()];
        {
            let mut groups: HashMap<(&str, DataClass), Vec<usize>> = HashMap::new();
            for (i, p) in prepared.iter().enumerate() {
                groups.entry((&p.tenant, p.class)).or_default().push(i);
            }
            for ((tenant, class), members) in &groups {
                let fps: Vec<[u8; 32]> = members
                    .iter()
                    .filter_map(|&i| prepared.get(i).map(|p| p.fingerprint))
                    .collect();
                let found = or_flush!(
                    self.stores
                        .central
                        .find_fingerprints(tenant, class.as_str(), &fps)
                        .await
                );
                for (&i, tok) in members.iter().zip(found) {
                    if let Some(slot) = existing.get_mut(i) {
                        *slot = tok;
                    }
                }
            }
        }

        let mut envelopes = Vec::with_capacity(prepared.len());
        let mut records: Vec<SecretRecord> = Vec::with_capacity(prepared.len());
        let mut record_index = Vec::with_capacity(prepared.len());
        // Values stored earlier in this batch: fingerprint → position in `records`.
        let mut seen_in_batch: HashMap<[u8; 32], usize> = HashMap::new();
        let mut return_existing: Vec<(usize, String)> = Vec::new();
        // Tokens for the whole batch from one call to the CSPRNG. Most
        // batches are of one class; items of another draw their own.
        let batch_class = prepared.first().map(|p| p.class);
        let mut tokens = match batch_class {
            Some(class) => or_flush!(random::timed_tokens(
                class.token_prefix(),
                u64::try_from(now).unwrap_or(0),
                prepared.iter().filter(|p| p.class == class).count(),
            )),
            None => Vec::new(),
        };

        for (p, found) in prepared.into_iter().zip(existing) {
            let earlier = seen_in_batch
                .get(&p.fingerprint)
                .and_then(|&i| records.get(i))
                .filter(|r| r.tenant == p.tenant && r.class == p.class.as_str())
                .map(|r| r.token.clone());
            let prior = found.or(earlier);
            let mut unique = true;
            if let Some(prior) = prior {
                match p.on_duplicate {
                    OnDuplicate::Reject => {
                        events.push(ev(
                            p.index,
                            Some(&p.tenant),
                            Some(&prior),
                            Outcome::Denied,
                            Some("vault.duplicate".into()),
                        ));
                        if let Some(slot) = results.get_mut(p.index) {
                            *slot = Some(Err(VaultError::Duplicate { existing: prior }));
                        }
                        continue;
                    }
                    OnDuplicate::ReturnExisting => {
                        events.push(ev(
                            p.index,
                            Some(&p.tenant),
                            Some(&prior),
                            Outcome::Allowed,
                            Some("returned existing token".into()),
                        ));
                        return_existing.push((p.index, prior));
                        continue;
                    }
                    OnDuplicate::Allow => unique = false,
                }
            }
            let (version, key) = or_flush!(u.keyring.current(&p.tenant, p.class.as_str()).await);
            let pooled = if Some(p.class) == batch_class {
                tokens.pop()
            } else {
                None
            };
            let token = match pooled {
                Some(t) => t,
                None => or_flush!(random::timed_token(
                    p.class.token_prefix(),
                    u64::try_from(now).unwrap_or(0)
                )),
            };
            let envelope = or_flush!(key.seal(
                &record_context(&p.tenant, p.class.as_str(), &token, version),
                p.value.expose(),
            ));
            if unique {
                seen_in_batch.insert(p.fingerprint, records.len());
            }
            events.push(ev(
                p.index,
                Some(&p.tenant),
                Some(&token),
                Outcome::Allowed,
                None,
            ));
            envelopes.push((token.clone(), envelope));
            record_index.push((p.index, p.on_duplicate));
            records.push(
                SecretRecord {
                    token,
                    tenant: p.tenant,
                    class: p.class.as_str().to_owned(),
                    key_version: version,
                    fingerprint: Some(p.fingerprint),
                    fingerprint_unique: unique,
                    metadata: p.metadata,
                    created_at: now,
                    window_closes_at: now.saturating_add(
                        i64::try_from(p.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
                    ),
                    created_by: who.id.clone(),
                    state: SecretState::Active,
                    seal: Vec::new(),
                }
                .sealed(&u.row_seals),
            );
        }

        tracing::trace!(
            request_id = %ctx.request_id,
            items = count,
            new = envelopes.len(),
            "secret.tokenize batch prepared"
        );
        // Step 1: envelopes and audit records, durably and concurrently.
        let put = async {
            if envelopes.is_empty() {
                Ok(())
            } else {
                self.stores.vault.put_many(envelopes).await
            }
        };
        let audit_events = audit_records(&time, ctx, who, events, batch, None);
        let (put, audited) = tokio::join!(put, u.audit.append(&audit_events));
        audited?;
        let records: Arc<[SecretRecord]> = records.into();
        // The audit log says these were allowed. If they do not go live after
        // all, a second record (in the same shape) says so.
        let failed_items = |reason: &str| -> Vec<ItemRecord> {
            records
                .iter()
                .zip(&record_index)
                .map(|(r, &(item, _))| {
                    ev(
                        item,
                        Some(&r.tenant),
                        Some(&r.token),
                        Outcome::Failed,
                        Some(reason.to_owned()),
                    )
                })
                .collect()
        };
        if let Err(e) = put {
            let items = failed_items("store.unavailable: envelope not stored");
            self.record_failed_tokens(&u, audit_records(&time, ctx, who, items, batch, None))
                .await;
            return Err(e.into());
        }

        // Step 2: make the tokens live.
        let outcomes = if records.is_empty() {
            Vec::new()
        } else {
            match self.stores.central.insert_secrets(records.clone()).await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    let items = failed_items("store.unavailable: token never went live");
                    self.record_failed_tokens(
                        &u,
                        audit_records(&time, ctx, who, items, batch, None),
                    )
                    .await;
                    return Err(e.into());
                }
            }
        };
        let mut late_events = Vec::new();
        for ((rec, &(index, on_duplicate)), outcome) in
            records.iter().zip(&record_index).zip(outcomes)
        {
            // A store reporting a token as a duplicate of itself must never
            // make us erase its envelope: that token is live.
            let outcome = match outcome {
                InsertOutcome::Duplicate { existing } if existing == rec.token => {
                    InsertOutcome::Inserted
                }
                other => other,
            };
            let result = match outcome {
                InsertOutcome::Inserted => Ok(Tokenized {
                    token: rec.token.clone(),
                    tenant: rec.tenant.clone(),
                    class: rec.class.clone(),
                    created_at: rec.created_at,
                    window_closes_at: rec.window_closes_at,
                    key_version: rec.key_version,
                    duplicate: false,
                }),
                InsertOutcome::Duplicate { existing } => {
                    // Lost a race with a concurrent request storing the same value.
                    if let Err(e) = self.stores.vault.delete(&rec.token).await {
                        tracing::warn!(error = %e, "could not remove the envelope of a withdrawn token");
                    }
                    late_events.push(ev(
                        index,
                        Some(&rec.tenant),
                        Some(&rec.token),
                        Outcome::Failed,
                        Some(format!("vault.duplicate of {existing}; token withdrawn")),
                    ));
                    if on_duplicate == OnDuplicate::ReturnExisting {
                        // As if the other request had come first.
                        late_events.push(ev(
                            index,
                            Some(&rec.tenant),
                            Some(&existing),
                            Outcome::Allowed,
                            Some("returned existing token".into()),
                        ));
                        return_existing.push((index, existing));
                        continue;
                    }
                    Err(VaultError::Duplicate { existing })
                }
            };
            if let Some(slot) = results.get_mut(index) {
                *slot = Some(result);
            }
        }
        if !late_events.is_empty() {
            u.audit
                .append(&audit_records(&time, ctx, who, late_events, batch, None))
                .await?;
        }
        let scope = TenantScope::of(&who.tenants);
        for (index, token) in return_existing {
            let result = match self.secret_row(&token, &scope, ctx).await?.found() {
                Some(rec) => Ok(Tokenized {
                    token: rec.token,
                    tenant: rec.tenant,
                    class: rec.class,
                    created_at: rec.created_at,
                    window_closes_at: rec.window_closes_at,
                    key_version: rec.key_version,
                    duplicate: true,
                }),
                None => Err(VaultError::Duplicate { existing: token }),
            };
            if let Some(slot) = results.get_mut(index) {
                *slot = Some(result);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(VaultError::Invalid("item was not processed".into()))))
            .collect())
    }

    /// Records, best effort, that tokens already audited as allowed never went
    /// live. The request fails either way, so a failure here is only logged.
    async fn record_failed_tokens(&self, u: &Unsealed, records: Vec<AuditEvent>) {
        if let Err(audit_err) = u.audit.append(&records).await {
            tracing::error!(error = %audit_err, "could not record a failed tokenize");
        }
    }

    /// Loads the record for `token` if `who` may see it; any other case is
    /// the same `NotFound`, so tokens of other tenants cannot be probed. The
    /// audit reason keeps the real cause.
    async fn visible_record(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        token: &str,
    ) -> Result<Result<SecretRecord, (VaultError, &'static str, Option<String>)>, VaultError> {
        // The store applies the tenant scope: a record of another tenant
        // never leaves it, only that tenant's name, for the audit record.
        let scope = TenantScope::of(&who.tenants);
        let rec = self.secret_row(token, &scope, ctx).await?;
        Ok(match rec {
            Scoped::Missing => Err((VaultError::NotFound, "secret.not_found", None)),
            // The owning tenant is recorded, so its auditors see the probe;
            // the caller sees the same answer as for an unknown token.
            Scoped::OtherTenant(tenant) => Err((
                VaultError::NotFound,
                "secret.not_found: other tenant",
                Some(tenant),
            )),
            Scoped::Found(r) if r.state == SecretState::Deleted => Err((
                VaultError::NotFound,
                "secret.not_found: deleted",
                Some(r.tenant),
            )),
            Scoped::Found(r) => Ok(r),
        })
    }

    /// A reveal's declared purpose, trimmed: 1 to 200 characters, or the
    /// attempt is refused and audited.
    pub(crate) async fn checked_purpose<'p>(
        &self,
        u: &Unsealed,
        who: &Principal,
        ctx: &RequestContext,
        action: &str,
        token: &str,
        purpose: &'p str,
    ) -> Result<&'p str, VaultError> {
        let purpose = purpose.trim();
        if purpose.is_empty() || purpose.len() > 200 {
            let e = VaultError::Invalid("purpose is required (1 to 200 characters)".into());
            u.audit
                .append_one(self.event(
                    ctx,
                    Some(who),
                    action,
                    None,
                    Some(token),
                    Outcome::Denied,
                    Some(e.code().into()),
                ))
                .await?;
            return Err(e);
        }
        Ok(purpose)
    }

    /// Checks permission and visibility, auditing any refusal.
    pub(crate) async fn authorize_on(
        &self,
        u: &Unsealed,
        who: &Principal,
        ctx: &RequestContext,
        action: &str,
        permission: Permission,
        token: &str,
    ) -> Result<SecretRecord, VaultError> {
        if let Err(e) = who.require(permission) {
            u.audit
                .append_one(self.event(
                    ctx,
                    Some(who),
                    action,
                    None,
                    Some(token),
                    Outcome::Denied,
                    Some(e.code().into()),
                ))
                .await?;
            return Err(e);
        }
        match self.visible_record(who, ctx, token).await? {
            Ok(rec) => Ok(rec),
            Err((e, reason, tenant)) => {
                u.audit
                    .append_one(self.event(
                        ctx,
                        Some(who),
                        action,
                        tenant.as_deref(),
                        Some(token),
                        Outcome::Denied,
                        Some(reason.into()),
                    ))
                    .await?;
                Err(e)
            }
        }
    }

    /// Reveals a secret while its window is open, whole or masked.
    /// `purpose` is recorded. A principal allowed only masked reveals
    /// (`secret.reveal_masked`) never receives more than the masked form.
    pub async fn reveal(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        token: &str,
        purpose: &str,
        redaction: Redaction,
    ) -> Result<Revealed, VaultError> {
        let u = self.unsealed()?;
        const ACTION: &str = "secret.reveal";
        let purpose = self
            .checked_purpose(&u, who, ctx, ACTION, token, purpose)
            .await?;
        let permission = match redaction {
            Redaction::Masked if who.has(Permission::RevealMasked) => Permission::RevealMasked,
            _ => Permission::Reveal,
        };
        let rec = self
            .authorize_on(&u, who, ctx, ACTION, permission, token)
            .await?;
        let deny = |outcome: Outcome, reason: &str| {
            let mut e = self.event(
                ctx,
                Some(who),
                ACTION,
                Some(&rec.tenant),
                Some(token),
                outcome,
                Some(reason.into()),
            );
            e.purpose = Some(purpose.to_owned());
            e
        };
        if rec.class == crate::cards::CARD_CLASS {
            // Card numbers have a reveal of their own, masked by default.
            u.audit
                .append_one(deny(Outcome::Denied, "request.invalid"))
                .await?;
            return Err(VaultError::Invalid(
                "that token is a card's: reveal it at /v1/cards/{token}/reveal".into(),
            ));
        }
        if rec.class == DataClass::SupplierCredential.as_str() {
            // Only the server reads supplier credentials.
            u.audit
                .append_one(deny(Outcome::Denied, "request.invalid"))
                .await?;
            return Err(VaultError::Invalid(
                "that token is a supplier credential: nobody reveals it".into(),
            ));
        }
        if self.clock.now_ms() >= rec.window_closes_at {
            u.audit
                .append_one(deny(Outcome::Denied, "vault.dormant"))
                .await?;
            return Err(VaultError::Dormant);
        }
        let opened = self.open_record_from(&u, &rec).await;
        let opened = match (opened, redaction) {
            (Ok((v, archived)), Redaction::Masked) => mask(&v).map(|v| (v, archived)),
            (other, _) => other,
        };
        let (value, archived) = match opened {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(code = e.code(), "reveal failed after authorisation");
                u.audit.append_one(deny(Outcome::Failed, e.code())).await?;
                return Err(e);
            }
        };
        tracing::trace!(request_id = %ctx.request_id, token, tenant = %rec.tenant, "secret.reveal allowed");
        let mut allowed = self.event(
            ctx,
            Some(who),
            ACTION,
            Some(&rec.tenant),
            Some(token),
            Outcome::Allowed,
            None,
        );
        allowed.purpose = Some(purpose.to_owned());
        // Notes the detectors read: a masked reveal, a code read back from
        // the archive (delivered, so rarely wanted again).
        allowed.reason = match (redaction == Redaction::Masked, archived) {
            (true, true) => Some("redaction=masked; archived".into()),
            (true, false) => Some("redaction=masked".into()),
            (false, true) => Some("archived".into()),
            (false, false) => None,
        };
        u.audit.append_one(allowed).await?;
        Ok(Revealed {
            token: rec.token,
            tenant: rec.tenant,
            class: rec.class,
            value,
            redaction,
            window_closes_at: rec.window_closes_at,
        })
    }

    /// For each value, its keyed fingerprint and whether the vault already
    /// holds it in (tenant, class): what storing it would call a duplicate.
    /// For checking a file before importing it (a dry run); needs
    /// `secrets:tokenize`, as storing would. Each call is audited with how
    /// many values it checked and found (never which).
    pub async fn find_held(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: Option<&str>,
        class: &str,
        values: &[&SecretBytes],
    ) -> Result<Vec<([u8; 32], bool)>, VaultError> {
        let u = self.unsealed()?;
        const ACTION: &str = "secret.find_held";
        let checked = who
            .require(Permission::Tokenize)
            .and_then(|_| who.resolve_tenant(tenant))
            .and_then(|t| DataClass::parse(class).map(|c| (t, c)));
        let (tenant, class) = match checked {
            Ok(v) => v,
            Err(e) => {
                u.audit
                    .append_one(self.event(
                        ctx,
                        Some(who),
                        ACTION,
                        None,
                        None,
                        Outcome::Denied,
                        Some(e.code().into()),
                    ))
                    .await?;
                return Err(e);
            }
        };
        let fp_key = u.keyring.fingerprint_key(&tenant).await?;
        let fingerprints: Vec<[u8; 32]> = values
            .iter()
            .map(|v| fp_key.tag(&[class.as_str().as_bytes(), v.expose()]))
            .collect();
        let found = self
            .stores
            .central
            .find_fingerprints(&tenant, class.as_str(), &fingerprints)
            .await?;
        let held = found.iter().filter(|f| f.is_some()).count();
        u.audit
            .append_one(self.event(
                ctx,
                Some(who),
                ACTION,
                Some(&tenant),
                None,
                Outcome::Allowed,
                Some(format!("{} checked, {held} held", values.len())),
            ))
            .await?;
        Ok(fingerprints
            .into_iter()
            .zip(found)
            .map(|(fp, f)| (fp, f.is_some()))
            .collect())
    }

    /// A secret's metadata, never its value.
    pub async fn describe(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        token: &str,
    ) -> Result<SecretInfo, VaultError> {
        let u = self.unsealed()?;
        let rec = self
            .authorize_on(
                &u,
                who,
                ctx,
                "secret.read_metadata",
                Permission::ReadMetadata,
                token,
            )
            .await?;
        u.audit
            .append_one(self.event(
                ctx,
                Some(who),
                "secret.read_metadata",
                Some(&rec.tenant),
                Some(token),
                Outcome::Allowed,
                None,
            ))
            .await?;
        Ok(self.info(rec))
    }

    fn info(&self, rec: SecretRecord) -> SecretInfo {
        let metadata = rec.metadata.as_deref().and_then(|m| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(m).ok()
        });
        SecretInfo {
            revealable: self.clock.now_ms() < rec.window_closes_at,
            token: rec.token,
            tenant: rec.tenant,
            class: rec.class,
            created_at: rec.created_at,
            created_by: rec.created_by,
            window_closes_at: rec.window_closes_at,
            key_version: rec.key_version,
            metadata,
        }
    }

    /// Deletes a secret: the token stops resolving and the sealed record is
    /// erased from the vault store.
    pub async fn delete(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        token: &str,
    ) -> Result<(), VaultError> {
        let u = self.unsealed()?;
        let rec = self
            .authorize_on(&u, who, ctx, "secret.delete", Permission::Delete, token)
            .await?;
        // A supplier's credential is replaced through the suppliers API,
        // which deletes the old one itself; nobody else stops purchases by
        // deleting it.
        if rec.class == DataClass::SupplierCredential.as_str() && !who.is_system() {
            u.audit
                .append_one(self.event(
                    ctx,
                    Some(who),
                    "secret.delete",
                    Some(&rec.tenant),
                    Some(token),
                    Outcome::Denied,
                    Some("request.invalid".into()),
                ))
                .await?;
            return Err(VaultError::Invalid(
                "that token is a supplier credential: set a new one with PUT /v1/suppliers/{name}/credential".into(),
            ));
        }
        u.audit
            .append_one(self.event(
                ctx,
                Some(who),
                "secret.delete",
                Some(&rec.tenant),
                Some(token),
                Outcome::Allowed,
                None,
            ))
            .await?;
        // The envelope goes first: if this stops half-way, the token still
        // resolves (and reveals fail their integrity check), so the delete can
        // be retried and finish. The other order would leave the ciphertext
        // behind a token that answers 404 to every later delete.
        self.stores.vault.delete(token).await?;
        self.stores.archive.delete(token).await?;
        if !self.mark_deleted_sealed(&rec).await? {
            // The row changed since it was read (a window moved): the
            // envelope is gone, the token still resolves; deleting again
            // finishes the job.
            return Err(VaultError::Conflict(
                "the secret changed while it was deleted: delete it again",
            ));
        }
        Ok(())
    }

    /// Erases the codes (and PINs) an all-or-nothing import stored before it
    /// found a refused row: only secrets of `tenant` that import stored
    /// (their metadata names it) and that were never revealable. Needs
    /// `vouchers:import`; one audit record for them all, before any goes.
    pub async fn discard_imported(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: &str,
        import_id: &str,
        tokens: &[&str],
    ) -> Result<(), VaultError> {
        let u = self.unsealed()?;
        const ACTION: &str = "secret.discard_import";
        let mut checked = who.require(Permission::ImportVouchers);
        let mut records = Vec::with_capacity(tokens.len());
        for token in tokens {
            if checked.is_err() {
                break;
            }
            let found = self
                .secret_row(token, &TenantScope::one(tenant), ctx)
                .await?
                .found();
            let ours = found.filter(|rec| {
                let named = rec
                    .metadata
                    .as_deref()
                    .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
                    .and_then(|m| m.get("import").and_then(|i| i.as_str().map(str::to_owned)));
                rec.state == SecretState::Active
                    && rec.window_closes_at <= rec.created_at
                    && named.as_deref() == Some(import_id)
            });
            match ours {
                Some(rec) => records.push(rec),
                None => {
                    checked = Err(VaultError::Forbidden(
                        "discarding a secret that import did not store",
                    ))
                }
            }
        }
        let (outcome, reason) = match &checked {
            Ok(()) => (
                Outcome::Allowed,
                format!("{} secrets of an import that stocked nothing", tokens.len()),
            ),
            Err(e) => (Outcome::Denied, e.code().to_owned()),
        };
        u.audit
            .append_one(self.event(
                ctx,
                Some(who),
                ACTION,
                Some(tenant),
                Some(import_id),
                outcome,
                Some(reason),
            ))
            .await?;
        checked?;
        for rec in records {
            self.stores.vault.delete(&rec.token).await?;
            if !self.mark_deleted_sealed(&rec).await? {
                return Err(VaultError::Conflict(
                    "a secret of the import changed while it was discarded",
                ));
            }
        }
        Ok(())
    }

    /// Re-opens (or extends) a secret's reveal window for `window_secs` from now.
    /// A voucher's code or PIN from stock is refused here: it is re-opened
    /// only through its order, under four eyes
    /// ([`Vault::reactivate_on_request`]).
    pub async fn reactivate(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        token: &str,
        window_secs: u64,
        reason: &str,
    ) -> Result<SecretInfo, VaultError> {
        self.reactivate_checked(who, ctx, token, window_secs, reason, None)
            .await
    }

    /// Re-opens a voucher's code (or PIN) at the request of `requested_by`,
    /// who must be someone other than `who`: the second pair of eyes.
    pub async fn reactivate_on_request(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        token: &str,
        window_secs: u64,
        reason: &str,
        requested_by: &str,
    ) -> Result<SecretInfo, VaultError> {
        self.reactivate_checked(who, ctx, token, window_secs, reason, Some(requested_by))
            .await
    }

    async fn reactivate_checked(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        token: &str,
        window_secs: u64,
        reason: &str,
        requested_by: Option<&str>,
    ) -> Result<SecretInfo, VaultError> {
        let u = self.unsealed()?;
        const ACTION: &str = "secret.reactivate";
        let rec = self
            .authorize_on(&u, who, ctx, ACTION, Permission::Reactivate, token)
            .await?;
        // Stock carries the product it belongs to in its metadata.
        let stock = rec
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
            .is_some_and(|m| m.get("sku").is_some());
        let refusal = match requested_by {
            None if stock => Some(VaultError::Forbidden(
                "re-opening a voucher's code alone: it is re-opened through its order, asked by support and approved by a security officer",
            )),
            Some(asker) if asker == who.id => Some(VaultError::Forbidden(
                "approving a re-opening one asked for oneself",
            )),
            _ => None,
        };
        if let Some(e) = refusal {
            u.audit
                .append_one(self.event(
                    ctx,
                    Some(who),
                    ACTION,
                    Some(&rec.tenant),
                    Some(token),
                    Outcome::Denied,
                    Some(e.code().into()),
                ))
                .await?;
            return Err(e);
        }
        let reason = reason.trim();
        let invalid = if window_secs == 0 || window_secs > self.config.max_reveal_window_secs {
            Some(format!(
                "window_secs must be 1 to {}",
                self.config.max_reveal_window_secs
            ))
        } else if reason.is_empty() || reason.len() > 500 {
            Some("reason is required (1 to 500 characters)".to_owned())
        } else {
            None
        };
        if let Some(message) = invalid {
            u.audit
                .append_one(self.event(
                    ctx,
                    Some(who),
                    ACTION,
                    Some(&rec.tenant),
                    Some(token),
                    Outcome::Denied,
                    Some("request.invalid".into()),
                ))
                .await?;
            return Err(VaultError::Invalid(message));
        }
        let closes_at = self
            .clock
            .now_ms()
            .saturating_add(i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
        u.audit
            .append_one(self.event(
                ctx,
                Some(who),
                ACTION,
                Some(&rec.tenant),
                Some(token),
                Outcome::Allowed,
                Some(format!("until {}: {reason}", rfc3339(closes_at))),
            ))
            .await?;
        let Some(rec) = self.set_window_sealed(rec, closes_at).await? else {
            return Err(VaultError::NotFound);
        };
        Ok(self.info(rec))
    }

    /// Adds a key version for (tenant, class); new secrets use it, older ones
    /// still reveal with theirs.
    pub async fn rotate(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: &str,
        class: &str,
    ) -> Result<u32, VaultError> {
        let u = self.unsealed()?;
        const ACTION: &str = "key.rotate";
        let checked = who
            .require(Permission::RotateKeys)
            .and_then(|_| who.resolve_tenant(Some(tenant)))
            .and_then(|t| DataClass::for_keys(class).map(|c| (t, c)));
        let (tenant, class) = match checked {
            Ok(v) => v,
            Err(e) => {
                u.audit
                    .append_one(self.event(
                        ctx,
                        Some(who),
                        ACTION,
                        None,
                        Some(class),
                        Outcome::Denied,
                        Some(e.code().into()),
                    ))
                    .await?;
                return Err(e);
            }
        };
        let scope = format!("{tenant}/{}", class.as_str());
        u.audit
            .append_one(self.event(
                ctx,
                Some(who),
                ACTION,
                Some(&tenant),
                Some(&scope),
                Outcome::Allowed,
                None,
            ))
            .await?;
        u.keyring.rotate(&tenant, class.as_str()).await
    }
}

#[cfg(test)]
mod mask_tests {
    use super::*;

    #[test]
    fn masking_keeps_at_most_the_last_four_and_never_short_values() {
        let m = |v: &str| {
            String::from_utf8(
                mask(&SecretBytes::from_str_copy(v))
                    .unwrap()
                    .expose()
                    .to_vec(),
            )
            .unwrap()
        };
        assert_eq!(m("GIFT-AAAA-1111"), "**********1111");
        assert_eq!(m("4111111111111111"), "************1111");
        assert_eq!(m("ABCDEFGH"), "******GH");
        assert_eq!(m("ABCDEF"), "****EF");
        assert_eq!(m("ABCD"), "****");
        assert_eq!(m("ABC"), "***");
        assert_eq!(m("ÄÖÜäöüßẞ"), "******ßẞ");
    }
}
