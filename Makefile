# azureml-attach — the two commands are `make demo` and `make test`.
SHELL := /usr/bin/env bash
CARGO ?= cargo
# The directory holding kube-apiserver, kube-controller-manager, kubectl, kubelet, kube-scheduler,
# etcd, helm and the node's pause image (the script also apt-installs containerd, runc, CNI, umoci).
# Built from the Go module proxy on first use and cached outside the tree (see README, Development).
# The script prints only the directory on stdout (progress goes to stderr); no `| tail` here, so a
# failed build stops `bin=$$(...) && ...` instead of exporting an empty directory.
TESTENV_BIN_CMD = bash testenv/scripts/build-binaries.sh

.PHONY: all build test demo chaos testenv image crds check-crds fmt lint clean-testenv bench-scale bench-scale-10k

all: build

build:
	$(CARGO) build --workspace --locked

## Build (once) the real Kubernetes control plane, etcd and helm used by tests and the demo.
testenv:
	@bash testenv/scripts/build-binaries.sh

## The operator image as an OCI archive, without a container daemon (umoci; the Dockerfile's
## layout). IMAGE names it, IMAGE_OUT places it; prints the archive's path last.
## Load it with `ctr -n k8s.io images import` or `skopeo copy oci-archive:… docker://…`.
image:
	@bash hack/build-image.sh

## Everything CI runs: formatting, lints, CRD drift, unit, emulator, end-to-end, packaging and
## node tests. The image for tests/node is built once here (a release build).
NODE_TEST_IMAGE = localhost/azureml-attach/azureml-attach:node-test
test: lint check-crds
	@bin=$$($(TESTENV_BIN_CMD)) && export AZUREML_ATTACH_TESTENV_BIN="$$bin" && \
	  img=$$(IMAGE=$(NODE_TEST_IMAGE) IMAGE_OUT=$${CARGO_TARGET_DIR:-target}/image/node-test.oci.tar bash hack/build-image.sh) && \
	  export AZUREML_ATTACH_IMAGE="$$img" && \
	  $(CARGO) test --workspace --locked --no-fail-fast

## The chaos scenario (tests/chaos, bench/chaos/RESULTS.md) with CHAOS_TARGETS targets; `make test`
## runs the same scenario with 30 targets and shorter phases.
CHAOS_TARGETS ?= 300
chaos:
	@bin=$$($(TESTENV_BIN_CMD)) && export AZUREML_ATTACH_TESTENV_BIN="$$bin" && \
	  CHAOS_TARGETS=$(CHAOS_TARGETS) $(CARGO) test --locked --test chaos -- --nocapture

## The whole product on a local control plane and the Azure ML emulator.
demo:
	@bin=$$($(TESTENV_BIN_CMD)) && export AZUREML_ATTACH_TESTENV_BIN="$$bin" && \
	  bash hack/demo.sh

## Scale benchmark (not part of `make test`): SCALE_TARGETS (1000) BatchTargets over SCALE_WORKSPACES
## (5) workspaces on a private control plane and the emulator; see bench/scale/RESULTS.md for the knobs.
## A debug build; `make bench-scale SCALE_CARGO_FLAGS=--release` measures the release operator.
SCALE_CARGO_FLAGS ?=
bench-scale:
	@bin=$$($(TESTENV_BIN_CMD)) && export AZUREML_ATTACH_TESTENV_BIN="$$bin" && \
	  $(CARGO) test --locked $(SCALE_CARGO_FLAGS) --test scale -- --ignored --nocapture

## The same once at 10,000 targets over 10 workspaces in 10 subscriptions (each its own ARM buckets).
bench-scale-10k:
	@SCALE_TARGETS=10000 SCALE_WORKSPACES=10 SCALE_SUBSCRIPTIONS=10 $(MAKE) --no-print-directory bench-scale

## Regenerate the CRD YAML in crds/ from the Rust types.
crds:
	$(CARGO) run --locked --quiet --bin azureml-attach -- crds --out-dir crds
	@bash hack/sync-crds.sh

check-crds: crds
	@git diff --exit-code -- crds/ charts/azureml-attach/crds/ deploy/base/crds/ || { echo "crds/ (or its copies in the chart and deploy/base) is out of date: run 'make crds' and commit" >&2; exit 1; }

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
