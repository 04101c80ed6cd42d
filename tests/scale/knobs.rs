//! The benchmark's size (environment variables) and the world it builds from it: workspaces
//! spread over subscriptions and namespaces, one Batch account per target.

use std::str::FromStr;

use azureml_attach::api::BatchTarget;
use azureml_emulator::config::{Bucket, Workspace};
use azureml_emulator::{EmulatorConfig, WorldResource};

use crate::harness::CLIENT_SECRET;

#[derive(Debug)]
pub struct Knobs {
    /// `SCALE_TARGETS` (1000): BatchTargets created at once.
    pub targets: usize,
    /// `SCALE_WORKSPACES` (5): MLWorkspaces, each its own Azure ML workspace.
    pub workspaces: usize,
    /// `SCALE_SUBSCRIPTIONS` (1): workspaces are spread over this many subscriptions, each with
    /// its own ARM buckets in the emulator (and its own budget in the operator).
    pub subscriptions: usize,
    /// `SCALE_NAMESPACES` (1): workspaces (and their targets) are spread over this many.
    pub namespaces: usize,
    /// `SCALE_RESYNC` (`20s`): the operator's `--resync-period`.
    pub resync: String,
    /// `SCALE_STEADY_SECS` (60): length of the steady-state window.
    pub steady_secs: u64,
    /// `SCALE_PROBES` (20): targets created one at a time after steady state (apply → PUT with
    /// a quiet write bucket).
    pub probes: usize,
    /// `SCALE_CREATE_PARALLELISM` (16): creates in flight while applying the N targets.
    pub create_parallelism: usize,
    /// `SCALE_CONCURRENCY` (unset: the operator's default): the operator's `CONCURRENCY`.
    pub concurrency: Option<String>,
    /// `SCALE_ARM_THROTTLE_WRITES` / `_DELETES` (`BURST/PER_SECOND`; unset: the operator's
    /// defaults, 180/9): the operator's client-side budget per subscription.
    pub operator_writes: Option<String>,
    pub operator_deletes: Option<String>,
    writes: Bucket,
    deletes: Bucket,
}

/// The operator's default client-side budget for writes and for deletes (docs/reference/cli.md).
const OPERATOR_DEFAULT_BUCKET: Bucket = Bucket {
    burst: 180,
    per_second: 9.0,
};

fn parse_bucket(s: &str) -> Bucket {
    let (burst, rate) = s.split_once('/').expect("BURST/PER_SECOND");
    Bucket {
        burst: burst.trim().parse().expect("a burst"),
        per_second: rate.trim().parse().expect("a rate"),
    }
}

/// Label on every target: the name of its MLWorkspace (the delete-all phase selects on it).
pub const WORKSPACE_LABEL: &str = "bench.azureml-attach.io/workspace";

/// The MLWorkspace (and Azure ML workspace) number `w`.
pub fn workspace_name(w: usize) -> String {
    format!("ws-{w}")
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
        _ => default,
    }
}

impl Knobs {
    pub fn from_env() -> Knobs {
        let throttling = EmulatorConfig::default().settings.throttling;
        let k = Knobs {
            targets: env_or("SCALE_TARGETS", 1000),
            workspaces: env_or("SCALE_WORKSPACES", 5),
            subscriptions: env_or("SCALE_SUBSCRIPTIONS", 1),
            namespaces: env_or("SCALE_NAMESPACES", 1),
            resync: env_or("SCALE_RESYNC", "20s".to_owned()),
            steady_secs: env_or("SCALE_STEADY_SECS", 60),
            probes: env_or("SCALE_PROBES", 20),
            create_parallelism: env_or("SCALE_CREATE_PARALLELISM", 16),
            concurrency: std::env::var("SCALE_CONCURRENCY").ok(),
            operator_writes: std::env::var("SCALE_ARM_THROTTLE_WRITES").ok(),
            operator_deletes: std::env::var("SCALE_ARM_THROTTLE_DELETES").ok(),
            writes: throttling.writes,
            deletes: throttling.deletes,
        };
        assert!(k.targets >= 1 && k.workspaces >= 1);
        assert!(
            (1..=k.workspaces).contains(&k.subscriptions),
            "SCALE_SUBSCRIPTIONS must be between 1 and SCALE_WORKSPACES"
        );
        assert!(
            (1..=k.workspaces).contains(&k.namespaces),
            "SCALE_NAMESPACES must be between 1 and SCALE_WORKSPACES"
        );
        k
    }

    pub fn workspace_of(&self, target: usize) -> usize {
        target % self.workspaces
    }

    fn subscription_of(&self, workspace: usize) -> String {
        // Subscription 0 is the default world's.
        format!(
            "00000000-0000-0000-0000-{:012}",
            workspace % self.subscriptions
        )
    }

    pub fn namespace_of(&self, target: usize) -> usize {
        self.workspace_of(target) % self.namespaces
    }

    pub fn target_name(&self, i: usize) -> String {
        format!("bt{i:05}")
    }

    fn account_id(&self, i: usize) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/ml-rg/providers/Microsoft.Batch/batchAccounts/acct{i}",
            self.subscription_of(self.workspace_of(i))
        )
    }

    pub fn target(&self, i: usize) -> BatchTarget {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "attach.azureml.io/v1alpha1",
            "kind": "BatchTarget",
            "metadata": {
                "name": self.target_name(i),
                "labels": {WORKSPACE_LABEL: workspace_name(self.workspace_of(i))},
            },
            "spec": {
                "workspaceRef": {"name": workspace_name(self.workspace_of(i))},
                "resourceId": self.account_id(i),
            }
        }))
        .expect("a BatchTarget")
    }

    /// The default world with W workspaces and one Batch account per target (and probe);
    /// throttling at ARM's defaults.
    pub fn emulator_config(&self) -> EmulatorConfig {
        EmulatorConfig {
            workspaces: (0..self.workspaces)
                .map(|w| Workspace {
                    subscription_id: self.subscription_of(w),
                    resource_group: "ml-rg".into(),
                    name: workspace_name(w),
                    location: "westeurope".into(),
                })
                .collect(),
            resources: (0..self.targets + self.probes)
                .map(|i| WorldResource {
                    id: self.account_id(i),
                    ..WorldResource::default()
                })
                .collect(),
            ..EmulatorConfig::default()
        }
    }

    /// The credential Secret and the MLWorkspaces of namespace number `ns`.
    pub fn workspaces_yaml(&self, ns: usize) -> String {
        let mut docs = vec![format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: scale-sp\n  labels:\n    attach.azureml.io/credential: \"true\"\nstringData:\n  clientSecret: {CLIENT_SECRET}\n"
        )];
        for w in (0..self.workspaces).filter(|w| w % self.namespaces == ns) {
            docs.push(format!(
                r#"apiVersion: attach.azureml.io/v1alpha1
kind: MLWorkspace
metadata:
  name: ws-{w}
spec:
  subscriptionId: {}
  resourceGroup: ml-rg
  workspaceName: ws-{w}
  credential:
    type: ClientSecret
    clientSecret:
      tenantId: 11111111-1111-1111-1111-111111111111
      clientId: 22222222-2222-2222-2222-222222222222
      secretRef:
        name: scale-sp
        key: clientSecret
"#,
                self.subscription_of(w)
            ));
        }
        docs.join("---\n")
    }

    /// Targets `0..n` per subscription.
    fn per_subscription(&self, n: usize) -> Vec<usize> {
        let mut counts = vec![0; self.subscriptions];
        for i in 0..n {
            counts[self.workspace_of(i) % self.subscriptions] += 1;
        }
        counts
    }

    /// Seconds ARM's bucket needs for one request per target: max(0, (n − burst) / rate),
    /// for the busiest subscription.
    fn bound(&self, n: usize, bucket: Bucket) -> f64 {
        self.per_subscription(n)
            .into_iter()
            .map(|k| (k as f64 - f64::from(bucket.burst)).max(0.0) / bucket.per_second)
            .fold(0.0, f64::max)
    }

    pub fn write_bound(&self, n: usize) -> f64 {
        self.bound(n, self.writes)
    }

    pub fn delete_bound(&self, n: usize) -> f64 {
        self.bound(n, self.deletes)
    }

    fn operator_bucket(&self, knob: Option<&String>) -> Bucket {
        knob.map_or(OPERATOR_DEFAULT_BUCKET, |s| parse_bucket(s))
    }

    /// The same bound for the operator's own (smaller) write budget.
    pub fn operator_write_bound(&self, n: usize) -> f64 {
        self.bound(n, self.operator_bucket(self.operator_writes.as_ref()))
    }

    pub fn operator_delete_bound(&self, n: usize) -> f64 {
        self.bound(n, self.operator_bucket(self.operator_deletes.as_ref()))
    }

    /// PUTs the operator may send at once (its write burst, over all subscriptions).
    pub fn operator_write_burst(&self) -> usize {
        self.operator_bucket(self.operator_writes.as_ref()).burst as usize * self.subscriptions
    }

    /// The earliest ARM's write bucket lets each of targets `0..n` be PUT, in seconds after the
    /// first PUT, sorted: the floor under apply → PUT when everything is applied at once.
    pub fn put_floor(&self, n: usize) -> Vec<f64> {
        let mut out: Vec<f64> = self
            .per_subscription(n)
            .into_iter()
            .flat_map(|k| {
                (1..=k).map(|j| {
                    (j as f64 - f64::from(self.writes.burst)).max(0.0) / self.writes.per_second
                })
            })
            .collect();
        out.sort_by(f64::total_cmp);
        out
    }
}
