#!/usr/bin/env bash
# Prepares a fresh Debian / Raspberry Pi OS machine for streetgate development:
# mosquitto and python3-venv from apt (where we may install), a virtualenv in .venv,
# streetgate installed into it in editable mode with the given extras. It also tries to
# install mosquitto-clients (mosquitto_sub and mosquitto_pub, to watch a broker as the README
# and the demo show); without it everything else works, so failing that is only a note.
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh dev,fleet
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else
        echo "setup: need root to run: $*" >&2
        echo "setup: run it as root, or install the packages yourself and run again" >&2
        exit 1
    fi
}

need_apt=()
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    need_apt+=(mosquitto)
fi
if [[ ",$extras," == *,dev,* ]]; then
    # the fault suite jumps the gateway's wall clock with libfaketime
    ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need_apt+=(faketime)
    command -v systemd-analyze >/dev/null || need_apt+=(systemd)  # verifies deploy/systemd's unit
    command -v tmux >/dev/null || need_apt+=(tmux)  # terminal tests drive the CLI in a real terminal
    # the status page is tested in a real browser: Debian's chromium, driven by Selenium
    [ -x /usr/bin/chromium ] || need_apt+=(chromium)
    [ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)

    # a 3-node RabbitMQ cluster (MQTT plugin) on loopback: tests/support/rabbitmq.py
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    need_apt+=(python3-venv)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v mosquitto_sub >/dev/null; then
    echo "setup: installing mosquitto-clients (mosquitto_sub) with apt-get" >&2
    # a subshell: as_root exits when it cannot become root, which here is only a note
    if ! (as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq mosquitto-clients) >/dev/null 2>&1; then
        echo "setup: note: could not install mosquitto-clients; mosquitto_sub is missing" \
            "(sudo apt-get install mosquitto-clients); nothing else needs it" >&2
    fi
fi

python3 - <<'PY' || { echo "setup: streetgate needs Python 3.11 or newer" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating virtualenv .venv" >&2
    python3 -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
echo "setup: installing streetgate${extras:+ [$extras]} into .venv" >&2
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
