"""The synthetic generator's own noise-free response function as a `ResponseModel` (the analysis's control).

`Population.rates` of a session rebuilt from its truth folder (models/data/synthetic/neurons.py), divided by the
released per-neuron response std when the public folder is at hand, so its units are the served models' (model units).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.synthetic import neurons
from models.data.synthetic.population import TEMPORAL_TAPS, Population, spatial_maps

WARMUP = 2 * TEMPORAL_TAPS  # frames dropped from each clip: the temporal kernels and calcium start from rest


class GeneratorModel:
    def __init__(self, unit_ids: np.ndarray, population: Population, response_std: np.ndarray | None = None):
        self.unit_ids = np.asarray(unit_ids, dtype=np.int64)
        self.population = population
        self.warmup = WARMUP
        self.scale = (
            np.ones(len(self.unit_ids), np.float32)
            if response_std is None
            else (1.0 / np.asarray(response_std, np.float32))
        )

    @classmethod
    def from_truth(
        cls, truth_session_dir: Path | str, public_session_dir: Path | str | None = None
    ) -> GeneratorModel:
        unit_ids, population = neurons.read_population(truth_session_dir)
        std = None
        if public_session_dir is not None and Path(public_session_dir).is_dir():
            from models.data.normalisation import NormalisationStats

            std = NormalisationStats.from_mouse(public_session_dir).response_std
        return cls(unit_ids, population, std)

    def predict(self, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
        out = []
        for v, b, p in zip(video, behavior, pupil_center, strict=True):
            rates = self.population.rates(spatial_maps(v), b.T, p.T)  # (N, T)
            out.append((rates[:, self.warmup :] * self.scale[:, None]).T)
        return np.stack(out).astype(np.float32)
