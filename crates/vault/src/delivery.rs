//! Handing a voucher's code to a customer: opening the reveal window of
//! dormant stock for an order, and reveal links.
//!
//! Stock is stored dormant: no one can reveal it. Placing an order opens the
//! window of the voucher it takes (permission `orders:place`), for as long as
//! the business lets a delivered code be seen; after that it is dormant
//! again and only a security officer re-opens it.
//!
//! A reveal link is a customer's way to see the code without an account.
//! The link names an order and an expiry and carries an HMAC over both under
//! a key derived from the root key, so only this vault can make one and none
//! can be altered or guessed. The link alone reveals nothing: the order must
//! still have views left (counted by the central store, across nodes), and
//! the code's own reveal window must be open. Each reveal through a link is
//! audited with the link's order as the actor.

use data_encoding::BASE64URL_NOPAD;
use strongroom_audit::Outcome;
use strongroom_store::{Scoped, TenantScope};

use crate::policy::{Permission, PermissionSet, Principal};
use crate::secrets::{Redaction, Revealed};
use crate::{RequestContext, Vault, VaultError, rfc3339};

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

impl Vault {
    /// Sets the reveal window of a voucher's code (or PIN) handed over by an
    /// order: `until` in the future opens it, `until` now closes it again
    /// (a reservation released). Only for codes of `tenant` in the voucher
    /// classes; audited with `reason`.
    pub async fn set_delivery_window(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        tenant: &str,
        token: &str,
        until: i64,
        reason: &str,
    ) -> Result<(), VaultError> {
        let u = self.unsealed()?;
        const ACTION: &str = "secret.delivery_window";
        let checked = match who.require(Permission::PlaceOrders) {
            Err(e) => Err(e),
            Ok(()) if !who.may_act_in(tenant) => {
                Err(VaultError::Forbidden("acting in that tenant"))
            }
            Ok(()) => match self
                .stores
                .central
                .get_secret(token, &TenantScope::one(tenant))
                .await?
            {
                Scoped::Found(rec) if matches!(rec.class.as_str(), "voucher_code" | "generic") => {
                    Ok(())
                }
                _ => Err(VaultError::NotFound),
            },
        };
        let outcome = match &checked {
            Ok(()) => (
                Outcome::Allowed,
                format!("until {}: {reason}", rfc3339(until)),
            ),
            Err(e) => (Outcome::Denied, e.code().to_owned()),
        };
        u.audit
            .append_one(self.event(
                ctx,
                Some(who),
                ACTION,
                Some(tenant),
                Some(token),
                outcome.0,
                Some(outcome.1),
            ))
            .await?;
        checked?;
        if !self.stores.central.set_window(token, tenant, until).await? {
            return Err(VaultError::NotFound);
        }
        Ok(())
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
