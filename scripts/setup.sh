#!/usr/bin/env bash
# Set up netlab in ./.venv on a fresh Debian machine with Python 3.11; safe to re-run.
#   scripts/setup.sh          the package and its runtime dependencies (enough for `netlab up`)
#   scripts/setup.sh --test   also the test tools, and (as root) the Debian packages that the
#                             interop tests and benchmarks use as peers
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1
PYTHON=${PYTHON:-python3}

apt_install() {
    # Only root can install Debian packages; elsewhere the interop tests skip with the reason.
    [ "$(id -u)" = 0 ] || { echo "setup: not root, skipping Debian packages: $*" >&2; return 0; }
    command -v apt-get >/dev/null || { echo "setup: no apt-get, skipping: $*" >&2; return 0; }
    if [ ! -e /tmp/.netlab-apt-updated ]; then
        apt-get update -qq && touch /tmp/.netlab-apt-updated
    fi
    # Package scripts must not prompt (postfix asks for a configuration type).
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Debian's python3 has no venv module unless python3-venv is installed.
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv
        "$PYTHON" -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$want_test" = 1 ]; then
    .venv/bin/python -m pip install -q -e '.[test,bench]'
    mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^\s*$/d' scripts/debian-packages.txt)
    [ "${#pkgs[@]}" -gt 0 ] && apt_install "${pkgs[@]}"
else
    .venv/bin/python -m pip install -q -e .
fi
echo "setup: ready (.venv/bin/netlab)" >&2
