//! A token-bucket rate limiter keyed by principal (tenant and user, or API
//! key) and, for logins, by client address.
//!
//! Why per principal and not only per address: many users share one NAT
//! address, and one stolen token must not let its holder hammer the
//! archive from many addresses. The buckets live in memory; a restart
//! refills them, which is acceptable for a limit meant to keep one client
//! from starving the others (brute force on passwords is stopped by the
//! engine's lock-out, which is persistent).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rate and burst of one class of buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: f64,
}

impl Rate {
    /// `per_second` sustained with bursts of `burst`.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Rate {
            per_second: per_second.max(0.001),
            burst: burst.max(1.0),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of one class.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Buckets kept at most; past this, full (idle) buckets are dropped.
const MAX_BUCKETS: usize = 100_000;

impl Limiter {
    /// A limiter with this rate.
    pub fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        if map.len() >= MAX_BUCKETS && !map.contains_key(key) {
            let rate = self.rate;
            map.retain(|_, b| refill(rate, *b, now).tokens < rate.burst);
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: self.rate.burst,
            at: now,
        });
        let mut cur = refill(self.rate, *b, now);
        if cur.tokens >= 1.0 {
            cur.tokens -= 1.0;
            *b = cur;
            Ok(())
        } else {
            *b = cur;
            let wait = (1.0 - cur.tokens) / self.rate.per_second;
            Err(Duration::from_secs_f64(wait))
        }
    }
}

fn refill(rate: Rate, b: Bucket, now: Instant) -> Bucket {
    let dt = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket {
        tokens: (b.tokens + dt * rate.per_second).min(rate.burst),
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let l = Limiter::new(Rate::new(2.0, 3.0));
        let t0 = Instant::now();
        for _ in 0..3 {
            l.check_at("a", t0).unwrap();
        }
        let wait = l.check_at("a", t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        // Another key is not affected.
        l.check_at("b", t0).unwrap();
        // Half a second later one token is back.
        l.check_at("a", t0 + Duration::from_millis(500)).unwrap();
        assert!(l.check_at("a", t0 + Duration::from_millis(500)).is_err());
    }
}
