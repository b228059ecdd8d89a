//! Risk scoring of card payments, audited.
//!
//! The engine ([`strongroom_risk`]) knows cards only by the vault's keyed
//! fingerprint, so scoring needs no card data: a caller names the card by
//! its token (the vault looks the fingerprint up, in the caller's tenant
//! only) or by the fingerprint tokenization returned. Every decision is
//! audited as `risk.score` with the score, the decision and the reasons'
//! codes; amounts and addresses stay out of the log.

use std::net::IpAddr;

use strongroom_audit::Outcome;
use strongroom_risk::{Assessment, Payment};

use crate::cards::CARD_CLASS;
use crate::policy::{Permission, Principal};
use crate::{RequestContext, Vault, VaultError};

/// The largest amount scored, minor units (ten billion pounds).
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;
/// The longest customer reference.
pub const MAX_CUSTOMER_REF_CHARS: usize = 200;

/// A payment to score.
#[derive(Debug, Clone)]
pub struct RiskRequest {
    /// Tenant; may be left out when the credential is bound to one.
    pub tenant: Option<String>,
    /// The card, by its token…
    pub card_token: Option<String>,
    /// …or by the fingerprint tokenization returned (hex).
    pub fingerprint: Option<String>,
    /// Amount in minor units.
    pub amount: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// The merchant's reference for the customer.
    pub customer_ref: String,
    /// The customer's address, if known.
    pub ip: Option<IpAddr>,
}

fn check(req: &RiskRequest) -> Result<(), VaultError> {
    let invalid = |m: &str| Err(VaultError::Invalid(m.into()));
    match (&req.card_token, &req.fingerprint) {
        (Some(_), Some(_)) | (None, None) => {
            return invalid("name the card by card_token or by fingerprint (one of them)");
        }
        (None, Some(f)) if f.len() != 64 || !f.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return invalid("fingerprint is the 64 hex digits tokenization returned");
        }
        _ => {}
    }
    if !(1..=MAX_AMOUNT).contains(&req.amount) {
        return invalid("amount is in minor units, 1 to 10^12");
    }
    if req.currency.len() != 3 || !req.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return invalid("currency is an ISO 4217 code such as GBP");
    }
    let chars = req.customer_ref.chars().count();
    if chars == 0
        || chars > MAX_CUSTOMER_REF_CHARS
        || req.customer_ref.chars().any(char::is_control)
    {
        return invalid("customer_ref is 1 to 200 characters, without control characters");
    }
    Ok(())
}

impl Vault {
    /// Scores a card payment 0–100 with its reasons, learns it, and audits
    /// the decision. Needs `risk:score`.
    pub async fn score_risk(
        &self,
        who: &Principal,
        ctx: &RequestContext,
        req: RiskRequest,
    ) -> Result<Assessment, VaultError> {
        const ACTION: &str = "risk.score";
        let u = self.unsealed()?;
        let target = req.card_token.as_deref();
        // The customer reference is recorded with decisions only: a refused
        // request's reference may be anything (unchecked, too long).
        let event = |tenant: Option<&str>, outcome: Outcome, note: String| {
            let mut e = self.event(ctx, Some(who), ACTION, tenant, target, outcome, Some(note));
            if outcome == Outcome::Allowed {
                e.customer = Some(req.customer_ref.clone());
            }
            e
        };
        let tenant = match who
            .require(Permission::ScoreRisk)
            .and_then(|()| who.resolve_tenant(req.tenant.as_deref()))
            .and_then(|tenant| check(&req).map(|()| tenant))
        {
            Ok(t) => t,
            Err(e) => {
                let tenant = who.resolve_tenant(req.tenant.as_deref()).ok();
                u.audit
                    .append_one(event(tenant.as_deref(), Outcome::Denied, e.code().into()))
                    .await?;
                return Err(e);
            }
        };
        let fingerprint = match (&req.card_token, &req.fingerprint) {
            (Some(token), _) => {
                let rec = self
                    .authorize_on(&u, who, ctx, ACTION, Permission::ScoreRisk, token)
                    .await?;
                if rec.tenant != tenant || rec.class != CARD_CLASS {
                    let e = VaultError::Invalid("that token is not a card of this tenant's".into());
                    u.audit
                        .append_one(event(Some(&rec.tenant), Outcome::Denied, e.code().into()))
                        .await?;
                    return Err(e);
                }
                match rec.fingerprint {
                    Some(f) => data_encoding::HEXLOWER.encode(&f),
                    None => return Err(VaultError::Integrity),
                }
            }
            (None, Some(f)) => f.to_ascii_lowercase(),
            (None, None) => return Err(VaultError::Invalid("no card named".into())),
        };
        let assessment = self.risk.score(&Payment {
            tenant: &tenant,
            card: &fingerprint,
            amount: req.amount,
            currency: &req.currency,
            customer: &req.customer_ref,
            address: req.ip,
            at_ms: self.clock.now_ms(),
        });
        let codes: Vec<&str> = assessment.reasons.iter().map(|r| r.code).collect();
        let note = format!(
            "score {} {}{}{}",
            assessment.score,
            assessment.decision.as_str(),
            if codes.is_empty() { "" } else { ": " },
            codes.join(", ")
        );
        u.audit
            .append_one(event(Some(&tenant), Outcome::Allowed, note))
            .await?;
        Ok(assessment)
    }
}
