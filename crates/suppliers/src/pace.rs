//! Per-supplier pacing: at most one request every `interval` (Tango Card
//! asks for about one a second) and at most `concurrency` in flight. Shared
//! by every task calling the supplier in this process.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The pace of one supplier.
#[derive(Debug)]
pub struct Pace {
    interval: Duration,
    next_slot: Mutex<Option<Instant>>,
    in_flight: Arc<Semaphore>,
}

/// Held while a request is in flight.
#[derive(Debug)]
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Pace {
    /// `interval` between request starts (zero: none), `concurrency`
    /// requests in flight at most (at least 1).
    pub fn new(interval: Duration, concurrency: usize) -> Self {
        Self {
            interval,
            next_slot: Mutex::new(None),
            in_flight: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Waits for a free place in flight, then for this request's start time.
    pub async fn slot(&self) -> Slot {
        // The semaphore is never closed, so acquiring does not fail.
        let permit = self.in_flight.clone().acquire_owned().await.ok();
        let start = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + self.interval);
            start
        };
        tokio::time::sleep_until(start).await;
        Slot { _permit: permit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_start_one_interval_apart() {
        let pace = Arc::new(Pace::new(Duration::from_secs(1), 10));
        let t0 = Instant::now();
        let mut starts = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let pace = pace.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = pace.slot().await;
                Instant::now()
            }));
        }
        for t in tasks {
            starts.push(t.await.unwrap() - t0);
        }
        starts.sort();
        let secs: Vec<u64> = starts.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_cap_in_flight() {
        let pace = Arc::new(Pace::new(Duration::ZERO, 2));
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (pace, busy, most) = (pace.clone(), busy.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = pace.slot().await;
                let now = busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
