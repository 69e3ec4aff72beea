"""`data synth --like DIR --new-mice K`: new mice of the same ground truth (seed, filter bank, stimuli)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from models.data.reader import open_mouse
from models.data.synthetic import SynthConfig
from models.data.synthetic.behaviour import behaviour_traces
from models.data.synthetic.generator import _mouse_plan, like_config
from server.cli import main

BASE = SynthConfig(
    mice=2, neurons=8, seed=11, train_trials=2, repeats=1, ood_repeats=1, none_trials=0, calibration_movies=2
)


def _like_dir(root: Path) -> Path:
    """A dataset folder as `data synth` leaves it, as far as --like reads it (synth.json)."""
    root.mkdir(parents=True)
    (root / "synth.json").write_text(
        json.dumps({"generator": "sensorium-serve data synth", "config": asdict(BASE)})
    )
    return root


def test_like_config_draws_the_next_mice_of_the_same_generation(tmp_path: Path) -> None:
    cfg = like_config(_like_dir(tmp_path / "base"), 2, train_trials=3, neurons=10)
    assert (cfg.seed, cfg.mice, cfg.first_mouse, cfg.train_trials, cfg.neurons) == (11, 2, 2, 3, 10)
    assert cfg.calibration_movies == BASE.calibration_movies and cfg.repeats == BASE.repeats
    # The new mice are mice 2 and 3 of one generation of four: same sessions, neurons, trial plans.
    four = replace(BASE, mice=4, train_trials=3, neurons=10)
    for m in (2, 3):
        new, same = _mouse_plan(cfg, m), _mouse_plan(four, m)
        assert new.session == same.session and np.array_equal(new.unit_ids, same.unit_ids)
        assert np.array_equal(new.coordinates, same.coordinates) and new.trials == same.trials
    assert {_mouse_plan(cfg, m).session for m in (2, 3)}.isdisjoint(
        {_mouse_plan(BASE, m).session for m in (0, 1)}
    )
    with pytest.raises(ValueError, match="unknown synth option"):
        like_config(tmp_path / "base", 1, flavour=1)
    with pytest.raises(FileNotFoundError, match=r"no synth\.json"):
        like_config(tmp_path, 1)


def test_synth_like_command_writes_a_new_mouse_with_its_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _like_dir(tmp_path / "base")
    argv = ["data", "synth", "--like", str(base), "--out", str(tmp_path / "new"), "--no-oracle"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    manifest = json.loads((tmp_path / "new" / "synth.json").read_text())
    assert manifest["like"] == str(base) and manifest["config"]["first_mouse"] == 2
    (session,) = printed["sessions"]
    assert manifest["sessions"] == [session] and session == _mouse_plan(BASE, 2).session
    assert (tmp_path / "new" / "truth" / session / "rates").is_dir()
    # The generator seeds each mouse's draws by its mouse number (2 here), not its place in this run.
    mouse = open_mouse(tmp_path / "new" / "public" / session)
    scales = _mouse_plan(BASE, 2).scales
    for i in mouse.trials("train"):
        behavior, _ = behaviour_traces(np.random.default_rng([11, 3, 2, int(i)]), 300, scales)
        np.testing.assert_allclose(mouse.behavior(int(i)), behavior, rtol=1e-6)
    assert main(["data", "synth", "--like", str(base), "--out", str(tmp_path / "x"), "--seed", "3"]) == 2
    assert "--like takes the seed" in capsys.readouterr().err
    assert main(["data", "synth", "--like", str(tmp_path / "nothing"), "--out", str(tmp_path / "y")]) == 2
    assert "no synth.json" in capsys.readouterr().err
