"""What the scorer needs to know about the hidden ground truth, behind one small interface.

`GroundTruth` is the interface; `FolderGroundTruth` reads the truth folder (``DIR/truth/<session>/``, never the
public copy) through `models.data.truth` and standardises responses with the per-neuron response precision of
`models.data.normalisation` (public statistics), the one definition training and export use too. The benchmark
harness plugs in a synthetic implementation, so a full-size submission can be scored without a full-size
dataset on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from models.benchmark import STIMULUS_FAMILIES
from models.data.normalisation import NormalisationStats
from models.data.truth import open_truth

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialInfo:
    """One trial of a mouse as the scorer sees it."""

    tier: str  # one of models.benchmark.TIERS
    stimulus: int  # repeat group: trials with the same id showed the same video
    family: str  # stimulus family name (models.benchmark.STIMULUS_FAMILIES)


class GroundTruth(Protocol):
    """Hidden truth of every mouse; responses come back standardised (r / std_r per neuron)."""

    def mice(self) -> list[str]:
        """Session names, sorted."""
        ...

    def unit_ids(self, mouse: str) -> np.ndarray:
        """(N,) int64 neuron ids in the row order of `responses`."""
        ...

    def trials(self, mouse: str) -> dict[int, TrialInfo]:
        """Every trial of the mouse (all tiers), by trial index."""
        ...

    def responses(self, mouse: str, trial: int) -> np.ndarray:
        """(N, T) float32 standardised responses of a trial, T = the trial's true length (NaN padding cut)."""
        ...


def tier_trials(truth: GroundTruth, tier: str) -> dict[str, list[int]]:
    """Trials of `tier` per mouse (mice without any trial in the tier are left out)."""
    out: dict[str, list[int]] = {}
    for mouse in truth.mice():
        trials = sorted(i for i, info in truth.trials(mouse).items() if info.tier == tier)
        if trials:
            out[mouse] = trials
    return out


class FolderGroundTruth:
    """`GroundTruth` of a truth folder (``DIR/truth``). Responses are read per trial on demand (nothing but the
    metadata stays in memory) and standardised with the response precision from the public statistics of the
    sibling public folder (``DIR/public/<session>/meta/statistics``; public by definition)."""

    def __init__(self, truth_dir: Path | str, public_dir: Path | str | None = None) -> None:
        self.truth_dir = Path(truth_dir)
        self.public_dir = Path(public_dir) if public_dir is not None else self.truth_dir.parent / "public"
        self._folders = open_truth(self.truth_dir)
        self._precision: dict[str, np.ndarray] = {}
        self._trials: dict[str, dict[int, TrialInfo]] = {}
        for session, folder in self._folders.items():
            public = self.public_dir / session
            if not public.is_dir():
                raise FileNotFoundError(
                    f"{public}: missing public folder of truth session {session!r} (its response statistics "
                    f"standardise the truth)"
                )
            stats = NormalisationStats.from_mouse(public)
            if stats.n_neurons != folder.n_neurons:
                raise ValueError(
                    f"{public}: {stats.n_neurons} neurons in the public statistics, {folder.n_neurons} in the truth"
                )
            self._precision[session] = stats.response_precision[:, None]
            self._trials[session] = {
                int(i): TrialInfo(
                    tier=str(tier),
                    stimulus=int(folder.video_ids[i]),
                    family=STIMULUS_FAMILIES.get(int(folder.stimulus_ids[i]), "none"),
                )
                for i, tier in enumerate(folder.tiers)
            }
        log.info(
            "ground truth: %d mice from %s (statistics from %s)",
            len(self._folders),
            truth_dir,
            self.public_dir,
        )

    def mice(self) -> list[str]:
        return sorted(self._folders)

    def unit_ids(self, mouse: str) -> np.ndarray:
        return self._folders[mouse].unit_ids

    def trials(self, mouse: str) -> dict[int, TrialInfo]:
        return self._trials[mouse]

    def responses(self, mouse: str, trial: int) -> np.ndarray:
        raw = self._folders[mouse].responses(trial)
        return np.multiply(raw, self._precision[mouse], dtype=np.float32)

    def rates(self, mouse: str, trial: int) -> np.ndarray:
        """(N, T) noise-free rates, standardised like the responses (the oracle predictor)."""
        raw = self._folders[mouse].rates(trial)
        return np.multiply(raw, self._precision[mouse], dtype=np.float32)
