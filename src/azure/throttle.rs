//! Client-side ARM budget: token buckets per subscription and operation class.
//!
//! ARM throttles per subscription (and principal) with token buckets: reads 250 burst / 25 per
//! second, writes and deletes 200 / 10 per second (CONTRACT §9). The operator keeps its own,
//! slightly conservative copy so that a large cluster never causes a 429 storm, and pauses a
//! bucket for `Retry-After` when ARM answers 429 anyway.
//!
//! The bucket arithmetic takes `now` as an argument, so it is tested with a fake clock.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::cloud::ConfigError;

/// ARM's operation classes, each with its own bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// GET (including async-operation polls).
    Read,
    /// PUT, PATCH, POST (listKeys is a POST and counts as a write).
    Write,
    /// DELETE.
    Delete,
}

impl OpClass {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OpClass::Read => "read",
            OpClass::Write => "write",
            OpClass::Delete => "delete",
        }
    }
}

impl fmt::Display for OpClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Size and refill rate of one bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketConfig {
    /// Tokens available at once.
    pub burst: u32,
    /// Tokens added per second.
    pub per_second: f64,
}

impl BucketConfig {
    /// A bucket of `burst` tokens refilling `per_second`.
    pub const fn new(burst: u32, per_second: f64) -> Self {
        Self { burst, per_second }
    }
}

impl FromStr for BucketConfig {
    type Err = ConfigError;

    /// `BURST/PER_SECOND`, e.g. `250/25`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError::InvalidThrottle(format!("{s:?}: expected BURST/PER_SECOND, e.g. 250/25"))
        };
        let (burst, rate) = s.split_once('/').ok_or_else(bad)?;
        let config = BucketConfig {
            burst: burst.trim().parse().map_err(|_| bad())?,
            per_second: rate.trim().parse().map_err(|_| bad())?,
        };
        config.validate()?;
        Ok(config)
    }
}

impl fmt::Display for BucketConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.burst, self.per_second)
    }
}

impl BucketConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.burst == 0 || !self.per_second.is_finite() || self.per_second <= 0.0 {
            return Err(ConfigError::InvalidThrottle(format!(
                "bucket {self} must have a burst >= 1 and a positive refill rate"
            )));
        }
        Ok(())
    }
}

/// The client-side budget per subscription.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleConfig {
    /// GET budget.
    pub reads: BucketConfig,
    /// PUT/POST budget.
    pub writes: BucketConfig,
    /// DELETE budget.
    pub deletes: BucketConfig,
    /// Longest a caller waits in-line for a token; beyond it, the ARM client returns
    /// `Throttled` so the controller requeues instead of holding a worker.
    pub max_wait: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            reads: BucketConfig::new(250, 25.0),
            writes: BucketConfig::new(200, 10.0),
            deletes: BucketConfig::new(200, 10.0),
            max_wait: Duration::from_secs(5),
        }
    }
}

impl ThrottleConfig {
    /// Checks every bucket.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.reads.validate()?;
        self.writes.validate()?;
        self.deletes.validate()
    }

    fn bucket(&self, class: OpClass) -> BucketConfig {
        match class {
            OpClass::Read => self.reads,
            OpClass::Write => self.writes,
            OpClass::Delete => self.deletes,
        }
    }
}

/// One token bucket. Pure: every method takes `now`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    config: BucketConfig,
    tokens: f64,
    updated: Instant,
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(config: BucketConfig, now: Instant) -> Self {
        Self {
            config,
            tokens: f64::from(config.burst),
            updated: now,
            paused_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.config.per_second).min(f64::from(self.config.burst));
        self.updated = self.updated.max(now);
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
    }

    /// How long until a token is available (zero if one is available now).
    pub fn wait_time(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let pause = self
            .paused_until
            .map(|until| until.saturating_duration_since(now))
            .unwrap_or_default();
        let deficit = if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.config.per_second)
        };
        pause.max(deficit)
    }

    /// Takes a token if one is available now; otherwise returns how long to wait.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let wait = self.wait_time(now);
        if wait.is_zero() {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Reserves a token even if it is not there yet (the balance goes negative, so later
    /// callers queue behind this one) and returns how long the caller must wait before using it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let wait = self.wait_time(now);
        self.tokens -= 1.0;
        wait
    }

    /// ARM said 429: stop spending until `retry_after` has passed, and start empty after it.
    pub fn pause(&mut self, now: Instant, retry_after: Duration) {
        self.refill(now);
        let until = now + retry_after;
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        self.tokens = self.tokens.min(0.0);
        // Refill starts when the pause ends.
        self.updated = self.updated.max(until);
    }

    /// Tokens currently available (for tests and diagnostics).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }
}

/// All buckets of the process, keyed by (subscription, class). Shared as `Arc<Throttle>`.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    buckets: Mutex<HashMap<(String, OpClass), TokenBucket>>,
}

impl Throttle {
    /// Buckets with the given budget.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured budget.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    fn with_bucket<T>(
        &self,
        subscription: &str,
        class: OpClass,
        now: Instant,
        f: impl FnOnce(&mut TokenBucket) -> T,
    ) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain numbers.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let key = (subscription.to_ascii_lowercase(), class);
        let bucket = buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(self.config.bucket(class), now));
        f(bucket)
    }

    /// Takes a token now or says how long to wait (nothing is reserved on `Err`).
    pub fn try_acquire_at(
        &self,
        subscription: &str,
        class: OpClass,
        now: Instant,
    ) -> Result<(), Duration> {
        self.with_bucket(subscription, class, now, |b| b.try_take(now))
    }

    /// [`Throttle::try_acquire_at`] with the real clock.
    pub fn try_acquire(&self, subscription: &str, class: OpClass) -> Result<(), Duration> {
        self.try_acquire_at(subscription, class, Instant::now())
    }

    /// Reserves a token if the wait is at most `max_wait` and returns that wait;
    /// otherwise reserves nothing and returns `Err(wait)`.
    pub fn reserve_within_at(
        &self,
        subscription: &str,
        class: OpClass,
        max_wait: Duration,
        now: Instant,
    ) -> Result<Duration, Duration> {
        self.with_bucket(subscription, class, now, |b| {
            let wait = b.wait_time(now);
            if wait <= max_wait {
                Ok(b.reserve(now))
            } else {
                Err(wait)
            }
        })
    }

    /// Waits (asynchronously) for a token, up to the configured `max_wait`.
    /// Returns how long it waited, or `Err(wait)` when the wait would be longer (nothing reserved).
    pub async fn acquire(&self, subscription: &str, class: OpClass) -> Result<Duration, Duration> {
        let wait =
            self.reserve_within_at(subscription, class, self.config.max_wait, Instant::now())?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(wait)
    }

    /// ARM answered 429 with `Retry-After`: pause that bucket.
    pub fn on_throttled_at(
        &self,
        subscription: &str,
        class: OpClass,
        retry_after: Duration,
        now: Instant,
    ) {
        self.with_bucket(subscription, class, now, |b| b.pause(now, retry_after));
    }

    /// [`Throttle::on_throttled_at`] with the real clock.
    pub fn on_throttled(&self, subscription: &str, class: OpClass, retry_after: Duration) {
        self.on_throttled_at(subscription, class, retry_after, Instant::now());
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "00000000-0000-0000-0000-000000000000";

    fn small() -> ThrottleConfig {
        ThrottleConfig {
            reads: BucketConfig::new(3, 1.0),
            writes: BucketConfig::new(2, 0.5),
            deletes: BucketConfig::new(1, 10.0),
            max_wait: Duration::from_secs(2),
        }
    }

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let throttle = Throttle::new(small());
        for _ in 0..3 {
            assert_eq!(throttle.try_acquire_at(S, OpClass::Read, t0), Ok(()));
        }
        assert_eq!(
            throttle.try_acquire_at(S, OpClass::Read, t0),
            Err(Duration::from_secs(1))
        );
        // Half a second later, half a token: still half a second to wait.
        let t = t0 + Duration::from_millis(500);
        assert_eq!(
            throttle.try_acquire_at(S, OpClass::Read, t),
            Err(Duration::from_millis(500))
        );
        assert_eq!(
            throttle.try_acquire_at(S, OpClass::Read, t0 + Duration::from_secs(1)),
            Ok(())
        );
        // Never more than the burst, however long we wait.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(throttle.try_acquire_at(S, OpClass::Read, later), Ok(()));
        }
        assert!(throttle.try_acquire_at(S, OpClass::Read, later).is_err());
    }

    #[test]
    fn classes_and_subscriptions_are_independent() {
        let t0 = Instant::now();
        let throttle = Throttle::new(small());
        assert!(throttle.try_acquire_at(S, OpClass::Delete, t0).is_ok());
        assert!(throttle.try_acquire_at(S, OpClass::Delete, t0).is_err());
        assert!(throttle.try_acquire_at(S, OpClass::Write, t0).is_ok());
        assert!(
            throttle
                .try_acquire_at("other-sub", OpClass::Delete, t0)
                .is_ok()
        );
        // Subscription ids are case-insensitive in ARM.
        assert!(
            throttle
                .try_acquire_at(&S.to_uppercase(), OpClass::Delete, t0)
                .is_err()
        );
    }

    #[test]
    fn reservations_queue_callers() {
        let t0 = Instant::now();
        let throttle = Throttle::new(small());
        let max = Duration::from_secs(10);
        assert_eq!(
            throttle.reserve_within_at(S, OpClass::Write, max, t0),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            throttle.reserve_within_at(S, OpClass::Write, max, t0),
            Ok(Duration::ZERO)
        );
        // Writes refill at 0.5/s: the third caller waits 2 s, the fourth 4 s.
        assert_eq!(
            throttle.reserve_within_at(S, OpClass::Write, max, t0),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            throttle.reserve_within_at(S, OpClass::Write, max, t0),
            Ok(Duration::from_secs(4))
        );
        // Beyond max_wait nothing is reserved.
        let short = Duration::from_secs(5);
        assert_eq!(
            throttle.reserve_within_at(S, OpClass::Write, short, t0),
            Err(Duration::from_secs(6))
        );
        assert_eq!(
            throttle.reserve_within_at(S, OpClass::Write, short, t0),
            Err(Duration::from_secs(6))
        );
    }

    #[test]
    fn a_429_pauses_the_bucket_for_retry_after() {
        let t0 = Instant::now();
        let throttle = Throttle::new(small());
        throttle.on_throttled_at(S, OpClass::Read, Duration::from_secs(7), t0);
        assert_eq!(
            throttle.try_acquire_at(S, OpClass::Read, t0),
            Err(Duration::from_secs(7))
        );
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(
            throttle.try_acquire_at(S, OpClass::Read, t3),
            Err(Duration::from_secs(4))
        );
        // At the end of the pause the bucket is empty and refills from there.
        let t7 = t0 + Duration::from_secs(7);
        assert_eq!(
            throttle.try_acquire_at(S, OpClass::Read, t7),
            Err(Duration::from_secs(1))
        );
        assert_eq!(
            throttle.try_acquire_at(S, OpClass::Read, t0 + Duration::from_secs(8)),
            Ok(())
        );
        // Other classes are unaffected.
        assert!(throttle.try_acquire_at(S, OpClass::Write, t0).is_ok());
    }

    #[test]
    fn a_shorter_second_pause_does_not_shorten_the_first() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(BucketConfig::new(5, 5.0), t0);
        bucket.pause(t0, Duration::from_secs(10));
        bucket.pause(t0 + Duration::from_secs(1), Duration::from_secs(2));
        assert_eq!(
            bucket.wait_time(t0 + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn bucket_config_parses() {
        assert_eq!(
            "250/25".parse::<BucketConfig>().unwrap(),
            BucketConfig::new(250, 25.0)
        );
        assert_eq!(
            " 10 / 0.5 ".parse::<BucketConfig>().unwrap(),
            BucketConfig::new(10, 0.5)
        );
        for bad in ["", "250", "0/1", "1/0", "a/b", "1/-1", "1/inf"] {
            assert!(bad.parse::<BucketConfig>().is_err(), "{bad}");
        }
        assert!(ThrottleConfig::default().validate().is_ok());
    }

    #[tokio::test]
    async fn acquire_waits_then_refuses_beyond_max_wait() {
        let mut config = small();
        config.reads = BucketConfig::new(1, 20.0);
        let throttle = Throttle::new(config);
        assert_eq!(throttle.acquire(S, OpClass::Read).await, Ok(Duration::ZERO));
        let started = Instant::now();
        let waited = throttle.acquire(S, OpClass::Read).await.unwrap();
        assert!(waited > Duration::from_millis(30), "{waited:?}");
        assert!(started.elapsed() >= Duration::from_millis(30));
        throttle.on_throttled(S, OpClass::Read, Duration::from_secs(60));
        let err = throttle.acquire(S, OpClass::Read).await.unwrap_err();
        assert!(err > Duration::from_secs(50), "{err:?}");
    }
}
