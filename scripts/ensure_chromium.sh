#!/usr/bin/env bash
# Make sure headless Chromium is installed: tests/ops loads the leaderboard pages in it (--headless --dump-dom).
# Installs Debian's `chromium` and `chromium-driver` packages when missing. Idempotent.
set -euo pipefail
if command -v chromium > /dev/null && command -v chromedriver > /dev/null; then
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "ensure_chromium: chromium not found and no apt-get; install Chromium yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "ensure_chromium: installing Debian's chromium and chromium-driver packages (for tests/ops)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver > /dev/null
