#!/usr/bin/env bash
# Builds the real Kubernetes control-plane binaries (kube-apiserver, kube-controller-manager,
# kubectl), the node's (kubelet, kube-scheduler, a pause image), etcd, helm and promtool from the Go module proxy into a cache outside the tree, keyed by
# version. Safe to run twice: a binary already in the cache is not rebuilt. The last line printed is
# the directory that holds the control-plane binaries and helm; promtool goes into a sibling
# directory keyed by its own version (so pinning it never rebuilds the others).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gomod="$here/go"

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is required but not installed ($2)" >&2; exit 1; }; }
need go "install Go 1.26 or newer"

# The node (testenv::Node) runs pods with Debian's containerd, runc and CNI plugins; images are
# built without a daemon by umoci. Installed with apt-get when missing (CI's fresh machine).
node_missing=()
for tool in containerd runc ctr umoci jq ip; do command -v "$tool" >/dev/null 2>&1 || node_missing+=("$tool"); done
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || node_missing+=(cni)
if ((${#node_missing[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing the node's runtime with apt-get (missing: ${node_missing[*]})" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        containerd runc containernetworking-plugins umoci jq iproute2 ca-certificates; } >&2
  else
    echo "warning: the test node needs ${node_missing[*]} (Debian: apt-get install containerd runc containernetworking-plugins umoci jq iproute2); tests that run pods will fail" >&2
  fi
fi

# The versions are the ones the wrapper modules pin.
modver() { awk -v m="$2" '{ if ($1=="require") { $1=""; $0=$0 } } $1==m {print $2; exit}' "$gomod/$1/go.mod"; }
k8s=$(modver k8s k8s.io/kubernetes)
etcd=$(modver etcd go.etcd.io/etcd/server/v3)
helm=$(modver helm helm.sh/helm/v3)
prometheus=$(modver promtool github.com/prometheus/prometheus)
[ -n "$k8s" ] && [ -n "$etcd" ] && [ -n "$helm" ] && [ -n "$prometheus" ] || { echo "error: cannot read versions from $gomod/*/go.mod" >&2; exit 1; }

cache=${AZUREML_ATTACH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/azureml-attach}
bin="$cache/testenv-k8s-$k8s-etcd-$etcd-helm-$helm"
promtool_dir="$cache/testenv-prometheus-$prometheus"
mkdir -p "$bin" "$promtool_dir"

export CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
build() { # module dir, output name, package, extra ldflags, build tags; into $dest (default $bin)
  local dir=$1 out=$2 pkg=$3 ld=${4:-} tags=${5:-} to=${dest:-$bin}
  if [ -x "$to/$out" ]; then echo "==> $out: cached" >&2; return; fi
  echo "==> $out: building $pkg (cold builds take minutes on 2 cores)" >&2
  local t0; t0=$(date +%s)
  if ! (cd "$gomod/$dir" && go build -trimpath -tags "$tags" -ldflags "-s -w $ld" -o "$to/.$out.tmp" "$pkg"); then
    echo "error: building $out from $pkg failed (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))" >&2
    exit 1
  fi
  mv "$to/.$out.tmp" "$to/$out"
  echo "==> $out: built in $(( $(date +%s) - t0 ))s" >&2
}

kv="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2)"
build etcd etcd go.etcd.io/etcd/server/v3
build k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kv"
build k8s kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kv"
build k8s kubectl k8s.io/kubernetes/cmd/kubectl "$kv -X k8s.io/client-go/pkg/version.gitVersion=$k8s"
build k8s kubelet k8s.io/kubernetes/cmd/kubelet "$kv"
build k8s kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kv"
build helm helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$helm"
# Prometheus 3.X.Y is the Go module v0.3XX.Y. `remove_all_sd` leaves out the cloud service
# discovery plugins (AWS, Azure, GCE, …): the tests only run `promtool check/test rules`.
pm=${prometheus#v0.}; pm=${pm%%.*}
dest=$promtool_dir build promtool promtool github.com/prometheus/prometheus/cmd/promtool \
  "-X github.com/prometheus/common/version.Version=$((pm / 100)).$((pm % 100)).${prometheus##*.}" remove_all_sd

# Small test tools from wrapper modules with their own main package (the upstream kstatus
# library, gopher-lua as Argo CD embeds it). Keyed by the wrapper's content, so a changed pin or
# program is rebuilt even in a warm cache.
tool() { # module dir (= output name)
  local dir=$1 stamp sum
  stamp="$bin/.$dir.sum"
  sum=$(cd "$gomod/$dir" && cat go.mod go.sum ./*.go | sha256sum | cut -d' ' -f1)
  if [ -x "$bin/$dir" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
    echo "==> $dir: cached" >&2; return
  fi
  rm -f "$bin/$dir"
  build "$dir" "$dir" .
  echo "$sum" > "$stamp"
}
tool kstatus
tool luahealth
tool pause

# The node's sandbox image: the pause program alone, as an OCI archive for `ctr images import`.
pause_sum=$(cat "$bin/.pause.sum" "$here/scripts/oci-image.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$bin/pause.oci.tar" ] && [ "$(cat "$bin/.pause.oci.tar.sum" 2>/dev/null)" = "$pause_sum" ]; then
  echo "==> pause.oci.tar: cached" >&2
elif command -v umoci >/dev/null 2>&1; then
  rootfs=$(mktemp -d); install -D -m 0755 "$bin/pause" "$rootfs/pause"
  bash "$here/scripts/oci-image.sh" "$bin/pause.oci.tar" localhost/azureml-attach/pause:testenv "$rootfs" 65535:65535 -- /pause >&2
  rm -rf "$rootfs"; echo "$pause_sum" > "$bin/.pause.oci.tar.sum"
  echo "==> pause.oci.tar: built" >&2
fi

echo "==> testenv binaries ready in $(( $(date +%s) - start ))s ($(du -sh "$bin" | cut -f1); promtool in $promtool_dir)" >&2
echo "$bin"
