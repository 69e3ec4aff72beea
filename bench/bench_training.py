"""Training benchmark: time to train and single-trial correlation vs the oracle ceiling, per variant.

Trains each variant (a model config + training options) on one synthetic dataset and scores best.pt on the
test tiers against the truth folder (models.training.evaluate), side by side with the oracle (noise-free rate)
in one run. Results: a table on stdout and a JSON file (--json) with per-epoch histories.

  python bench/bench_training.py --data runs/synth-default --synth --variants default
  python bench/bench_training.py --data D --variants default,lr1e-2 --parallel 4 --device cuda --epochs 40

`--synth` writes the default synthetic dataset (`sensorium-serve data synth` defaults) to --data first when it
is missing. Variants run as separate processes (--parallel N at a time) so their timings do not share a
process; on a shared CPU run them one at a time (the default).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name -> (model config overrides of `default`, TrainOptions overrides)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "lr5e-3": ({}, {"lr": 5e-3}),
    "lr2e-2-batch8": ({}, {"lr": 2e-2, "batch_size": 8}),
    "clip50": ({}, {"clip_frames": 50}),
    "sigma0.2": ({"readout_init_sigma": 0.2}, {}),
    "wide48": ({"channels": [48]}, {}),
    "two-layers": ({"channels": [32, 32], "spatial_hidden_kernel": 5, "temporal_hidden_kernel": 5}, {}),
    "temporal15": ({"temporal_input_kernel": 15}, {}),
    "unpooled": ({"input_pool": 1, "spatial_input_kernel": 13}, {}),
    "baseline": ("baseline", {}),  # the official-size config
}


def run_variant(
    name: str, data: Path, out: Path, device: str, epochs: int | None, threads: int | None
) -> dict:
    """Train + evaluate one variant in this process."""
    from models.config import get_config
    from models.training.evaluate import evaluate_against_truth
    from models.training.options import TrainOptions
    from models.training.trainer import train

    overrides, train_overrides = VARIANTS[name]
    config = (
        get_config(overrides)
        if isinstance(overrides, str)
        else dataclasses.replace(
            get_config("default"), **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        )
    )
    options = TrainOptions(
        **(TrainOptions().to_dict() | train_overrides | ({"epochs": epochs} if epochs else {}))
    )
    run_dir = out / name
    started = time.perf_counter()
    result = train(data / "public", run_dir, config, options, device=device, threads=threads, progress=False)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    scores = evaluate_against_truth(run_dir, data, device=device)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "variant": name,
        "config": config.to_dict(),
        "options": options.to_dict(),
        "train_s": round(train_s, 1),
        "eval_s": round(time.perf_counter() - started, 1),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val": result.best_score,
        "tiers": scores,
        "history": history,
    }


def _subprocess(name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--data", str(args.data), "--out", str(args.out), "--device", args.device,
           "--one", name]  # fmt: skip
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"variant": name, "error": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    lines = [
        "| variant | train s | epochs (best) | val oracle-tier corr | main model | main oracle | main ratio "
        "| bonus model | bonus oracle | bonus ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error'].splitlines()[-1][:80]} |")
            continue

        def pooled(kind: str, which: str, r: dict = r) -> float:
            """Mean over the tiers of a track (live and final)."""
            tiers = [t for t in r["tiers"] if t.endswith(kind)]
            return sum(r["tiers"][t][which]["overall"] for t in tiers) / max(len(tiers), 1)

        m, o, bm, bo = (
            pooled("main", "model"),
            pooled("main", "oracle"),
            pooled("bonus", "model"),
            pooled("bonus", "oracle"),
        )
        lines.append(
            f"| {r['variant']} | {r['train_s']:.0f} | {r['epochs_run']} ({r['best_epoch']}) | {r['best_val']:.3f} "
            f"| {m:.3f} | {o:.3f} | {m / o:.2f} | {bm:.3f} | {bo:.3f} | {bm / bo:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="dataset root (DIR with public/ and truth/)")
    p.add_argument("--synth", action="store_true", help="generate the default synthetic dataset if missing")
    p.add_argument(
        "--meta-dir", type=Path, default=None, help="real metadata folder for --synth (default: its own)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench-training"), help="run folders")
    p.add_argument("--variants", default="default", help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=None, help="override the epochs of every variant")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--parallel", type=int, default=1, help="variants trained at the same time")
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(run_variant(args.one, args.data, args.out, args.device, args.epochs, args.threads)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.synth and not (args.data / "public").is_dir():
        from models.data.synthetic.generator import SynthConfig, generate

        started = time.perf_counter()
        cfg = SynthConfig(meta_dir=str(args.meta_dir)) if args.meta_dir else SynthConfig()
        generate(args.data, cfg, progress=False)
        logging.info("synthetic data written in %.0f s", time.perf_counter() - started)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    results: list[dict] = []
    with ThreadPoolExecutor(args.parallel) as pool:
        for result in pool.map(lambda n: _subprocess(n, args), names):
            results.append(result)
            logging.info("%s done:\n%s", result["variant"], table([result]))
            if args.json:  # written as results come in: a run cut short keeps what it has
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
