"""`sensorium-serve score` and `leaderboard` against a running scoring server, from official parquet files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scoring_support import MOUSE_A, Scoring, truth_submission

from client.submission import TrialPrediction, write_submission
from models.benchmark import SUBMISSION_FILE_NAMES
from server.cli import main
from server.scoring.ground_truth import FolderGroundTruth

CONTRACT_KEYS = [
    "submission_id",
    "track",
    "tier",
    "single_trial_correlation",
    "correlation_to_average",
    "feve",
]


def test_score_json_follows_the_cli_contract(
    scoring: Scoring, truth: FolderGroundTruth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_submission(
        tmp_path / SUBMISSION_FILE_NAMES[("bonus", "final")], truth_submission(truth, "bonus", "final")
    )
    # track and tier come from the official file name
    assert main(["score", str(path), "--target", scoring.server.target, "--submitter", "kim", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == CONTRACT_KEYS
    assert (out["track"], out["tier"]) == ("bonus", "final")
    for metric in CONTRACT_KEYS[3:]:
        assert sorted(out[metric]) == ["overall", "per_family", "per_mouse"]
        assert sorted(out[metric]["per_mouse"]) == truth.mice()
        assert sorted(out[metric]["per_family"]) == ["drifting_gabor", "gaussian_dots"]
    assert out["single_trial_correlation"]["overall"] == pytest.approx(1.0, abs=1e-6)
    record = scoring.client.get_submission(out["submission_id"])
    assert record.scores.submitter == "kim"
    assert record.scores.label == path.name


def test_score_table_and_leaderboard(
    scoring: Scoring, truth: FolderGroundTruth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_submission(tmp_path / "mine.parquet", truth_submission(truth, "main", "live", kind="rates"))
    target = scoring.server.target
    argv = ["score", str(path), "--target", target, "--track", "main", "--tier", "live", "--submitter", "lee"]
    assert main([*argv, "--label", "oracle"]) == 0
    table = capsys.readouterr().out
    assert "main/live  by 'lee'  label 'oracle'" in table
    assert "single-trial corr" in table and "corr to average" in table and "FEVE" in table
    assert MOUSE_A in table and "overall" in table

    assert main(["leaderboard", "--target", target, "--track", "main", "--tier", "live"]) == 0
    board = capsys.readouterr().out
    assert "leaderboard main/live" in board and "lee" in board and "oracle" in board

    assert main(["leaderboard", "--target", target, "--json"]) == 0
    boards = json.loads(capsys.readouterr().out)["boards"]
    assert [(b["track"], b["tier"]) for b in boards] == [
        ("main", "live"),
        ("main", "final"),
        ("bonus", "live"),
        ("bonus", "final"),
    ]
    entry = boards[0]["entries"][0]
    assert (entry["rank"], entry["submitter"], entry["label"], entry["submitter_submissions"]) == (
        1,
        "lee",
        "oracle",
        1,
    )
    assert all(b["entries"] == [] for b in boards[1:])


def test_score_reports_a_refused_submission(
    scoring: Scoring, truth: FolderGroundTruth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trials = truth_submission(truth, "main", "live")
    bad = [
        TrialPrediction(t.mouse, t.trial_index, np.full_like(t.prediction, np.nan), t.neuron_ids)
        for t in trials
    ]
    path = write_submission(tmp_path / "nan.parquet", bad)
    code = main(["score", str(path), "--target", scoring.server.target, "--track", "main", "--tier", "live"])
    assert code == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "non-finite" in err and f"trial {bad[0].trial_index}" in err
    assert scoring.rows()["submissions"] == 0


def test_score_needs_track_and_tier_for_other_file_names(
    scoring: Scoring, truth: FolderGroundTruth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_submission(tmp_path / "preds.parquet", truth_submission(truth, "main", "live")[:1])
    assert main(["score", str(path), "--target", scoring.server.target]) == 2
    assert "--track and --tier are required" in capsys.readouterr().err
    assert (
        main(
            [
                "score",
                str(tmp_path / "missing.parquet"),
                "--target",
                scoring.server.target,
                "--track",
                "main",
                "--tier",
                "live",
            ]
        )
        == 2
    )
    assert "no such submission file" in capsys.readouterr().err


def test_the_main_server_serves_scoring_when_given_a_truth_folder(
    dataset: Path, truth: FolderGroundTruth, tmp_path: Path
) -> None:
    """`sensorium-serve serve --truth DIR/truth` wiring: server.app registers the service next to the others."""
    import asyncio

    from client.scoring import ScoringClient
    from server.app import SensoriumServer
    from server.config import Settings

    async def run() -> tuple[list[str], float]:
        (tmp_path / "repo").mkdir()
        settings = Settings(
            repo=tmp_path / "repo", host="127.0.0.1", port=0, http_port=-1, truth_dir=dataset / "truth",
            db_url=f"sqlite:///{tmp_path / 'main.sqlite'}",
        )  # fmt: skip
        server = SensoriumServer(settings)
        port = await server.start()
        try:

            def submit() -> float:
                with ScoringClient(f"127.0.0.1:{port}", timeout_s=60) as client:
                    record = client.submit(
                        truth_submission(truth, "main", "live"), "main", "live", "main-server"
                    )
                    return record.scores.metrics["single_trial_correlation"].overall

            return server.service_names, await asyncio.to_thread(submit)
        finally:
            await server.stop(0)

    names, score = asyncio.run(run())
    assert "sensorium.v1.Scoring" in names
    assert score == pytest.approx(1.0, abs=1e-6)
