"""The closed-loop rig of docs/CLIENTS.md, in plain tritonclient, runs unchanged against the real server and
answers what StreamPredict answers (the block is taken from the document itself and run in a subprocess:
tritonclient cannot share a process with the server's `inference` stubs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from client.predictor import PredictorClient
from client.trials import open_session, trial_inputs

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLIENTS.md"
MARKER = "<!-- tritonclient-rig:"

PRELUDE = """
import sys
import numpy as np

target, mouse = sys.argv[1], sys.argv[2]
data = np.load(sys.argv[3])
trials = [{k: data[f"{i}_{k}"] for k in ("video", "behavior", "pupil_center")} for i in range(int(data["n"]))]
answered = []
react = answered.append
"""
EPILOGUE = """
np.save(sys.argv[4], np.stack(answered))
"""


def documented_rig() -> str:
    text = DOC.read_text()
    after = text[text.index(MARKER) :]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match is not None, "docs/CLIENTS.md: no python block after the tritonclient-rig marker"
    return match.group(1)


def test_the_documented_tritonclient_rig_runs_unchanged(live, tmp_path: Path) -> None:
    block = documented_rig()
    assert len(block.strip().splitlines()) <= 20  # "about ten lines" a rig developer can read at a glance
    folder = open_session(live.data, live.mouse)
    trials = [trial_inputs(folder, i) for i in (1, 2)]
    np.savez(
        tmp_path / "trials.npz",
        n=len(trials),
        **{
            f"{i}_{k}": getattr(t, k)
            for i, t in enumerate(trials)
            for k in ("video", "behavior", "pupil_center")
        },
    )
    script = tmp_path / "rig.py"
    script.write_text(PRELUDE + block + EPILOGUE)
    run = subprocess.run(
        [
            sys.executable,
            str(script),
            live.target,
            live.mouse,
            str(tmp_path / "trials.npz"),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    answered = np.load(tmp_path / "out.npy")
    with PredictorClient(live.target) as client:
        expected = []
        for t in trials:
            with client.open_stream(live.mouse) as stream:
                frames = zip(t.video, t.behavior, t.pupil_center, strict=True)
                expected += [stream.send(*f).responses for f in frames]
    assert answered.shape == (sum(t.n_frames for t in trials), live.n_neurons)
    np.testing.assert_allclose(answered, np.stack(expected), rtol=0, atol=1e-5)
    assert live.server_sessions() == 0  # sequence_end freed each trial's state
