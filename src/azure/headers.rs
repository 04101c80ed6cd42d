//! The ARM response headers the client acts on, parsed by pure functions: `Retry-After` and
//! the `x-ms-ratelimit-remaining-*` budget reports (CONTRACT §9, FINDINGS §7).
//!
//! Header values come from the network: every parser returns `None` for anything it does not
//! understand and never panics (property-tested in `azure::proptests`).

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use super::throttle::OpClass;

/// Longest `Retry-After` we honour as given (a bogus huge value must not park a target forever).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A header's value as trimmed text; `None` when absent, empty or not visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `Retry-After` as a delay from `now`, capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    parse_retry_after(header_str(headers, "retry-after")?, now)
}

/// One `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
///
/// ARM sends whole seconds; fractional seconds are accepted too (some proxies send them), and
/// the HTTP-date form because the RFC allows it and a proxy in front of ARM may use it. A date
/// in the past means "now" (zero). Negative, NaN and infinite values are not a delay.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        // Clamp before converting: `Duration::from_secs_f64` panics above u64::MAX seconds.
        return Some(Duration::from_secs_f64(
            secs.min(MAX_RETRY_AFTER.as_secs_f64()),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Which of ARM's buckets a remaining-requests header reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    /// `x-ms-ratelimit-remaining-subscription-{class}`: the bucket of this principal in this
    /// subscription, the one the client-side throttle mirrors.
    Principal,
    /// `x-ms-ratelimit-remaining-subscription-global-{class}`: the subscription-wide bucket shared
    /// by every principal (15× larger; the only counter ARM sent in the 2025 recordings).
    Global,
}

/// ARM's count of requests left in one bucket, from one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemainingReport {
    /// The operation class the header names (not necessarily the request's).
    pub class: OpClass,
    /// Which bucket.
    pub scope: BudgetScope,
    /// Requests left.
    pub remaining: u32,
}

/// Remaining-requests headers by name. Tenant counters are left out: the client-side buckets are
/// per subscription, and a tenant-wide count says nothing about one subscription's bucket.
const REMAINING_HEADERS: [(&str, OpClass, BudgetScope); 6] = [
    (
        "x-ms-ratelimit-remaining-subscription-reads",
        OpClass::Read,
        BudgetScope::Principal,
    ),
    (
        "x-ms-ratelimit-remaining-subscription-writes",
        OpClass::Write,
        BudgetScope::Principal,
    ),
    (
        "x-ms-ratelimit-remaining-subscription-deletes",
        OpClass::Delete,
        BudgetScope::Principal,
    ),
    (
        "x-ms-ratelimit-remaining-subscription-global-reads",
        OpClass::Read,
        BudgetScope::Global,
    ),
    (
        "x-ms-ratelimit-remaining-subscription-global-writes",
        OpClass::Write,
        BudgetScope::Global,
    ),
    (
        "x-ms-ratelimit-remaining-subscription-global-deletes",
        OpClass::Delete,
        BudgetScope::Global,
    ),
];

/// Every remaining-requests report in a response (header names are case-insensitive).
pub fn remaining_reports(headers: &HeaderMap) -> Vec<RemainingReport> {
    REMAINING_HEADERS
        .iter()
        .filter_map(|&(name, class, scope)| {
            let remaining = parse_remaining(header_str(headers, name)?)?;
            Some(RemainingReport {
                class,
                scope,
                remaining,
            })
        })
        .collect()
}

/// A remaining-requests count: a non-negative decimal integer, saturated at `u32::MAX`.
pub fn parse_remaining(value: &str) -> Option<u32> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits, so the only possible failure is overflow: saturate.
    Some(
        value
            .parse::<u64>()
            .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_seconds() {
        let now = at(0);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert("retry-after", HeaderValue::from_static("15"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(15)));
        headers.insert("retry-after", HeaderValue::from_static(" 0.5 "));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_millis(500)));
        headers.insert("retry-after", HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&headers, now), Some(MAX_RETRY_AFTER));
        // Would overflow a Duration if converted before capping.
        for huge in ["1e20", "1e300", "18446744073709551616"] {
            assert_eq!(
                parse_retry_after(huge, now),
                Some(MAX_RETRY_AFTER),
                "{huge}"
            );
        }
        for bad in ["-1", "NaN", "inf", "-inf", "soon", ""] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_http_date() {
        // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480.
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(
            parse_retry_after(date, at(1_445_412_480 - 30)),
            Some(Duration::from_secs(30))
        );
        // In the past: go now.
        assert_eq!(
            parse_retry_after(date, at(1_445_412_480 + 30)),
            Some(Duration::ZERO)
        );
        // Far future: capped.
        assert_eq!(parse_retry_after(date, at(0)), Some(MAX_RETRY_AFTER));
        // The obsolete RFC 850 and asctime forms are part of HTTP-date too.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", at(1_445_412_480 - 1)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:00 2015", at(1_445_412_480 - 2)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after("Wed, 32 Oct 2015 07:28:00 GMT", at(0)),
            None
        );
    }

    #[test]
    fn remaining_headers_as_arm_sends_them() {
        let mut headers = HeaderMap::new();
        assert!(remaining_reports(&headers).is_empty());
        // FINDINGS §7: per-principal counters (2023-2024) and global ones (2025), any casing.
        headers.insert(
            "X-Ms-Ratelimit-Remaining-Subscription-Writes",
            HeaderValue::from_static("1199"),
        );
        headers.insert(
            "x-ms-ratelimit-remaining-subscription-global-reads",
            HeaderValue::from_static("16499"),
        );
        headers.insert(
            "x-ms-ratelimit-remaining-tenant-reads",
            HeaderValue::from_static("3"),
        );
        headers.insert(
            "x-ms-ratelimit-remaining-subscription-deletes",
            HeaderValue::from_static("lots"),
        );
        assert_eq!(
            remaining_reports(&headers),
            [
                RemainingReport {
                    class: OpClass::Write,
                    scope: BudgetScope::Principal,
                    remaining: 1199
                },
                RemainingReport {
                    class: OpClass::Read,
                    scope: BudgetScope::Global,
                    remaining: 16499
                },
            ]
        );
    }

    #[test]
    fn remaining_values() {
        assert_eq!(parse_remaining("0"), Some(0));
        assert_eq!(parse_remaining(" 42 "), Some(42));
        assert_eq!(parse_remaining("99999999999999999999999"), Some(u32::MAX));
        for bad in ["", "-1", "+1", "1.5", "1e3", "x", "1 2"] {
            assert_eq!(parse_remaining(bad), None, "{bad}");
        }
    }
}
