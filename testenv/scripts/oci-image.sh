#!/usr/bin/env bash
# Builds an OCI image archive without a container daemon, with Debian's umoci: one layer holding
# the contents of ROOTFS, a config with a numeric user, an entrypoint, exposed ports and labels.
#   oci-image.sh OUT.tar NAME:TAG ROOTFS USER[:GROUP] [--expose PORT/tcp]... [--label K=V]... -- ENTRYPOINT...
# The archive is an OCI image layout in a tar, its image annotated with NAME:TAG, so that
# `ctr -n k8s.io images import OUT.tar` stores it under that name (pull policy Never finds it).
# Files keep the owners and modes they have in ROOTFS (build it as root, chown what the user
# must own).
set -euo pipefail
out=${1:?OUT.tar}; ref=${2:?NAME:TAG}; rootfs=${3:?ROOTFS}; user=${4:?USER}; shift 4
config=()
while (($#)); do
  case $1 in
    --expose) config+=(--config.exposedports "$2"); shift 2 ;;
    --label) config+=(--config.label "$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "oci-image.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "oci-image.sh: no entrypoint" >&2; exit 2; }
for t in umoci jq; do command -v "$t" >/dev/null || { echo "error: $t is required (apt-get install $t)" >&2; exit 1; }; done

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
layout="$work/layout"
tag=${ref##*:}
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
# The layer is made by GNU tar (sorted, numeric owners as in ROOTFS, fixed mtime) and added with
# `umoci raw add-layer`: Debian's umoci 0.4.7 `insert` cuts off the end of large files.
tar --sort=name --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
umoci raw add-layer --image "$layout:$tag" --history.created 1970-01-01T00:00:00Z \
  --history.created_by "testenv/scripts/oci-image.sh (GNU tar of the root filesystem)" "$work/layer.tar"
entry=(); for arg in "$@"; do entry+=(--config.entrypoint "$arg"); done
umoci config --image "$layout:$tag" --os linux --architecture amd64 --config.user "$user" \
  --config.workingdir / --clear=config.env --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --no-history "${entry[@]}" "${config[@]}"
umoci gc --layout "$layout"
# containerd names an imported image after this annotation.
tmp=$(mktemp "$work/index.XXXX")
jq --arg ref "$ref" '.manifests[].annotations["io.containerd.image.name"] = $ref' "$layout/index.json" > "$tmp"
mv "$tmp" "$layout/index.json"
mkdir -p "$(dirname "$out")"
tar --sort=name --owner=0 --group=0 --mtime=@0 -C "$layout" -cf "$out.tmp" .
mv "$out.tmp" "$out"
