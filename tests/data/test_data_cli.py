"""`sensorium-serve data synth` end to end at a tiny size."""

from __future__ import annotations

import json

from server.cli import main


def test_cli_synth(tmp_path, capsys) -> None:
    out = tmp_path / "d"
    argv = [
        "data",
        "synth",
        "--out",
        str(out),
        "--mice",
        "1",
        "--neurons",
        "6",
        "--seed",
        "3",
        "--train-trials",
        "2",
        "--repeats",
        "1",
        "--ood-repeats",
        "1",
        "--no-oracle",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(printed["sessions"]) == 1
    session = printed["sessions"][0]
    assert (out / "public" / session / "meta" / "trials" / "tiers.npy").exists()
    assert (out / "truth" / session / "meta" / "video_ids.npy").exists()
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["config"]["seed"] == 3
    assert main(argv) == 2  # refuses a non-empty folder without --force
