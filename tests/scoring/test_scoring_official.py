"""The scoring service equals the official SENSORIUM 2023 metric (tests/scoring/official_reference.py, written from
the official code with no project imports) on the same files: time-resolved and per-neuron statistics, a
315-frame Gaussian-dot trial, neurons whose std is below the floor, a constant prediction. A file written the
way the official `generate_submission` writes it (pandas) scores 1.000 when it equals the standardised truth,
and offline scoring of the public oracle tier gives the service's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from official_reference import OfficialMouse, single_trial_correlation
from scoring_support import ServerThread

from client.scoring import ScoringClient
from client.submission import TrialPrediction, iter_submission, write_submission
from models.benchmark import DOTS_FRAMES, MOVIE_FRAMES, STIMULUS_FAMILIES
from models.data.truth import TruthWriter
from models.data.writer import MouseWriter
from server.cli import main
from server.config import Settings
from server.scoring.ground_truth import FolderGroundTruth

TIME_RESOLVED = "dynamic29515-10-12-Video-00000000000000000000000000000001"
PER_NEURON = "dynamic29623-4-9-Video-00000000000000000000000000000002"
NEURONS = {TIME_RESOLVED: 13, PER_NEURON: 9}
FAMILY = {name: fid for fid, name in STIMULUS_FAMILIES.items()}
# (tier, family, stimuli, repeats)
PLAN = (
    ("train", "natural_movie", 5, 1),
    ("oracle", "natural_movie", 2, 2),
    ("final_test_main", "natural_movie", 2, 2),
    ("final_test_bonus", "gaussian_dots", 1, 2),
    ("final_test_bonus", "drifting_gabor", 1, 2),
)
TIER = {"main": "final_test_main", "bonus": "final_test_bonus", "oracle": "oracle"}


def _write_mouse(root: Path, mouse: str, n: int, seed: int) -> None:
    """DIR/public (test responses hidden), DIR/hosted (the same files, test responses present: what the official
    scorer reads) and DIR/truth. Neuron 0 responds ~1e-5 of the others: its std is below the floor."""
    rng = np.random.default_rng(seed)
    unit_ids = rng.choice(np.arange(100, 50000), size=n, replace=False)
    coords = rng.uniform(0, 500, (n, 3))
    scale = 10 ** rng.uniform(-0.5, 0.5, n)
    scale[0] = 1e-5
    # one (tier, family, stimulus) key per trial, repeats included
    entries = [
        (tier, fam, s) for tier, fam, stimuli, repeats in PLAN for s in range(stimuli) for _ in range(repeats)
    ]
    order = rng.permutation(len(entries))
    writers = [
        MouseWriter(root / "public" / mouse, unit_ids, coords, len(entries), DOTS_FRAMES),
        MouseWriter(
            root / "hosted" / mouse, unit_ids, coords, len(entries), DOTS_FRAMES, hide_test_responses=False
        ),
    ]
    truth = TruthWriter(root / "truth" / mouse, unit_ids, len(entries))
    stimuli: dict[tuple[str, str, int], tuple[int, np.ndarray, np.ndarray]] = {}
    for index, j in enumerate(order):
        key = entries[j]
        tier, family, _ = key
        frames = DOTS_FRAMES if family == "gaussian_dots" else MOVIE_FRAMES
        if key not in stimuli:
            drive = np.cumsum(rng.standard_normal((n, frames)), axis=1) / 8
            rates = (scale[:, None] * np.exp(np.clip(drive, -4, 4))).astype(np.float32)
            video = rng.integers(0, 256, (36, 64, frames)).astype(np.float32)
            stimuli[key] = (len(stimuli), rates, video)
        video_id, rates, video = stimuli[key]
        responses = (rates * rng.gamma(2.0, 0.5, rates.shape)).astype(np.float32)
        behavior = np.abs(rng.normal(5, 1, (2, frames))).astype(np.float32)
        pupil = rng.normal(30, 2, (2, frames)).astype(np.float32)
        for w in writers:
            w.write_trial(index, tier, video, responses, behavior, pupil)
        truth.write_trial(index, tier, FAMILY[family], video_id, responses=responses, rates=rates)
    for w in writers:
        w.close()
    truth.close()


@pytest.fixture(scope="module")
def official_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("official")
    for seed, (mouse, n) in enumerate(NEURONS.items()):
        _write_mouse(root, mouse, n, seed + 3)
    # The second mouse ships per-neuron statistics (N,): the released (N, T) array collapsed, with neuron 0
    # below the floor; the hosted copy (the official scorer's input) gets the identical file.
    std_file = Path("meta/statistics/responses/all/std.npy")
    std = np.nanmean(np.load(root / "public" / PER_NEURON / std_file), axis=1).astype(np.float32)
    for copy in ("public", "hosted"):
        np.save(root / copy / PER_NEURON / std_file, std)
    return root


@pytest.fixture(scope="module")
def official_mice(official_dataset: Path) -> list[OfficialMouse]:
    return [OfficialMouse(official_dataset / "hosted" / m) for m in NEURONS]


@pytest.fixture(scope="module")
def scoring_server(official_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("official-db") / "scores.sqlite"
    settings = Settings(truth_dir=official_dataset / "truth", db_url=f"sqlite:///{db}")
    server = ServerThread(settings, truth=FolderGroundTruth(official_dataset / "truth"))
    with ScoringClient(server.target, timeout_s=60) as client:
        yield client
    server.stop()


def _noisy_submission(mice: list[OfficialMouse], tier: str, seed: int) -> list[TrialPrediction]:
    """Standardised truth + noise, rows in a shuffled neuron order, neuron 1 predicted by a constant."""
    rng = np.random.default_rng(seed)
    out = []
    for m in mice:
        for trial in m.trials(tier):
            truth = m.standardised_responses(trial, max_frame=None)[:, 50:]  # frames [50, T), the file's
            prediction = truth + rng.normal(0, 1.5, truth.shape) * truth.std()
            prediction[1] = 0.5
            perm = rng.permutation(len(m.unit_ids))
            out.append(TrialPrediction(m.name, trial, prediction[perm].astype(np.float32), m.unit_ids[perm]))
    return out


def _by_trial(trials: list[TrialPrediction]) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    out: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for t in trials:
        out.setdefault(t.mouse, {})[t.trial_index] = (t.neuron_ids, t.prediction)
    return out


@pytest.mark.parametrize("track", ["main", "bonus"])
def test_service_equals_the_official_single_trial_correlation(
    track: str, official_mice: list[OfficialMouse], scoring_server: ScoringClient
) -> None:
    tier = TIER[track]
    submission = _noisy_submission(official_mice, tier, seed=len(track))
    if track == "bonus":  # the 315-frame dot trials are there, submitted with T - 50 = 265 frames
        assert {t.prediction.shape[1] for t in submission} == {250, 265}
    reference = single_trial_correlation(official_mice, tier, _by_trial(submission))
    record = scoring_server.submit(submission, track, "final", submitter=f"official-{track}")
    scored = record.scores.metrics["single_trial_correlation"]
    assert scored.overall == pytest.approx(reference["overall"], abs=1e-6)
    assert set(scored.per_mouse) == set(NEURONS)
    for mouse, value in reference["per_mouse"].items():
        assert scored.per_mouse[mouse] == pytest.approx(value, abs=1e-6)
    assert 0.05 < reference["overall"] < 0.95  # a discriminating case, not a trivial 0 or 1

    # The test has teeth: the per-neuron (time-collapsed) standardisation gives another number.
    mouse = official_mice[0]
    assert mouse.precision.shape[1] == DOTS_FRAMES  # the released (N, T) shape
    collapsed = OfficialMouse(mouse.folder)
    collapsed.precision = 1 / np.maximum(
        np.nanmean(1 / mouse.precision, axis=1, keepdims=True), 0.01 * np.nanmean(1 / mouse.precision)
    )
    other = single_trial_correlation([collapsed], tier, _by_trial(submission))
    assert abs(other["overall"] - reference["per_mouse"][mouse.name]) > 1e-3


def _official_pandas_file(path: Path, mice: list[OfficialMouse], tier: str) -> Path:
    """What `generate_submission` writes, with the model replaced by the standardised truth: one pandas row per
    trial, `prediction` = `.tolist()` of the (neurons, T - 50) float32 array, `neuron_ids` uint32, brotli."""
    frames = []
    for m in mice:
        predictions, trial_indices = [], []
        for trial in m.trials(tier):
            truth = m.standardised_responses(trial, max_frame=None)  # the trial as the loader hands it over
            predictions.append(truth[:, 50:].astype(np.float32).tolist())
            trial_indices.append(trial)
        neuron_ids = np.asarray(m.unit_ids.tolist()).astype(np.uint32)
        frames.append(
            pd.DataFrame(
                {
                    "mouse": [m.name] * len(predictions),
                    "trial_indices": trial_indices,
                    "prediction": predictions,
                    "neuron_ids": [neuron_ids] * len(predictions),
                }
            )
        )
    pd.concat(frames, ignore_index=True).to_parquet(path, compression="brotli", engine="pyarrow", index=False)
    return path


@pytest.mark.parametrize("track", ["main", "bonus"])
def test_official_pandas_file_of_the_standardised_truth_scores_one(
    track: str, official_mice: list[OfficialMouse], scoring_server: ScoringClient, tmp_path: Path
) -> None:
    path = _official_pandas_file(tmp_path / f"{track}.parquet.brotli", official_mice, TIER[track])
    record = scoring_server.submit(iter_submission(path), track, "final", submitter=f"pandas-{track}")
    scored = record.scores.metrics["single_trial_correlation"]
    assert round(scored.overall, 3) == 1.0
    assert all(round(v, 3) == 1.0 for v in scored.per_mouse.values())


def test_offline_oracle_scoring_equals_the_service(
    official_dataset: Path,
    official_mice: list[OfficialMouse],
    scoring_server: ScoringClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    submission = _noisy_submission(official_mice, "oracle", seed=5)
    path = write_submission(tmp_path / "oracle.parquet.brotli", submission)
    argv = ["score", str(path), "--data", str(official_dataset / "public"), "--tier", "oracle", "--json"]
    assert main(argv) == 0
    offline = json.loads(capsys.readouterr().out)
    served = scoring_server.submit(
        iter_submission(path), "main", "oracle", submitter="oracle-check"
    ).to_json()
    assert offline["tier"] == served["tier"] == "oracle"
    for metric in ("single_trial_correlation", "correlation_to_average", "feve"):
        assert offline[metric]["overall"] == pytest.approx(served[metric]["overall"], abs=1e-9), metric
        assert offline[metric]["per_mouse"] == pytest.approx(served[metric]["per_mouse"], abs=1e-9), metric
    reference = single_trial_correlation(official_mice, "oracle", _by_trial(submission))
    assert offline["single_trial_correlation"]["overall"] == pytest.approx(reference["overall"], abs=1e-6)


def test_offline_scoring_refuses_hidden_tiers(
    official_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "predictions_final_main.parquet.brotli"
    path.write_bytes(b"")
    assert main(["score", str(path), "--data", str(official_dataset / "public")]) == 2
    assert "scores the public 'oracle' tier only" in capsys.readouterr().err
