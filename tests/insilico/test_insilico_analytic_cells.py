"""The whole analysis (stimuli -> model -> fits) on analytic cells whose answers are known: preferred
orientation and direction, selectivity, simple vs complex, receptive-field centre; files round trip."""

from __future__ import annotations

import numpy as np
import pytest
from insilico_support import CELLS, GaborCells

from models.insilico.experiment import NeuronSubset
from models.insilico.results import TuningResult, result_folders
from models.insilico.tuning import angle_difference


@pytest.fixture(scope="module")
def result(analytic_result: TuningResult) -> TuningResult:
    return analytic_result


def test_orientation_and_direction_of_known_cells(result: TuningResult) -> None:
    truth = np.array([c.orientation for c in CELLS])
    assert np.all(angle_difference(result.preferred_orientation, np.mod(truth, 180.0)) < 5.0)
    kinds = np.array([c.kind for c in CELLS])
    direction = kinds == "direction"
    assert angle_difference(result.preferred_direction[direction], truth[direction], 360.0)[0] < 10.0
    assert result.dsi[direction][0] > 0.5
    assert np.all(result.dsi[~direction] < 0.1)  # symmetric filters: no direction preference
    assert np.all(result.osi > 0.7) and np.all(result.amplitude > 0)
    assert np.all(result.preferred_sf == pytest.approx(1 / 14))


def test_simple_and_complex_cells_by_modulation_ratio(result: TuningResult) -> None:
    kinds = np.array([c.kind for c in CELLS])
    assert np.all(result.f1_f0[kinds == "complex"] < 0.3)
    assert np.all(result.f1_f0[kinds != "complex"] > 1.0)
    np.testing.assert_array_equal(result.simple_cell, kinds != "complex")


def test_receptive_field_centres_of_known_cells(result: TuningResult) -> None:
    truth = np.array([c.centre for c in CELLS])
    error = np.linalg.norm(result.rf_centre - truth, axis=1)
    assert np.all(error[:-1] < 1.0), error
    # 2 px from two edges half the field is off the screen: the fit extrapolates its peak, a few pixels off
    assert error[-1] < 3.5
    # the size is that of the response map: a nonlinearity sharpens it below the filter envelope (4 px)
    assert np.all((result.rf_sigma > 0.3) & (result.rf_sigma < 6.0))


def test_results_round_trip_through_files(result: TuningResult, tmp_path) -> None:
    path = result.save(tmp_path / "analytic")
    again = TuningResult.load(path)
    assert again.meta["model"] == "analytic" and "gratings" in again.meta["protocol"]
    np.testing.assert_array_equal(again.rf_centre, result.rf_centre)
    np.testing.assert_array_equal(again.f0, result.f0)
    assert result_folders(tmp_path) == {"analytic": tmp_path / "analytic"}
    summary = result.summary()
    assert summary["neurons"] == len(CELLS) and summary["receptive_fields_found"] == len(CELLS)
    assert sum(summary["orientation_histogram"]["counts"]) == summary["driven_by_gratings"] == len(CELLS)
    bad = tmp_path / "old" / "tuning.npz"
    bad.parent.mkdir()
    np.savez(bad, meta=np.array("{}"), unit_ids=np.arange(3))
    with pytest.raises(ValueError, match="lacks"):
        TuningResult.load(bad)


def test_a_neuron_subset_keeps_the_selected_units_in_order() -> None:
    model = GaborCells(CELLS)
    subset = NeuronSubset(model, [104, 100])
    video = np.full((2, 10, 36, 64), 80.0, np.float32)
    video[:, :, 10:20, 15:25] = 200.0
    b = np.zeros((2, 10, 2), np.float32)
    np.testing.assert_array_equal(subset.predict(video, b, b), model.predict(video, b, b)[..., [4, 0]])
    assert list(subset.unit_ids) == [104, 100] and subset.output_neurons == len(CELLS)
    with pytest.raises(LookupError, match="unit id 7"):
        NeuronSubset(model, [100, 7])
