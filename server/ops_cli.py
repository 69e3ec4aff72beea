"""Operator subcommands (registered by server.cli): `health` (gRPC health probe, the container's HEALTHCHECK),
`rescan` (roll a model repository change out to replicas) and `web` (the read-only leaderboard pages on their
own, beside a scoring database). Imports stay lazy."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from server.config import ENV_PREFIX

DEFAULT_GRPC_PORT = 50051


def default_target(env: dict[str, str] | None = None) -> str:
    """``127.0.0.1:<port>`` where port is ``SENSORIUM_SERVE_PORT`` if set: the container probes its own server."""
    env = dict(os.environ) if env is None else env
    return f"127.0.0.1:{env.get(ENV_PREFIX + 'PORT', DEFAULT_GRPC_PORT)}"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    health = subparsers.add_parser(
        "health",
        help="probe a server with the gRPC health protocol (exit 0 when SERVING)",
        description=(
            "Ask a server's grpc.health.v1.Health/Check for a service ('' = the whole server). Prints the "
            "status; exits 0 when SERVING, 1 when NOT_SERVING (e.g. draining) or unknown, 2 when the server "
            "cannot be reached in time. Used as the container's HEALTHCHECK; health needs no token."
        ),
    )
    health.add_argument(
        "--target",
        default=None,
        help=f"gRPC target host:port (default 127.0.0.1:${ENV_PREFIX}PORT, else {DEFAULT_GRPC_PORT})",
    )
    health.add_argument("--service", default="", help="service name to check ('' = the server)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    health.add_argument(
        "--tls-ca", default=None, help="PEM root certificate(s): talk TLS to a server started with --tls-cert"
    )
    health.set_defaults(handler=run_health)

    rescan = subparsers.add_parser(
        "rescan",
        help="make servers re-scan their model repository (roll out or retire model versions)",
        description=(
            "Call sensorium.v1.ModelRepository/Rescan on each target: new version folders load, changed ones "
            "reload, removed ones unload; streams already open stay on the version they opened. Prints the "
            "changes per target; exits 1 if any target failed or any model failed to load. Token: "
            "$SENSORIUM_SERVE_TOKEN (role admin)."
        ),
    )
    rescan.add_argument("targets", nargs="+", metavar="TARGET", help="host:port of each replica")
    rescan.add_argument("--timeout", type=float, default=120.0, help="seconds per target")
    rescan.set_defaults(handler=run_rescan)

    web = subparsers.add_parser(
        "web",
        help="serve the read-only leaderboard and in-silico report pages over HTTP",
        description=(
            "Read-only HTTP pages of the scoring database (the same pages `serve --web-port` offers): the "
            "leaderboard of every track and tier, and a report per submission with plots (per-neuron "
            "correlation histogram, per-mouse and per-OOD-family bars, correlation against each neuron's "
            "explainable variance); with --insilico, the in-silico report of each model at /insilico. Never "
            "reads ground truth. Give --db, --insilico or both."
        ),
    )
    web.add_argument("--db", dest="db_url", help="SQLAlchemy URL (or path) of the scores database")
    web.add_argument(
        "--insilico",
        type=Path,
        metavar="DIR",
        help="results folder of `sensorium-serve insilico` (/insilico)",
    )
    web.add_argument("--host", default="127.0.0.1", help="address to bind")
    web.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    web.set_defaults(handler=run_web)


def health_status(target: str, service: str = "", timeout: float = 3.0, tls_ca: str | None = None) -> str:
    """The health status name (SERVING, NOT_SERVING, SERVICE_UNKNOWN, ...); raises grpc.RpcError."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if tls_ca:
        with open(tls_ca, "rb") as f:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=f.read()))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def run_health(args: argparse.Namespace) -> int:
    import grpc

    target = args.target or default_target()
    try:
        status = health_status(target, args.service, args.timeout, args.tls_ca)
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        print(f"{target}: {code.name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1 if code == grpc.StatusCode.NOT_FOUND else 2
    print(f"{target} {args.service or '(server)'}: {status}")
    return 0 if status == "SERVING" else 1


def run_rescan(args: argparse.Namespace) -> int:
    import grpc

    from protos.auth import auth_metadata
    from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc

    failed = False
    for target in args.targets:
        with grpc.insecure_channel(target) as channel:
            stub = predictor_pb2_grpc.ModelRepositoryStub(channel)
            try:
                reply = stub.Rescan(
                    predictor_pb2.RescanRequest(), timeout=args.timeout, metadata=auth_metadata()
                )
            except grpc.RpcError as exc:
                print(f"{target}: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
                failed = True
                continue
        changes = [
            f"{c.name}/{c.version} {c.action}" + (f" ({c.reason})" if c.reason else "") for c in reply.changes
        ]
        failed |= any(c.action == "failed" for c in reply.changes)
        print(f"{target}: " + (", ".join(changes) or "no changes"))
    return 1 if failed else 0


def run_web(args: argparse.Namespace) -> int:
    import signal
    import threading

    from server.web.http import WebServer
    from server.web.insilico import InsilicoResults

    if not args.db_url and not args.insilico:
        raise SystemExit("web: give --db URL (leaderboards), --insilico DIR (in-silico reports) or both")
    store = None
    if args.db_url:
        from server.scoring.db import ScoreStore

        store = ScoreStore(args.db_url)
    results = InsilicoResults(args.insilico) if args.insilico else None
    web = WebServer(store, args.host, args.port, insilico_results=results)
    port = web.start()
    print(f"pages on http://{args.host}:{port}/" + ("insilico" if store is None else ""), flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    web.stop()
    if store is not None:
        store.close()
    return 0
