"""`sensorium-serve data ...` subcommands (registered by server.cli). Heavy imports happen in the handlers."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.data.synthetic.generator import SynthConfig

log = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="datasets: synthesize SENSORIUM-format data with a known truth")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synth = commands.add_parser(
        "synth",
        help="write a synthetic dataset: DIR/public (released layout) + DIR/truth (hidden responses, rates)",
        description=(
            "Simulate a mouse V1 population watching naturalistic movies and the five OOD stimulus families, "
            "and write it in the released SENSORIUM 2023 layout (DIR/public/<session>/, test-tier responses "
            "zero) plus the hidden truth (DIR/truth/<session>/: true responses, noise-free rates, stimulus and "
            "video ids). Deterministic from --seed. The default (2 mice x 300 neurons) takes ~20-45 s and "
            "~1.3 GB here; --like-sensorium writes the 10 real mice at real size (~15 GB per mouse). "
            "See docs/DATA.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from models.data.synthetic.generator import SynthConfig  # numpy + tqdm only: cheap

    d = SynthConfig()
    synth.add_argument("--out", type=Path, required=True, help="output folder DIR")
    synth.add_argument(
        "--mice", type=int, default=d.mice, help="number of mice (with --like-sensorium: the first M of 10)"
    )
    synth.add_argument(
        "--neurons",
        type=int,
        default=argparse.SUPPRESS,
        help=f"neurons per mouse ({d.neurons}; ignored with --like-sensorium; with --like: the like dataset's)",
    )
    synth.add_argument(
        "--seed", type=int, default=argparse.SUPPRESS, help=f"random seed: same seed, same bytes ({d.seed})"
    )
    synth.add_argument(
        "--train-trials",
        type=int,
        default=argparse.SUPPRESS,
        help=f"train trials per mouse ({d.train_trials}; with --like: the like dataset's)",
    )
    synth.add_argument(
        "--repeats",
        type=int,
        default=argparse.SUPPRESS,
        help=f"repeats of each of the 6 clips per main tier ({d.repeats}; with --like: the like dataset's)",
    )
    synth.add_argument(
        "--ood-repeats",
        type=int,
        default=argparse.SUPPRESS,
        help=f"repeats of each OOD stimulus ({d.ood_repeats}; with --like: the like dataset's)",
    )
    synth.add_argument(
        "--none-trials",
        type=int,
        default=argparse.SUPPRESS,
        help=f"excluded (tier none) trials per mouse ({d.none_trials}; with --like: the like dataset's)",
    )
    synth.add_argument(
        "--like",
        type=Path,
        default=None,
        metavar="DIR",
        help="draw new mice of the same ground truth as the synthetic dataset DIR (its synth.json: same seed, "
        "filter bank and stimuli; new neurons and sessions, numbered after DIR's mice) into --out, with their "
        "truth folders; --neurons and --train-trials may differ (docs/TRAINING.md, adapting to a new mouse)",
    )
    synth.add_argument("--new-mice", type=int, default=1, help="with --like: how many new mice to draw")
    synth.add_argument(
        "--like-sensorium",
        action="store_true",
        help="the real mice: real neuron counts, coordinates, response scales, tiers, repeats and OOD families "
        "from the metadata folder (--mice defaults to 10 then)",
    )
    synth.add_argument(
        "--meta", type=Path, default=Path(d.meta_dir), help="real SENSORIUM 2023 metadata folder"
    )
    synth.add_argument(
        "--no-oracle", action="store_true", help="skip the oracle correlation summary at the end"
    )
    synth.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    synth.set_defaults(handler=_synth)


def _synth(args: argparse.Namespace) -> int:
    from models.data.synthetic.generator import SynthConfig

    out: Path = args.out
    if out.exists() and any(out.iterdir()) and not args.force:
        print(f"error: {out} is not empty (use --force to write into it)", file=sys.stderr)
        return 2
    given = {
        name: getattr(args, name)
        for name in ("neurons", "seed", "train_trials", "repeats", "ood_repeats", "none_trials")
        if hasattr(args, name)
    }
    for name in ("neurons", "train_trials", "repeats", "ood_repeats"):
        if given.get(name, 1) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if "none_trials" in given:
        given["none_trials"] = max(given["none_trials"], 0)
    if args.like is not None:
        return _synth_like(args, out, given)
    mice = args.mice if args.mice is not None else (10 if args.like_sensorium else SynthConfig().mice)
    if mice < 1:
        print("error: --mice must be >= 1", file=sys.stderr)
        return 2
    cfg = SynthConfig(mice=mice, like_sensorium=args.like_sensorium, meta_dir=str(args.meta), **given)
    return _generate(out, cfg, args.no_oracle)


def _synth_like(args: argparse.Namespace, out: Path, given: dict) -> int:
    from models.data.synthetic.generator import like_config

    if "seed" in given or args.like_sensorium:
        print(
            "error: --like takes the seed and kind of DIR's dataset (no --seed, --like-sensorium)",
            file=sys.stderr,
        )
        return 2
    if args.new_mice < 1:
        print("error: --new-mice must be >= 1", file=sys.stderr)
        return 2
    try:
        cfg = like_config(args.like, args.new_mice, **given)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _generate(out, cfg, args.no_oracle, like=args.like)


def _generate(out: Path, cfg: SynthConfig, no_oracle: bool, like: Path | None = None) -> int:
    from models.data.synthetic.generator import generate

    manifest = generate(out, cfg)
    if like is not None:
        manifest["like"] = str(like)  # the dataset whose ground truth these mice share
    if not no_oracle:
        from models.data.oracle import oracle_single_trial_correlation

        oracle = oracle_single_trial_correlation(out)
        manifest["oracle_single_trial_correlation"] = oracle
        for tier, per_mouse in oracle.items():
            values = ", ".join(f"{s.split('-Video-')[0]} {v:.3f}" for s, v in per_mouse.items())
            log.info("oracle single-trial correlation %-17s %s", tier, values)
    (out / "synth.json").write_text(json.dumps(manifest, indent=1))
    print(json.dumps({"out": str(out), "sessions": manifest["sessions"], "seconds": manifest["seconds"]}))
    return 0
