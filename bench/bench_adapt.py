"""Adapting to a new mouse: learning curve and wall time (`sensorium-serve adapt`, models/adapt).

On a new synthetic mouse of the default dataset's ground truth (`data synth --like`), single-trial correlation on
its main test tiers (live + final) after adapting the model trained on the other mice with its first 2, 5, 10
and 20 minutes of train data, side by side with (a) one model trained jointly on all mice including it (all its
train data) and (b) its oracle (noise-free rates); every score through `models.training.evaluate` (the project's
own evaluation against the truth folder). Then the wall time of `adapt` with 10 minutes of data at the demo size
(300 neurons) and at 8,000 neurons (median of --repeats).

Steps reuse what a previous run left in --workdir, so the work can be split into short runs on a shared CPU:

  python bench/bench_adapt.py --steps data,base          # synth (~1.5 min), train the base model (~6 min)
  python bench/bench_adapt.py --steps joint              # train on all 3 mice (~9 min)
  python bench/bench_adapt.py --steps curve,timing --json docs/benchmarks/adapt.json

Run each under `flock /work/.cpu.lock` on the shared development machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = ("data", "base", "joint", "curve", "timing")
CLI = [sys.executable, "-m", "server.cli"]
NEW_TRAIN_TRIALS = 120  # 20 minutes of 10 s trials: the longest point of the curve
BIG_NEURONS = 8000  # the real mice's size (7,440-8,285 neurons)
BIG_TRAIN_TRIALS = 60  # 10 minutes: what the timing row adapts on

log = logging.getLogger("bench_adapt")


def sh(*args: str) -> None:
    log.info("$ sensorium-serve %s", " ".join(args))
    subprocess.run([*CLI, *args], check=True)


def paths(work: Path) -> dict[str, Path]:
    return {
        "synth": work / "synth",  # the default dataset: 2 mice x 300 neurons, seed 0
        "new": work / "new",  # one new mouse of its ground truth, 20 minutes of train trials
        "big": work / "new-8000",  # one new mouse with 8,000 neurons, 10 minutes (timing only)
        "joint_data": work / "joint",  # all 3 mice (links), public + truth
        "base": work / "base-run",
        "joint": work / "joint-run",
    }


def step_data(p: dict[str, Path]) -> None:
    if not (p["synth"] / "synth.json").is_file():
        sh("data", "synth", "--out", str(p["synth"]))
    if not (p["new"] / "synth.json").is_file():
        sh("data", "synth", "--like", str(p["synth"]), "--out", str(p["new"]),
           "--train-trials", str(NEW_TRAIN_TRIALS))  # fmt: skip
    if not (p["big"] / "synth.json").is_file():
        sh(
            "data",
            "synth",
            "--like",
            str(p["synth"]),
            "--out",
            str(p["big"]),
            "--neurons",
            str(BIG_NEURONS),
            "--train-trials",
            str(BIG_TRAIN_TRIALS),
            "--ood-repeats",
            "1",
            "--none-trials",
            "0",
            "--no-oracle",
        )  # fmt: skip  (timing only: train and oracle tiers at the real size)
    for part in ("public", "truth"):  # the joint model's data: every mouse of both folders, linked
        folder = p["joint_data"] / part
        folder.mkdir(parents=True, exist_ok=True)
        for source in (p["synth"] / part, p["new"] / part):
            for session in source.iterdir():
                link = folder / session.name
                if not link.exists():
                    link.symlink_to(session.resolve(), target_is_directory=True)


def step_train(data: Path, run: Path) -> None:
    if not (run / "best.pt").is_file():
        sh("train", "--data", str(data / "public"), "--out", str(run), "--no-progress")


def main_tier_scores(run: Path, data: Path, session: str) -> dict[str, float]:
    """Model and oracle single-trial correlation of `session` on live/final main (models.training.evaluate)."""
    from models.training.evaluate import MAIN_TIERS, evaluate_against_truth

    results = evaluate_against_truth(run, data, MAIN_TIERS)
    out = {}
    for tier in MAIN_TIERS:
        out[f"{tier}"] = results[tier]["model"]["per_mouse"][session]
        out[f"{tier}_oracle"] = results[tier]["oracle"]["per_mouse"][session]
    out["main"] = statistics.mean(out[t] for t in MAIN_TIERS)
    out["main_oracle"] = statistics.mean(out[f"{t}_oracle"] for t in MAIN_TIERS)
    return out


def adapt_once(
    p: dict[str, Path], data: Path, out: Path, minutes: float, epochs: int | None = None
) -> dict[str, Any]:
    from models.adapt.adapter import adapt
    from models.adapt.options import AdaptOptions

    options = (
        AdaptOptions(minutes=minutes) if epochs is None else AdaptOptions(minutes=minutes, epochs=epochs)
    )
    started = time.perf_counter()
    result = adapt(p["base"], data / "public", out, options, device="cpu", progress=False)
    wall = time.perf_counter() - started
    (mouse,) = result.mice
    return {"wall_s": wall, **{k: v for k, v in mouse.__dict__.items() if k not in ("session", "name")}}


def step_curve(p: dict[str, Path], work: Path, minutes: list[float]) -> dict[str, Any]:
    session = json.loads((p["new"] / "synth.json").read_text())["sessions"][0]
    joint = main_tier_scores(p["joint"], p["joint_data"], session)
    rows = []
    for m in minutes:
        out = work / f"adapt-{m:g}min"
        fit = adapt_once(p, p["new"], out, m)
        scores = main_tier_scores(out, p["new"], session)
        rows.append({"minutes": m, **fit, **scores, "vs_joint": scores["main"] / joint["main"]})
        log.info("%g min: main %.4f (joint %.4f, ratio %.2f), oracle %.4f, %.1f s",
                 m, scores["main"], joint["main"], rows[-1]["vs_joint"], scores["main_oracle"], fit["wall_s"])  # fmt: skip
    return {"session": session, "joint": joint, "adapted": rows}


TIMING_VARIANTS = {"default": None, "start": 0}  # epochs: the defaults, or the ridge start only (--epochs 0)


def step_timing(
    p: dict[str, Path], work: Path, repeats: int, sizes: list[str], variants: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size, data in (("demo_300", p["new"]), (f"real_{BIG_NEURONS}", p["big"])):
        if size.split("_")[0] not in sizes:
            continue
        for variant in variants:
            label = size if variant == "default" else f"{size}_{variant}"
            epochs = TIMING_VARIANTS[variant]
            runs = [adapt_once(p, data, work / f"timing-{label}-{r}", 10.0, epochs) for r in range(repeats)]
            out[label] = {
                "wall_s": [r["wall_s"] for r in runs],
                "median_wall_s": statistics.median(r["wall_s"] for r in runs),
                "fit_s": [r["fit_seconds"] for r in runs],
                "epochs": [r["epochs"] for r in runs],
                "initial_correlation": [r["initial_correlation"] for r in runs],
                "oracle_correlation": [r["oracle_correlation"] for r in runs],
                "minutes": runs[0]["minutes"],
            }
            log.info("%s: adapt wall %s s (median %.1f), oracle correlation %s", label,
                     [round(r["wall_s"], 1) for r in runs], out[label]["median_wall_s"],
                     [round(r["oracle_correlation"], 4) for r in runs])  # fmt: skip
    return out


def table(curve: dict[str, Any]) -> str:
    joint = curve["joint"]
    lines = [
        f"{'model':<22} {'live main':>9} {'final main':>10} {'mean':>7} {'x joint':>8} {'x oracle':>8} "
        f"{'adapt s':>8} {'epochs':>6}"
    ]
    for row in curve["adapted"]:
        lines.append(
            f"{'adapted, ' + format(row['minutes'], 'g') + ' min':<22} {row['live_test_main']:>9.4f} "
            f"{row['final_test_main']:>10.4f} {row['main']:>7.4f} {row['vs_joint']:>8.2f} "
            f"{row['main'] / row['main_oracle']:>8.2f} {row['wall_s']:>8.1f} {row['epochs']:>6}"
        )
    lines.append(
        f"{'joint (all 3 mice)':<22} {joint['live_test_main']:>9.4f} {joint['final_test_main']:>10.4f} "
        f"{joint['main']:>7.4f} {1.0:>8.2f} {joint['main'] / joint['main_oracle']:>8.2f}"
    )
    lines.append(
        f"{'oracle':<22} {joint['live_test_main_oracle']:>9.4f} {joint['final_test_main_oracle']:>10.4f} "
        f"{joint['main_oracle']:>7.4f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-adapt")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {STEPS}")
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (median quoted)")
    parser.add_argument("--sizes", default="demo,real", help="timing: demo (300 neurons), real (8,000)")
    parser.add_argument(
        "--variants",
        default="default,start",
        help="timing: default options, start (--epochs 0: ridge start only)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write (merge) the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    p = paths(work)
    results: dict[str, Any] = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    load = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}  # per run: the 2 cores are shared
    if "data" in steps:
        step_data(p)
    if "base" in steps:
        step_train(p["synth"], p["base"])
    if "joint" in steps:
        step_train(p["joint_data"], p["joint"])
    if "curve" in steps:
        results["curve"] = step_curve(p, work, args.minutes)
        print(table(results["curve"]))
    if "timing" in steps:
        results["timing"] = results.get("timing", {}) | step_timing(
            p, work, args.repeats, args.sizes.split(","), args.variants.split(",")
        )
        for label, t in results["timing"].items():
            print(f"adapt wall time, {label}, {t['minutes']:.0f} min of data: median {t['median_wall_s']:.1f} s "
                  f"of {[round(w, 1) for w in t['wall_s']]}")  # fmt: skip
    results.setdefault("machine", {})[args.steps] = load | {"load_after": os.getloadavg()}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
