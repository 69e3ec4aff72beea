"""Helpers: tiny models and tiny checkpoints in the real checkpoint format (TEAM-BRIEF: Checkpoint).

Imported by tests/export/conftest.py (fixtures) and the test modules (pytest runs with importlib mode, so
conftest puts this folder on sys.path; the distinctive module name avoids clashes with other areas).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH
from models.config import ModelConfig
from models.data.normalisation import NormalisationStats
from models.networks import MouseInfo, SensoriumModel, build_model

SESSIONS = {"dynamic00001-1-1-Video-" + "a" * 32: 7, "dynamic00002-2-2-Video-" + "b" * 32: 5}

TINY = {
    "factorised": ModelConfig(
        channels=(4, 6),
        spatial_input_kernel=5,
        temporal_input_kernel=3,
        spatial_hidden_kernel=3,
        temporal_hidden_kernel=3,
    ),
    "gru": ModelConfig(
        architecture="gru",
        channels=(4,),
        spatial_input_kernel=5,
        temporal_input_kernel=2,
        gru_channels=3,
        gru_input_kernel=3,
        gru_recurrent_kernel=3,
    ),
}


def tiny_mice(seed: int = 0) -> dict[str, MouseInfo]:
    rng = np.random.default_rng(seed)
    return {
        s: MouseInfo(
            np.sort(rng.choice(10_000, n, replace=False)).astype(np.int64), rng.uniform(0, 600, (n, 3))
        )
        for s, n in SESSIONS.items()
    }


def tiny_stats(n: int, seed: int = 0) -> NormalisationStats:
    rng = np.random.default_rng(seed)
    return NormalisationStats(
        video_mean=rng.uniform(60, 100, (FRAME_HEIGHT, FRAME_WIDTH)).astype(np.float32),
        video_std=rng.uniform(40, 60, (FRAME_HEIGHT, FRAME_WIDTH)).astype(np.float32),
        response_std=rng.uniform(5, 15, n).astype(np.float32),
        behavior_std=np.array([8.0, 2.0], np.float32),
        pupil_mean=np.array([30.0, 25.0], np.float32),
        pupil_std=np.array([4.0, 3.0], np.float32),
    )


def randomise(model: SensoriumModel, seed: int = 0) -> SensoriumModel:
    """Trained-looking BatchNorm statistics and positions spread over the map (fresh ones are trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.copy_(torch.rand(module.num_features, generator=g) - 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=g) + 0.5)
                module.bias.copy_(torch.rand(module.num_features, generator=g) - 0.5)
        for readout in model.readouts.values():
            readout.position_mlp[2].weight.mul_(4)
    return model.eval()


def make_model(architecture: str, seed: int = 0) -> SensoriumModel:
    torch.manual_seed(seed)
    return randomise(build_model(TINY[architecture], tiny_mice()), seed)


def write_checkpoint(path: Path, model: SensoriumModel, mice: dict[str, MouseInfo]) -> Path:
    checkpoint = {
        "config": model.config.to_dict(),
        "mice": {
            s: {
                "unit_ids": m.unit_ids,
                "coordinates": m.coordinates,
                "stats": tiny_stats(len(m.unit_ids), i).to_dict(),
            }
            for i, (s, m) in enumerate(mice.items())
        },
        "model_state": model.state_dict(),
        "epoch": 3,
        "optimizer_state": {},
        "scheduler_state": {},
        "best_score": 0.25,
        "history": [],
        "provenance": {
            "data_dir": "/data/public",
            "data_hash": "0" * 64,
            "data_seed": 7,
            "git_commit": "abc123",
            "created": "2026-11-27T00:00:00+00:00",
        },
        "validation": {s: {"oracle_single_trial_correlation": 0.3 + 0.1 * i} for i, s in enumerate(mice)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path
