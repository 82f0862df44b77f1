#!/usr/bin/env bash
# `make image-test`: build the CPU image for real, run `reelsense demo` inside it, and check the warehouse
# it wrote. No Docker engine is needed: buildah builds the Dockerfile (chroot isolation, as root), from a
# local Debian bookworm base made by debootstrap (Debian's python3 is 3.11, as in python:3.11-slim).
#
#   bash docker/image_test.sh            build + demo + checks (measured on 2 shared cores: 16 min of build, 27 of demo)
#   IMAGE_TEST_GPU=1 bash docker/image_test.sh   also build the GPU image and import torch in it
#
# Environment: STORAGE_DRIVER (overlay where the kernel has it, else vfs), DEBIAN_MIRROR (the one apt
# uses here), TORCH_INDEX_URL (passed to Dockerfile.cpu; empty: pip's default index), KEEP_IMAGES=1 to keep the images.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=localhost/reelsense-base:bookworm
CPU_IMAGE=localhost/reelsense:cpu
GPU_IMAGE=localhost/reelsense:gpu
if [ -z "${STORAGE_DRIVER:-}" ]; then
    grep -qw overlay /proc/filesystems && STORAGE_DRIVER=overlay || STORAGE_DRIVER=vfs
fi
bah() { buildah --storage-driver "$STORAGE_DRIVER" "$@"; }
say() { printf '\n== %s\n' "$*"; }
size() { bah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | awk -v i="$1" '$1 == i {print $2, $3}'; }  # uncompressed

# The PyTorch CPU index is the Dockerfile's default. Where it cannot be reached, an empty
# TORCH_INDEX_URL makes the build take torch from pip's default index (PyPI): the same torch==2.14.1,
# but a CUDA build with its nvidia-* wheels, several GB larger.
if [ -z "${TORCH_INDEX_URL+set}" ]; then
    TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
    if ! python3 -c "import urllib.request as u; u.urlopen('$TORCH_INDEX_URL/torch/', timeout=10)" 2>/dev/null; then
        echo "$TORCH_INDEX_URL cannot be reached: torch comes from pip's default index (a CUDA build; a larger image)"
        TORCH_INDEX_URL=
    fi
fi

missing=""
for tool in buildah debootstrap; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
if [ -n "$missing" ]; then
    say "installing Debian packages:$missing"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# The base: debootstrap's minimal bookworm with python3 and venv, committed as an image (once).
if ! bah inspect --type image "$BASE" >/dev/null 2>&1; then
    mirror=${DEBIAN_MIRROR:-$(grep -rhoE '(https?://[^ ]+/debian)/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null | head -1 | tr -d ' ' || true)}
    mirror=${mirror:-http://deb.debian.org/debian}
    say "base image $BASE: debootstrap bookworm from $mirror"
    c=$(bah from scratch)
    root=$(bah mount "$c")
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" >/tmp/reelsense-debootstrap.log
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    bah umount "$c" >/dev/null
    bah config --cmd /bin/bash --env LANG=C.UTF-8 "$c"
    bah commit --quiet --rm "$c" "$BASE" >/dev/null
fi

# Where PyPI is reached through a TLS proxy with a CA of its own (pip's `cert` setting), pip in the
# build's RUN steps is lent that CA through bind mounts, which no layer keeps.
lend=()
host_cert=${PIP_CERT:-$(python3 -m pip config list 2>/dev/null | sed -n "s/^global\.cert='\(.*\)'$/\1/p" | head -1)}
if [ -n "$host_cert" ] && [ -f "$host_cert" ]; then
    printf '[global]\ncert = /etc/reelsense-build-ca.crt\n' >/tmp/reelsense-build-pip.conf
    lend=(--volume "$host_cert:/etc/reelsense-build-ca.crt:ro" --volume /tmp/reelsense-build-pip.conf:/etc/pip.conf:ro)
fi

build() {  # build IMAGE DOCKERFILE [BUILD-ARG ...]
    local image=$1 file=$2 started
    shift 2
    say "build $image ($file)"
    started=$(date +%s)
    bah bud --isolation chroot --layers "${lend[@]}" --ignorefile "$file.dockerignore" --build-arg BASE_IMAGE="$BASE" "${@/#/--build-arg=}" \
        -f "$file" -t "$image" . >"/tmp/reelsense-build-$(basename "$file").log" 2>&1 \
        || { tail -40 "/tmp/reelsense-build-$(basename "$file").log"; exit 1; }
    grep -E 'STEP|Using cache' "/tmp/reelsense-build-$(basename "$file").log" | cut -c1-120 || true
    BUILD_S=$(($(date +%s) - started))
    echo "built in ${BUILD_S}s; $(size "$image")"
}

build "$CPU_IMAGE" docker/Dockerfile.cpu TORCH_INDEX_URL="$TORCH_INDEX_URL"
cpu_build_s=$BUILD_S

# The warehouse lives in a host folder mounted at /data/reelsense, as a volume is under Docker.
home=$(mktemp -d /var/tmp/reelsense-image-test.XXXXXX)
chown 1000:1000 "$home"
c=$(bah from "$CPU_IMAGE")
run() { bah run --isolation chroot --volume "$home:/data/reelsense:rw" "$c" -- "$@"; }
trap 'bah rm "$c" >/dev/null 2>&1 || true; rm -rf "$home"' EXIT

say "inside $CPU_IMAGE: reelsense demo"
started=$(date +%s)
run reelsense demo | tee /tmp/reelsense-image-demo.log
demo_s=$(($(date +%s) - started))

say "inside $CPU_IMAGE: the warehouse the demo wrote"
counts=$(run reelsense sql --format csv "SELECT
    (SELECT count(*) FROM items) AS items, (SELECT count(*) FROM events) AS events,
    (SELECT count(*) FROM embeddings) AS embeddings, (SELECT count(*) FROM scores) AS scores,
    (SELECT count(*) FROM explanations) AS explanations")
echo "$counts"
IFS=, read -r items events embeddings scores explanations <<<"$(tail -1 <<<"$counts")"
fail=0
check() { if eval "$1"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
check "[ $items -eq 120 ]"
check "[ $events -gt 20000 ]"
check "[ $embeddings -eq 840 ]"  # 120 items x (3 modalities + 4 aligned/fused)
check "[ $scores -eq 4000 ] && [ $explanations -eq 4000 ]"  # 200 users x top 20
check "grep -q '120 embedded, 0 skipped, 0 quarantined' /tmp/reelsense-image-demo.log"
check "run id -u | grep -qx 1000"  # the image runs as its own user, not root

say "inside $CPU_IMAGE: what takes the space"
run sh -c 'du -sh /opt/venv /opt/reelsense-cache /app /usr 2>/dev/null; du -s /opt/venv/lib/python3.11/site-packages/* | sort -rn | head -12 | awk "{printf \"%7.0f MB  %s\n\", \$1/1024, \$2}"'

cpu_size=$(size "$CPU_IMAGE")
gpu_line=""
if [ "${IMAGE_TEST_GPU:-0}" = 1 ]; then
    build "$GPU_IMAGE" docker/Dockerfile.gpu
    g=$(bah from "$GPU_IMAGE")
    say "inside $GPU_IMAGE: torch"
    bah run --isolation chroot "$g" -- python -c "import torch; print(torch.__version__, 'CUDA', torch.version.cuda, 'available:', torch.cuda.is_available())"
    bah rm "$g" >/dev/null
    gpu_line="$GPU_IMAGE: $(size "$GPU_IMAGE"), built in ${BUILD_S}s"
fi

say "summary"
echo "$CPU_IMAGE: $cpu_size, built in ${cpu_build_s}s (torch from ${TORCH_INDEX_URL:-the default index}); demo inside it: ${demo_s}s"
[ -z "$gpu_line" ] || echo "$gpu_line"
if [ "${KEEP_IMAGES:-0}" != 1 ]; then
    bah rm "$c" >/dev/null && trap 'rm -rf "$home"' EXIT
    bah rmi "$CPU_IMAGE" ${gpu_line:+"$GPU_IMAGE"} >/dev/null
    bah rmi --prune >/dev/null 2>&1 || true  # the cached layers of the builds go too; the base stays
fi
[ "$fail" = 0 ] && echo "image-test: passed" || { echo "image-test: FAILED"; exit 1; }
