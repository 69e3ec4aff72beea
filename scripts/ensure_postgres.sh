#!/usr/bin/env bash
# Make sure a PostgreSQL server binary set (initdb, pg_ctl) is installed: the scoring tests start a real
# PostgreSQL in a temp dir (tests/scoring/conftest.py). Installs Debian's `postgresql` package when missing.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then
    exit 0
fi
if command -v initdb > /dev/null && command -v pg_ctl > /dev/null; then
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "ensure_postgres: initdb not found and no apt-get; install PostgreSQL (initdb, pg_ctl) yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "ensure_postgres: installing Debian's postgresql package (for the scoring tests)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql > /dev/null
