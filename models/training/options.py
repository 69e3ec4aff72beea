"""Training hyperparameters (numpy/torch free), stored in every checkpoint under `training`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

OFFICIAL_CLIP_FRAMES = 80  # the official baseline trains on 80-frame clips, batch 8 (SENSORIUM.md, Models)


@dataclass(frozen=True)
class TrainOptions:
    """How to train. Defaults are tuned so the `default` model meets the quality bar on the default synthetic
    dataset within a few minutes on a 2-core CPU (docs/benchmarks/training.md)."""

    epochs: int = 20  # the default model passes 0.7 x oracle at ~epoch 17 on the default data
    batch_size: int = 4  # clips per optimizer step *per process*; the global batch is batch_size x world
    grad_accum: int = 1  # micro-batches of batch_size per optimizer step (in each process)
    clip_frames: int = OFFICIAL_CLIP_FRAMES  # frames per training clip (whole trials for validation)
    lr: float = 1e-2  # official 5e-3 at batch 8; 1e-2 at batch 4 learned faster here (benchmarks/training.md)
    weight_decay: float = 1e-4
    lr_factor: float = 0.3  # ReduceLROnPlateau factor
    lr_patience: int = 3  # epochs without improvement before the lr is cut
    min_lr: float = 1e-5  # stop once the lr has been cut below this
    early_stop_patience: int = 8  # epochs without improvement of the oracle correlation before stopping
    threshold: float = 1e-3  # an improvement smaller than this (absolute) does not count
    seed: int = 0
    sync_batchnorm: bool = True  # DDP on CUDA only: torch's SyncBatchNorm needs GPU tensors
    val_chunk: int = 8  # whole oracle trials per forward pass in validation
    val_trials: int = 0  # oracle trials per mouse scored each epoch (0: all); a fixed, seeded subset

    def __post_init__(self) -> None:
        if self.val_trials < 0:
            raise ValueError(f"training option val_trials must be >= 0 (0: all), got {self.val_trials}")
        for name in ("epochs", "batch_size", "grad_accum", "clip_frames", "val_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"training option {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.lr_factor < 1.0:
            raise ValueError(f"training option lr_factor must be in (0, 1), got {self.lr_factor}")
        if self.lr <= 0:
            raise ValueError(f"training option lr must be > 0, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
