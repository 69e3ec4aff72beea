"""`sensorium-serve insilico tuning` against a real server: an ONNX model whose neurons are Gabor cells with known
answers (server.testing's linear-filter graph with Gabor weights, softplus output) served by a real
`sensorium-serve serve` process, analysed through PredictClip by the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from insilico_support import Cell, gabor_pair, write_public

from models.insilico.results import TuningResult
from models.insilico.tuning import angle_difference
from server.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
MOUSE = "dynamic29515-10-12-Video-0123456789abcdef0123456789abcdef"
CELLS = [
    Cell(0.0, (18.0, 32.0)),
    Cell(45.0, (10.0, 16.0)),
    Cell(135.0, (26.0, 48.0)),
    Cell(90.0, (16.0, 50.0)),
]
GAIN = 3.0


def ops() -> object:
    import sys

    sys.path.append(str(ROOT / "tests"))
    from area_modules import load_module

    return load_module("ops_support", ROOT / "tests" / "ops" / "ops_support.py")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """(target, DIR/public, workdir) of a server holding MOUSE = the Gabor cells (receptive field 3 frames)."""
    from server.testing import TestModelParams, write_model

    support = ops()
    root = tmp_path_factory.mktemp("insilico-served")
    w = np.stack([gabor_pair(c)[0] for c in CELLS], axis=1) * GAIN
    params = TestModelParams(
        w=w.astype(np.float32),
        v=np.zeros((4, len(CELLS)), np.float32),
        h=np.array([1.0, 0.0, 0.0], np.float32),
        video_mean=80.0,
        video_std=55.0,
    )
    write_model(root / "repo", MOUSE, 1, params)
    public = write_public(root, MOUSE, len(CELLS))
    server = support.launch(root / "repo", root)  # type: ignore[attr-defined]
    try:
        support.wait_serving(server.target, server.proc, server.log_path)  # type: ignore[attr-defined]
        yield server.target, public, root
    finally:
        server.stop()


def test_tuning_through_predictclip_recovers_the_served_cells(served, capsys: pytest.CaptureFixture) -> None:
    target, public, root = served
    out = root / "results"
    code = cli_main(
        ["insilico", "tuning", "--target", target, "--model", MOUSE, "--data", str(public),
         "--out", str(out), "--flashes", "600", "--json"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["neurons"] == len(CELLS) and report["summary"]["source"] == f"served:{target}"
    assert "truth_check" not in report  # no --truth: no check
    result = TuningResult.load(out / MOUSE)
    np.testing.assert_array_equal(result.unit_ids, np.arange(1000, 1000 + len(CELLS)))  # the model's ids
    truth = np.array([c.orientation for c in CELLS])
    assert np.all(angle_difference(result.preferred_orientation, truth) < 5.0)
    centres = np.array([c.centre for c in CELLS])
    assert np.all(np.linalg.norm(result.rf_centre - centres, axis=1) < 1.0)
    assert np.all(result.simple_cell)  # linear filter + softplus: modulated at the temporal frequency
    # behaviour and grey level held at the means of the released statistics (write_public: ~20, ~2, ~30)
    bg = result.meta["background"]
    assert bg["behavior"][0] == pytest.approx(20.0, abs=1.0) and bg["pupil_center"][1] == pytest.approx(
        30, abs=1
    )
    assert result.meta["seconds"] > 0 and (out / MOUSE / "tuning.json").is_file()


def test_a_neuron_subset_and_the_table(served, capsys: pytest.CaptureFixture) -> None:
    target, public, root = served
    code = cli_main(
        ["insilico", "tuning", "--target", target, "--model", MOUSE, "--data", str(public), "--out",
         str(root / "subset"), "--neurons", "1002,1000", "--flashes", "80", "--label", "two"]
    )  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert "two: 2 neurons" in table and "median OSI" in table
    assert list(TuningResult.load(root / "subset" / "two").unit_ids) == [1002, 1000]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nobody"], "nobody"),
        (["--model", MOUSE, "--neurons", "1000,x"], "'x' is not a unit id"),
        (["--model", MOUSE, "--neurons", "5"], "unit id 5"),
        (["--model", MOUSE, "--flashes", "0"], "--flashes must be >= 1"),
    ],
)
def test_bad_requests_get_one_precise_line(served, args: list[str], message: str) -> None:
    target, public, root = served
    with pytest.raises(SystemExit) as exc:
        cli_main(
            ["insilico", "tuning", "--target", target, "--data", str(public), "--out", str(root / "x"), *args]
        )
    assert str(exc.value).startswith("insilico tuning:") and message in str(exc.value)


def test_without_released_statistics_it_asks_for_data(served) -> None:
    target, _, root = served
    with pytest.raises(SystemExit, match="give --data DIR/public"):
        cli_main(["insilico", "tuning", "--target", target, "--model", MOUSE, "--out", str(root / "y")])
