#!/usr/bin/env bash
# Make sure podman and debootstrap are installed: the slow container test (tests/ops/test_ops_image_build.py)
# builds the Dockerfile with podman on a Debian base made by debootstrap. Installs Debian's `podman` and
# `debootstrap` packages when missing. Idempotent; `make test-slow` runs it.
set -euo pipefail
if command -v podman > /dev/null && command -v debootstrap > /dev/null; then
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "ensure_podman: podman or debootstrap not found and no apt-get; install them yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "ensure_podman: installing Debian's podman and debootstrap packages (for the container image test)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends podman debootstrap > /dev/null
