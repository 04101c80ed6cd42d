#!/usr/bin/env bash
# Pins other versions of Kubernetes, etcd, helm or promtool in the wrapper Go modules (testenv/go/*).
#   bash testenv/scripts/pin-versions.sh [--kubernetes v1.X.Y] [--etcd v3.X.Y] [--helm v3.X.Y] [--prometheus v0.3XX.Y]
# Then `make testenv` builds them into a new cache directory (the key contains the versions), and
# the testenv crate picks that directory up on its next build (it reads the same go.mod files).
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0
# and replaces them with ./staging/..., which a dependent module cannot use. So the k8s wrapper
# replaces each of them with the published v0.X.Y that matches v1.X.Y; the list of staging
# modules is read from that release's own go.mod, so a module added or removed upstream is
# picked up.
set -euo pipefail

gomod_dir=${TESTENV_GO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/go}
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local}

usage() { sed -n '2,3p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }
kubernetes='' etcd='' helm='' prometheus=''
while (($#)); do
  case $1 in
    --kubernetes) kubernetes=${2:?}; shift 2 ;;
    --etcd) etcd=${2:?}; shift 2 ;;
    --helm) helm=${2:?}; shift 2 ;;
    --prometheus) prometheus=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$kubernetes$etcd$helm$prometheus" ] || usage

if [ -n "$kubernetes" ]; then
  [[ $kubernetes =~ ^v1\.[0-9]+\.[0-9]+$ ]] || { echo "error: expected a version like v1.36.3, got $kubernetes" >&2; exit 2; }
  staging_version=v0.${kubernetes#v1.}
  cd "$gomod_dir/k8s"
  echo "==> k8s.io/kubernetes $kubernetes (staging modules at $staging_version)" >&2
  # Fetches only that release's go.mod, not its source.
  upstream=$(go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$kubernetes")
  [ -f "$upstream" ] || { echo "error: cannot download k8s.io/kubernetes@$kubernetes from $(go env GOPROXY)" >&2; exit 1; }
  # Drop every current replace, then add one per staging module of the new release.
  for old in $(awk '/^replace \($/ { block = 1; next } block && /^\)/ { block = 0 }
                   block && $2 == "=>" { print $1 } /^replace [^(]/ { print $2 }' go.mod); do
    go mod edit -dropreplace="$old"
  done
  # One block right after the `go` line, formatted like the rest of go.mod.
  block=$(mktemp)
  {
    printf '\nreplace (\n'
    for module in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$upstream"); do
      printf '\t%s => %s %s\n' "$module" "$module" "$staging_version"
    done
    printf ')\n'
  } >"$block"
  sed -i "/^go [0-9]/r $block" go.mod
  rm -f "$block"
  go get "k8s.io/kubernetes@$kubernetes"
  go mod tidy
fi
if [ -n "$etcd" ]; then
  echo "==> go.etcd.io/etcd/server/v3 $etcd" >&2
  (cd "$gomod_dir/etcd" && go get "go.etcd.io/etcd/server/v3@$etcd" && go mod tidy)
fi
if [ -n "$helm" ]; then
  echo "==> helm.sh/helm/v3 $helm" >&2
  (cd "$gomod_dir/helm" && go get "helm.sh/helm/v3@$helm" && go mod tidy)
fi
if [ -n "$prometheus" ]; then
  # Prometheus 3.X.Y is published as the Go module v0.3XX.Y.
  [[ $prometheus =~ ^v0\.[0-9]+\.[0-9]+$ ]] || { echo "error: expected a Go module version like v0.316.0 (Prometheus 3.16.0), got $prometheus" >&2; exit 2; }
  echo "==> github.com/prometheus/prometheus $prometheus" >&2
  (cd "$gomod_dir/promtool" && go get "github.com/prometheus/prometheus@$prometheus" && go mod tidy)
fi
echo "==> pinned; now run: make testenv" >&2
