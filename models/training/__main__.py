"""`python -m models.training train ...`: the train command without the rest of the CLI (torch-only hosts,
torchrun: `torchrun --nproc_per_node K -m models.training train ...`)."""

from __future__ import annotations

import argparse
import logging
import sys

from models.training.cli import add_train_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.training")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    add_train_command(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
