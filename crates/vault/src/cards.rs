//! Card data: PANs sealed like any secret but behind format-keeping tokens
//! and a reveal of their own, and CVVs that never leave memory.
//!
//! A card is stored as one record of class `pan`: its value is the PAN,
//! expiry and holder as JSON, sealed under the tenant's `pan` key; its
//! token has the PAN's shape (see [`strongroom_cards::pan`]); its
//! fingerprint is a keyed MAC of the PAN alone, returned to the caller so a
//! returning card is recognised without anyone seeing it twice. The same
//! card may be tokenized again (a new expiry, a new payment): each time gets
//! a token of its own, and its record's reveal window closes at the end of
//! the card's expiry month. The generic reveal refuses `pan` records; the card
//! reveal shows BIN and last four unless the caller holds
//! `cards:reveal_full`, which no built-in role has.
//!
//! The CVV is held by [`strongroom_cards::CvvVault`] in this process only
//! and never written anywhere; the audit record says a CVV token was issued,
//! never the CVV.

use serde::{Deserialize, Serialize};

use crate::rows::Sealed;
use strongroom_audit::Outcome;
use strongroom_cards::{CardError, Pan, check_expiry};
use strongroom_crypto::SecretBytes;
use strongroom_store::{SecretRecord, SecretState};
use zeroize::Zeroizing;

use crate::policy::{Permission, Principal};
use crate::seal::Unsealed;
use crate::secrets::record_context;
use crate::{RequestContext, Vault, VaultError};

/// The data class of card records.
pub const CARD_CLASS: &str = "pan";
/// Longest cardholder name kept.
const MAX_HOLDER_CHARS: usize = 100;
/// Candidate tokens drawn before giving up on finding a free one.
const TOKEN_ATTEMPTS: usize = 8;

/// A card to tokenize.
pub struct NewCard {
    /// Tenant; may be left out when the caller is bound to one.
    pub tenant: Option<String>,
    /// The card number as given.
    pub pan: Zeroizing<String>,
    /// 1 to 12.
    pub expiry_month: u32,
    /// Four digits.
    pub expiry_year: u32,
    /// The CVV, held in memory only.
    pub cvv: Option<Zeroizing<String>>,
    /// Minutes the CVV is kept (default 10, at most 60).
    pub cvv_ttl_mins: Option<u32>,
    /// Cardholder name.
    pub holder: Option<String>,
}

/// What tokenizing a card gives back: never the card number.
#[derive(Debug, Clone)]
pub struct CardTokens {
    /// The PAN token.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// BIN and last four, the rest masked.
    pub masked: String,
    /// Keyed fingerprint of the PAN, hex: the same card gives the same one
    /// in a tenant.
    pub fingerprint: String,
    /// Expiry month.
    pub expiry_month: u32,
    /// Expiry year.
    pub expiry_year: u32,
    /// The CVV's single-use token, if a CVV was given.
    pub cvv_token: Option<String>,
    /// When the CVV is forgotten, Unix ms.
    pub cvv_expires_at: Option<i64>,
    /// Created, Unix ms.
    pub created_at: i64,
}

/// What is sealed for a card.
#[derive(Serialize, Deserialize)]
struct SealedCard {
    pan: String,
    expiry_month: u32,
    expiry_year: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    holder: Option<String>,
}

impl Drop for SealedCard {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.pan);
    }
}

/// A revealed card.
pub struct RevealedCard {
    /// The token.
    pub token: String,
    /// Tenant.
    pub tenant: String,
    /// The PAN, in full only for `cards:reveal_full`, else BIN and last four.
    pub pan: Zeroizing<String>,
    /// Whether `pan` is masked.
    pub masked: bool,
    /// Expiry month.
    pub expiry_month: u32,
    /// Expiry year.
    pub expiry_year: u32,
    /// Cardholder name.
    pub holder: Option<String>,
}

fn invalid(e: CardError) -> VaultError {
    VaultError::Invalid(e.to_string())
}

/// (year, month) of `ms`, UTC.
fn year_month(ms: i64) -> (u32, u32) {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .map(|t| {
            (
                u32::try_from(t.year()).unwrap_or(0),
                u32::from(u8::from(t.month())),
            )
        })
        .unwrap_or((0, 0))
}

/// The first instant after the month `month` of `year` (UTC), Unix ms.
fn end_of_month_ms(year: u32, month: u32) -> Option<i64> {
    let (year, month) = if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let first = time::Date::from_calendar_date(i32::try_from(year).ok()?, month, 1).ok()?;
    Some(first.midnight().assume_utc().unix_timestamp() * 1000)
}

/// A CVV store's failure: logged (the message names the store's error,
/// never a value) and reported as unavailable.
fn cvv_store_failed(e: CardError) -> VaultError {
    tracing::error!(error = %e, "the CVV store failed");
    VaultError::CvvStoreUnavailable
}

/// What binds a CVV kept in a shared store to its tenant, card and token,
/// and the name it is kept under (a MAC of the same: no token in the store).
fn cvv_binding(u: &Unsealed, tenant: &str, card: &str, cvv_token: &str) -> (Vec<u8>, String) {
    let binding = strongroom_crypto::aead::context(
        "strongroom cvv",
        &[tenant.as_bytes(), card.as_bytes(), cvv_token.as_bytes()],
    );
    let name = data_encoding::HEXLOWER.encode(&u.cvv_name_key.tag(&[&binding]));
    (binding, name)
}

impl Vault {
    /// Forgets expired CVVs (the server calls this periodically); returns
    /// how many.
    pub fn sweep_cvvs(&self) -> usize {
        self.cvvs.sweep(self.clock.now_ms())
    }

    /// Holds a CVV for `ttl_mins` for the card `card` of `tenant`: in this
    /// process's memory, or sealed in the shared store when one is set.
    /// Returns its token.
    async fn hold_cvv(
        &self,
        u: &Unsealed,
        tenant: &str,
        card: &str,
        cvv: &str,
        now: i64,
        ttl_mins: u32,
    ) -> Result<String, VaultError> {
        let Some(store) = self.shared_cvvs.get() else {
            return self
                .cvvs
                .put(tenant, card, cvv, now, ttl_mins)
                .map_err(|e| match e {
                    CardError::Unavailable => cvv_store_failed(e),
                    other => invalid(other),
                });
        };
        strongroom_cards::cvv::check_cvv(cvv).map_err(invalid)?;
        if !(1..=strongroom_cards::cvv::MAX_TTL_MINS).contains(&ttl_mins) {
            return Err(invalid(CardError::CvvTtl(ttl_mins)));
        }
        let token = strongroom_crypto::random::token(strongroom_cards::cvv::TOKEN_PREFIX)?;
        let ttl_ms = u64::from(ttl_mins) * 60_000;
        let plain =
            strongroom_cards::shared::encode(now.saturating_add(i64::from(ttl_mins) * 60_000), cvv);
        let (binding, name) = cvv_binding(u, tenant, card, &token);
        let sealed = u.cvv_key.seal(&binding, &plain)?;
        drop(plain);
        store
            .put(&name, &sealed, ttl_ms)
            .await
            .map_err(cvv_store_failed)?;
        Ok(token)
    }

    /// Takes the CVV of `cvv_token` (once) if it belongs to `card` of
    /// `tenant` and has not expired; `None` otherwise. Another tenant's or
    /// card's attempt finds nothing and leaves the CVV in place.
    async fn take_cvv(
        &self,
        u: &Unsealed,
        tenant: &str,
        card: &str,
        cvv_token: &str,
        now: i64,
    ) -> Result<Option<Zeroizing<String>>, VaultError> {
        let Some(store) = self.shared_cvvs.get() else {
            return Ok(self.cvvs.take(tenant, card, cvv_token, now));
        };
        let (binding, name) = cvv_binding(u, tenant, card, cvv_token);
        let Some(sealed) = store.take(&name).await.map_err(cvv_store_failed)? else {
            return Ok(None);
        };
        let plain = u.cvv_key.open(&binding, &sealed)?;
        strongroom_cards::shared::decode(plain.expose(), now).map_err(cvv_store_failed)
    }

    /// Stores a card: validates it, seals it behind a format-keeping token,
    /// holds its CVV in memory. Needs `secrets:tokenize`; audited as
    /// `card.tokenize` (with the token, never the card).
    pub async fn tokenize_card(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        card: NewCard,
    ) -> Result<CardTokens, VaultError> {
        const ACTION: &str = "card.tokenize";
        let u = self.unsealed()?;
        let now = self.clock.now_ms();
        let checked = who
            .require(Permission::Tokenize)
            .and_then(|()| who.resolve_tenant(card.tenant.as_deref()))
            .and_then(|tenant| {
                let pan = Pan::parse(&card.pan).map_err(invalid)?;
                check_expiry(card.expiry_month, card.expiry_year, year_month(now))
                    .map_err(invalid)?;
                if let Some(cvv) = &card.cvv {
                    strongroom_cards::cvv::check_cvv(cvv).map_err(invalid)?;
                }
                let ttl = card
                    .cvv_ttl_mins
                    .unwrap_or(strongroom_cards::cvv::DEFAULT_TTL_MINS);
                if !(1..=strongroom_cards::cvv::MAX_TTL_MINS).contains(&ttl) {
                    return Err(invalid(CardError::CvvTtl(ttl)));
                }
                if card
                    .holder
                    .as_ref()
                    .is_some_and(|h| h.chars().count() > MAX_HOLDER_CHARS || h.chars().any(char::is_control))
                {
                    return Err(VaultError::Invalid(format!(
                        "holder is at most {MAX_HOLDER_CHARS} characters, without control characters"
                    )));
                }
                Ok((tenant, pan, ttl))
            });
        // A refusal or failure, recorded with its code.
        let refused = |tenant: Option<&str>, token: Option<&str>, outcome, e: &VaultError| {
            self.event(
                ctx,
                Some(who),
                ACTION,
                tenant,
                token,
                outcome,
                Some(e.code().into()),
            )
        };
        let (tenant, pan, ttl) = match checked {
            Ok(v) => v,
            Err(e) => {
                let tenant = who.resolve_tenant(card.tenant.as_deref()).ok();
                u.audit
                    .append_one(refused(tenant.as_deref(), None, Outcome::Denied, &e))
                    .await?;
                return Err(e);
            }
        };
        let fingerprint = u
            .keyring
            .fingerprint_key(&tenant)
            .await?
            .tag(&[CARD_CLASS.as_bytes(), pan.expose().as_bytes()]);
        // A fresh token the vault does not hold yet (two cards of one BIN
        // and last four share 10^(n-10) possible middles).
        let mut token = None;
        for _ in 0..TOKEN_ATTEMPTS {
            let candidate = strongroom_cards::pan::new_token(&pan).map_err(invalid)?;
            let taken = self
                .stores
                .central
                .get_secret(&candidate, &strongroom_store::TenantScope::All)
                .await?;
            if matches!(taken, strongroom_store::Scoped::Missing) {
                token = Some(candidate);
                break;
            }
        }
        let token = token.ok_or(VaultError::Conflict("no free card token"))?;
        let sealed = SealedCard {
            pan: pan.expose().to_owned(),
            expiry_month: card.expiry_month,
            expiry_year: card.expiry_year,
            holder: card.holder.clone(),
        };
        let value = SecretBytes::new(
            serde_json::to_vec(&sealed)
                .map_err(|_| VaultError::Invalid("card could not be encoded".into()))?,
        );
        drop(sealed);
        let (version, key) = u.keyring.current(&tenant, CARD_CLASS).await?;
        let envelope = key.seal(
            &record_context(&tenant, CARD_CLASS, &token, version),
            value.expose(),
        )?;
        drop(value);
        let note = match &card.cvv {
            Some(_) => format!("{}; cvv held {ttl} min", pan.masked()),
            None => pan.masked(),
        };
        // The CVV is held first: if its store is down, nothing is stored
        // (no card left behind without a token holder). Should storing the
        // card then fail, the CVV is taken back.
        let cvv_token = match &card.cvv {
            Some(cvv) => match self.hold_cvv(&u, &tenant, &token, cvv, now, ttl).await {
                Ok(t) => Some(t),
                Err(e) => {
                    u.audit
                        .append_one(refused(Some(&tenant), None, Outcome::Failed, &e))
                        .await?;
                    return Err(e);
                }
            },
            None => None,
        };
        let stored = self
            .store_card(&u, who, ctx, (&tenant, &token), envelope, note)
            .await;
        let stored = match stored {
            Ok(()) => self
                .stores
                .central
                .insert_secrets(
                    vec![
                        SecretRecord {
                            token: token.clone(),
                            tenant: tenant.clone(),
                            class: CARD_CLASS.into(),
                            key_version: version,
                            fingerprint: Some(fingerprint),
                            // A returning card is stored again, under a token of its own.
                            fingerprint_unique: false,
                            metadata: None,
                            created_at: now,
                            // Of use until the end of its expiry month; then
                            // dormant like any closed window.
                            window_closes_at: end_of_month_ms(card.expiry_year, card.expiry_month)
                                .unwrap_or_else(|| {
                                    now.saturating_add(
                                        i64::try_from(
                                            self.config
                                                .default_reveal_window_secs
                                                .saturating_mul(1000),
                                        )
                                        .unwrap_or(i64::MAX),
                                    )
                                }),
                            created_by: who.id.clone(),
                            state: SecretState::Active,
                            seal: Vec::new(),
                        }
                        .sealed(&u.row_seals),
                    ]
                    .into(),
                )
                .await
                .map(|_| ())
                .map_err(VaultError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            // Nothing of a card that was not stored may stay behind: its
            // envelope, its CVV; and the log says it failed.
            if let Err(x) = self.stores.vault.delete(&token).await {
                tracing::error!(error = %x, token = %token, "could not remove a failed card's envelope");
            }
            if let Some(t) = &cvv_token
                && let Err(x) = self.take_cvv(&u, &tenant, &token, t, now).await
            {
                tracing::error!(error = %x, token = %token, "could not take back a failed card's CVV; it expires with its minutes");
            }
            u.audit
                .append_one(refused(Some(&tenant), Some(&token), Outcome::Failed, &e))
                .await?;
            return Err(e);
        }
        Ok(CardTokens {
            token,
            tenant,
            masked: pan.masked(),
            fingerprint: data_encoding::HEXLOWER.encode(&fingerprint),
            expiry_month: card.expiry_month,
            expiry_year: card.expiry_year,
            cvv_expires_at: cvv_token
                .as_ref()
                .map(|_| now.saturating_add(i64::from(ttl) * 60_000)),
            cvv_token,
            created_at: now,
        })
    }

    /// Writes a card's envelope and its audit record (together: the token
    /// goes live only once both are durable).
    async fn store_card(
        &self,
        u: &Unsealed,
        who: &Principal,
        ctx: &RequestContext,
        (tenant, token): (&str, &str),
        envelope: Vec<u8>,
        note: String,
    ) -> Result<(), VaultError> {
        const ACTION: &str = "card.tokenize";
        let (put, audited) = tokio::join!(
            self.stores
                .vault
                .put_many(vec![(token.to_owned(), envelope)]),
            u.audit.append_one(self.event(
                ctx,
                Some(who),
                ACTION,
                Some(tenant),
                Some(token),
                Outcome::Allowed,
                Some(note),
            ))
        );
        audited?;
        put?;
        Ok(())
    }

    /// Reveals a card: BIN and last four, or in full for `cards:reveal_full`
    /// when `full` is asked. Needs `secrets:reveal` or
    /// `secrets:reveal_masked` for the masked form. Audited as
    /// `card.reveal` with the form shown.
    pub async fn reveal_card(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        token: &str,
        purpose: &str,
        full: bool,
    ) -> Result<RevealedCard, VaultError> {
        const ACTION: &str = "card.reveal";
        let u = self.unsealed()?;
        let permission = if full {
            Permission::RevealFullPan
        } else if who.has(Permission::Reveal) {
            Permission::Reveal
        } else {
            Permission::RevealMasked
        };
        let purpose = self
            .checked_purpose(&u, who, ctx, ACTION, token, purpose)
            .await?;
        let rec = self
            .authorize_on(&u, who, ctx, ACTION, permission, token)
            .await?;
        let event = |outcome: Outcome, reason: &str| {
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
        if rec.class != CARD_CLASS {
            u.audit
                .append_one(event(Outcome::Denied, "request.invalid"))
                .await?;
            return Err(VaultError::Invalid("that token is not a card's".into()));
        }
        if self.clock.now_ms() >= rec.window_closes_at {
            u.audit
                .append_one(event(Outcome::Denied, "vault.dormant"))
                .await?;
            return Err(VaultError::Dormant);
        }
        let opened = match self.open_record(&u, &rec).await {
            Ok(v) => v,
            Err(e) => {
                u.audit.append_one(event(Outcome::Failed, e.code())).await?;
                return Err(e);
            }
        };
        let card: SealedCard =
            serde_json::from_slice(opened.expose()).map_err(|_| VaultError::Integrity)?;
        drop(opened);
        u.audit
            .append_one(event(
                Outcome::Allowed,
                if full { "pan=full" } else { "pan=masked" },
            ))
            .await?;
        let pan = if full {
            Zeroizing::new(card.pan.clone())
        } else {
            Zeroizing::new(strongroom_cards::pan::mask(&card.pan))
        };
        Ok(RevealedCard {
            token: rec.token,
            tenant: rec.tenant,
            pan,
            masked: !full,
            expiry_month: card.expiry_month,
            expiry_year: card.expiry_year,
            holder: card.holder.clone(),
        })
    }
}

impl std::fmt::Debug for RevealedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RevealedCard({})", self.token)
    }
}

/// A card opened for the relay: the real values, for one request.
pub struct RelayCard {
    /// Tenant.
    pub tenant: String,
    /// The card number.
    pub pan: Zeroizing<String>,
    /// Expiry month.
    pub expiry_month: u32,
    /// Expiry year.
    pub expiry_year: u32,
    /// Cardholder name.
    pub holder: Option<String>,
    /// The CVV, taken (it works once).
    pub cvv: Option<Zeroizing<String>>,
}

impl Vault {
    /// Opens a card (and takes its CVV, if a CVV token is given) for the
    /// relay to send to `route`. Needs `cards:relay`; audited as
    /// `card.relay` with the route, the tokens and `note` (never a value).
    /// The CVV token is consumed even if the upstream call then fails: a
    /// CVV is used once.
    pub async fn card_for_relay(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        card_token: &str,
        cvv_token: Option<&str>,
        (route, route_tenants): (&str, &[String]),
    ) -> Result<RelayCard, VaultError> {
        const ACTION: &str = "card.relay";
        let u = self.unsealed()?;
        let rec = self
            .authorize_on(&u, who, ctx, ACTION, Permission::RelayCards, card_token)
            .await?;
        let event = |outcome: Outcome, reason: String| {
            let mut e = self.event(
                ctx,
                Some(who),
                ACTION,
                Some(&rec.tenant),
                Some(card_token),
                outcome,
                Some(reason),
            );
            e.purpose = Some(format!("relay {route}"));
            e
        };
        if rec.class != CARD_CLASS {
            u.audit
                .append_one(event(Outcome::Denied, "request.invalid".into()))
                .await?;
            return Err(VaultError::Invalid("that token is not a card's".into()));
        }
        // A route serves its tenants: another's card (and CVV) stays put.
        if !route_tenants
            .iter()
            .any(|t| t == &rec.tenant || t == crate::policy::ALL_TENANTS)
        {
            u.audit
                .append_one(event(Outcome::Denied, "relay.wrong_tenant".into()))
                .await?;
            return Err(VaultError::Forbidden(
                "relaying this tenant's cards on that route",
            ));
        }
        let now = self.clock.now_ms();
        if now >= rec.window_closes_at {
            u.audit
                .append_one(event(Outcome::Denied, "vault.dormant".into()))
                .await?;
            return Err(VaultError::Dormant);
        }
        let cvv = match cvv_token {
            Some(t) => match self.take_cvv(&u, &rec.tenant, card_token, t, now).await {
                Ok(Some(cvv)) => Some(cvv),
                Err(e) => {
                    u.audit
                        .append_one(event(Outcome::Failed, e.code().into()))
                        .await?;
                    return Err(e);
                }
                Ok(None) => {
                    u.audit
                        .append_one(event(Outcome::Denied, "card.cvv_unavailable".into()))
                        .await?;
                    return Err(VaultError::Invalid(
                        "the CVV token is unknown, used or expired: a CVV works once, for minutes"
                            .into(),
                    ));
                }
            },
            None => None,
        };
        let opened = match self.open_record(&u, &rec).await {
            Ok(v) => v,
            Err(e) => {
                u.audit
                    .append_one(event(Outcome::Failed, e.code().into()))
                    .await?;
                return Err(e);
            }
        };
        let card: SealedCard =
            serde_json::from_slice(opened.expose()).map_err(|_| VaultError::Integrity)?;
        drop(opened);
        let note = match cvv_token {
            Some(t) => format!("route {route}; cvv {t} used"),
            None => format!("route {route}"),
        };
        u.audit.append_one(event(Outcome::Allowed, note)).await?;
        Ok(RelayCard {
            tenant: rec.tenant,
            pan: Zeroizing::new(card.pan.clone()),
            expiry_month: card.expiry_month,
            expiry_year: card.expiry_year,
            holder: card.holder.clone(),
            cvv,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_is_of_use_until_the_end_of_its_expiry_month() {
        // 2031-12 ends at 2032-01-01T00:00:00Z.
        assert_eq!(end_of_month_ms(2031, 12), Some(1_956_528_000_000));
        // 2030-02 ends at 2030-03-01T00:00:00Z.
        assert_eq!(end_of_month_ms(2030, 2), Some(1_898_553_600_000));
    }
}
