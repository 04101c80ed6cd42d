//! Client-side ARM budget: token buckets per subscription and operation class.
//!
//! ARM throttles per subscription (and principal) with token buckets: reads 250 burst / 25 per
//! second, writes and deletes 200 / 10 per second (CONTRACT §9). The operator keeps its own copy
//! so that a large cluster never causes a 429 storm:
//!
//! - **A margin below ARM.** The default buckets are 10% smaller and 10% slower than ARM's, so
//!   ARM's bucket refills faster than we spend it, whatever state it was in.
//! - **A fresh process starts nearly empty.** A predecessor (a crash, a rollout, another replica
//!   that just lost the lease) may have spent the subscription's budget a moment ago, and a new
//!   process cannot know. A new bucket holds [`ThrottleConfig::initial_fraction`] of its burst
//!   and refills at the normal rate.
//! - **ARM's own count lowers ours.** Every answer carries `x-ms-ratelimit-remaining-*`
//!   ([`super::headers::remaining_reports`]). The first per-principal report of a bucket
//!   replaces the start-up guess; afterwards a report can only *lower* the bucket, to
//!   `remaining − outstanding − margin` (see [`TokenBucket::report`] for why never raise).
//! - **A 429 pauses** the bucket for `Retry-After` and empties it.
//!
//! The bucket arithmetic takes `now` as an argument, so it is tested with a fake clock
//! (`throttle/tests.rs`).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::cloud::ConfigError;
use super::headers::{BudgetScope, RemainingReport};

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

    /// `BURST/PER_SECOND`, e.g. `225/22.5`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError::InvalidThrottle(format!("{s:?}: expected BURST/PER_SECOND, e.g. 180/9"))
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

/// ARM's subscription limits per principal (CONTRACT §9), for reference and for tests that
/// need a client as generous as ARM itself.
pub mod arm_limits {
    use super::BucketConfig;

    /// GET.
    pub const READS: BucketConfig = BucketConfig::new(250, 25.0);
    /// PUT/PATCH/POST.
    pub const WRITES: BucketConfig = BucketConfig::new(200, 10.0);
    /// DELETE.
    pub const DELETES: BucketConfig = BucketConfig::new(200, 10.0);
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
    /// Share of its burst a new bucket starts with (at least one token), until ARM reports
    /// the real count. Small, because the predecessor may have left ARM's bucket empty.
    pub initial_fraction: f64,
    /// Share of its burst kept in reserve below what ARM reports: other clients of the same
    /// principal spend from ARM's bucket too, and ARM's count is rounded down to whole requests.
    pub margin_fraction: f64,
}

impl Default for ThrottleConfig {
    /// 90% of ARM's limits (reads 225/22.5, writes and deletes 180/9), starting at 2% of the
    /// burst (4 reads, 3 writes, 3 deletes), a margin of 5% of the burst (11.25 reads, 9 writes,
    /// 9 deletes) and 5 s of in-line waiting.
    fn default() -> Self {
        Self {
            reads: BucketConfig::new(225, 22.5),
            writes: BucketConfig::new(180, 9.0),
            deletes: BucketConfig::new(180, 9.0),
            max_wait: Duration::from_secs(5),
            initial_fraction: 0.02,
            margin_fraction: 0.05,
        }
    }
}

impl ThrottleConfig {
    /// Checks every bucket and fraction.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.reads.validate()?;
        self.writes.validate()?;
        self.deletes.validate()?;
        for (name, f) in [
            ("initial fraction", self.initial_fraction),
            ("margin fraction", self.margin_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(ConfigError::InvalidThrottle(format!(
                    "the {name} {f} must be between 0 and 1"
                )));
            }
        }
        Ok(())
    }

    /// The bucket configuration of `class`.
    pub fn bucket(&self, class: OpClass) -> BucketConfig {
        match class {
            OpClass::Read => self.reads,
            OpClass::Write => self.writes,
            OpClass::Delete => self.deletes,
        }
    }

    /// Tokens a new bucket of `class` starts with: `initial_fraction` of the burst, rounded
    /// down, at least one (so a fresh process can learn ARM's count at all).
    pub fn initial_tokens(&self, class: OpClass) -> f64 {
        (f64::from(self.bucket(class).burst) * self.initial_fraction)
            .floor()
            .max(1.0)
    }

    /// Tokens kept below ARM's reported count in `class`.
    pub fn margin(&self, class: OpClass) -> f64 {
        f64::from(self.bucket(class).burst) * self.margin_fraction
    }
}

/// Longest pause a 429 can cause (the ARM client already caps `Retry-After` at an hour).
const MAX_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// A wait in seconds as a `Duration`; never panics (NaN and negatives are zero, huge is MAX).
fn wait_secs(secs: f64) -> Duration {
    if secs > 0.0 {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

/// One token bucket. Pure: every method takes `now`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    config: BucketConfig,
    /// Tokens kept below ARM's reports.
    margin: f64,
    /// May be negative: reservations queue callers behind each other.
    tokens: f64,
    updated: Instant,
    paused_until: Option<Instant>,
    /// Reserved tokens whose request has not been answered yet (see [`Ticket`]).
    outstanding: u32,
    /// ARM has told us this bucket's state (a per-principal count, or a 429).
    reported: bool,
}

impl TokenBucket {
    /// A full bucket without a margin.
    pub fn new(config: BucketConfig, now: Instant) -> Self {
        Self::with_tokens(config, f64::from(config.burst), 0.0, now)
    }

    /// A bucket holding `tokens` (capped at the burst) that keeps `margin` below ARM's reports.
    pub fn with_tokens(config: BucketConfig, tokens: f64, margin: f64, now: Instant) -> Self {
        Self {
            config,
            margin: margin.max(0.0),
            tokens: tokens.min(f64::from(config.burst)),
            updated: now,
            paused_until: None,
            outstanding: 0,
            reported: false,
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
        // Nothing refills during a pause, so the deficit comes after it: callers queued
        // behind a 429 are spread out at the refill rate instead of all waking when it ends.
        let deficit = wait_secs((1.0 - self.tokens) / self.config.per_second);
        pause.saturating_add(deficit)
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
        let until = now.checked_add(retry_after.min(MAX_PAUSE)).unwrap_or(now);
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        self.tokens = self.tokens.min(0.0);
        // Refill starts when the pause ends.
        self.updated = self.updated.max(until);
        // A 429 is ARM's word on this bucket: a later count must not raise it.
        self.reported = true;
    }

    /// ARM reported `remaining` requests left in its bucket.
    ///
    /// The ceiling is `remaining − outstanding − margin`: requests we sent (or reserved) and
    /// whose answer has not come back may not be in ARM's count yet, and our balance already
    /// has them deducted, so they come off ARM's count too.
    ///
    /// - The **first** per-principal report replaces the start-up guess (up or down, capped at
    ///   the burst): until then, the balance was a guess, not a computation.
    /// - Every later report, and every global one, can only **lower** the balance. Answers of
    ///   concurrent requests arrive out of order, and an old answer's count is higher than the
    ///   truth by the requests ARM counted since (those already answered are no longer
    ///   outstanding, so the ceiling does not account for them). Raising on it would overspend;
    ///   ARM refilling its bucket is already mirrored by our own (slower) refill.
    pub fn report(&mut self, scope: BudgetScope, remaining: u32, now: Instant) {
        self.refill(now);
        let ceiling = f64::from(remaining) - f64::from(self.outstanding) - self.margin;
        if scope == BudgetScope::Principal && !self.reported {
            self.reported = true;
            self.tokens = ceiling.min(f64::from(self.config.burst));
        } else {
            self.tokens = self.tokens.min(ceiling);
        }
    }

    /// Tokens currently available (for tests and diagnostics; negative while callers queue).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Requests reserved from this bucket and not answered yet.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    /// Whether ARM has reported on this bucket.
    pub fn reported(&self) -> bool {
        self.reported
    }
}

/// Buckets are keyed by lower-cased subscription id (ARM ids are case-insensitive) and class.
type Key = (String, OpClass);

fn key(subscription: &str, class: OpClass) -> Key {
    (subscription.to_ascii_lowercase(), class)
}

/// All buckets of the process, keyed by (subscription, class). Shared as `Arc<Throttle>`.
///
/// The buckets are per subscription, not per principal as ARM's are: two identities in one
/// subscription share one client-side bucket, which is conservative.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    buckets: Mutex<HashMap<Key, TokenBucket>>,
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

    fn with_bucket<T>(&self, key: &Key, now: Instant, f: impl FnOnce(&mut TokenBucket) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain numbers.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(key.clone()).or_insert_with(|| {
            let class = key.1;
            TokenBucket::with_tokens(
                self.config.bucket(class),
                self.config.initial_tokens(class),
                self.config.margin(class),
                now,
            )
        });
        f(bucket)
    }

    /// Takes a token now or says how long to wait (nothing is reserved on `Err`). The request
    /// is not tracked as outstanding; the ARM client uses [`Throttle::admit_at`].
    pub fn try_acquire_at(
        &self,
        subscription: &str,
        class: OpClass,
        now: Instant,
    ) -> Result<(), Duration> {
        self.with_bucket(&key(subscription, class), now, |b| b.try_take(now))
    }

    /// Reserves a token if the wait is at most `max_wait` and returns that wait;
    /// otherwise reserves nothing and returns `Err(wait)`. Not tracked as outstanding.
    pub fn reserve_within_at(
        &self,
        subscription: &str,
        class: OpClass,
        max_wait: Duration,
        now: Instant,
    ) -> Result<Duration, Duration> {
        self.with_bucket(&key(subscription, class), now, |b| {
            let wait = b.wait_time(now);
            if wait <= max_wait {
                Ok(b.reserve(now))
            } else {
                Err(wait)
            }
        })
    }

    /// Like [`Throttle::reserve_within_at`], and the request counts as outstanding until its
    /// [`Ticket`] is answered or dropped. Returns the wait before sending and the ticket.
    pub fn admit_at(
        &self,
        subscription: &str,
        class: OpClass,
        max_wait: Duration,
        now: Instant,
    ) -> Result<(Duration, Ticket<'_>), Duration> {
        let key = key(subscription, class);
        let wait = self.with_bucket(&key, now, |b| {
            let wait = b.wait_time(now);
            if wait <= max_wait {
                b.outstanding = b.outstanding.saturating_add(1);
                Ok(b.reserve(now))
            } else {
                Err(wait)
            }
        })?;
        Ok((
            wait,
            Ticket {
                throttle: self,
                key,
                open: true,
            },
        ))
    }

    /// [`Throttle::admit_at`] with the real clock and the configured `max_wait`.
    pub fn admit(
        &self,
        subscription: &str,
        class: OpClass,
    ) -> Result<(Duration, Ticket<'_>), Duration> {
        self.admit_at(subscription, class, self.config.max_wait, Instant::now())
    }

    /// Applies one of ARM's remaining-requests reports to its bucket.
    pub fn report_at(&self, subscription: &str, report: RemainingReport, now: Instant) {
        self.with_bucket(&key(subscription, report.class), now, |b| {
            b.report(report.scope, report.remaining, now)
        });
    }

    /// ARM answered 429 with `Retry-After`: pause that bucket.
    pub fn on_throttled_at(
        &self,
        subscription: &str,
        class: OpClass,
        retry_after: Duration,
        now: Instant,
    ) {
        self.with_bucket(&key(subscription, class), now, |b| {
            b.pause(now, retry_after)
        });
    }

    /// [`Throttle::on_throttled_at`] with the real clock.
    pub fn on_throttled(&self, subscription: &str, class: OpClass, retry_after: Duration) {
        self.on_throttled_at(subscription, class, retry_after, Instant::now());
    }

    /// Tokens available in a bucket (diagnostics and tests; creates the bucket if needed).
    pub fn available_at(&self, subscription: &str, class: OpClass, now: Instant) -> f64 {
        self.with_bucket(&key(subscription, class), now, |b| b.available(now))
    }

    /// Requests of a bucket reserved and not answered yet.
    pub fn outstanding(&self, subscription: &str, class: OpClass) -> u32 {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .get(&key(subscription, class))
            .map_or(0, TokenBucket::outstanding)
    }

    fn close(&self, key: &Key, reports: &[RemainingReport], now: Instant) {
        let subscription = &key.0;
        self.with_bucket(key, now, |b| {
            b.outstanding = b.outstanding.saturating_sub(1)
        });
        for report in reports {
            self.report_at(subscription, *report, now);
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

/// A reserved token whose request is outstanding. Answer it with the response's reports; a
/// ticket dropped unanswered (transport error, cancelled reconcile) just stops counting.
#[must_use = "the request counts as outstanding until the ticket is answered or dropped"]
pub struct Ticket<'a> {
    throttle: &'a Throttle,
    key: Key,
    open: bool,
}

impl Ticket<'_> {
    /// The answer arrived with these remaining-requests reports.
    pub fn answered_at(mut self, reports: &[RemainingReport], now: Instant) {
        self.open = false;
        self.throttle.close(&self.key, reports, now);
    }

    /// [`Ticket::answered_at`] with the real clock.
    pub fn answered(self, reports: &[RemainingReport]) {
        self.answered_at(reports, Instant::now());
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.open {
            self.throttle.close(&self.key, &[], Instant::now());
        }
    }
}

impl fmt::Debug for Ticket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("subscription", &self.key.0)
            .field("class", &self.key.1)
            .field("open", &self.open)
            .finish()
    }
}

#[cfg(test)]
mod tests;
