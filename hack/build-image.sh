#!/usr/bin/env bash
# `make image`: the operator image as an OCI archive, built without a container daemon (Debian's
# umoci, see testenv/scripts/oci-image.sh), for machines that cannot run `docker build` (no base
# images can be pulled). It reproduces the Dockerfile's runtime stage (distroless/cc-debian12:nonroot
# plus the binary) from this Debian 12 machine's files:
#   /usr/local/bin/azureml-attach      the release binary (cargo build --release --locked)
#   the glibc libraries it links       libc, libm, libgcc_s and the loader, from `ldd`
#   /etc/ssl/certs/ca-certificates.crt the system roots (package ca-certificates)
#   /etc/passwd, /etc/group            root and nonroot (65532), as in distroless
#   /home/nonroot, /tmp                the home of 65532 and a sticky /tmp
#   user 65532:65532, entrypoint [/usr/local/bin/azureml-attach, run], port 8080/tcp, the labels
# tests/packaging.rs compares these with the Dockerfile; tests/node runs the image on a kubelet.
# The last line printed is the archive. IMAGE (default ghcr.io/azureml-attach/azureml-attach:<appVersion>)
# names it; IMAGE_OUT places it (default $CARGO_TARGET_DIR/image/azureml-attach.oci.tar).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The recipe (compared with the Dockerfile by tests/packaging.rs).
IMAGE_USER=65532:65532
IMAGE_ENTRYPOINT=(/usr/local/bin/azureml-attach run)
IMAGE_EXPOSE=8080/tcp
IMAGE_BINARY=/usr/local/bin/azureml-attach
IMAGE_LABELS=(
  "org.opencontainers.image.title=azureml-attach"
  "org.opencontainers.image.description=Kubernetes operator that attaches existing Azure compute to Azure Machine Learning workspaces"
  "org.opencontainers.image.source=https://github.com/azureml-attach/azureml-attach"
  "org.opencontainers.image.licenses=MIT"
)

app_version=$(awk '$1=="appVersion:" {gsub(/"/, "", $2); print $2}' charts/azureml-attach/Chart.yaml)
image=${IMAGE:-ghcr.io/azureml-attach/azureml-attach:$app_version}
target=${CARGO_TARGET_DIR:-target}
out=${IMAGE_OUT:-$target/image/azureml-attach.oci.tar}
[ -f /etc/ssl/certs/ca-certificates.crt ] || { echo "error: /etc/ssl/certs/ca-certificates.crt is missing (apt-get install ca-certificates)" >&2; exit 1; }

echo "==> cargo build --release --locked --bin azureml-attach" >&2
cargo build --release --locked --bin azureml-attach >&2
binary="$target/release/azureml-attach"
"$binary" version >/dev/null

rootfs=$(mktemp -d); trap 'rm -rf "$rootfs"' EXIT
install -D -m 0755 "$binary" "$rootfs$IMAGE_BINARY"
# The shared libraries the binary needs, at the paths the loader looks them up.
for lib in $(ldd "$binary" | awk '/=>/ {print $3} /^\t\// {print $1}'); do
  install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
[ -f /etc/os-release ] && install -D -m 0644 "$(readlink -f /etc/os-release)" "$rootfs/etc/os-release"
install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
install -d -m 1777 "$rootfs/tmp"
chmod 0755 "$rootfs"

labels=(); for l in "${IMAGE_LABELS[@]}"; do labels+=(--label "$l"); done
echo "==> $image -> $out" >&2
bash testenv/scripts/oci-image.sh "$out" "$image" "$rootfs" "$IMAGE_USER" \
  --expose "$IMAGE_EXPOSE" "${labels[@]}" -- "${IMAGE_ENTRYPOINT[@]}" >&2
echo "==> image size $(du -h "$out" | cut -f1) (archive; one gzip layer)" >&2
echo "$out"
