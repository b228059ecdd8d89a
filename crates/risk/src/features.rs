//! Online features: what is remembered of each card, customer and address.
//!
//! Everything here is constant-size per entity and updated in O(1), so a
//! score costs microseconds and memory is bounded by the number of entities.

/// One minute, one hour and one day, in milliseconds: the velocity windows.
pub const WINDOWS_MS: [i64; 3] = [60_000, 3_600_000, 86_400_000];
/// Index of the minute window in [`WINDOWS_MS`].
pub const MINUTE: usize = 0;
/// Index of the hour window.
pub const HOUR: usize = 1;
/// Index of the day window.
pub const DAY: usize = 2;

/// A count that forgets with time: each event adds one, and the total decays
/// by `e` every window. Right after a burst of n events it reads about n; a
/// steady rate reads as the number of events per window. Two numbers per
/// window instead of a list of timestamps.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecayingCount {
    value: f64,
    at_ms: i64,
}

impl DecayingCount {
    /// The count at `now_ms`.
    pub fn at(&self, now_ms: i64, window_ms: i64) -> f64 {
        if self.value == 0.0 {
            return 0.0;
        }
        let elapsed = (now_ms - self.at_ms).max(0) as f64;
        self.value * (-elapsed / window_ms as f64).exp()
    }

    /// Counts one event at `now_ms`.
    pub fn add(&mut self, now_ms: i64, window_ms: i64) {
        self.value = self.at(now_ms, window_ms) + 1.0;
        self.at_ms = self.at_ms.max(now_ms);
    }
}

/// Event counts over the minute, the hour and the day.
#[derive(Debug, Clone, Copy, Default)]
pub struct Velocity {
    counts: [DecayingCount; 3],
}

impl Velocity {
    /// Counts one event.
    pub fn add(&mut self, now_ms: i64) {
        for (count, window) in self.counts.iter_mut().zip(WINDOWS_MS) {
            count.add(now_ms, window);
        }
    }

    /// The counts at `now_ms`, minute, hour and day.
    pub fn at(&self, now_ms: i64) -> [f64; 3] {
        let mut out = [0.0; 3];
        for ((o, count), window) in out.iter_mut().zip(&self.counts).zip(WINDOWS_MS) {
            *o = count.at(now_ms, window);
        }
        out
    }
}

/// Mean and variance of the logarithm of amounts (amounts are roughly
/// log-normal: a card that pays £10 and £20 varies as one that pays £100 and
/// £200). Exact for the first 20, then exponentially weighted so the normal
/// follows the card as it changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAmounts {
    /// How many amounts were learned.
    pub n: u32,
    mean: f64,
    var: f64,
}

/// Weight of a new amount once 20 are learned.
const AMOUNT_ALPHA: f64 = 0.05;
/// Smallest spread assumed, in log space (about ±30%): a card that always
/// paid the same amount is not alarmed by a slightly different one.
const MIN_LOG_SD: f64 = 0.3;

impl LogAmounts {
    /// Learns `amount` (minor units).
    pub fn learn(&mut self, amount: u64) {
        let x = (amount.max(1) as f64).ln();
        self.n = self.n.saturating_add(1);
        let diff = x - self.mean;
        if self.n <= 20 {
            let n = f64::from(self.n);
            self.mean += diff / n;
            // Welford's update of the population variance.
            self.var += (diff * (x - self.mean) - self.var) / n;
        } else {
            let incr = AMOUNT_ALPHA * diff;
            self.mean += incr;
            self.var = (1.0 - AMOUNT_ALPHA) * (self.var + diff * incr);
        }
    }

    /// How many (floored) standard deviations `amount` lies above the usual.
    pub fn z(&self, amount: u64) -> f64 {
        let x = (amount.max(1) as f64).ln();
        (x - self.mean) / self.var.sqrt().max(MIN_LOG_SD)
    }

    /// The usual amount (geometric mean), minor units.
    pub fn typical(&self) -> u64 {
        self.mean.exp().round() as u64
    }
}

/// [`LogAmounts`] per currency: a card or customer pays in a few.
#[derive(Debug, Clone, Default)]
pub struct Amounts {
    by_currency: Vec<(String, LogAmounts)>,
}

impl Amounts {
    /// Most currencies learned per entity.
    pub const MAX_CURRENCIES: usize = 4;

    /// What was learned in `currency`.
    pub fn get(&self, currency: &str) -> Option<LogAmounts> {
        self.by_currency
            .iter()
            .find(|(c, _)| c == currency)
            .map(|(_, a)| *a)
    }

    /// Learns `amount` in `currency` (beyond four currencies, nothing).
    pub fn learn(&mut self, currency: &str, amount: u64) {
        let held = self.by_currency.len();
        match self.by_currency.iter_mut().find(|(c, _)| c == currency) {
            Some((_, a)) => a.learn(amount),
            None if held < Self::MAX_CURRENCIES => {
                let mut a = LogAmounts::default();
                a.learn(amount);
                self.by_currency.push((currency.to_owned(), a));
            }
            None => {}
        }
    }
}

/// The distinct things (cards, customers) seen with an entity lately: at
/// most [`RecentSet::CAP`], each with when it was last seen and a mark
/// (e.g. "the card was new then").
#[derive(Debug, Clone, Default)]
pub struct RecentSet {
    items: Vec<(u64, i64, bool)>,
}

impl RecentSet {
    /// Most items kept; the least recently seen goes first.
    pub const CAP: usize = 16;

    /// Notes `key` at `now_ms`; returns whether it was new to the set.
    pub fn see(&mut self, key: u64, now_ms: i64, mark: bool) -> bool {
        if let Some(item) = self.items.iter_mut().find(|(k, _, _)| *k == key) {
            item.1 = item.1.max(now_ms);
            return false;
        }
        if self.items.len() >= Self::CAP
            && let Some(oldest) = self
                .items
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, at, _))| *at)
                .map(|(i, _)| i)
        {
            self.items.swap_remove(oldest);
        }
        self.items.push((key, now_ms, mark));
        true
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: u64) -> bool {
        self.items.iter().any(|(k, _, _)| *k == key)
    }

    /// Whether `key` was seen within `window_ms` of `now_ms`.
    pub fn seen_since(&self, key: u64, now_ms: i64, window_ms: i64) -> bool {
        self.items
            .iter()
            .any(|(k, at, _)| *k == key && now_ms - at < window_ms)
    }

    /// How many were seen within `window_ms` of `now_ms` (only marked ones
    /// if `marked_only`).
    pub fn count_since(&self, now_ms: i64, window_ms: i64, marked_only: bool) -> usize {
        self.items
            .iter()
            .filter(|(_, at, mark)| now_ms - at < window_ms && (*mark || !marked_only))
            .count()
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// `-log10` of the chance of seeing at least `k` events when `mean` are
/// expected (Poisson): how surprising a count is for this entity. 0 when
/// `k` is not above the mean.
pub fn poisson_surprise(k: u64, mean: f64) -> f64 {
    let mean = mean.max(1e-6);
    let kf = k as f64;
    if kf <= mean {
        return 0.0;
    }
    // ln P(X = k) = -mean + k ln(mean) - ln(k!); the tail above k is at most
    // P(X = k) / (1 - mean / (k + 1)).
    let ln_fact = ln_factorial(k);
    let ln_pmf = -mean + kf * mean.ln() - ln_fact;
    let ln_tail = ln_pmf - (1.0 - mean / (kf + 1.0)).ln();
    (-ln_tail / std::f64::consts::LN_10).max(0.0)
}

/// `ln(k!)`: exact up to 20, Stirling's series beyond (error below 1e-9),
/// in constant time whatever `k` a flood makes.
fn ln_factorial(k: u64) -> f64 {
    if k <= 20 {
        return (2..=k).map(|i| (i as f64).ln()).sum();
    }
    let k = k as f64;
    k * k.ln() - k + 0.5 * (2.0 * std::f64::consts::PI * k).ln() + 1.0 / (12.0 * k)
        - 1.0 / (360.0 * k * k * k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stirling_meets_the_exact_sum() {
        let exact: f64 = (2..=30u64).map(|i| (i as f64).ln()).sum();
        assert!((ln_factorial(30) - exact).abs() < 1e-9);
        assert!((ln_factorial(21) - (ln_factorial(20) + 21f64.ln())).abs() < 1e-9);
    }

    #[test]
    fn a_burst_reads_as_its_size_and_fades() {
        let mut v = Velocity::default();
        for i in 0..5 {
            v.add(1_000 + i * 100);
        }
        let now = v.at(1_500);
        assert!((now[MINUTE] - 5.0).abs() < 0.1, "{now:?}");
        assert!((now[DAY] - 5.0).abs() < 0.01);
        let later = v.at(1_500 + 10 * 60_000);
        assert!(later[MINUTE] < 0.01 && later[HOUR] > 4.0, "{later:?}");
    }

    #[test]
    fn an_amount_far_above_the_usual_stands_out() {
        let mut a = LogAmounts::default();
        for amount in [2_000, 2_500, 1_800, 2_200, 3_000, 2_100] {
            a.learn(amount);
        }
        assert!(a.z(2_400) < 1.5, "{}", a.z(2_400));
        assert!(a.z(20_000) > 4.0, "{}", a.z(20_000));
        assert!((1_900..2_500).contains(&a.typical()));
    }

    #[test]
    fn the_recent_set_is_bounded_and_ages() {
        let mut s = RecentSet::default();
        for k in 0..40u64 {
            assert!(s.see(k, i64::try_from(k).unwrap() * 1_000, k % 2 == 0));
        }
        assert_eq!(s.len(), RecentSet::CAP);
        assert!(!s.contains(0) && s.contains(39), "the oldest left first");
        assert!(!s.see(39, 50_000, true));
        assert_eq!(s.count_since(50_000, 20_000, false), 9, "31 to 39");
        assert_eq!(s.count_since(50_000, 20_000, true), 4, "the even ones");
        assert!(s.contains(24) && !s.contains(23), "the latest sixteen");
    }

    #[test]
    fn poisson_surprise_grows_with_the_excess() {
        assert_eq!(poisson_surprise(1, 2.0), 0.0);
        let mild = poisson_surprise(4, 1.0);
        let wild = poisson_surprise(20, 1.0);
        assert!(mild > 0.5 && mild < 2.5, "{mild}");
        assert!(wild > 10.0, "{wild}");
    }
}
