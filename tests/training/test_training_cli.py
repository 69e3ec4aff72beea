"""`sensorium-serve train`: help, option wiring, precise errors on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.training.cli import options_from_args
from server.cli import build_parser, main


def test_train_help_lists_the_contract_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--data", "--out", "--config", "--epochs", "--device", "--seed", "--resume", "torchrun"):
        assert option in out


def test_options_come_from_the_command_line(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--epochs", "7", "--batch-size", "3",
         "--grad-accum", "2", "--clip-frames", "40", "--lr", "0.01", "--seed", "9", "--val-trials", "5"]
    )  # fmt: skip
    options = options_from_args(args)
    assert (options.epochs, options.batch_size, options.grad_accum, options.clip_frames) == (7, 3, 2, 40)
    assert (options.lr, options.seed, options.val_trials) == (0.01, 9, 5)


def test_missing_data_folder_is_a_precise_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "nowhere"
    assert main(["train", "--data", str(missing), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    assert str(missing) in caplog.text and "missing dataset folder" in caplog.text


def test_bad_option_and_unknown_config_are_refused(
    tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "a"), "--batch-size", "0"]) == 2
    assert "batch_size must be >= 1" in caplog.text
    code = main(
        [
            "train",
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "b"),
            "--config",
            "nope",
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    assert "unknown model config 'nope'" in caplog.text
    code = main(
        [
            "train",
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "c"),
            "--clip-frames",
            "500",
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    assert "longer than the shortest training trial" in caplog.text
