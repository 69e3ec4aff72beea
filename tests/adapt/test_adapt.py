"""`sensorium-serve adapt`: new readouts on a frozen core, early stopping on the oracle tier, a run that exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.adapt.adapter import adapt, build_adapted_model, first_minutes, oracle_correlation
from models.adapt.features import FrozenFeatures, Window
from models.adapt.options import AdaptOptions
from models.adapt.ridge import ridge_start
from models.export.repository import export_checkpoint
from models.networks import MouseInfo
from models.training.checkpoint import load_checkpoint
from models.training.data import MouseData, load_mice
from models.training.model import model_from_checkpoint
from models.training.validation import validate
from server.cli import main

NEW_SESSION = "dynamic00003-1-1-Video-" + "c" * 32


@pytest.fixture(scope="module")
def adapted(base_run: Path, new_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("adapted") / "run"
    return adapt(base_run, new_data, out, AdaptOptions(epochs=8, seed=1), device="cpu", progress=False)


def test_adapt_fits_the_new_readout_on_the_frozen_core(adapted, base_run: Path, new_data: Path) -> None:
    (result,) = adapted.mice
    assert result.name == result.session == NEW_SESSION and result.cached
    assert result.train_trials == 16 and result.minutes == pytest.approx(16 * 64 / 1800)
    assert 1 <= result.best_epoch <= result.epochs <= 8
    assert result.oracle_correlation > result.initial_correlation  # gradient fitting improved on the start
    checkpoint = load_checkpoint(adapted.run_dir)  # the training checkpoint contract holds
    base = load_checkpoint(base_run)
    assert list(checkpoint["mice"]) == [NEW_SESSION] and checkpoint["config"] == base["config"]
    assert np.array_equal(
        checkpoint["mice"][NEW_SESSION]["unit_ids"], load_mice(new_data)[NEW_SESSION].unit_ids
    )
    shared = [k for k in base["model_state"] if k.startswith("core.")]
    assert shared and all(torch.equal(checkpoint["model_state"][k], base["model_state"][k]) for k in shared)
    # The project's own whole-trial validation of the written run gives the oracle correlation adapt reported
    # (adapt scores from float16-cached core features).
    model = model_from_checkpoint(checkpoint)
    scores = validate(model, load_mice(new_data), torch.device("cpu"))
    assert scores["per_mouse"][NEW_SESSION] == pytest.approx(result.oracle_correlation, abs=2e-3)
    assert (
        checkpoint["validation"][NEW_SESSION]["oracle_single_trial_correlation"] == result.oracle_correlation
    )
    history = [json.loads(line) for line in (adapted.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, result.epochs + 1))
    summary = json.loads((adapted.run_dir / "adapt.json").read_text())
    assert summary["base_run"] == str((base_run / "best.pt").resolve()) or summary["base_run"] == str(
        base_run.resolve()
    )
    assert summary["mice"][NEW_SESSION]["minutes"] == result.minutes


def test_adapted_run_exports_through_the_parity_checks(adapted, tmp_path: Path) -> None:
    (exported,) = export_checkpoint(adapted.run_dir, tmp_path / "repo")
    assert exported.mouse == NEW_SESSION and exported.version == 1
    assert exported.report.step_vs_clip <= 1e-4 and exported.report.clip_vs_torch <= 1e-4
    metadata = json.loads((exported.step_dir / "metadata.json").read_text())
    assert metadata["provenance"]["adapted_from"]["mice"][NEW_SESSION]["train_trials"] == 16
    # adapting again (tomorrow's recording under the same model name): export writes the next version
    (again,) = export_checkpoint(adapted.run_dir, tmp_path / "repo")
    assert again.mouse == NEW_SESSION and again.version == 2


def test_first_minutes_takes_whole_trials_in_recording_order(new_data: Path) -> None:
    mouse = load_mice(new_data)[NEW_SESSION]
    train = np.sort(mouse.train_trials)
    assert np.array_equal(first_minutes(mouse, None), train)
    # 64-frame trials: 0.1 min = 180 frames holds two whole trials; less than one trial still gives one
    assert np.array_equal(first_minutes(mouse, 0.1), train[:2])
    assert np.array_equal(first_minutes(mouse, 0.01), train[:1])


def test_features_recomputed_per_batch_equal_the_cached_ones(base_run: Path, new_data: Path) -> None:
    mouse = MouseData(load_mice(new_data)[NEW_SESSION].folder)
    torch.manual_seed(0)
    model = build_adapted_model(
        load_checkpoint(base_run), {NEW_SESSION: MouseInfo(mouse.unit_ids, mouse.coordinates)}
    )
    trials = mouse.train_trials[:3]
    cached = FrozenFeatures(model, mouse, trials, torch.device("cpu"), cached=True)
    fresh = FrozenFeatures(model, mouse, trials, torch.device("cpu"), cached=False)
    windows = [Window(0, 5, 20), Window(2, 0, 20), Window(1, 42, 20)]
    for a, b in zip(cached.batch(windows), fresh.batch(windows), strict=True):
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)  # float16 cache
    torch.testing.assert_close(cached.trial_features(1), fresh.trial_features(1), atol=1e-2, rtol=1e-2)
    assert cached.trial_features(1).shape[0] == mouse.lengths[trials[1]] - model.receptive_field + 1


def test_ridge_start_beats_random_weights(base_run: Path, new_data: Path) -> None:
    mouse = load_mice(new_data)[NEW_SESSION]
    torch.manual_seed(0)
    model = build_adapted_model(
        load_checkpoint(base_run), {NEW_SESSION: MouseInfo(mouse.unit_ids, mouse.coordinates)}
    )
    model.readout(NEW_SESSION).initialize_bias(mouse.mean_response())
    train = FrozenFeatures(model, mouse, mouse.train_trials, torch.device("cpu"), cached=True)
    val = FrozenFeatures(model, mouse, mouse.oracle_trials, torch.device("cpu"), cached=True)
    random_weights = oracle_correlation(model, NEW_SESSION, val)
    ridge_start(model, NEW_SESSION, train)
    assert oracle_correlation(model, NEW_SESSION, val) > random_weights + 0.05


def test_adapt_command(
    base_run: Path,
    new_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    argv = ["adapt", "--base", str(base_run), "--data", str(new_data), "--out", str(tmp_path / "run"),
            "--epochs", "2", "--minutes", "0.3", "--name", "rig3-today", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert (
        line.startswith("adapted rig3-today: 0.3 min of data (8 train trials), ")
        and "oracle correlation" in line
    )
    assert list(load_checkpoint(tmp_path / "run")["mice"]) == ["rig3-today"]
    assert main([*argv, "--force", "--epochs", "0"]) == 0  # the ridge start only
    assert capsys.readouterr().out.strip().endswith("(the start, no epochs)")
    assert main([*argv, "--force", "--epochs", "0", "--ridge", "0"]) == 2
    assert "fit nothing" in caplog.text
    assert main(argv) == 2  # never overwrites a run without --force
    assert "exists (use --force" in caplog.text
    assert main([*argv, "--force", "--mouse", "nope"]) == 2
    assert "sessions ['nope'] are not in" in caplog.text
    if not torch.cuda.is_available():
        assert main([*argv, "--force", "--device", "cuda"]) == 2
        assert "torch sees no CUDA device" in caplog.text
