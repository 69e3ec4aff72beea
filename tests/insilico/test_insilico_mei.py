"""Most exciting inputs (torch, training side) on a tiny trained model: the budget holds, the MEI beats every
natural clip under the same budget, the file says what it holds, and the command line runs it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.insilico import mei
from models.insilico.results import MEIOptions, MEIResult
from models.training.options import TrainOptions
from models.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = MEIOptions(starts=2, steps=40, natural_clips=60, frames_out=4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(run folder, DIR/public, session) of a tiny model trained for a few epochs on tests/training's data."""
    sys.path.append(str(ROOT / "tests"))
    from area_modules import load_module

    training = load_module(
        "training_conftest", ROOT / "tests" / "training" / "conftest.py"
    )  # TINY_CONFIG, data
    root = tmp_path_factory.mktemp("mei")
    public = training.write_tiny_dataset(root, n_mice=1)  # type: ignore[attr-defined]
    options = TrainOptions(epochs=3, batch_size=4, clip_frames=24, lr=1e-2, seed=3)
    train(public, root / "run", training.TINY_CONFIG, options, device="cpu", threads=1, progress=False)  # type: ignore[attr-defined]
    return root / "run", public, "dynamic00001-1-1-Video-" + "a" * 32  # tiny_data.SESSIONS[0]


def test_projection_keeps_pixels_in_range_and_contrast_in_budget() -> None:
    x = torch.randn(3, 5, 36, 64) * 300 + 80
    y = mei.project(x, grey=80.0, contrast=30.0)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 255.0
    rms = mei.rms_contrast(y.numpy(), 80.0)
    assert np.all(rms <= 30.0 + 1e-3) and np.all(rms > 29.0)
    small = torch.full((1, 2, 36, 64), 85.0)
    torch.testing.assert_close(mei.project(small, 80.0, 30.0), small)  # inside the budget: untouched


def test_blur_keeps_constants_and_smooths_a_spike() -> None:
    flat = torch.full((2, 3, 36, 64), 2.5)
    torch.testing.assert_close(mei.gaussian_blur(flat, 1.5), flat)
    spike = torch.zeros(1, 1, 36, 64)
    spike[..., 18, 32] = 1.0
    blurred = mei.gaussian_blur(spike, 1.0)
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-5) and float(blurred.max()) < 0.2


def test_natural_clips_rescaled_to_the_budget() -> None:
    rng = np.random.default_rng(0)
    clips = rng.uniform(60, 100, (4, 6, 36, 64)).astype(np.float32)
    scaled = mei.to_budget(clips, 80.0, 25.0)
    np.testing.assert_allclose(mei.rms_contrast(scaled, 80.0), 25.0, rtol=1e-3)


def test_meis_beat_the_best_natural_clip_under_the_same_budget(trained, tmp_path: Path) -> None:
    run, public, session = trained
    summary = mei.run(run, session, tmp_path / "out", top=3, data=public, options=OPTIONS, progress=False)
    result = MEIResult.load(tmp_path / "out")
    budget = summary["contrast_budget"]
    assert result.mei.shape == (3, summary["frames"], 36, 64) and result.natural.shape == result.mei.shape
    assert np.all(mei.rms_contrast(result.mei, summary["grey"]) <= budget + 1e-3)
    assert np.all(mei.rms_contrast(result.natural, summary["grey"]) <= budget + 1e-3)
    assert result.mei.min() >= 0.0 and result.mei.max() <= 255.0
    assert np.all(result.mei_activation > result.natural_activation)
    np.testing.assert_allclose(result.mei_activation, result.start_activations.max(axis=1))
    assert np.all(np.diff(result.oracle_correlation) <= 0)  # the top 3, best first
    # the stored MEI, run through the model again, gives the stored activation
    from models.data.normalisation import NormalisationStats
    from models.data.reader import open_mouse
    from models.insilico.stimuli import Background
    from models.training.checkpoint import load_checkpoint
    from models.training.model import model_from_checkpoint

    checkpoint = load_checkpoint(run)
    stats = NormalisationStats.from_dict(checkpoint["mice"][session]["stats"])
    objective = mei.Objective(
        model_from_checkpoint(checkpoint),
        session,
        stats,
        Background.from_statistics(open_mouse(public / session).statistics),
    )
    ids = list(checkpoint["mice"][session]["unit_ids"])
    with torch.no_grad():
        again = objective.responses(torch.from_numpy(result.mei), OPTIONS.frames_out).numpy()
    neurons = [ids.index(u) for u in result.unit_ids]
    np.testing.assert_allclose(again[np.arange(3), neurons], result.mei_activation, rtol=1e-4)
    assert summary["min_ratio"] == pytest.approx(
        float(np.min(result.mei_activation / result.natural_activation))
    )


def test_command_line_mei(trained, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from server.cli import main as cli_main

    run, public, session = trained
    ids = "7,13"  # tiny_data unit ids are 3 i + 7
    code = cli_main(
        ["insilico", "mei", "--run", str(run), "--mouse", session, "--neurons", ids, "--data", str(public),
         "--out", str(tmp_path), "--steps", "5", "--starts", "1", "--natural-clips", "10", "--json"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert [n["unit_id"] for n in summary["neurons"]] == [7, 13]
    assert Path(summary["file"]) == tmp_path / session / "mei.npz"
    with pytest.raises(SystemExit, match="unit id 8"):
        cli_main(
            [
                "insilico",
                "mei",
                "--run",
                str(run),
                "--mouse",
                session,
                "--neurons",
                "8",
                "--data",
                str(public),
            ]
        )
    with pytest.raises(SystemExit, match="not in the checkpoint"):
        cli_main(
            ["insilico", "mei", "--run", str(run), "--mouse", "nobody", "--top", "2", "--data", str(public)]
        )
