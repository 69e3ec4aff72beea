#!/usr/bin/env bash
# Make sure Prometheus (prometheus + promtool) is installed: tests/ops starts a real Prometheus against a running
# server and runs `promtool check metrics` on its exposition. Installs Debian's `prometheus` package when missing.
# Idempotent: does nothing when both binaries are on PATH.
set -euo pipefail
if command -v prometheus > /dev/null && command -v promtool > /dev/null; then
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "ensure_prometheus: prometheus/promtool not found and no apt-get; install Prometheus yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "ensure_prometheus: installing Debian's prometheus package (for tests/ops)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus > /dev/null
# The package's service is not wanted (tests start their own on a free port); there is no init system here
# in CI, but stop it where one runs.
if command -v systemctl > /dev/null && systemctl is-active --quiet prometheus 2> /dev/null; then
    $SUDO systemctl stop prometheus || true
fi
