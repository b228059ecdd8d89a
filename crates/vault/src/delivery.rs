//! Handing a voucher's code to a customer: opening the reveal window of
//! dormant stock for an order, and reveal links.
//!
//! Stock is stored dormant: no one can reveal it. Placing an order opens the
//! window of the voucher it takes (permission `orders:place`), for as long as
//! the business lets a delivered code be seen; after that it is dormant
//! again and only a security officer re-opens it. The vault grants and
//! audits the change ([`WindowGrant`]); the central store applies it in the
//! transaction that marks the order delivered (or, closing it, cancelled).
//!
//! A reveal link is a customer's way to see the code without an account.
//! The link names an order and an expiry and carries an HMAC over both under
//! a key derived from the root key, so only this vault can make one and none
//! can be altered or guessed. The link alone reveals nothing: the order must
//! still have views left (counted by the central store, across nodes), and
//! the code's own reveal window must be open. Each reveal through a link is
//! audited with the link's order as the actor.

use data_encoding::BASE64URL_NOPAD;
use strongroom_audit::{AuditEvent, Outcome};
use strongroom_crypto::SecretBytes;
use strongroom_store::{Scoped, SealSwap, SecretRecord, TenantScope, WindowChange};

use crate::policy::{Permission, PermissionSet, Principal};
use crate::secrets::{Redaction, Revealed};
use crate::{RequestContext, Vault, VaultError, rfc3339};

/// The `reason` of the reveal records of an order's delivery.
pub const DELIVERY_NOTE: &str = "delivery";

/// What a valid reveal link says: only [`Vault::verify_link`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaim {
    order_id: String,
    expires_at: i64,
}

impl LinkClaim {
    /// The order whose voucher the link shows.
    pub fn order_id(&self) -> &str {
        &self.order_id
    }

    /// When the link stops working, Unix ms.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

const LINK_LABEL: &[u8] = b"reveal-link";

/// Longest reveal link accepted (an order id, a time, a MAC).
const MAX_LINK_LEN: usize = 160;

/// The vault's consent, audited, to set the reveal windows of an order's
/// code (and PIN) until a time: opened for a delivery, closed again when a
/// reservation is released. The central store applies it in the same
/// transaction as the order's change, so the two never disagree. A grant for
/// a delivery by code also covers revealing them once
/// ([`Vault::open_granted`]): the reveal is audited with the grant, so a
/// delivery costs one audit write. Only [`Vault::grant_delivery_window`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowGrant {
    records: Vec<SecretRecord>,
    tokens: Vec<String>,
    /// Each record's seal now and with its window moved to `until`.
    swaps: Vec<SealSwap>,
    until: i64,
    reveal: bool,
}

impl WindowGrant {
    /// The tokens whose windows it sets.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The change for the central store to apply: each row only if it is
    /// still the one the grant was decided on.
    pub fn change(&self) -> WindowChange {
        WindowChange {
            rows: self
                .tokens
                .iter()
                .cloned()
                .zip(self.swaps.iter().cloned())
                .collect(),
            closes_at: self.until,
        }
    }

    /// When their windows close, Unix ms.
    pub fn until(&self) -> i64 {
        self.until
    }
}

impl Vault {
    /// Grants setting the reveal windows of `tokens` (an order's code and
    /// PIN, of `tenant`, in the voucher classes) until `until`, and with
    /// `reveal` revealing them once to `who` for `reason`. Needs
    /// `orders:place` (and `secrets:reveal` to reveal). The grant, and the
    /// reveal, are audited in one append with `along` (the order's own
    /// records) before either can take effect.
    #[allow(clippy::too_many_arguments)]
    pub async fn grant_delivery_window(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: &str,
        tokens: &[&str],
        until: i64,
        reveal: bool,
        reason: &str,
        along: Vec<AuditEvent>,
    ) -> Result<WindowGrant, VaultError> {
        let u = self.unsealed()?;
        const ACTION: &str = "secret.delivery_window";
        let mut checked = who.require(Permission::PlaceOrders);
        if checked.is_ok() && reveal {
            checked = who.require(Permission::Reveal);
        }
        if checked.is_ok() && !who.may_act_in(tenant) {
            checked = Err(VaultError::Forbidden("acting in that tenant"));
        }
        let mut records = Vec::with_capacity(tokens.len());
        for token in tokens {
            if checked.is_err() {
                break;
            }
            match self
                .secret_row(token, &TenantScope::one(tenant), ctx)
                .await?
            {
                Scoped::Found(rec) if matches!(rec.class.as_str(), "voucher_code" | "generic") => {
                    records.push(rec)
                }
                _ => checked = Err(VaultError::NotFound),
            }
        }
        if let Err(e) = checked {
            let first = tokens.first().copied();
            u.audit
                .append_one(self.event(
                    ctx,
                    Some(who),
                    ACTION,
                    Some(tenant),
                    first,
                    Outcome::Denied,
                    Some(e.code().into()),
                ))
                .await?;
            return Err(e);
        }
        let mut events = along;
        for token in tokens {
            events.push(self.event(
                ctx,
                Some(who),
                ACTION,
                Some(tenant),
                Some(token),
                Outcome::Allowed,
                Some(format!("until {}: {reason}", rfc3339(until))),
            ));
        }
        if reveal {
            for token in tokens {
                let mut e = self.event(
                    ctx,
                    Some(who),
                    "secret.reveal",
                    Some(tenant),
                    Some(token),
                    Outcome::Allowed,
                    // Set by the vault, never by a caller: the detectors
                    // tell the vault's picks for orders from chosen reveals.
                    Some(DELIVERY_NOTE.into()),
                );
                e.purpose = Some(reason.to_owned());
                events.push(e);
            }
        }
        u.audit.append(&events).await?;
        let swaps = records
            .iter()
            .map(|rec| {
                let mut moved = rec.clone();
                moved.window_closes_at = until;
                SealSwap {
                    from: rec.seal.clone(),
                    to: u.row_seals.seal(crate::Row::Secret(&moved)),
                }
            })
            .collect();
        Ok(WindowGrant {
            records,
            tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
            swaps,
            until,
            reveal,
        })
    }

    /// The values a delivery grant made for revealing covers, in the order
    /// of its tokens. Call it once the grant has been applied (the order is
    /// delivered); the reveal is already audited.
    pub async fn open_granted(
        &self,
        ctx: &RequestContext,
        who: &Principal,
        grant: &WindowGrant,
    ) -> Result<Vec<SecretBytes>, VaultError> {
        let u = self.unsealed()?;
        if !grant.reveal {
            return Err(VaultError::Forbidden("revealing without a reveal grant"));
        }
        let mut values = Vec::with_capacity(grant.records.len());
        for rec in &grant.records {
            match self.open_record(&u, rec).await {
                Ok(v) => values.push(v),
                Err(e) => {
                    tracing::error!(
                        code = e.code(),
                        "delivery reveal failed after authorisation"
                    );
                    u.audit
                        .append_one(self.event(
                            ctx,
                            Some(who),
                            "secret.reveal",
                            Some(&rec.tenant),
                            Some(&rec.token),
                            Outcome::Failed,
                            Some(e.code().into()),
                        ))
                        .await?;
                    return Err(e);
                }
            }
        }
        Ok(values)
    }

    /// A reveal link's text for `order_id`, valid until `expires_at` (Unix
    /// ms): `ORDER.EXPIRY.MAC`.
    pub fn sign_link(&self, order_id: &str, expires_at: i64) -> Result<String, VaultError> {
        let u = self.unsealed()?;
        let expiry = expires_at.to_string();
        let tag = u
            .link_key
            .tag(&[LINK_LABEL, order_id.as_bytes(), expiry.as_bytes()]);
        Ok(format!(
            "{order_id}.{expiry}.{}",
            BASE64URL_NOPAD.encode(&tag)
        ))
    }

    /// Checks a reveal link's MAC. An expired link still verifies (so the
    /// customer can be told it expired); a forged or altered one is
    /// [`VaultError::NotFound`].
    pub fn verify_link(&self, link: &str) -> Result<LinkClaim, VaultError> {
        let u = self.unsealed()?;
        if link.len() > MAX_LINK_LEN {
            return Err(VaultError::NotFound);
        }
        let mut parts = link.splitn(3, '.');
        let (Some(order_id), Some(expiry), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::NotFound);
        };
        let tag = BASE64URL_NOPAD
            .decode(mac.as_bytes())
            .map_err(|_| VaultError::NotFound)?;
        u.link_key
            .verify(&[LINK_LABEL, order_id.as_bytes(), expiry.as_bytes()], &tag)
            .map_err(|_| VaultError::NotFound)?;
        let expires_at = expiry.parse().map_err(|_| VaultError::NotFound)?;
        Ok(LinkClaim {
            order_id: order_id.to_owned(),
            expires_at,
        })
    }

    /// Reveals a voucher's code (or PIN) to whoever holds a valid reveal
    /// link of the order it was delivered by. The caller has counted the
    /// view; the code's reveal window must still be open. Audited as a
    /// reveal by `link:ORDER`.
    pub async fn reveal_for_link(
        &self,
        ctx: &RequestContext,
        claim: &LinkClaim,
        tenant: &str,
        token: &str,
    ) -> Result<Revealed, VaultError> {
        let holder = Principal {
            id: format!("link:{}", claim.order_id),
            name: "reveal link".into(),
            roles: Vec::new(),
            permissions: PermissionSet::EMPTY.with(Permission::Reveal),
            tenants: vec![tenant.to_owned()],
            human: false,
            mfa_recent: false,
        };
        let purpose = format!("reveal link of order {}", claim.order_id);
        self.reveal(&holder, ctx, token, &purpose, Redaction::None)
            .await
    }
}
