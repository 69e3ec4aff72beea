"""`sensorium-serve` command line: one entry point, subcommands contributed by each area.

Each module in COMMAND_MODULES has ``add_commands(subparsers)`` that registers its subcommands with a
``handler`` default. Modules must stay light to import (no torch at import time): a handler imports what it
needs when it runs, so `sensorium-serve serve` works on a serving install without torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "models.data.cli",  # data synth
    "models.cli",  # train, export
    "server.serve_cli",  # serve
    "server.ops_cli",  # health, rescan, web
    "client.cli",  # rig, predict, score, leaderboard, demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensorium-serve",
        description="Train, export, serve and score models of mouse visual cortex (SENSORIUM 2023).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
