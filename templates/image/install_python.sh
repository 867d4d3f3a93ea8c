#!/bin/sh
# Creates /opt/truss/venv and installs the model server's and the model's requirements.
# Usage: install_python.sh WANTED_VERSION [PYTHON]   (PYTHON defaults to python3 on PATH)
# uv is fetched for the install and removed afterwards; pip is the fallback.
set -eu
WANTED="$1"
PYTHON="${2:-}"
HERE=/opt/truss/requirements
VENV=/opt/truss/venv

if [ -z "$PYTHON" ]; then
    PYTHON=$(command -v python3 || command -v python || true)
fi
if [ -z "$PYTHON" ] || [ ! -x "$PYTHON" ]; then
    echo "truss: no Python interpreter in the base image; set base_image.python_executable_path in config.yaml" >&2
    exit 1
fi
"$PYTHON" -m venv "$VENV"
FOUND=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
echo "truss: Python $FOUND ($PYTHON)"
if [ "$FOUND" != "$WANTED" ]; then
    echo "truss: warning: config.yaml asks for Python $WANTED; the base image has $FOUND"
fi

set --
if [ -s "$HERE/server.txt" ]; then
    set -- -r "$HERE/server.txt"
fi
if [ -s "$HERE/model.txt" ]; then
    set -- "$@" -r "$HERE/model.txt"
fi
if [ -s "$HERE/constraints.txt" ]; then
    set -- "$@" -c "$HERE/constraints.txt"
fi

if [ $# -eq 0 ]; then
    echo "truss: no requirements to install"
    exit 0
fi
BOOTSTRAP=$(mktemp -d)
if "$VENV/bin/python" -m pip install --quiet --no-cache-dir --target "$BOOTSTRAP" uv >/dev/null 2>&1 \
        && [ -x "$BOOTSTRAP/bin/uv" ]; then
    # Trust the image's CA store, as pip does, rather than uv's built-in roots. Newer uv calls
    # the setting UV_SYSTEM_CERTS and warns in every build log about the old UV_NATIVE_TLS.
    TRUST=UV_NATIVE_TLS
    if "$BOOTSTRAP/bin/uv" help pip install 2>/dev/null | grep -q -- "--system-certs"; then
        TRUST=UV_SYSTEM_CERTS
    fi
    env "$TRUST=1" "$BOOTSTRAP/bin/uv" pip install --python "$VENV/bin/python" --no-cache --compile-bytecode "$@"
else
    echo "truss: uv unavailable; installing with pip"
    "$VENV/bin/python" -m pip install --no-cache-dir "$@"
fi
rm -rf "$BOOTSTRAP"
