"""Subcommands of the models area (registered by server.cli): `train` (models/training/cli.py), `adapt`
(models/adapt/cli.py) and `export`.

Argument parsing only: torch is imported when a command runs, so `sensorium-serve --help` stays light.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from models.adapt.cli import add_adapt_command
from models.benchmark import PARITY_TOLERANCE
from models.training.cli import add_train_command

log = logging.getLogger("sensorium.export")

EXPORT_EPILOG = """\
examples:
  sensorium-serve export runs/default --repo model_repository
  sensorium-serve export runs/default/last.pt --repo model_repository --version 2 --mouse SESSION

writes, per mouse, REPO/<mouse>-clip/ and REPO/<mouse>-step/ (config.pbtxt + <version>/model.onnx +
<version>/metadata.json) in Triton's layout; see docs/MODEL_REPOSITORY.md. The graphs take raw pixels (0-255),
raw behaviour and pupil centre, and give standardised responses. Before writing anything the export checks
torch vs onnxruntime (clip graph) and the step graph replayed frame by frame vs the clip graph; any difference
above --tolerance aborts with exit status 2 and leaves REPO unchanged.
"""


def add_export_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `export` with its handler."""
    p = subparsers.add_parser(
        "export",
        help="export a trained checkpoint to per-mouse ONNX clip + step graphs (Triton layout)",
        description="Export RUN (a training output folder with best.pt, or a checkpoint file) to a model "
        "repository: one clip model and one stateful step model per mouse, self-checked before writing.",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run", type=Path, metavar="RUN", help="training output folder (uses best.pt) or a .pt checkpoint"
    )
    p.add_argument("--repo", required=True, type=Path, help="model repository folder (created if missing)")
    p.add_argument(
        "--version", type=int, default=None, help="version folder to write (default: next free number)"
    )
    p.add_argument(
        "--mouse",
        action="append",
        default=None,
        metavar="SESSION",
        help="export only this mouse (repeatable)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=PARITY_TOLERANCE,
        help=f"max abs difference allowed by the parity checks ({PARITY_TOLERANCE:g})",
    )
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from models.export.checks import ExportCheckError
    from models.export.graphs import ExportError
    from models.export.repository import export_checkpoint

    if args.version is not None and args.version < 1:
        log.error("--version must be >= 1, got %d", args.version)
        return 2
    try:
        exported = export_checkpoint(args.run, args.repo, args.version, args.mouse, args.tolerance)
    except (ExportCheckError, ExportError) as exc:
        log.error("export FAILED, nothing written: %s", exc)
        return 2
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        log.error("export failed: %s", exc)
        return 2
    for item in exported:
        log.info(
            "%s v%d: clip vs torch %.2g, step vs clip %.2g -> %s, %s",
            item.mouse,
            item.version,
            item.report.clip_vs_torch,
            item.report.step_vs_clip,
            item.clip_dir,
            item.step_dir,
        )
    log.info("exported %d mice to %s", len(exported), args.repo)
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    add_train_command(subparsers)
    add_adapt_command(subparsers)
    add_export_command(subparsers)
