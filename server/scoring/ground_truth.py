"""What the scorer needs to know about the hidden ground truth, behind one small interface.

`GroundTruth` is the interface; `FolderGroundTruth` reads the truth folder (``DIR/truth/<session>/``, never the
public copy) through `models.data.truth` and puts responses in the scored units of the official loader
(`models.data.normalisation.ScoredUnits`: raw x the released response precision of each neuron *and frame*,
from the public statistics). The benchmark harness plugs in a synthetic implementation, so a full-size
submission can be scored without a full-size dataset on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from models.benchmark import STIMULUS_FAMILIES, TIER_ORACLE
from models.data.normalisation import ScoredUnits
from models.data.truth import open_truth

log = logging.getLogger(__name__)

PUBLIC_SCORED_TIERS = (TIER_ORACLE,)  # tiers a public folder can be scored on (released responses, held out)


@dataclass(frozen=True)
class TrialInfo:
    """One trial of a mouse as the scorer sees it."""

    tier: str  # one of models.benchmark.TIERS
    stimulus: int  # repeat group: trials with the same id showed the same video
    family: str  # stimulus family name (models.benchmark.STIMULUS_FAMILIES)


class GroundTruth(Protocol):
    """Hidden truth of every mouse; responses come back in scored units (r[n, t] / std_r[n, t], the official
    loader's standardisation)."""

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
        """(N, T) float32 responses of a trial in scored units, T = the trial's true length (NaN padding cut)."""
        ...


def tier_trials(truth: GroundTruth, tier: str) -> dict[str, list[int]]:
    """Trials of `tier` per mouse (mice without any trial in the tier are left out)."""
    out: dict[str, list[int]] = {}
    for mouse in truth.mice():
        trials = sorted(i for i, info in truth.trials(mouse).items() if info.tier == tier)
        if trials:
            out[mouse] = trials
    return out


class _SessionIndex:
    """The parts of a `GroundTruth` that come from per-session folders already opened: `_folders` (objects with
    `unit_ids`) and `_trials`, by session name."""

    _folders: dict
    _trials: dict[str, dict[int, TrialInfo]]

    def mice(self) -> list[str]:
        return sorted(self._folders)

    def unit_ids(self, mouse: str) -> np.ndarray:
        return self._folders[mouse].unit_ids

    def trials(self, mouse: str) -> dict[int, TrialInfo]:
        return self._trials[mouse]


class FolderGroundTruth(_SessionIndex):
    """`GroundTruth` of a truth folder (``DIR/truth``). Responses are read per trial on demand (nothing but the
    metadata stays in memory) and put in scored units with the response statistics of the sibling public folder
    (``DIR/public/<session>/meta/statistics``; public by definition), frame by frame."""

    def __init__(self, truth_dir: Path | str, public_dir: Path | str | None = None) -> None:
        self.truth_dir = Path(truth_dir)
        self.public_dir = Path(public_dir) if public_dir is not None else self.truth_dir.parent / "public"
        self._folders = open_truth(self.truth_dir)
        self._units: dict[str, ScoredUnits] = {}
        self._trials: dict[str, dict[int, TrialInfo]] = {}
        for session, folder in self._folders.items():
            public = self.public_dir / session
            if not public.is_dir():
                raise FileNotFoundError(
                    f"{public}: missing public folder of truth session {session!r} (its response statistics "
                    f"standardise the truth)"
                )
            units = ScoredUnits.from_mouse(public)
            if units.n_neurons != folder.n_neurons:
                raise ValueError(
                    f"{public}: {units.n_neurons} neurons in the public statistics, {folder.n_neurons} in the truth"
                )
            self._units[session] = units
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

    def responses(self, mouse: str, trial: int) -> np.ndarray:
        return self._units[mouse].standardise(self._folders[mouse].responses(trial))

    def rates(self, mouse: str, trial: int) -> np.ndarray:
        """(N, T) noise-free rates in scored units like the responses (the oracle predictor)."""
        return self._units[mouse].standardise(self._folders[mouse].rates(trial))


class PublicGroundTruth(_SessionIndex):
    """`GroundTruth` of a public folder (``DIR/public``) for the tiers whose responses are released (the oracle
    tier: what participants validate on locally). Same scored units as `FolderGroundTruth`; repeats are found by
    video identity (`models.metrics.group_repeats`), since the release ships no stimulus id; families are not
    released either ("none"). Trials of other tiers are listed (for membership checks) but never scored."""

    def __init__(self, public_dir: Path | str, tiers: tuple[str, ...] = PUBLIC_SCORED_TIERS) -> None:
        from models.data.reader import open_dataset
        from models.metrics.repeats import video_fingerprint

        self.public_dir = Path(public_dir)
        self._folders = open_dataset(self.public_dir, validate="off")
        if not self._folders:
            raise FileNotFoundError(f"{self.public_dir}: no session folders")
        self._units = {s: ScoredUnits.from_mouse(f) for s, f in self._folders.items()}
        self._trials: dict[str, dict[int, TrialInfo]] = {}
        for session, folder in self._folders.items():
            stimulus_of: dict[str, int] = {}
            trials = {}
            for i, tier in enumerate(folder.tiers):
                stimulus = -1
                if tier in tiers:
                    stimulus = stimulus_of.setdefault(video_fingerprint(folder.video(i)), len(stimulus_of))
                trials[i] = TrialInfo(tier=str(tier), stimulus=stimulus, family="none")
            self._trials[session] = trials
        self.tiers = tiers

    def responses(self, mouse: str, trial: int) -> np.ndarray:
        info = self._trials[mouse][trial]
        if info.tier not in self.tiers:
            raise KeyError(
                f"{self.public_dir / mouse}: trial {trial} is tier {info.tier!r}; its responses are not public"
            )
        return self._units[mouse].standardise(self._folders[mouse].responses(trial))
