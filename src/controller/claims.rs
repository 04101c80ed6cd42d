//! Rule 4: one claim per underlying resource. Across every kind and namespace, the oldest
//! claim on (workspace, resource) wins: earliest creationTimestamp, then lowest uid.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// One target's claim on a resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// Lower-cased workspace ARM id.
    pub workspace: String,
    /// `Underlying::claim_key`.
    pub resource: String,
    /// `Kind namespace/name`, for messages.
    pub owner: String,
    /// The object's uid.
    pub uid: String,
    /// The object's creationTimestamp.
    pub created: Option<Time>,
}

impl Claim {
    fn order_key(&self) -> (Option<i64>, i32, &str) {
        let t = self.created.as_ref().map(|t| t.0.as_second());
        let n = self
            .created
            .as_ref()
            .map(|t| t.0.subsec_nanosecond())
            .unwrap_or(0);
        (t, n, self.uid.as_str())
    }
}

/// The winning claim among `claims` on the same (workspace, resource) as `mine`.
/// Objects without a creationTimestamp sort last (they are not persisted yet).
pub fn winner<'a>(mine: &'a Claim, claims: impl IntoIterator<Item = &'a Claim>) -> &'a Claim {
    let mut best = mine;
    for c in claims {
        if c.workspace != mine.workspace || c.resource != mine.resource {
            continue;
        }
        let (ct, cn, cu) = c.order_key();
        let (bt, bn, bu) = best.order_key();
        // `None` timestamps sort after any real one.
        let c_before = match (ct, bt) {
            (Some(a), Some(b)) => (a, cn, cu) < (b, bn, bu),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => cu < bu,
        };
        if c_before {
            best = c;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(owner: &str, uid: &str, secs: i64) -> Claim {
        Claim {
            workspace: "ws".into(),
            resource: "vm".into(),
            owner: owner.into(),
            uid: uid.into(),
            created: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
            )),
        }
    }

    #[test]
    fn rule4_oldest_claim_wins_then_uid() {
        let a = claim("a", "u2", 10);
        let b = claim("b", "u1", 20);
        let c = claim("c", "u0", 10);
        let all = vec![a.clone(), b.clone(), c.clone()];
        assert_eq!(winner(&b, &all).owner, "c", "same second: lower uid wins");
        assert_eq!(winner(&a, &all).owner, "c");
        let mut other = claim("d", "u", 1);
        other.resource = "other".into();
        let all2 = vec![a.clone(), other];
        assert_eq!(
            winner(&a, &all2).owner,
            "a",
            "claims on other resources do not count"
        );
    }
}
