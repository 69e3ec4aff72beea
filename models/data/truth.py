"""The hidden truth of a dataset: what the scoring service and oracle ceilings need (numpy only).

Layout, one folder per session beside the public copy (``DIR/public/<session>`` <-> ``DIR/truth/<session>``)::

    DIR/truth/<session>/responses/{i}.npy       (N, T_i) float32  true responses, raw units, true length (no padding)
    DIR/truth/<session>/rates/{i}.npy           (N, T_i) float32  noise-free rates: E[response] (raw units)
    DIR/truth/<session>/meta/tiers.npy          (n_trials,) str   same as the public tiers.npy
    DIR/truth/<session>/meta/stimulus_ids.npy   (n_trials,) int64 family id (models.benchmark.STIMULUS_FAMILIES),
                                                                  -1 for tier none (as the real metadata)
    DIR/truth/<session>/meta/video_ids.npy      (n_trials,) int64 same id = same video (repeats), -1 for none
    DIR/truth/<session>/meta/unit_ids.npy       (N,) int64         row order of responses / rates

`i` is the public trial index. Responses and rates are stored for the evaluation tiers (oracle and the four
test tiers); train responses are public already and `none` trials are never scored, so neither is stored
(this keeps a real-size replica's truth at ~6 GB per mouse instead of ~13 GB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np

from models.benchmark import STIMULUS_FAMILIES, TEST_TIERS, TIER_NONE, TIER_ORACLE, TIERS

TRUTH_TIERS: Final = (TIER_ORACLE, *TEST_TIERS)  # tiers whose responses and rates the truth folder holds


class TruthFormatError(ValueError):
    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


class TruthWriter:
    """Write one session's truth folder trial by trial."""

    def __init__(self, path: Path | str, unit_ids: np.ndarray, n_trials: int) -> None:
        self.path = Path(path)
        self.unit_ids = np.asarray(unit_ids, dtype=np.int64)
        self.tiers = np.full(n_trials, "", dtype="<U16")
        self.stimulus_ids = np.full(n_trials, -1, dtype=np.int64)
        self.video_ids = np.full(n_trials, -1, dtype=np.int64)
        for sub in ("responses", "rates", "meta"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def write_trial(
        self,
        index: int,
        tier: str,
        stimulus_id: int,
        video_id: int,
        responses: np.ndarray | None = None,
        rates: np.ndarray | None = None,
    ) -> None:
        """Record a trial; responses and rates (N, T) are stored only for `TRUTH_TIERS`."""
        self.tiers[index] = tier
        self.stimulus_ids[index] = stimulus_id if tier != TIER_NONE else -1
        self.video_ids[index] = video_id if tier != TIER_NONE else -1
        if tier in TRUTH_TIERS:
            if responses is None or rates is None:
                raise ValueError(f"trial {index} ({tier}): responses and rates are required")
            np.save(self.path / "responses" / f"{index}.npy", np.asarray(responses, dtype=np.float32))
            np.save(self.path / "rates" / f"{index}.npy", np.asarray(rates, dtype=np.float32))

    def close(self) -> Path:
        meta = self.path / "meta"
        np.save(meta / "tiers.npy", self.tiers)
        np.save(meta / "stimulus_ids.npy", self.stimulus_ids)
        np.save(meta / "video_ids.npy", self.video_ids)
        np.save(meta / "unit_ids.npy", self.unit_ids)
        return self.path


class TruthFolder:
    """Read one session's truth folder."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.session = self.path.name
        meta = self.path / "meta"
        self.tiers = self._load(meta / "tiers.npy").astype(str)
        self.stimulus_ids = self._load(meta / "stimulus_ids.npy").astype(np.int64)
        self.video_ids = self._load(meta / "video_ids.npy").astype(np.int64)
        self.unit_ids = self._load(meta / "unit_ids.npy").astype(np.int64)
        n = self.tiers.shape[0]
        for name, arr in (("stimulus_ids", self.stimulus_ids), ("video_ids", self.video_ids)):
            if arr.shape != (n,):
                raise TruthFormatError(
                    meta / f"{name}.npy", f"shape {arr.shape}, expected ({n},) like tiers.npy"
                )
        unknown = sorted(set(self.tiers.tolist()) - set(TIERS))
        if unknown:
            raise TruthFormatError(meta / "tiers.npy", f"unknown tier {unknown[0]!r}")
        bad = sorted(set(self.stimulus_ids[self.tiers != TIER_NONE].tolist()) - set(STIMULUS_FAMILIES))
        if bad:
            raise TruthFormatError(meta / "stimulus_ids.npy", f"unknown stimulus family id {bad[0]}")

    @staticmethod
    def _load(path: Path) -> np.ndarray:
        if not path.is_file():
            raise TruthFormatError(path, "missing file")
        return np.load(path, allow_pickle=False)

    @property
    def n_neurons(self) -> int:
        return int(self.unit_ids.shape[0])

    def trials(self, tier: str) -> np.ndarray:
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}")
        return np.flatnonzero(self.tiers == tier)

    def _trial_array(self, sub: str, index: int) -> np.ndarray:
        if self.tiers[index] not in TRUTH_TIERS:
            raise KeyError(
                f"{self.path}: trial {index} is tier {self.tiers[index]!r}; truth holds {TRUTH_TIERS}"
            )
        path = self.path / sub / f"{index}.npy"
        arr = self._load(path)
        if arr.ndim != 2 or arr.shape[0] != self.n_neurons:
            raise TruthFormatError(path, f"shape {arr.shape}, expected ({self.n_neurons}, T)")
        return arr

    def responses(self, index: int) -> np.ndarray:
        """(N, T) true responses, raw units."""
        return self._trial_array("responses", index)

    def rates(self, index: int) -> np.ndarray:
        """(N, T) noise-free rates (expected response), raw units."""
        return self._trial_array("rates", index)

    def family(self, index: int) -> str:
        return STIMULUS_FAMILIES[int(self.stimulus_ids[index])]


def open_truth(root: Path | str) -> dict[str, TruthFolder]:
    """All sessions under DIR/truth, keyed by session name."""
    root = Path(root)
    if not root.is_dir():
        raise TruthFormatError(root, "missing truth folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise TruthFormatError(root, "no session folders")
    return {f.name: TruthFolder(f) for f in folders}
