"""How to adapt (torch-free): the `adapt` command's defaults, stored in the run's checkpoint under `training`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AdaptOptions:
    """Fitting new readouts on a frozen core. Defaults reach the jointly trained model's quality on the default
    synthetic data within a minute on a 2-core CPU (docs/BENCHMARKS.md, adapting to a new mouse)."""

    epochs: int = (
        40  # most passes over the training frames (early stopping ends sooner); 0: the ridge start only
    )
    minutes: float | None = None  # use only the first M minutes of train trials (in trial-index order)
    window_frames: int = 64  # model output frames per training window (one random window per trial and epoch)
    batch_windows: int = 8  # windows per optimizer step
    lr: float = 1e-2
    weight_decay: float = 1e-4
    lr_factor: float = 0.3  # ReduceLROnPlateau factor on the oracle correlation
    lr_patience: int = 2
    min_lr: float = 1e-5
    early_stop_patience: int = 4  # epochs without improvement of the oracle correlation before stopping
    threshold: float = 1e-3  # an improvement smaller than this (absolute) does not count
    seed: int = 0
    val_trials: int = 0  # oracle trials scored each epoch (0: all); a fixed, seeded subset
    cache_gb: float = 4.0  # most memory for the core's cached features (float16); above it: recompute
    ridge: float = 1e-2  # penalty of the ridge-regression start of the feature weights (ridge.py); 0: random

    def __post_init__(self) -> None:
        for name in ("window_frames", "batch_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"adapt option {name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise ValueError(f"adapt option epochs must be >= 0 (0: the ridge start only), got {self.epochs}")
        if self.epochs == 0 and self.ridge == 0:
            raise ValueError("adapt options epochs 0 and ridge 0 fit nothing (the readout would stay random)")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"adapt option minutes must be > 0, got {self.minutes}")
        if self.lr <= 0:
            raise ValueError(f"adapt option lr must be > 0, got {self.lr}")
        if not 0.0 < self.lr_factor < 1.0:
            raise ValueError(f"adapt option lr_factor must be in (0, 1), got {self.lr_factor}")
        if self.val_trials < 0 or self.cache_gb < 0 or self.ridge < 0:
            raise ValueError("adapt options val_trials, cache_gb and ridge must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
