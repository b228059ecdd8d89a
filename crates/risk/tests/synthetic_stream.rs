//! The engine on a labelled synthetic stream: a month of ordinary shoppers
//! with four kinds of fraud mixed in, scored in time order with the default
//! thresholds. Prints precision and recall (flagged = score at or above
//! `review_at`) and fails below the floors documented in docs/cards.md.
//!
//! `cargo test -p strongroom-risk --test synthetic_stream -- --nocapture`
//! prints the figures.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use strongroom_risk::{Payment, RiskConfig, RiskEngine};

/// The floors the documentation promises at the default thresholds.
const PRECISION_FLOOR: f64 = 0.90;
const RECALL_FLOOR: f64 = 0.70;

const DAY: i64 = 86_400_000;
/// Days the engine learns before it is judged.
const WARM_UP_DAYS: i64 = 7;
const MINUTE: i64 = 60_000;
const T0: i64 = 1_790_000_000_000;

/// splitmix64: a small deterministic generator, so the stream is the same
/// on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Legit,
    CardTesting,
    StolenCard,
    AccountTakeover,
    CardBurst,
}

struct Event {
    at: i64,
    card: String,
    amount: u64,
    customer: String,
    address: IpAddr,
    kind: Kind,
}

struct Shopper {
    customer: String,
    cards: Vec<(String, f64)>,
    addresses: Vec<IpAddr>,
}

fn ip(n: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + (n as u32)))
}

fn stream(rng: &mut Rng) -> Vec<Event> {
    let mut events = Vec::new();
    let mut next_card = 0u64;
    let mut card = |rng: &mut Rng| {
        next_card += 1;
        // Usual amount: £5 to £200, log-uniform.
        let typical = (500f64.ln() + rng.unit() * (20_000f64.ln() - 500f64.ln())).exp();
        (format!("card{next_card:08}"), typical)
    };
    let mut shoppers = Vec::new();
    for i in 0..2_000u64 {
        let mut cards = vec![card(rng)];
        if rng.chance(0.15) {
            cards.push(card(rng));
        }
        // A tenth share one of ten office addresses; some use two or three.
        let mut addresses = vec![if i % 10 == 0 {
            ip(1 + i % 100 / 10)
        } else {
            ip(1_000 + i)
        }];
        for _ in 0..rng.below(3) {
            addresses.push(ip(100_000 + rng.below(1 << 20)));
        }
        shoppers.push(Shopper {
            customer: format!("cust{i:05}"),
            cards,
            addresses,
        });
    }
    for s in &mut shoppers {
        let per_day = 0.2 + rng.unit() * 1.8;
        let mut t = T0 + (rng.unit() * DAY as f64 / per_day) as i64;
        // One in a hundred adds a card during the month.
        let new_card_at = rng.chance(0.01).then(|| T0 + rng.below(30) as i64 * DAY);
        while t < T0 + 30 * DAY {
            if let Some(at) = new_card_at
                && t >= at
                && s.cards.len() < 3
            {
                s.cards.push(card(rng));
            }
            let (card, typical) = s.cards[rng.below(s.cards.len() as u64) as usize].clone();
            let address = s.addresses[rng.below(s.addresses.len() as u64) as usize];
            // Now and then a present, two to four times the usual.
            let factor = if rng.chance(0.03) {
                2.0 + rng.unit() * 2.0
            } else {
                1.0
            };
            // Now and then three at once for the family.
            let count = if rng.chance(0.02) { 3 } else { 1 };
            for k in 0..count {
                let amount = (typical * factor * (0.35 * rng.normal()).exp()).round() as u64;
                events.push(Event {
                    at: t + k * 20_000,
                    card: card.clone(),
                    amount: amount.max(100),
                    customer: s.customer.clone(),
                    address,
                    kind: Kind::Legit,
                });
            }
            t += (-rng.unit().max(1e-9).ln() * DAY as f64 / per_day) as i64;
        }
    }
    let attack_time =
        |rng: &mut Rng| T0 + (WARM_UP_DAYS + 1) * DAY + rng.below(22 * DAY as u64) as i64;
    // Card testing: one address, many new cards, small amounts, seconds apart.
    for a in 0..15u64 {
        let mut t = attack_time(rng);
        let address = ip(5_000_000 + a);
        for _ in 0..10 + rng.below(21) {
            let (card, _) = card(rng);
            events.push(Event {
                at: t,
                card,
                amount: 100 + rng.below(400),
                customer: format!("tester{a}-{}", rng.below(1_000_000)),
                address,
                kind: Kind::CardTesting,
            });
            t += 5_000 + rng.below(15_000) as i64;
        }
    }
    // A stolen card with a history: a stranger, elsewhere, spends big.
    for a in 0..40u64 {
        let victim = &shoppers[rng.below(shoppers.len() as u64) as usize];
        let (card, typical) = victim.cards[0].clone();
        let mut t = attack_time(rng);
        for _ in 0..1 + rng.below(3) {
            events.push(Event {
                at: t,
                card: card.clone(),
                amount: (typical * (4.0 + rng.unit() * 6.0)).round() as u64,
                customer: format!("thief{a}"),
                address: ip(6_000_000 + a),
                kind: Kind::StolenCard,
            });
            t += rng.below(10 * MINUTE as u64) as i64;
        }
    }
    // A taken-over account: new cards, large amounts, minutes apart.
    for a in 0..20u64 {
        let victim = shoppers[rng.below(shoppers.len() as u64) as usize]
            .customer
            .clone();
        let mut t = attack_time(rng);
        for _ in 0..4 + rng.below(3) {
            let (card, _) = card(rng);
            events.push(Event {
                at: t,
                card,
                amount: 15_000 + rng.below(35_000),
                customer: victim.clone(),
                address: ip(7_000_000 + a),
                kind: Kind::AccountTakeover,
            });
            t += MINUTE + rng.below(5 * MINUTE as u64) as i64;
        }
    }
    // A card drained in a burst through its owner's own session.
    for _ in 0..20u64 {
        let victim = &shoppers[rng.below(shoppers.len() as u64) as usize];
        let (card, typical) = victim.cards[0].clone();
        let address = victim.addresses[0];
        let mut t = attack_time(rng);
        for _ in 0..6 + rng.below(7) {
            events.push(Event {
                at: t,
                card: card.clone(),
                amount: (typical * (0.35 * rng.normal()).exp()).round() as u64,
                customer: victim.customer.clone(),
                address,
                kind: Kind::CardBurst,
            });
            t += 10_000 + rng.below(30_000) as i64;
        }
    }
    events.sort_by_key(|e| e.at);
    events
}

#[test]
fn precision_and_recall_on_a_labelled_stream_stay_above_the_floors() {
    let mut rng = Rng(0x05EE_D0F5_70C4);
    let events = stream(&mut rng);
    let engine = RiskEngine::new(RiskConfig::default());
    let review_at = engine.config().review_at;
    let decline_at = engine.config().decline_at;
    // (flagged, not flagged) per kind, and declines.
    let mut by_kind: HashMap<Kind, (u64, u64, u64)> = HashMap::new();
    let mut false_reasons: HashMap<&'static str, u64> = HashMap::new();
    for e in &events {
        let a = engine.score(&Payment {
            tenant: "shop",
            card: &e.card,
            amount: e.amount,
            currency: "GBP",
            customer: &e.customer,
            address: Some(e.address),
            at_ms: e.at,
        });
        // The first week is the engine learning what is normal; fraud
        // starts after it.
        if e.at < T0 + WARM_UP_DAYS * DAY {
            continue;
        }
        let entry = by_kind.entry(e.kind).or_default();
        if a.score >= review_at {
            entry.0 += 1;
            if e.kind == Kind::Legit {
                for r in &a.reasons {
                    *false_reasons.entry(r.code).or_default() += 1;
                }
            }
        } else {
            entry.1 += 1;
        }
        if a.score >= decline_at {
            entry.2 += 1;
        }
    }
    let legit = by_kind.get(&Kind::Legit).copied().unwrap_or_default();
    let (mut tp, mut fn_, mut declined_fraud) = (0, 0, 0);
    println!("kind               flagged  missed  declined");
    for kind in [
        Kind::CardTesting,
        Kind::StolenCard,
        Kind::AccountTakeover,
        Kind::CardBurst,
        Kind::Legit,
    ] {
        let (f, m, d) = by_kind.get(&kind).copied().unwrap_or_default();
        println!("{:<18} {f:>7} {m:>7} {d:>9}", format!("{kind:?}"));
        if kind != Kind::Legit {
            tp += f;
            fn_ += m;
            declined_fraud += d;
        }
    }
    let fp = legit.0;
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    let decline_precision = declined_fraud as f64 / (declined_fraud + legit.2).max(1) as f64;
    let decline_recall = declined_fraud as f64 / (tp + fn_).max(1) as f64;
    println!(
        "{} payments after the first week, {} fraudulent; at review_at {review_at}: precision {precision:.3}, recall {recall:.3}; \
         at decline_at {decline_at}: precision {decline_precision:.3}, recall {decline_recall:.3}",
        tp + fn_ + legit.0 + legit.1,
        tp + fn_
    );
    println!("reasons on legitimate payments flagged: {false_reasons:?}");
    assert!(
        precision >= PRECISION_FLOOR,
        "precision {precision:.3} fell below {PRECISION_FLOOR}"
    );
    assert!(
        recall >= RECALL_FLOOR,
        "recall {recall:.3} fell below {RECALL_FLOOR}"
    );
}
