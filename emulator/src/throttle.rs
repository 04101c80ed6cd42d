//! ARM-like throttling: one token bucket per (subscription, principal, operation class).

use std::collections::HashMap;
use std::time::Instant;

use crate::config::{Bucket, Throttling};

/// ARM's operation classes, each with its own bucket and remaining-requests header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// GET/HEAD.
    Reads,
    /// PUT/PATCH/POST.
    Writes,
    /// DELETE.
    Deletes,
}

impl OpClass {
    /// Class of an HTTP method.
    pub fn of_method(method: &http::Method) -> Self {
        match *method {
            http::Method::GET | http::Method::HEAD => Self::Reads,
            http::Method::DELETE => Self::Deletes,
            _ => Self::Writes,
        }
    }

    /// `reads`, `writes` or `deletes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reads => "reads",
            Self::Writes => "writes",
            Self::Deletes => "deletes",
        }
    }

    /// Name of the `x-ms-ratelimit-remaining-subscription-*` header.
    pub fn header(self) -> &'static str {
        match self {
            Self::Reads => "x-ms-ratelimit-remaining-subscription-reads",
            Self::Writes => "x-ms-ratelimit-remaining-subscription-writes",
            Self::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }

    fn bucket(self, t: &Throttling) -> Bucket {
        match self {
            Self::Reads => t.reads,
            Self::Writes => t.writes,
            Self::Deletes => t.deletes,
        }
    }
}

/// Outcome of taking one token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Allowed; `remaining` whole tokens are left.
    Allowed {
        /// Tokens left after this request.
        remaining: u32,
    },
    /// Throttled; retry after this many seconds.
    Throttled {
        /// Seconds until one token is available.
        retry_after_secs: u64,
    },
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
}

/// All buckets.
#[derive(Debug, Default)]
pub struct Throttle {
    buckets: HashMap<(String, String, OpClass), State>,
}

impl Throttle {
    /// Forget every bucket (all full again).
    pub fn reset(&mut self) {
        self.buckets.clear();
    }

    /// Take a token for this request at time `now`.
    pub fn take(
        &mut self,
        cfg: &Throttling,
        subscription: &str,
        principal: &str,
        class: OpClass,
        now: Instant,
    ) -> Decision {
        let b = class.bucket(cfg);
        if !cfg.enabled {
            return Decision::Allowed {
                remaining: b.burst.saturating_sub(1),
            };
        }
        let key = (
            subscription.to_ascii_lowercase(),
            principal.to_owned(),
            class,
        );
        let st = self.buckets.entry(key).or_insert(State {
            tokens: f64::from(b.burst),
            last: now,
        });
        let elapsed = now.saturating_duration_since(st.last).as_secs_f64();
        st.tokens = (st.tokens + elapsed * b.per_second).min(f64::from(b.burst));
        st.last = now;
        if st.tokens >= 1.0 {
            st.tokens -= 1.0;
            // Truncation is intended: ARM reports whole requests left.
            Decision::Allowed {
                remaining: st.tokens.floor() as u32,
            }
        } else {
            let missing = 1.0 - st.tokens;
            let secs = if b.per_second > 0.0 {
                (missing / b.per_second).ceil().max(1.0)
            } else {
                3600.0
            };
            Decision::Throttled {
                retry_after_secs: secs as u64,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(burst: u32, rate: f64) -> Throttling {
        let b = Bucket {
            burst,
            per_second: rate,
        };
        Throttling {
            enabled: true,
            reads: b,
            writes: b,
            deletes: b,
        }
    }

    #[test]
    fn empties_then_refills() {
        let c = cfg(2, 1.0);
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(
            t.take(&c, "s", "p", OpClass::Reads, t0),
            Decision::Allowed { remaining: 1 }
        );
        assert_eq!(
            t.take(&c, "s", "p", OpClass::Reads, t0),
            Decision::Allowed { remaining: 0 }
        );
        assert_eq!(
            t.take(&c, "s", "p", OpClass::Reads, t0),
            Decision::Throttled {
                retry_after_secs: 1
            }
        );
        // Other classes and principals have their own buckets.
        assert!(matches!(
            t.take(&c, "s", "p", OpClass::Writes, t0),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            t.take(&c, "s", "q", OpClass::Reads, t0),
            Decision::Allowed { .. }
        ));
        let later = t0 + Duration::from_millis(1100);
        assert!(matches!(
            t.take(&c, "s", "p", OpClass::Reads, later),
            Decision::Allowed { .. }
        ));
    }

    #[test]
    fn disabled_never_throttles() {
        let mut c = cfg(1, 0.0);
        c.enabled = false;
        let mut t = Throttle::default();
        let now = Instant::now();
        for _ in 0..10 {
            assert!(matches!(
                t.take(&c, "s", "p", OpClass::Deletes, now),
                Decision::Allowed { .. }
            ));
        }
    }
}
