"""The results of `insilico tuning` per neuron, how they are derived from the raw measurements, and their files.

A results folder holds one subfolder per analysed model (its *label*)::

    OUT/<label>/tuning.npz        `TuningResult`: every per-neuron array + a JSON header (`meta`)
    OUT/<label>/tuning.json       `TuningResult.summary()`: what `--json` prints
    OUT/<label>/truth_check.json  agreement with the synthetic ground truth (models.insilico.truth_check)
    OUT/<label>/truth_check.npz   its per-neuron arrays (errors, test correlation)
    OUT/<label>/mei.npz           most exciting inputs (models.insilico.mei, training side)

The report pages (server/web/insilico.py) read these files only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import numpy as np

from models.insilico.experiment import GratingResponses, SparseNoiseMaps
from models.insilico.receptive_fields import fit_gaussian
from models.insilico.stimuli import Protocol
from models.insilico.tuning import SIMPLE_CELL_F1_F0, double_von_mises, fit_direction_tuning

TUNING_FILE: Final = "tuning.npz"
SUMMARY_FILE: Final = "tuning.json"
CHECK_FILE: Final = "truth_check.json"
CHECK_ARRAYS_FILE: Final = "truth_check.npz"
MEI_FILE: Final = "mei.npz"
ORIENTATION_BINS: Final = 8  # summary histogram of preferred orientations (22.5 deg wide)


@dataclass(frozen=True)
class TuningResult:
    """Everything `insilico tuning` measured and fitted for one model; arrays are per neuron (first axis N)."""

    meta: dict[str, Any]  # model, source, units, protocol, background, seconds, ...
    unit_ids: np.ndarray  # (N,)
    # drifting gratings
    f0: np.ndarray  # (N, directions, sfs, tfs) mean response
    f1: np.ndarray  # (N, directions, sfs, tfs) modulation amplitude at the temporal frequency
    baseline: np.ndarray  # (N,) response to grey
    preferred_sf: np.ndarray  # (N,) cycles per pixel
    preferred_tf: np.ndarray  # (N,) Hz
    direction_curve: np.ndarray  # (N, directions) F0 - baseline at the preferred sf, tf
    preferred_direction: np.ndarray  # (N,) degrees [0, 360)
    preferred_orientation: np.ndarray  # (N,) degrees [0, 180)
    osi: np.ndarray
    dsi: np.ndarray
    gosi: np.ndarray
    gdsi: np.ndarray
    amplitude: np.ndarray  # (N,) fitted response at the preferred direction, above baseline
    kappa: (
        np.ndarray
    )  # the fit: curve = tuning.double_von_mises(theta, preferred_direction, kappa, fit_b, ...)
    fit_b: np.ndarray
    fit_a_pref: np.ndarray
    fit_a_null: np.ndarray
    tuning_r2: np.ndarray
    f1_f0: np.ndarray  # (N,) modulation ratio at the preferred condition (> 1: simple cell)
    # sparse-noise receptive fields
    rf_map: np.ndarray  # (N, rows, cols)
    rf_rows: np.ndarray  # (rows,) screen pixels
    rf_cols: np.ndarray  # (cols,)
    rf_centre: np.ndarray  # (N, 2) [row, col] screen pixels, NaN where none was found
    rf_sigma: np.ndarray  # (N,)
    rf_amplitude: np.ndarray
    rf_r2: np.ndarray

    @property
    def n_neurons(self) -> int:
        return int(self.unit_ids.shape[0])

    def fitted_curves(self, rows: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
        """Fitted direction tuning (len(rows), K) of neurons `rows` at angles theta_deg (K,), above baseline."""
        return double_von_mises(
            theta_deg,
            self.preferred_direction[rows],
            self.kappa[rows],
            self.fit_b[rows],
            self.fit_a_pref[rows],
            self.fit_a_null[rows],
        )

    @property
    def simple_cell(self) -> np.ndarray:
        return self.f1_f0 > SIMPLE_CELL_F1_F0

    def save(self, folder: Path | str) -> Path:
        """Write tuning.npz and tuning.json into `folder` (created); returns the npz path."""
        path = _save_npz(self, Path(folder) / TUNING_FILE)
        (path.parent / SUMMARY_FILE).write_text(json.dumps(self.summary(), indent=1))
        return path

    @classmethod
    def load(cls, path: Path | str) -> TuningResult:
        """From tuning.npz (or the folder holding it)."""
        return cls(**_load_npz(Path(path), cls, TUNING_FILE))

    def summary(self) -> dict[str, Any]:
        """Population statistics (what `--json` prints and the report's index shows)."""
        tuned = self.amplitude > 0
        found = np.isfinite(self.rf_centre[:, 0])
        counts, _ = np.histogram(self.preferred_orientation[tuned], bins=ORIENTATION_BINS, range=(0.0, 180.0))
        return {
            **{k: self.meta.get(k) for k in ("model", "label", "source", "units", "seconds")},
            "neurons": self.n_neurons,
            "driven_by_gratings": int(tuned.sum()),
            "median_osi": _median(self.osi[tuned]),
            "median_dsi": _median(self.dsi[tuned]),
            "median_gosi": _median(self.gosi[tuned]),
            "share_osi_above_0.3": float(np.mean(self.osi[tuned] > 0.3)) if tuned.any() else None,
            "share_simple_cells": float(np.mean(self.simple_cell[tuned])) if tuned.any() else None,
            "orientation_histogram": {
                "bin_width_deg": 180.0 / ORIENTATION_BINS,
                "counts": [int(c) for c in counts],
            },
            "receptive_fields_found": int(found.sum()),
            "median_rf_sigma_px": _median(self.rf_sigma[found]),
            "median_rf_r2": _median(self.rf_r2[found]),
        }


def _save_npz(result: Any, path: Path) -> Path:
    """A result dataclass as one npz: its arrays, and its `meta` dict as a JSON string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f.name: getattr(result, f.name) for f in fields(result) if f.name != "meta"}
    np.savez_compressed(path, meta=np.array(json.dumps(result.meta)), **arrays)
    return path


def _load_npz(path: Path, cls: type, name: str) -> dict[str, Any]:
    """The fields of dataclass `cls` from the npz file `path` (or `path`/`name`) written by `_save_npz`;
    ValueError when it is not one."""
    path = path / name if path.is_dir() else path
    names = [f.name for f in fields(cls)]
    with np.load(path, allow_pickle=False) as data:
        missing = [n for n in names if n not in data.files]
        if missing:
            raise ValueError(
                f"{path}: not a {cls.__name__} file of this version (lacks {', '.join(missing)})"
            )
        values = {n: data[n] for n in names if n != "meta"}
        values["meta"] = json.loads(str(data["meta"]))
    return values


def _median(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def analyse(
    meta: dict[str, Any],
    unit_ids: np.ndarray,
    protocol: Protocol,
    gratings: GratingResponses,
    noise: SparseNoiseMaps,
) -> TuningResult:
    """Fit tuning curves and receptive fields to the raw measurements of `experiment.run_protocol`."""
    g = protocol.gratings
    n = len(unit_ids)
    evoked = gratings.f0 - gratings.baseline[:, None, None, None]  # (N, D, S, F)
    peak = evoked.max(axis=1).reshape(n, -1)  # best direction per (sf, tf)
    j, k = np.unravel_index(peak.argmax(axis=1), evoked.shape[2:])
    rows = np.arange(n)
    curves = evoked[rows, :, j, k]  # (N, D)
    fit = fit_direction_tuning(curves)
    nearest = np.rint(fit.preferred_direction / (360.0 / g.directions)).astype(int) % g.directions
    f0_pref = curves[rows, nearest]
    f1_pref = gratings.f1[rows, nearest, j, k]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_f0 = np.where(f0_pref > 0, f1_pref / f0_pref, np.nan)
    sn = protocol.sparse_noise
    rf_rows, rf_cols = sn.centres()
    rf = fit_gaussian(noise.maps, rf_rows, rf_cols, probe_sigma=sn.sigma)
    return TuningResult(
        meta={**meta, "protocol": protocol.to_dict()},
        unit_ids=np.asarray(unit_ids, dtype=np.int64),
        f0=gratings.f0.astype(np.float32),
        f1=gratings.f1.astype(np.float32),
        baseline=gratings.baseline.astype(np.float32),
        preferred_sf=np.asarray(g.spatial_frequencies)[j],
        preferred_tf=np.asarray(g.temporal_frequencies)[k],
        direction_curve=curves.astype(np.float32),
        preferred_direction=fit.preferred_direction,
        preferred_orientation=fit.preferred_orientation,
        osi=fit.osi,
        dsi=fit.dsi,
        gosi=fit.gosi,
        gdsi=fit.gdsi,
        amplitude=fit.amplitude,
        kappa=fit.kappa,
        fit_b=fit.baseline,
        fit_a_pref=fit.a_pref,
        fit_a_null=fit.a_null,
        tuning_r2=fit.r2,
        f1_f0=f1_f0,
        rf_map=noise.maps.astype(np.float32),
        rf_rows=rf_rows,
        rf_cols=rf_cols,
        rf_centre=rf.centre,
        rf_sigma=rf.sigma,
        rf_amplitude=rf.amplitude,
        rf_r2=rf.r2,
    )


@dataclass(frozen=True)
class MEIOptions:
    """The MEI recipe's parameters (models.insilico.mei), recorded with each result."""

    starts: int = 3
    steps: int = 100
    frames_out: int = 10  # output frames the objective averages over
    contrast: float | None = None  # RMS contrast budget, grey levels; None = median of the natural clips
    blur_start: float = 2.0  # gradient blur sigma (pixels) at the first step ...
    blur_end: float = 0.5  # ... and at the last (geometric in between)
    step_start: float = 10.0  # mean |change| per pixel (grey levels) at the first step ...
    step_end: float = 1.0  # ... and at the last
    natural_clips: int = 400
    seed: int = 0


@dataclass(frozen=True)
class MEIResult:
    """`insilico mei`'s output for K neurons (models.insilico.mei writes it)."""

    meta: dict[str, Any]  # summary: mouse, contrast budget, grey, options, per-neuron table, ...
    unit_ids: np.ndarray  # (K,)
    mei: np.ndarray  # (K, T, H, W) raw pixels
    mei_activation: np.ndarray  # (K,)
    start_activations: np.ndarray  # (K, starts)
    natural: np.ndarray  # (K, T, H, W) the best natural clip of each neuron, at the same budget
    natural_activation: np.ndarray  # (K,)
    oracle_correlation: np.ndarray  # (K,)

    def save(self, folder: Path | str) -> Path:
        return _save_npz(self, Path(folder) / MEI_FILE)

    @classmethod
    def load(cls, path: Path | str) -> MEIResult:
        """From mei.npz (or the folder holding it)."""
        return cls(**_load_npz(Path(path), cls, MEI_FILE))


def result_folders(root: Path | str) -> dict[str, Path]:
    """{label: folder} of every subfolder of `root` holding a tuning.npz or a mei.npz, sorted by label."""
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {p.parent for name in (TUNING_FILE, MEI_FILE) for p in root.glob(f"*/{name}")}
    return {p.name: p for p in sorted(found)}
