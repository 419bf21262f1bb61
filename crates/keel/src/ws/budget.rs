//! A sender's own budget: how fast one connection may send, as a token bucket.
//!
//! Each message a client sends spends its size from the bucket, which refills at the rate and
//! holds at most the burst. When the bucket is in debt the connection reads nothing more until
//! the debt is paid: the client's frames wait in its socket, and TCP slows it down. A sender is
//! paced by its own budget only, never by waiting on other members of its topic, so one slow
//! reader can hold nobody back; a reader that cannot keep up with what its topic's senders are
//! allowed overflows its queue and is closed instead.

use std::time::Duration;

use std::time::Instant;

/// The least a message costs, whatever its size: empty frames are not free to broadcast.
pub(super) const MIN_CHARGE: u64 = 64;

/// Bytes a connection may send: `rate` a second, up to `burst` at once.
#[derive(Debug)]
pub(super) struct Budget {
    rate: u64,
    burst: u64,
    /// Bytes that may be sent now, scaled by 1,000 so that refills by the millisecond lose
    /// nothing; negative while in debt.
    milli_tokens: i128,
    refilled: Instant,
}

impl Budget {
    /// A full bucket at `now`; a `rate` of 0 means no limit.
    pub(super) fn new(rate: u64, burst: u64, now: Instant) -> Self {
        Budget {
            rate,
            burst,
            milli_tokens: i128::from(burst) * 1000,
            refilled: now,
        }
    }

    /// Spends a message of `len` bytes at `now`; how long to wait before reading the next one.
    pub(super) fn spend(&mut self, len: usize, now: Instant) -> Option<Duration> {
        if self.rate == 0 {
            return None;
        }
        let elapsed_ms =
            i128::try_from(now.duration_since(self.refilled).as_millis()).unwrap_or(i128::MAX / 2);
        if elapsed_ms > 0 {
            // tokens × 1000 gained in `elapsed_ms` milliseconds: rate × elapsed_ms.
            let full = i128::from(self.burst) * 1000;
            self.milli_tokens = full.min(
                self.milli_tokens
                    .saturating_add(i128::from(self.rate).saturating_mul(elapsed_ms)),
            );
            // Advanced by the whole milliseconds counted, so the fraction left over is not lost.
            let counted = Duration::from_millis(u64::try_from(elapsed_ms).unwrap_or(u64::MAX));
            self.refilled = self.refilled.checked_add(counted).unwrap_or(now);
        }
        let cost = u64::try_from(len).unwrap_or(u64::MAX).max(MIN_CHARGE);
        self.milli_tokens -= i128::from(cost) * 1000;
        if self.milli_tokens >= 0 {
            return None;
        }
        // Debt / rate seconds = debt × 1000 / rate ms; debt is in milli-tokens already.
        let debt = u64::try_from(-self.milli_tokens).unwrap_or(u64::MAX);
        Some(Duration::from_millis(debt.div_ceil(self.rate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_paces() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut budget = Budget::new(1000, 2000, start);
        assert_eq!(budget.spend(1000, at(0)), None);
        assert_eq!(budget.spend(1000, at(0)), None);
        // In debt by 500 bytes at 1,000 bytes/s: half a second.
        assert_eq!(budget.spend(500, at(0)), Some(Duration::from_millis(500)));
        assert_eq!(budget.spend(100, at(500)), Some(Duration::from_millis(100)));
        // Refills never pass the burst.
        assert_eq!(budget.spend(2000, at(60_000)), None);
        assert_eq!(budget.spend(1, at(60_000)), Some(Duration::from_millis(64)));
    }

    #[test]
    fn empty_messages_cost_the_minimum_and_no_rate_is_no_limit() {
        let now = Instant::now();
        let mut budget = Budget::new(MIN_CHARGE, MIN_CHARGE, now);
        assert_eq!(budget.spend(0, now), None);
        assert_eq!(budget.spend(0, now), Some(Duration::from_secs(1)));
        let mut free = Budget::new(0, 0, now);
        assert_eq!(free.spend(usize::MAX, now), None);
    }
}
