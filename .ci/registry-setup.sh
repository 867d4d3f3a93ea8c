# Sourced by .ci/run (under `set -euo pipefail`): makes Debian's `docker-registry` (the CNCF
# distribution registry) available for the registry tests, which start their own on a free
# loopback port with a config file and a temporary storage root (tests/registry_support.py).
# Nothing is started here: the package's service is left alone (there is no systemd on CI
# machines, and the tests never use the packaged one on port 5000). With CI set, the tests
# fail rather than skip without the binary.

if ! command -v docker-registry >/dev/null 2>&1; then
    echo "registry-setup: installing Debian's docker-registry"
    if [ "$(id -u)" -eq 0 ]; then _truss_reg_sudo=""; else _truss_reg_sudo="sudo"; fi
    $_truss_reg_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $_truss_reg_sudo apt-get install -y -qq docker-registry >/dev/null
fi

if ! command -v docker-registry >/dev/null 2>&1; then
    echo "registry-setup: docker-registry not found after installing it" >&2
    return 1
fi
echo "registry-setup: $(docker-registry --version)"
