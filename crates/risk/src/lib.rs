//! Risk scoring for card payments, online and explainable.
//!
//! Each payment is scored 0–100 from what the engine has seen of its card
//! (by the vault's keyed fingerprint, never the number), its customer and
//! its client address, then learned. Two parts add up:
//!
//! * **Rules** anyone can read: velocity over a minute, an hour and a day;
//!   many cards for one customer; many new cards from one address (card
//!   testing); one card shared by many customers; first use.
//! * **A model of each entity's normal**, learned from the stream: the
//!   card's usual amounts (mean and spread of the logarithm, exponentially
//!   weighted) and its usual rate (a Poisson tail of this hour's count
//!   against the card's long-run rate). Amounts are learned only from
//!   payments not declined, so a fraudster cannot teach a card that large
//!   amounts are normal.
//!
//! Every point of a score comes with a [`Reason`]: a stable code, the
//! points, and the figures behind it. State is per process and bounded
//! ([`RiskConfig::max_entities`] of each kind per tenant); see
//! docs/cards.md.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod features;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;

use features::{Amounts, DAY, HOUR, MINUTE, RecentSet, Velocity, poisson_surprise};
use serde::{Deserialize, Serialize};

/// Thresholds of the rules and of the decisions (`[risk]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Score from which a payment is sent for review.
    pub review_at: u8,
    /// Score from which a payment is declined.
    pub decline_at: u8,
    /// Payments of one card within a minute that count as a burst.
    pub card_per_minute: u32,
    /// Payments of one card within an hour that count as many.
    pub card_per_hour: u32,
    /// Payments of one customer within an hour that count as many.
    pub customer_per_hour: u32,
    /// Distinct cards of one customer within a day that count as many.
    pub cards_per_customer: u32,
    /// Cards new to the engine from one address within an hour that count
    /// as card testing.
    pub new_cards_per_address: u32,
    /// Customers of one card within a day that count as many.
    pub customers_per_card: u32,
    /// Standard deviations above the card's usual amount that count as
    /// unusual.
    pub unusual_amount_z: f64,
    /// Most cards, customers and addresses each remembered, per tenant.
    pub max_entities: usize,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            review_at: 50,
            decline_at: 80,
            card_per_minute: 3,
            card_per_hour: 5,
            customer_per_hour: 15,
            cards_per_customer: 3,
            new_cards_per_address: 4,
            customers_per_card: 3,
            unusual_amount_z: 3.0,
            max_entities: 100_000,
        }
    }
}

impl RiskConfig {
    /// Checks the thresholds make sense; the message says which does not.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.review_at) || self.decline_at > 100 {
            return Err("risk.review_at and risk.decline_at are scores from 1 to 100".into());
        }
        if self.review_at >= self.decline_at {
            return Err("risk.review_at must be below risk.decline_at".into());
        }
        let counts = [
            self.card_per_minute,
            self.card_per_hour,
            self.customer_per_hour,
            self.cards_per_customer,
            self.new_cards_per_address,
            self.customers_per_card,
        ];
        if counts.iter().any(|c| *c < 2) {
            return Err("risk thresholds on counts must be at least 2".into());
        }
        if !(1.0..=10.0).contains(&self.unusual_amount_z) {
            return Err("risk.unusual_amount_z must be 1 to 10".into());
        }
        if self.max_entities < 1_000 {
            return Err("risk.max_entities must be at least 1000".into());
        }
        Ok(())
    }
}

/// A payment to score.
#[derive(Debug, Clone)]
pub struct Payment<'a> {
    /// The tenant: nothing is shared between tenants.
    pub tenant: &'a str,
    /// The card's fingerprint (hex), as the vault returns it.
    pub card: &'a str,
    /// Amount in minor units (pence, cents).
    pub amount: u64,
    /// ISO 4217 currency code.
    pub currency: &'a str,
    /// The merchant's reference for the customer.
    pub customer: &'a str,
    /// The customer's address, if known (IPv6 counted by /64).
    pub address: Option<IpAddr>,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// What to do with a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Below `review_at`.
    Approve,
    /// From `review_at`, below `decline_at`.
    Review,
    /// From `decline_at`.
    Decline,
}

impl Decision {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Review => "review",
            Decision::Decline => "decline",
        }
    }
}

/// One part of a score, explained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// Stable code, e.g. `card_velocity_minute`.
    pub code: &'static str,
    /// Points it added.
    pub points: u8,
    /// The figures behind it, in words.
    pub detail: String,
}

/// The figures a score was computed from (this payment included).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Features {
    /// Payments of the card in about the last minute, hour and day.
    pub card_velocity: [f64; 3],
    /// Payments of the customer in about the last minute, hour and day.
    pub customer_velocity: [f64; 3],
    /// Payments from the address in about the last minute, hour and day.
    pub address_velocity: Option<[f64; 3]>,
    /// Earlier payments of the card seen.
    pub card_uses: u64,
    /// Distinct cards of the customer in the last day.
    pub customer_cards_day: usize,
    /// Cards new to the engine from the address in the last hour.
    pub address_new_cards_hour: Option<usize>,
    /// Distinct customers of the card in the last day.
    pub card_customers_day: usize,
    /// Standard deviations of the amount above the card's usual, once the
    /// card has five amounts in this currency.
    pub amount_z: Option<f64>,
    /// The card's usual amount in this currency, minor units.
    pub usual_amount: Option<u64>,
}

/// A score with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// 0 (nothing unusual) to 100.
    pub score: u8,
    /// What the thresholds make of it.
    pub decision: Decision,
    /// Every rule and model part that added points, largest first.
    pub reasons: Vec<Reason>,
    /// The figures behind it.
    pub features: Features,
}

/// What is remembered of a card, or of a customer.
#[derive(Debug, Default)]
struct EntityState {
    velocity: Velocity,
    first_ms: i64,
    last_ms: i64,
    /// Payments seen (every attempt).
    uses: u64,
    /// Payments approved: what its normal is learned from.
    approved: u64,
    /// Usual amounts, learned from approved payments only.
    amounts: Amounts,
    /// Usual counterparts (a card's customers, a customer's addresses),
    /// from approved payments only.
    usual: RecentSet,
    /// Counterparts of every attempt (a card's customers, a customer's
    /// cards), marked if the card was new to the engine then.
    recent: RecentSet,
    /// A card's usual addresses (approved payments only).
    usual_addresses: RecentSet,
}

/// What is remembered for one tenant: each tenant's entities are capped
/// and evicted on their own, so one tenant's traffic never pushes out
/// another's history. Entities are keyed by a keyed 64-bit hash, so a key
/// costs eight bytes whatever the customer reference's length.
#[derive(Default)]
struct TenantState {
    cards: HashMap<u64, EntityState>,
    customers: HashMap<u64, EntityState>,
    addresses: HashMap<u64, EntityState>,
    /// The tenant's usual amount per currency (for cards with little
    /// history).
    shop: Amounts,
}

#[derive(Default)]
struct State {
    tenants: HashMap<String, TenantState>,
}

/// Amounts an entity needs in a currency before its usual amount is judged.
const MIN_AMOUNTS: u32 = 5;
/// Uses and age (ms) a card needs before its usual rate is judged.
const MIN_RATE_USES: u64 = 5;
const MIN_RATE_AGE_MS: i64 = 3 * 86_400_000;
/// Approved payments after which an entity has usual counterparts.
const ESTABLISHED: u64 = 3;
/// Amounts the shop needs in a currency before its usual amount is judged.
const MIN_SHOP_AMOUNTS: u32 = 20;
/// Entities unseen this long are forgotten first when memory is full.
const FORGET_AFTER_MS: i64 = 30 * 86_400_000;

/// What was seen before a payment.
struct Seen<'a> {
    card: &'a EntityState,
    customer: &'a EntityState,
    address: Option<&'a EntityState>,
    shop: &'a Amounts,
}

/// The payment's card, customer and address as set members.
struct Hashes {
    card: u64,
    customer: u64,
    address: Option<u64>,
}

impl EntityState {
    fn observe(&mut self, now: i64) {
        if self.uses == 0 {
            self.first_ms = now;
        }
        self.uses += 1;
        self.last_ms = self.last_ms.max(now);
        self.velocity.add(now);
    }
}

/// The scoring engine: features of every card, customer and address seen.
pub struct RiskEngine {
    config: RiskConfig,
    state: Mutex<State>,
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for RiskEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RiskEngine")
    }
}

/// The key an address is counted by: IPv4 as is, IPv6 by its /64 (one
/// subscriber's range).
pub fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = a.segments();
                let prefix: Vec<String> = s.iter().take(4).map(|x| format!("{x:x}")).collect();
                format!("{}::/64", prefix.join(":"))
            }
        },
    }
}

fn points(value: f64, base: f64, per_unit: f64, cap: f64) -> u8 {
    (base + per_unit * value).clamp(0.0, cap).round() as u8
}

fn plus_one(v: [f64; 3]) -> [f64; 3] {
    v.map(|x| ((x + 1.0) * 100.0).round() / 100.0)
}

/// Reasons as they are found.
#[derive(Default)]
struct Reasons(Vec<Reason>);

impl Reasons {
    fn add(&mut self, code: &'static str, points: u8, detail: String) {
        if points > 0 {
            self.0.push(Reason {
                code,
                points,
                detail,
            });
        }
    }
}

impl RiskEngine {
    /// An engine with `config` (checked by the caller).
    pub fn new(config: RiskConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The thresholds in use.
    pub fn config(&self) -> &RiskConfig {
        &self.config
    }

    /// Scores `p`, then learns it.
    pub fn score(&self, p: &Payment<'_>) -> Assessment {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let state = guard.tenants.entry(p.tenant.to_owned()).or_default();
        let now = p.at_ms;
        let hashes = Hashes {
            card: self.hasher.hash_one(p.card),
            customer: self.hasher.hash_one(p.customer),
            address: p.address.map(|a| self.hasher.hash_one(address_key(a))),
        };
        let empty = EntityState::default();
        let seen = Seen {
            card: state.cards.get(&hashes.card).unwrap_or(&empty),
            customer: state.customers.get(&hashes.customer).unwrap_or(&empty),
            address: hashes
                .address
                .map(|k| state.addresses.get(&k).unwrap_or(&empty)),
            shop: &state.shop,
        };
        let (features, reasons) = self.judge(p, &seen, &hashes);
        let first_use = seen.card.uses == 0;
        let mut reasons = reasons.0;
        reasons.sort_by_key(|r| std::cmp::Reverse(r.points));
        let total: u32 = reasons.iter().map(|r| u32::from(r.points)).sum();
        let score = u8::try_from(total.min(100)).unwrap_or(100);
        let c = &self.config;
        let decision = if score >= c.decline_at {
            Decision::Decline
        } else if score >= c.review_at {
            Decision::Review
        } else {
            Decision::Approve
        };

        // Learn. Velocity and who-used-what count every attempt; what is
        // usual (amounts, customers, addresses) only approved payments, so
        // a fraudster cannot teach the engine that they are normal.
        let approved = decision == Decision::Approve;
        let max = c.max_entities;
        Self::make_room(&mut state.cards, max, now);
        let card = state.cards.entry(hashes.card).or_default();
        card.observe(now);
        card.recent.see(hashes.customer, now, false);
        if approved {
            card.approved += 1;
            card.amounts.learn(p.currency, p.amount);
            card.usual.see(hashes.customer, now, false);
            if let Some(h) = hashes.address {
                card.usual_addresses.see(h, now, false);
            }
        }
        Self::make_room(&mut state.customers, max, now);
        let customer = state.customers.entry(hashes.customer).or_default();
        customer.observe(now);
        customer.recent.see(hashes.card, now, first_use);
        if approved {
            customer.approved += 1;
            customer.amounts.learn(p.currency, p.amount);
            if let Some(h) = hashes.address {
                customer.usual.see(h, now, false);
            }
        }
        if let Some(key) = hashes.address {
            Self::make_room(&mut state.addresses, max, now);
            let address = state.addresses.entry(key).or_default();
            address.observe(now);
            address.recent.see(hashes.card, now, first_use);
        }
        if approved {
            state.shop.learn(p.currency, p.amount);
        }
        Assessment {
            score,
            decision,
            reasons,
            features,
        }
    }

    /// The rules and the model, on what was seen before this payment.
    fn judge(&self, p: &Payment<'_>, seen: &Seen<'_>, h: &Hashes) -> (Features, Reasons) {
        let c = &self.config;
        let now = p.at_ms;
        let day = features::WINDOWS_MS[DAY];
        let hour = features::WINDOWS_MS[HOUR];
        let (card, customer) = (seen.card, seen.customer);
        let first_use = card.uses == 0;
        let mut f = Features {
            card_velocity: plus_one(card.velocity.at(now)),
            customer_velocity: plus_one(customer.velocity.at(now)),
            address_velocity: seen.address.map(|a| plus_one(a.velocity.at(now))),
            card_uses: card.uses,
            customer_cards_day: customer.recent.count_since(now, day, false)
                + usize::from(!customer.recent.seen_since(h.card, now, day)),
            card_customers_day: card.recent.count_since(now, day, false)
                + usize::from(!card.recent.seen_since(h.customer, now, day)),
            address_new_cards_hour: seen.address.map(|a| {
                a.recent.count_since(now, hour, true)
                    + usize::from(first_use && !a.recent.seen_since(h.card, now, hour))
            }),
            ..Features::default()
        };
        let card_amounts = card.amounts.get(p.currency).filter(|a| a.n >= MIN_AMOUNTS);
        if let Some(a) = card_amounts {
            f.amount_z = Some((a.z(p.amount) * 100.0).round() / 100.0);
            f.usual_amount = Some(a.typical());
        }
        let mut r = Reasons::default();
        // Rules: velocity.
        let card_minute = f.card_velocity[MINUTE];
        if card_minute >= f64::from(c.card_per_minute) {
            r.add(
                "card_velocity_minute",
                points(card_minute - f64::from(c.card_per_minute), 30.0, 5.0, 50.0),
                format!("about {card_minute:.0} payments of this card in the last minute"),
            );
        }
        let card_hour = f.card_velocity[HOUR];
        if card_hour >= f64::from(c.card_per_hour) {
            r.add(
                "card_velocity_hour",
                20,
                format!("about {card_hour:.0} payments of this card in the last hour"),
            );
        }
        let customer_hour = f.customer_velocity[HOUR];
        if customer_hour >= f64::from(c.customer_per_hour) {
            r.add(
                "customer_velocity_hour",
                15,
                format!("about {customer_hour:.0} payments of this customer in the last hour"),
            );
        }
        // Rules: who uses what.
        let cards = f.customer_cards_day;
        if cards >= c.cards_per_customer as usize {
            r.add(
                "customer_many_cards",
                if cards >= c.cards_per_customer as usize + 2 {
                    40
                } else {
                    25
                },
                format!("{cards} different cards for this customer in the last day"),
            );
        }
        if let Some(new_cards) = f.address_new_cards_hour
            && new_cards >= c.new_cards_per_address as usize
        {
            r.add(
                "address_many_new_cards",
                if new_cards >= 2 * c.new_cards_per_address as usize {
                    55
                } else {
                    40
                },
                format!("{new_cards} cards never seen before from this address in the last hour"),
            );
        }
        let customers = f.card_customers_day;
        if customers >= c.customers_per_card as usize {
            r.add(
                "card_many_customers",
                30,
                format!("{customers} customers used this card in the last day"),
            );
        }
        if card.approved >= ESTABLISHED {
            if !card.usual.contains(h.customer) {
                r.add(
                    "card_new_customer",
                    15,
                    "a customer this card was not used by before".into(),
                );
            }
            if let Some(a) = h.address
                && !card.usual_addresses.contains(a)
            {
                r.add(
                    "card_new_address",
                    10,
                    "an address this card was not used from before".into(),
                );
            }
        }
        if customer.approved >= ESTABLISHED
            && let Some(a) = h.address
            && !customer.usual.contains(a)
        {
            r.add(
                "customer_new_address",
                10,
                "an address this customer did not pay from before".into(),
            );
            // A new device and a new card together: how a taken-over
            // account is usually spent.
            if !customer.recent.contains(h.card) {
                r.add(
                    "customer_new_card_and_address",
                    15,
                    "a card this customer never used, from an address it never paid from".into(),
                );
            }
        }
        if first_use {
            r.add(
                "first_use",
                10,
                "the first payment seen with this card".into(),
            );
        }
        // The model: the card's and the customer's own normal amounts, the
        // card's own rate; the shop's normal for a card with little history.
        if let Some(z) = f.amount_z
            && z >= c.unusual_amount_z
        {
            r.add(
                "amount_unusual",
                points(z - c.unusual_amount_z, 20.0, 6.0, 45.0),
                format!(
                    "{} {} is {z:.1} standard deviations above this card's usual {} {}",
                    p.amount,
                    p.currency,
                    f.usual_amount.unwrap_or(0),
                    p.currency
                ),
            );
        }
        // A card with little history (a new card) is judged against its
        // customer's usual amounts instead: the same evidence, not counted
        // twice.
        let customer_amounts = customer
            .amounts
            .get(p.currency)
            .filter(|a| a.n >= MIN_AMOUNTS && card_amounts.is_none());
        if let Some(a) = customer_amounts {
            let z = a.z(p.amount);
            if z >= c.unusual_amount_z {
                r.add(
                    "customer_amount_unusual",
                    points(z - c.unusual_amount_z, 15.0, 5.0, 35.0),
                    format!(
                        "{} {} is {z:.1} standard deviations above this customer's usual {} {}",
                        p.amount,
                        p.currency,
                        a.typical(),
                        p.currency
                    ),
                );
            }
        }
        if card_amounts.is_none()
            && customer_amounts.is_none()
            && let Some(shop) = seen
                .shop
                .get(p.currency)
                .filter(|s| s.n >= MIN_SHOP_AMOUNTS)
        {
            let z = shop.z(p.amount);
            if z >= 2.0 {
                r.add(
                    "new_card_high_amount",
                    25,
                    format!(
                        "a card with little history paying {z:.1} standard deviations above this shop's usual {} {}",
                        shop.typical(),
                        p.currency
                    ),
                );
            }
        }
        let age = now - card.first_ms;
        if card.uses >= MIN_RATE_USES && age >= MIN_RATE_AGE_MS {
            let expected_per_hour = card.uses as f64 * 3_600_000.0 / age as f64;
            let surprise = poisson_surprise(card_hour.round() as u64, expected_per_hour);
            if surprise >= 4.0 {
                r.add(
                    "velocity_unusual",
                    points(surprise - 4.0, 15.0, 5.0, 50.0),
                    format!(
                        "about {card_hour:.0} payments this hour where this card makes {expected_per_hour:.2}"
                    ),
                );
            }
        }
        (f, r)
    }

    /// Keeps a map below `max`: forgets what was unseen for 30 days, then,
    /// if still full, the least recently seen tenth.
    fn make_room<K: Eq + std::hash::Hash>(map: &mut HashMap<K, EntityState>, max: usize, now: i64) {
        if map.len() < max {
            return;
        }
        map.retain(|_, v| now - v.last_ms < FORGET_AFTER_MS);
        if map.len() < max {
            return;
        }
        let mut ages: Vec<i64> = map.values().map(|v| v.last_ms).collect();
        ages.sort_unstable();
        let cut = ages.get(ages.len() / 10).copied().unwrap_or(i64::MIN);
        map.retain(|_, v| v.last_ms > cut);
    }

    /// How many cards, customers and addresses are remembered for `tenant`.
    pub fn entities(&self, tenant: &str) -> (usize, usize, usize) {
        self.state.lock().map_or((0, 0, 0), |s| {
            s.tenants.get(tenant).map_or((0, 0, 0), |t| {
                (t.cards.len(), t.customers.len(), t.addresses.len())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_790_000_000_000;

    fn pay<'a>(tenant: &'a str, card: &'a str, customer: &'a str, at_ms: i64) -> Payment<'a> {
        Payment {
            tenant,
            card,
            amount: 2_000,
            currency: "GBP",
            customer,
            address: None,
            at_ms,
        }
    }

    #[test]
    fn one_tenants_flood_never_evicts_anothers_history() {
        let engine = RiskEngine::new(RiskConfig {
            max_entities: 1_000,
            ..RiskConfig::default()
        });
        for i in 0..3 {
            engine.score(&pay("shop-b", "card-b", "cust-b", T0 + i * 86_400_000));
        }
        let cards: Vec<String> = (0..5_000).map(|i| format!("flood-{i}")).collect();
        for (i, card) in cards.iter().enumerate() {
            engine.score(&pay("shop-a", card, card, T0 + 3 * 86_400_000 + i as i64));
        }
        let (a_cards, a_customers, _) = engine.entities("shop-a");
        assert!(
            a_cards <= 1_000 && a_customers <= 1_000,
            "{a_cards} {a_customers}"
        );
        assert_eq!(engine.entities("shop-b"), (1, 1, 0));
        let b = engine.score(&pay("shop-b", "card-b", "cust-b", T0 + 4 * 86_400_000));
        assert_eq!(b.features.card_uses, 3, "shop-b's card kept its history");
        // Tenants share nothing: the same card elsewhere is a first use.
        let elsewhere = engine.score(&pay("shop-a", "card-b", "cust-b", T0 + 4 * 86_400_000));
        assert_eq!(elsewhere.features.card_uses, 0);
        assert!(elsewhere.reasons.iter().any(|r| r.code == "first_use"));
    }
}
