# Sourced by .ci/run (under `set -euo pipefail`): makes PostgreSQL's initdb and pg_ctl
# available for the store tests, which start their own server in a temporary directory
# (tests/postgres_support.py). Installs Debian's postgresql when they are missing and puts
# its bin directory (/usr/lib/postgresql/<major>/bin, not on PATH by default) on PATH.
# Nothing is started here; with CI set, the tests fail rather than skip without initdb.

_truss_pg_bin_dir() {
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    # Highest major version first.
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -n 1
}

if [ -z "$(_truss_pg_bin_dir)" ]; then
    echo "postgres-setup: installing Debian's postgresql"
    if [ "$(id -u)" -eq 0 ]; then _truss_pg_sudo=""; else _truss_pg_sudo="sudo"; fi
    $_truss_pg_sudo apt-get update -qq
    # policy-rc.d-less containers may fail to start the packaged cluster; we do not need it.
    DEBIAN_FRONTEND=noninteractive $_truss_pg_sudo apt-get install -y -qq postgresql >/dev/null
fi

_truss_pg_dir="$(_truss_pg_bin_dir)"
if [ -z "$_truss_pg_dir" ] || [ ! -x "$_truss_pg_dir/initdb" ]; then
    echo "postgres-setup: initdb not found after installing postgresql" >&2
    return 1
fi
export PATH="$_truss_pg_dir:$PATH"
echo "postgres-setup: initdb $("$_truss_pg_dir/initdb" --version | awk '{print $3}') from $_truss_pg_dir"
