"""Client subcommands: `rig` and `predict` (here), `score` / `leaderboard` (client.scoring), `demo` (client.demo).

Light to import: handlers import grpc, numpy and the client modules when they run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import sys
from pathlib import Path

from models.benchmark import FPS, TIERS

DEFAULT_RIG_TIER = "live_test_main"

# Modules of other engineers that contribute subcommands through their own add_commands(subparsers).
CONTRIBUTED = ("client.scoring", "client.demo", "client.insilico")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    _add_rig(subparsers)
    _add_predict(subparsers)
    for name in CONTRIBUTED:
        if importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
            if hasattr(module, "add_commands"):
                module.add_commands(subparsers)


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        required=True,
        metavar="H:P",
        help="server address: host:port, or any gRPC target such as dns:///name:port",
    )
    p.add_argument(
        "--round-robin",
        action="store_true",
        help="client-side round_robin over every address the target resolves to "
        "(a Kubernetes headless Service); a stream stays on its replica",
    )
    p.add_argument("--version", type=int, default=0, help="model version (default 0: the newest ready one)")
    from client.predictor import add_security_arguments

    add_security_arguments(p)


def _add_rig(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rig",
        help="replay trials at a fixed frame rate over StreamPredict (or KServe sequences) and report latency",
        description=(
            "Act as a closed-loop rig: stream a session's trials frame by frame at --fps (one frame in flight, "
            "frame i due at t0 + i/fps on a monotonic clock) and report round-trip p50/p90/p99, deadline misses "
            "(answer later than the next frame's due time) and where the time went (client encode/decode, "
            "network, server queue, compute). Each trial gets a fresh stream."
        ),
    )
    _add_target(p)
    p.add_argument("--data", required=True, type=Path, metavar="DIR/public", help="released dataset folder")
    p.add_argument("--mouse", required=True, metavar="SESSION", help="session folder name (= model name)")
    p.add_argument(
        "--tier",
        action="append",
        choices=TIERS,
        help="tier to take trials from (default live_test_main); repeatable: --trials K of each, in order",
    )
    p.add_argument(
        "--model",
        default=None,
        help="stream to this model instead of --mouse's (e.g. while recording a new mouse)",
    )
    p.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write what was streamed, with each trial's responses as the rig's measurement, as a session "
        "folder DIR/<session> in the released layout (tiers kept, statistics over its train trials): the input "
        "of `sensorium-serve adapt --data DIR` (docs/TRAINING.md)",
    )
    p.add_argument("--fps", type=float, default=float(FPS), help=f"frame rate (default {FPS})")
    p.add_argument(
        "--trials", type=int, default=1, metavar="K", help="number of trials to replay per tier (default 1)"
    )
    p.add_argument(
        "--frames", type=int, default=None, metavar="F", help="only the first F frames of each trial"
    )
    p.add_argument("--uint8", action="store_true", help="send frames as uint8 raw pixels (4x fewer bytes)")
    p.add_argument(
        "--protocol",
        choices=("sensorium", "kserve"),
        default="sensorium",
        help="sensorium: StreamPredict (default); kserve: KServe v2 / Triton ModelStreamInfer on the mouse's "
        "step model, one sequence per trial (server-held state, as Triton serving this repository does)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the table")
    p.set_defaults(handler=_run_rig)


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict every trial of a tier with PredictClip and write the official submission file",
        description=(
            "Predict every trial of --tier (all sessions in --data, or --mouse) with PredictClip and write the "
            "official parquet submission file (brotli, one row per trial, frames [50, T) in standardised units). "
            "If --out is a folder the official file name for the tier is used."
        ),
    )
    _add_target(p)
    p.add_argument("--data", required=True, type=Path, metavar="DIR/public", help="released dataset folder")
    p.add_argument("--tier", default="final_test_main", choices=TIERS, help="tier to predict")
    p.add_argument(
        "--out", required=True, type=Path, metavar="FILE.parquet.brotli", help="output file or folder"
    )
    p.add_argument("--mouse", action="append", metavar="SESSION", help="only this session (repeatable)")
    p.add_argument("--uint8", action="store_true", help="send videos as uint8 raw pixels (4x fewer bytes)")
    p.set_defaults(handler=_run_predict)


def _client_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can fix (bad target, data or input): printed as one line, not a traceback."""
    from client.errors import PredictorError
    from client.submission import SubmissionFormatError

    return (
        PredictorError,
        SubmissionFormatError,
        FileNotFoundError,
        FileExistsError,
        LookupError,
        ValueError,
    )


def _run_rig(args: argparse.Namespace) -> int:
    try:
        return _rig(args)
    except _client_errors() as exc:
        raise SystemExit(f"rig: {exc}") from exc


def _run_predict(args: argparse.Namespace) -> int:
    try:
        return _predict(args)
    except _client_errors() as exc:
        raise SystemExit(f"predict: {exc}") from exc


def _rig(args: argparse.Namespace) -> int:
    import asyncio

    import numpy as np

    from client.predictor import security_from_args
    from client.rig import run_rig
    from client.trials import open_session, trial_inputs

    if args.trials < 1:
        raise ValueError("--trials must be >= 1")
    folder = open_session(args.data, args.mouse)
    indices = []
    for tier in args.tier or [DEFAULT_RIG_TIER]:
        in_tier = [int(i) for i in folder.trials(tier)][: args.trials]
        if not in_tier:
            raise ValueError(f"session {args.mouse} has no trials of tier {tier!r}")
        indices += in_tier
    recording = args.record is not None
    trials = [trial_inputs(folder, i, with_responses=recording) for i in indices]
    if args.frames:
        from dataclasses import replace

        trials = [
            replace(
                t,
                video=t.video[: args.frames],
                behavior=t.behavior[: args.frames],
                pupil_center=t.pupil_center[: args.frames],
                responses=None if t.responses is None else t.responses[: args.frames],
            )
            for t in trials
        ]
    with contextlib.ExitStack() as stack:
        recorder = None
        if recording:  # written on leaving, with the trials recorded so far even after an error
            from client.recording import SessionRecorder

            recorder = stack.enter_context(
                SessionRecorder(args.record, folder.session, folder.unit_ids, folder.coordinates)
            )
        report = asyncio.run(
            run_rig(
                args.target,
                trials,
                args.fps,
                version=args.version,
                frame_dtype=np.uint8 if args.uint8 else np.float32,
                round_robin=args.round_robin,
                progress=not args.json and sys.stderr.isatty(),
                protocol=args.protocol,
                model=args.model,
                recorder=recorder,
                **security_from_args(args),
            )
        )
    if recorder is not None:
        print(f"recorded {len(recorder.tiers)} trials to {recorder.path}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.table())
    return 0


def _predict(args: argparse.Namespace) -> int:
    from client.predict import predict_tier
    from client.predictor import security_from_args

    summary = predict_tier(
        args.target,
        args.data,
        args.tier,
        args.out,
        mice=args.mouse,
        version=args.version,
        send_uint8=args.uint8,
        round_robin=args.round_robin,
        **security_from_args(args),
    )
    per_mouse = ", ".join(f"{m}: {n}" for m, n in summary.per_mouse.items())
    print(f"wrote {summary.trials} trials of {args.tier} to {summary.path} ({per_mouse})")
    return 0
