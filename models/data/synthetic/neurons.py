"""Each synthetic neuron's true parameters, stored beside the hidden responses (numpy only).

Layout, one subfolder of a session's truth folder (``DIR/truth/<session>/neurons/``)::

    unit_ids.npy        (N,) int64     row order (as meta/unit_ids.npy)
    rf_centre.npy       (N, 2) float64 receptive-field centre [row, col] in screen pixels (pixel (i, j) is centred
                                       at (i, j)), with the eye at its mean position
    orientation.npy     (N,) float64   preferred orientation in degrees [0, 180): the drift axis of the grating
                                       that drives the neuron best (models.insilico.stimuli's convention)
    complex_cell.npy    (N,) bool      complex (energy) cell, else simple (half-rectified linear) cell
    behaviour_gain.npy  (N, 2) float64 [b_run, b_pupil]: log-gain per unit of running / pupil z-score
    population.npz                     every `Population` array: rebuilds the generator's response function
    scales.json                        the mouse's `BehaviourScales`

`write_neurons` is called by the generator; `read_truth` gives the comparable parameters, `read_population` the
noise-free response function itself (`Population.rates`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Final

import numpy as np

from models.data.synthetic.behaviour import BehaviourScales
from models.data.synthetic.population import N_ORIENTATIONS, POOL, Population

NEURONS_DIR: Final = "neurons"
_ARRAYS: Final = tuple(f.name for f in fields(Population) if f.name != "scales")


def screen_centres(population: Population) -> np.ndarray:
    """RF centres (N, 2) [row, col] in screen pixels: working pixel j covers screen pixels POOL*j .. POOL*j+1."""
    return population.centres.astype(np.float64) * POOL + (POOL - 1) / 2


def orientations_deg(population: Population) -> np.ndarray:
    """Preferred orientation (N,) in degrees [0, 180), y pointing up on the screen.

    Filter k's carrier has wave vector (cos t_k, sin t_k) in (col, row) = (x, -y) with t_k = k * 180 / 8 deg, so
    the preferred drift axis is at -t_k (mod 180) with y up.
    """
    return np.mod(-population.channel.astype(np.float64) * 180.0 / N_ORIENTATIONS, 180.0)


def write_neurons(truth_session_dir: Path | str, unit_ids: np.ndarray, population: Population) -> Path:
    """Write ``<truth_session_dir>/neurons/``; returns that folder."""
    folder = Path(truth_session_dir) / NEURONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "unit_ids.npy", np.asarray(unit_ids, dtype=np.int64))
    np.save(folder / "rf_centre.npy", screen_centres(population))
    np.save(folder / "orientation.npy", orientations_deg(population))
    np.save(folder / "complex_cell.npy", np.asarray(population.complex_cell, dtype=bool))
    np.save(folder / "behaviour_gain.npy", np.stack([population.beta_run, population.beta_pupil], axis=1))
    np.savez(folder / "population.npz", **{name: getattr(population, name) for name in _ARRAYS})
    (folder / "scales.json").write_text(json.dumps(asdict(population.scales), indent=1))
    return folder


@dataclass(frozen=True)
class NeuronTruth:
    """What an in-silico experiment can be checked against, per neuron (arrays of length N)."""

    session: str
    unit_ids: np.ndarray
    rf_centre: np.ndarray  # (N, 2) screen pixels [row, col]
    orientation: np.ndarray  # (N,) degrees [0, 180)
    complex_cell: np.ndarray  # (N,) bool
    behaviour_gain: np.ndarray  # (N, 2) [b_run, b_pupil]

    @property
    def n_neurons(self) -> int:
        return int(self.unit_ids.shape[0])


def _folder(truth_session_dir: Path | str) -> Path:
    folder = Path(truth_session_dir) / NEURONS_DIR
    if not (folder / "unit_ids.npy").is_file():
        raise FileNotFoundError(
            f"{folder}: no neuron parameters (datasets generated before they were stored lack them: "
            "regenerate with `sensorium-serve data synth`)"
        )
    return folder


def read_truth(truth_session_dir: Path | str) -> NeuronTruth:
    folder = _folder(truth_session_dir)

    def load(name: str) -> np.ndarray:
        return np.load(folder / f"{name}.npy", allow_pickle=False)

    return NeuronTruth(
        session=Path(truth_session_dir).name,
        unit_ids=load("unit_ids").astype(np.int64),
        rf_centre=load("rf_centre"),
        orientation=load("orientation"),
        complex_cell=load("complex_cell").astype(bool),
        behaviour_gain=load("behaviour_gain"),
    )


def read_population(truth_session_dir: Path | str) -> tuple[np.ndarray, Population]:
    """(unit_ids, Population) of one session: `Population.rates` is the generator's noise-free response."""
    folder = _folder(truth_session_dir)
    with np.load(folder / "population.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in _ARRAYS}
    scales = json.loads((folder / "scales.json").read_text())
    scales = BehaviourScales(
        **{
            **scales,
            "pupil_center_mean": tuple(scales["pupil_center_mean"]),
            "pupil_center_std": tuple(scales["pupil_center_std"]),
        }
    )
    unit_ids = np.load(folder / "unit_ids.npy", allow_pickle=False).astype(np.int64)
    return unit_ids, Population(**arrays, scales=scales)
