"""The synthetic truth of each neuron (truth/<session>/neurons/) and the check against it: the stored parameters
rebuild the generator's exact rates; the analysis run on that noise-free response function recovers them."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from insilico_support import QUICK

from models.data.normalisation import ScoredUnits
from models.data.oracle import oracle_single_trial_correlation
from models.data.reader import open_mouse
from models.data.synthetic.neurons import read_population, read_truth
from models.data.synthetic.population import spatial_maps
from models.data.truth import TruthFolder
from models.insilico.experiment import run_protocol
from models.insilico.generator_model import GeneratorModel
from models.insilico.results import TuningResult, analyse
from models.insilico.stimuli import Background
from models.insilico.truth_check import (
    TEST_TIER,
    compare,
    load_check,
    per_neuron_test_correlation,
    save_check,
)


def session_dirs(root: Path) -> tuple[Path, Path]:
    session = next((root / "truth").iterdir()).name
    return root / "public" / session, root / "truth" / session


def test_stored_parameters_rebuild_the_generators_rates(tiny_synth: Path) -> None:
    public_dir, truth_dir = session_dirs(tiny_synth)
    unit_ids, population = read_population(truth_dir)
    truth, public = TruthFolder(truth_dir), open_mouse(public_dir)
    np.testing.assert_array_equal(unit_ids, truth.unit_ids)
    trial = int(truth.trials(TEST_TIER)[0])
    n = public.length(trial)
    video = np.moveaxis(public.video(trial)[..., :n], -1, 0)
    rates = population.rates(
        spatial_maps(video), public.behavior(trial)[:, :n], public.pupil_center(trial)[:, :n]
    )
    np.testing.assert_allclose(rates, truth.rates(trial), rtol=1e-5, atol=1e-6)
    t = read_truth(truth_dir)
    np.testing.assert_allclose(t.rf_centre, population.centres * 2 + 0.5)  # working pixel j = screen 2j, 2j+1
    assert np.all(np.isin(t.orientation, np.arange(8) * 22.5))
    assert t.complex_cell.dtype == bool and t.behaviour_gain.shape == (t.n_neurons, 2)


@pytest.fixture(scope="module")
def generator_check(tiny_synth: Path) -> tuple[TuningResult, dict, object, np.ndarray]:
    public_dir, truth_dir = session_dirs(tiny_synth)
    model = GeneratorModel.from_truth(truth_dir, public_dir)
    background = Background.from_statistics(open_mouse(public_dir).statistics)
    gratings, noise = run_protocol(model, QUICK, background, progress=False)
    result = analyse({"model": truth_dir.name}, model.unit_ids, QUICK, gratings, noise)
    correlation = per_neuron_test_correlation(model, public_dir, truth_dir, progress=False)
    summary, arrays = compare(result, read_truth(truth_dir), correlation)
    return result, summary, arrays, correlation


def test_analysis_recovers_the_generators_truth(generator_check) -> None:
    _, summary, arrays, _ = generator_check
    everything = summary["all"]
    assert everything["neurons"] == 40
    assert everything["share_orientation_within_22.5"] >= 0.95
    assert everything["median_rf_centre_error_px"] <= 1.5  # the quick protocol; the slow test holds 1 px
    assert everything["share_type_correct"] >= 0.9
    assert sum(b["neurons"] for b in summary["by_test_correlation"]) == 40
    assert np.all(arrays.orientation_error <= 90.0)


def test_generator_test_correlation_is_the_oracle(tiny_synth: Path, generator_check) -> None:
    """Its predictions are the truth's noise-free rates: per-neuron test correlation = the oracle ceiling."""
    *_, correlation = generator_check
    public_dir, truth_dir = session_dirs(tiny_synth)
    oracle = oracle_single_trial_correlation(tiny_synth, (TEST_TIER,))[TEST_TIER][truth_dir.name]
    assert float(np.mean(correlation)) == pytest.approx(oracle, abs=1e-6)
    # and independently: rates vs responses of one neuron over the scored frames
    truth, units = TruthFolder(truth_dir), ScoredUnits.from_mouse(public_dir)
    trials = truth.trials(TEST_TIER)
    rate = np.concatenate([units.standardise(truth.rates(int(i)))[3, 50:300] for i in trials])
    resp = np.concatenate([units.standardise(truth.responses(int(i)))[3, 50:300] for i in trials])
    assert correlation[3] == pytest.approx(np.corrcoef(rate, resp)[0, 1], abs=1e-5)


def test_compare_counts_what_it_claims(tiny_synth: Path, generator_check, tmp_path: Path) -> None:
    result, _, _, correlation = generator_check
    truth = read_truth(session_dirs(tiny_synth)[1])
    wrong = result.preferred_orientation.copy()
    wrong[:10] = np.mod(truth.orientation[:10] + 40.0, 180.0)  # ten neurons 40 deg off
    off = dataclasses.replace(result, preferred_orientation=wrong)
    summary, arrays = compare(off, truth, correlation)
    base = np.mean(angle_ok := (arrays.orientation_error[10:] <= 22.5))
    assert summary["all"]["share_orientation_within_22.5"] == pytest.approx(base * 30 / 40)
    assert angle_ok.size == 30 and np.all(arrays.orientation_error[:10] == pytest.approx(40.0))
    save_check(tmp_path, summary, arrays)
    loaded = load_check(tmp_path)
    assert loaded is not None and loaded[0] == json.loads(json.dumps(summary))
    np.testing.assert_array_equal(loaded[1].orientation_error, arrays.orientation_error)
    with pytest.raises(ValueError, match="not in the truth"):
        compare(dataclasses.replace(result, unit_ids=result.unit_ids + 10**7), truth, correlation)


@pytest.mark.slow
def test_default_protocol_recovers_the_demo_datasets_truth(tmp_path: Path) -> None:
    """The done-when criterion on the `make demo` default dataset (one of its mice): preferred orientation within
    22.5 deg for >= 95 % of neurons, median RF-centre error <= 1 px, through the command line."""
    from models.data.synthetic import SynthConfig, generate

    data = tmp_path / "data"
    generate(data, SynthConfig(mice=1), progress=False)
    session = next((data / "truth").iterdir()).name
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "insilico", "tuning", "--generator", str(data), "--model", session,
         "--out", str(tmp_path / "insilico"), "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    check = json.loads(out.stdout)["truth_check"]["all"]
    assert check["neurons"] == 300
    assert check["share_orientation_within_22.5"] >= 0.95
    assert check["median_rf_centre_error_px"] <= 1.0
    assert (tmp_path / "insilico" / f"{session}-generator" / "truth_check.json").is_file()
