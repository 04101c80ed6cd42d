//! Fault injection rules (`POST /_emulator/faults`).

use serde::{Deserialize, Serialize};

/// A fault rule as posted to the control API.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    /// HTTP method to match (any when absent), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Regex matched (unanchored) against the request path (without the query).
    pub path_pattern: String,
    /// Answer with this status and an ARM error body instead of handling the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `error.code` of the injected error body (default derived from the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Value of the `Retry-After` header on the injected response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Delay before the request is handled (or the fault answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Close the connection without an answer.
    #[serde(default)]
    pub drop: bool,
    /// Chance that a matching request triggers the rule (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Number of times the rule fires before it is removed (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// A stored rule.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// Identifier returned by the control API.
    pub id: u64,
    /// The rule as posted.
    pub spec: FaultSpec,
    regex: regex::Regex,
    remaining: Option<u64>,
}

/// What a triggered rule does to a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultAction {
    /// Id of the rule that fired.
    pub rule: u64,
    /// Sleep first.
    pub latency_ms: Option<u64>,
    /// Then drop the connection.
    pub drop: bool,
    /// Or answer with this status.
    pub status: Option<u16>,
    /// Error code for the body.
    pub code: Option<String>,
    /// Retry-After header.
    pub retry_after: Option<u64>,
}

/// Invalid rule.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The path pattern is not a valid regex.
    #[error("pathPattern is not a valid regular expression: {0}")]
    Regex(#[from] regex::Error),
    /// The probability is outside 0..=1.
    #[error("probability must be between 0 and 1")]
    Probability,
    /// The status is not an HTTP status code.
    #[error("status must be between 100 and 599")]
    Status,
}

impl FaultRule {
    /// Compile a posted rule.
    pub fn new(id: u64, spec: FaultSpec) -> Result<Self, FaultError> {
        let regex = regex::Regex::new(&spec.path_pattern)?;
        if let Some(p) = spec.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(FaultError::Probability);
        }
        if let Some(s) = spec.status
            && !(100..=599).contains(&s)
        {
            return Err(FaultError::Status);
        }
        let remaining = spec.count;
        Ok(Self {
            id,
            spec,
            regex,
            remaining,
        })
    }

    /// Remaining firings (None: unlimited).
    pub fn remaining(&self) -> Option<u64> {
        self.remaining
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.spec
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.regex.is_match(path)
    }
}

/// Find the first rule that matches and fires (consuming one of its counts); `roll` draws in 0..1.
pub fn trigger(
    rules: &mut Vec<FaultRule>,
    method: &str,
    path: &str,
    mut roll: impl FnMut() -> f64,
) -> Option<FaultAction> {
    let idx = rules
        .iter()
        .position(|r| r.matches(method, path) && r.spec.probability.is_none_or(|p| roll() < p))?;
    let rule = &mut rules[idx];
    let action = FaultAction {
        rule: rule.id,
        latency_ms: rule.spec.latency_ms,
        drop: rule.spec.drop,
        status: rule.spec.status,
        code: rule.spec.code.clone(),
        retry_after: rule.spec.retry_after,
    };
    if let Some(n) = rule.remaining.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            rules.remove(idx);
        }
    }
    Some(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_limits_firings() {
        let spec = FaultSpec {
            method: Some("get".into()),
            path_pattern: "/computes/".into(),
            status: Some(503),
            count: Some(2),
            ..FaultSpec::default()
        };
        let mut rules = vec![FaultRule::new(1, spec).unwrap()];
        assert!(trigger(&mut rules, "PUT", "/x/computes/a", || 0.0).is_none());
        assert!(trigger(&mut rules, "GET", "/x/computes/a", || 0.0).is_some());
        assert!(trigger(&mut rules, "GET", "/x/computes/a", || 0.0).is_some());
        assert!(trigger(&mut rules, "GET", "/x/computes/a", || 0.0).is_none());
        assert!(rules.is_empty());
    }

    #[test]
    fn probability_is_rolled() {
        let spec = FaultSpec {
            path_pattern: ".".into(),
            drop: true,
            probability: Some(0.5),
            ..FaultSpec::default()
        };
        let mut rules = vec![FaultRule::new(1, spec).unwrap()];
        assert!(trigger(&mut rules, "GET", "/", || 0.9).is_none());
        assert!(trigger(&mut rules, "GET", "/", || 0.1).is_some());
    }

    #[test]
    fn rejects_bad_rules() {
        let bad = FaultSpec {
            path_pattern: "(".into(),
            ..FaultSpec::default()
        };
        assert!(FaultRule::new(1, bad).is_err());
    }
}
