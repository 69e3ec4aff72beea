"""`sensorium-serve adapt`: argument parsing only; torch is imported when the command runs."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from models.adapt.options import AdaptOptions

_DEFAULTS = AdaptOptions()
log = logging.getLogger("sensorium.adapt")

EPILOG = """\
examples:
  sensorium-serve adapt --base runs/default --data recording/public --out runs/today
  sensorium-serve adapt --base runs/default --data new/public --out runs/new-10min --minutes 10
  sensorium-serve export runs/today --repo model_repository     # then `serve --watch` (or `rescan`) loads it

The base run's shared core (and GRU) stays frozen; each new mouse gets a readout (positions started at RF
centres mapped from its data, as in training) and a shifter (copied from the base's first mouse), fitted on its
train trials (the first --minutes of them, in trial-index order = recording order) with early stopping on its
oracle trials. Writes RUN2/best.pt (only the new mice: `export` makes models of just them), RUN2/metrics.jsonl
and RUN2/adapt.json, and prints one line per mouse: minutes of data used, seconds taken, oracle correlation.
See docs/TRAINING.md ("A new recording, served in minutes").
"""


def add_adapt_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `adapt` with its handler."""
    p = subparsers.add_parser(
        "adapt",
        help="fit readouts for new neurons (a new recording) on a trained run's frozen core",
        description="Adapt a trained run to the new mice of --data: fit a readout (+ shifter) per new mouse on "
        "the run's frozen shared core, in minutes on a CPU, and write a run that `export` turns into models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--base", required=True, type=Path, help="trained run folder (best.pt) or checkpoint file")
    p.add_argument(
        "--data", required=True, type=Path, help="data root of the new recording(s), e.g. NEW/public"
    )
    p.add_argument("--out", required=True, type=Path, help="run folder to write (best.pt, metrics.jsonl)")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="use only the first M minutes of train trials (default: all)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=_DEFAULTS.epochs,
        help="most epochs of gradient fitting after the ridge start (0: the ridge start only, the fastest: "
        "about 2 percent lower oracle correlation on the synthetic benchmark, docs/BENCHMARKS.md)",
    )
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: CUDA when present"
    )
    p.add_argument(
        "--mouse",
        action="append",
        default=None,
        metavar="SESSION",
        help="adapt only this session (repeatable)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="model name of the (single) new mouse (default: its session folder name); the name of a model "
        "already in the repository makes `export` write a new version of it",
    )
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="AdamW learning rate")
    p.add_argument(
        "--patience",
        type=int,
        default=_DEFAULTS.early_stop_patience,
        help="epochs without improvement of the oracle correlation before stopping",
    )
    p.add_argument(
        "--val-trials",
        type=int,
        default=_DEFAULTS.val_trials,
        help="oracle trials scored each epoch, a fixed seeded subset (0: all)",
    )
    p.add_argument(
        "--cache-gb",
        type=float,
        default=_DEFAULTS.cache_gb,
        help="most memory for the frozen core's features; above it the core runs again for every batch",
    )
    p.add_argument(
        "--ridge",
        type=float,
        default=_DEFAULTS.ridge,
        help="penalty of the ridge-regression start of the readout weights (0: start from random weights)",
    )
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of initialisation and window order")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--force", action="store_true", help="overwrite an existing RUN2/best.pt")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.set_defaults(handler=_run_adapt)


def options_from_args(args: argparse.Namespace) -> AdaptOptions:
    values = dataclasses.asdict(_DEFAULTS) | {
        "epochs": args.epochs,
        "minutes": args.minutes,
        "lr": args.lr,
        "early_stop_patience": args.patience,
        "val_trials": args.val_trials,
        "cache_gb": args.cache_gb,
        "ridge": args.ridge,
        "seed": args.seed,
    }
    return AdaptOptions(**values)


def _run_adapt(args: argparse.Namespace) -> int:
    from models.adapt.adapter import adapt  # torch lives behind this import
    from models.data.reader import DataFormatError

    if (args.out / "best.pt").exists() and not args.force:
        log.error("adapt: %s exists (use --force to overwrite it)", args.out / "best.pt")
        return 2
    try:
        options = options_from_args(args)
    except ValueError as exc:
        log.error("adapt: %s", exc)
        return 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        result = adapt(
            args.base,
            args.data,
            args.out,
            options,
            device=args.device,
            mice=args.mouse,
            name=args.name,
            progress=not args.no_progress,
        )
    except (DataFormatError, FileNotFoundError, ValueError, KeyError) as exc:
        log.debug("adapt failed", exc_info=True)
        log.error("adapt failed: %s", exc)
        return 2
    for mouse in result.mice:
        print(mouse.summary())
    return 0
