# Sourced by .ci/run (under `set -euo pipefail`): makes a Docker engine and an offline base
# image available, then exports TRUSS_BASE_IMAGE so the image tests build FROM it.
# Safe to source repeatedly: each step is skipped when its result is already there.
# Docker Hub is not reachable on CI machines, so the base image is made from Debian packages
# (debootstrap) plus this machine's CA bundle, which pip inside the image needs to reach PyPI
# through the proxy.

TRUSS_CI_BASE_IMAGE="${TRUSS_CI_BASE_IMAGE:-truss-ci-base:bookworm}"
TRUSS_DEBIAN_MIRROR="${TRUSS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

_truss_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_truss_install_engine() {
    if command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1; then
        return 0
    fi
    echo "docker-setup: installing docker.io and debootstrap"
    _truss_as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive _truss_as_root apt-get install -y -qq docker.io debootstrap >/dev/null
}

_truss_start_engine() {
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    echo "docker-setup: starting dockerd (log: /tmp/dockerd.log)"
    _truss_as_root sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
    local waited=0
    until docker info >/dev/null 2>&1; do
        if [ "$waited" -ge 60 ]; then
            echo "docker-setup: dockerd did not answer within 60 s; its log:" >&2
            tail -n 30 /tmp/dockerd.log >&2 || true
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

_truss_build_base_image() {
    if docker image inspect "$TRUSS_CI_BASE_IMAGE" >/dev/null 2>&1; then
        echo "docker-setup: base image $TRUSS_CI_BASE_IMAGE already present"
        return 0
    fi
    echo "docker-setup: building $TRUSS_CI_BASE_IMAGE with debootstrap (about a minute)"
    local rootfs
    rootfs="$(mktemp -d /tmp/truss-ci-rootfs.XXXXXX)"
    if ! _truss_as_root debootstrap --variant=minbase --include=python3-minimal,python3-venv,python3-pip \
            bookworm "$rootfs" "$TRUSS_DEBIAN_MIRROR" >/tmp/truss-debootstrap.log 2>&1; then
        echo "docker-setup: debootstrap failed; see /tmp/truss-debootstrap.log" >&2
        _truss_as_root rm -rf "$rootfs"
        return 1
    fi
    local status=0
    _truss_as_root cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt" || status=1
    if [ "$status" -eq 0 ]; then
        _truss_as_root tar -C "$rootfs" -c . | docker import - "$TRUSS_CI_BASE_IMAGE" >/dev/null || status=1
    fi
    _truss_as_root rm -rf "$rootfs"
    return "$status"
}

_truss_install_engine
_truss_start_engine
_truss_build_base_image
export TRUSS_BASE_IMAGE="$TRUSS_CI_BASE_IMAGE"
echo "docker-setup: engine ready; TRUSS_BASE_IMAGE=$TRUSS_BASE_IMAGE"
