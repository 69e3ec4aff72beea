"""Subcommands of this area (registered by server.cli)."""

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Placeholder until this area's commands land."""
