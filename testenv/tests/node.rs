//! The opt-in node runs real pods: the locally built pause image as a restricted pod, scheduled
//! by kube-scheduler, started by the kubelet through containerd, with an address on the bridge.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use testenv::{Node, PAUSE_IMAGE, TestEnv, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_pause_pod_runs_on_the_node() {
    let node = Node::global();
    let env = TestEnv::global();
    let client = env.client();
    let ns = env.create_namespace("node-pause").await;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted"}}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, &ns);

    // Pod Security admission refuses a privileged pod in this namespace.
    let privileged: Pod = serde_json::from_value(json!({
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": PAUSE_IMAGE,
            "securityContext": {"privileged": true}}]}
    }))
    .unwrap();
    let refused = pods.create(&PostParams::default(), &privileged).await;
    assert!(
        format!("{refused:?}").contains("violates PodSecurity"),
        "{refused:?}"
    );

    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pause"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "Never",
                "securityContext": {"allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = wait_for("pod pause Running", Duration::from_secs(90), async || {
        let pod = pods.get("pause").await.ok()?;
        let status = pod.status?;
        (status.phase.as_deref() == Some("Running")).then_some(status)
    })
    .await
    .unwrap_or_else(|err| {
        panic!(
            "{err}; kubelet log in {}",
            node.dir().join("kubelet.log").display()
        )
    });
    let ip = running.pod_ip.unwrap_or_default();
    assert!(ip.starts_with("10.213.0."), "pod IP {ip}");
    let uid = pods.get("pause").await.unwrap().metadata.uid.unwrap();
    let (usage, _) = node.pod_memory(&uid).expect("pod memory cgroup");
    assert!(usage > 0);
    // Nothing a pod sends can leave the machine: its only routes are the pod subnet and the
    // Service range (no default route).
    let pid = node.pod_processes(&uid)[0];
    let routes = std::fs::read_to_string(format!("/proc/{pid}/net/route")).unwrap();
    let destinations: Vec<&str> = routes
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(!destinations.is_empty(), "{routes}");
    assert!(
        !destinations.contains(&"00000000"),
        "a default route: {routes}"
    );

    pods.delete("pause", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("pod pause deleted", Duration::from_secs(60), async || {
        pods.get_opt("pause").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    eprintln!("node start-up {:.2?}", node.startup_duration());
}
