#!/usr/bin/env python3
"""Export a real network with random weights (no training) into a model repository, for bench_serving.py.

A checkpoint in the real format (TEAM-BRIEF: Checkpoint) for one mouse with --neurons neurons and the named
model config (`baseline` = the SENSORIUM 2023 factorised baseline), then `models.export.export_checkpoint`
(the exporter's own parity checks run). Its step graph has the real compute and state sizes; only the
weights are random, which does not change the cost.

    .venv/bin/python bench/export_serving_model.py REPO [--config baseline] [--neurons 8000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH  # noqa: E402
from models.config import get_config  # noqa: E402
from models.data.normalisation import NormalisationStats  # noqa: E402
from models.export.repository import export_checkpoint  # noqa: E402
from models.networks import MouseInfo, build_model  # noqa: E402

MOUSE = "dynamic29515-10-12-Video-9f4c1b2e7a6d4c0e8b3f5a1d2c7e9b40"


def write_checkpoint(path: Path, config_name: str, neurons: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    mice = {
        MOUSE: MouseInfo(
            np.arange(neurons, dtype=np.int64), rng.uniform(0, 600, (neurons, 3)).astype(np.float32)
        )
    }
    model = build_model(get_config(config_name), mice).eval()
    stats = NormalisationStats(
        video_mean=np.full((FRAME_HEIGHT, FRAME_WIDTH), 80.0, np.float32),
        video_std=np.full((FRAME_HEIGHT, FRAME_WIDTH), 50.0, np.float32),
        response_std=rng.uniform(5, 15, neurons).astype(np.float32),
        behavior_std=np.array([8.0, 2.0], np.float32),
        pupil_mean=np.array([30.0, 25.0], np.float32),
        pupil_std=np.array([4.0, 3.0], np.float32),
    )
    checkpoint = {
        "config": model.config.to_dict(),
        "mice": {
            MOUSE: {
                "unit_ids": mice[MOUSE].unit_ids,
                "coordinates": mice[MOUSE].coordinates,
                "stats": stats.to_dict(),
            }
        },
        "model_state": model.state_dict(),
        "epoch": 0,
        "optimizer_state": {},
        "scheduler_state": {},
        "best_score": 0.0,
        "history": [],
        "provenance": {
            "data_dir": "none (random weights, bench/export_serving_model.py)",
            "data_hash": "0" * 64,
            "data_seed": seed,
            "git_commit": "",
            "created": "bench",
        },
        "validation": {MOUSE: {"oracle_single_trial_correlation": 0.0}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("repo", type=Path, help="model repository to write")
    parser.add_argument("--config", default="baseline", help="models.config name (default: baseline)")
    parser.add_argument("--neurons", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_checkpoint(Path(tmp) / "best.pt", args.config, args.neurons)
        for exported in export_checkpoint(checkpoint, args.repo):
            print(exported)
    return 0


if __name__ == "__main__":
    sys.exit(main())
