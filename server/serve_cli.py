"""`sensorium-serve serve`: the gRPC inference server (registered by server.cli). Imports stay lazy."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from server.config import add_arguments

    parser = subparsers.add_parser(
        "serve",
        help="serve a model repository over gRPC (Predictor, KServe v2, health, reflection, metrics)",
        description=(
            "Serve the ONNX models of a model repository over gRPC: sensorium.v1.Predictor (clip + streaming), "
            "inference.GRPCInferenceService (KServe v2, for Triton clients), gRPC health and reflection, and "
            "Prometheus metrics over HTTP. With --truth, also the sensorium.v1.Scoring service. Every flag can "
            "also be set by an environment variable SENSORIUM_SERVE_<NAME>. SIGTERM drains and exits 0; SIGHUP "
            "re-scans the repository."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from server.app import serve
    from server.config import ENV_PREFIX, Settings

    if args.repo is None and f"{ENV_PREFIX}REPO" not in os.environ:
        raise SystemExit(f"sensorium-serve serve: --repo REPO is required (or {ENV_PREFIX}REPO)")
    try:
        settings = Settings.from_args(args)
    except ValueError as exc:
        raise SystemExit(f"sensorium-serve serve: {exc}") from None
    if not settings.repo.is_dir():
        raise SystemExit(f"sensorium-serve serve: --repo {settings.repo}: not a directory")
    from server.security.auth import SecurityConfigError

    try:
        return asyncio.run(serve(settings))
    except SecurityConfigError as exc:
        raise SystemExit(f"sensorium-serve serve: {exc}") from None
