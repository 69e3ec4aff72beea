"""`sensorium-serve train`: argument parsing only; torch is imported when the command runs."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from models.training.options import TrainOptions

_DEFAULTS = TrainOptions()
log = logging.getLogger("sensorium.train")

EPILOG = """\
examples:
  sensorium-serve train --data synth/public --out runs/default
  sensorium-serve train --data synth/public --out runs/default --resume        # continue from last.pt
  torchrun --standalone --nproc_per_node 4 -m server.cli train --data D/public --out runs/ddp --device cuda

writes RUN/last.pt (every epoch), RUN/best.pt (best oracle single-trial correlation), RUN/metrics.jsonl
(one JSON object per epoch). Under torchrun each process takes --batch-size clips of every step (the global
batch is batch-size x processes x grad-accum); only rank 0 writes. See docs/TRAINING.md.
"""


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `train` with its handler."""
    p = subparsers.add_parser(
        "train",
        help="train a model on a SENSORIUM data folder (Poisson loss, AdamW, early stopping)",
        description="Train one shared core with one readout per mouse on every mouse folder in --data. "
        "Early stopping and best.pt use the single-trial correlation on whole `oracle` trials.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", required=True, type=Path, help="data root with one folder per mouse (DIR/public)"
    )
    p.add_argument("--out", required=True, type=Path, help="run folder for checkpoints and metrics.jsonl")
    p.add_argument("--config", default="default", help="named model config (default, baseline, gru)")
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help="maximum number of epochs")
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: CUDA when present"
    )
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of initialisation and clip order")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt (same options)")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="clips per step per process")
    p.add_argument("--grad-accum", type=int, default=_DEFAULTS.grad_accum, help="micro-batches per step")
    p.add_argument("--clip-frames", type=int, default=_DEFAULTS.clip_frames, help="frames per training clip")
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay, help="AdamW weight decay")
    p.add_argument(
        "--lr-patience",
        type=int,
        default=_DEFAULTS.lr_patience,
        help=f"epochs without improvement before the lr is multiplied by {_DEFAULTS.lr_factor}",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=_DEFAULTS.early_stop_patience,
        help="epochs without improvement before training stops",
    )
    p.add_argument(
        "--val-trials",
        type=int,
        default=_DEFAULTS.val_trials,
        help="oracle trials per mouse scored each epoch, a fixed seeded subset (0: all)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads per process (default: torch's)"
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.set_defaults(handler=_run_train)


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    values = dataclasses.asdict(_DEFAULTS) | {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "clip_frames": args.clip_frames,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "lr_patience": args.lr_patience,
        "early_stop_patience": args.patience,
        "seed": args.seed,
        "val_trials": args.val_trials,
    }
    return TrainOptions(**values)


def _run_train(args: argparse.Namespace) -> int:
    from models.data.reader import DataFormatError
    from models.training.trainer import train  # torch lives behind this import

    try:
        options = options_from_args(args)
    except ValueError as exc:
        log.error("train: %s", exc)
        return 2
    try:
        train(
            data_dir=args.data,
            out_dir=args.out,
            config=args.config,
            options=options,
            device=args.device,
            resume=args.resume,
            threads=args.threads,
            progress=not args.no_progress,
        )
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        log.debug("train failed", exc_info=True)
        log.error("train failed: %s", exc)
        return 2
    return 0
