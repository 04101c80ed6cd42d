#!/usr/bin/env bash
# `make demo`: the whole product on this machine, no Azure and no cluster needed.
#
# Builds what is missing (the control-plane binaries once, then the operator, the emulator and the
# demo runner with cargo), then runs examples/demo.rs, which starts a real kube-apiserver + etcd +
# kube-controller-manager, the Azure ML emulator and the operator, applies deploy/samples/, waits
# until every target is Ready, detaches one, and keeps running until Ctrl-C.
#   DEMO_ONCE=1       exit after the walkthrough instead of waiting for Ctrl-C
#   DEMO_TIMEOUT=180  seconds to wait for every target to be Ready
#   CARGO_TARGET_DIR  honoured, like any cargo command
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
started=$(date +%s)
if [ -t 2 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s==> [%ss] %s%s\n' "$bold" "$(( $(date +%s) - started ))" "$*" "$plain" >&2; }

command -v cargo >/dev/null || { echo "error: cargo is required (https://rustup.rs)" >&2; exit 1; }

if [ -z "${AZUREML_ATTACH_TESTENV_BIN:-}" ]; then
  step "control-plane binaries (kube-apiserver, etcd, kubectl, helm; built once from the Go module proxy, then cached)"
  AZUREML_ATTACH_TESTENV_BIN=$(bash testenv/scripts/build-binaries.sh | tail -n 1)
  export AZUREML_ATTACH_TESTENV_BIN
fi
echo "    $AZUREML_ATTACH_TESTENV_BIN" >&2

step "building the operator, the emulator and the demo runner (cargo shows progress)"
cargo build --locked -p azureml-attach -p azureml-emulator \
  --bin azureml-attach --bin azureml-emulator --example demo

target_dir=$(cargo metadata --format-version 1 --no-deps --locked | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/debug"
for f in "$bin/azureml-attach" "$bin/azureml-emulator" "$bin/examples/demo"; do
  [ -x "$f" ] || { echo "error: $f was not built" >&2; exit 1; }
done

step "starting the demo"
export AZUREML_ATTACH_BIN="$bin/azureml-attach" AZUREML_EMULATOR_BIN="$bin/azureml-emulator"
# exec: Ctrl-C goes straight to the runner, which stops everything it started.
exec "$bin/examples/demo" --repo "$root"
