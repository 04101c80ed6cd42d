//! The node's configuration files: CNI, containerd, kubelet.

use std::path::Path;

use super::{BRIDGE, GATEWAY, PAUSE_IMAGE, POD_SUBNET, SERVICE_RANGE};

/// A bridge with host-local addresses and routes only to the pod subnet and the Service range:
/// no default route, no masquerading, so nothing a pod sends leaves the machine.
pub(super) fn cni_conflist(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "testenv",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "isDefaultGateway": false,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY.to_string()}]],
                "routes": [{"dst": SERVICE_RANGE}],
                "dataDir": dir.join("cni-ipam"),
            }
        }]
    })
    .to_string()
}

/// containerd with everything (root, state, socket, runc root, netns) under the node's directory.
pub(super) fn containerd_toml(
    dir: &Path,
    socket: &Path,
    cni_bin: &Path,
    cni_conf: &Path,
) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  # Unprivileged here (no CAP_SYS_RESOURCE): never ask for a lower OOM score than containerd's.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}"
    conf_dir = "{conf}"
"#,
        socket = socket.display(),
        cni = cni_bin.display(),
        conf = cni_conf.display(),
    )
}

/// The kubelet: cgroup v1 allowed, cgroupfs under its own root, no anonymous access, image GC off.
pub(super) fn kubelet_yaml(
    dir: &Path,
    socket: &Path,
    ca: &Path,
    cgroup_root: &str,
    kubelet_port: u16,
) -> String {
    let d = dir.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid); kubelet 1.35+ refuses it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
containerRuntimeEndpoint: unix://{socket}
address: 127.0.0.1
port: {kubelet_port}
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  mode: AlwaysAllow
podLogsDir: {d}/pod-logs
resolvConf: ""
failSwapOn: false
registerNode: true
serializeImagePulls: false
# Never collect the locally imported images (nothing can be pulled again).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
fileCheckFrequency: 0s
httpCheckFrequency: 0s
"#,
        ca = ca.display(),
        socket = socket.display(),
    )
}
