"""A real exported model (tiny, exported by `models.export` in a subprocess) served end to end: streamed ==
PredictClip == in-process onnxruntime, concurrent streams equal each alone. Slow: the export takes ~10 s."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models import contract
from models.contract import ModelMetadata
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc

SCRIPT = Path(__file__).with_name("export_real_model.py")


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["factorised", "gru"])
def test_real_exported_model_streams_like_its_clip(serving, kit, tmp_path: Path, architecture: str) -> None:
    repo = tmp_path / "repo"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), architecture, str(repo)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    clip_dir = sorted(repo.glob("*-clip"))[0]
    mouse, _ = contract.split_repository_model_name(clip_dir.name)
    metadata = ModelMetadata.read(clip_dir / "1")
    r = metadata.receptive_field
    trials = [kit.make_trial(seed=50 + i, frames=r + 20) for i in range(3)]
    session = ort.InferenceSession(
        str(clip_dir / "1" / contract.MODEL_FILENAME), providers=["CPUExecutionProvider"]
    )
    references = [session.run(None, {k: v[None] for k, v in t.items()})[0][0] for t in trials]

    async def scenario():
        async with serving(repo=repo, max_batch_wait_ms=2.0) as srv:
            clip = await predictor_pb2_grpc.PredictorStub(srv.channel).PredictClip(
                predictor_pb2.PredictClipRequest(
                    model=mouse,
                    video=kit.tensor(trials[0]["video"].astype(np.uint8)),
                    behavior=kit.tensor(trials[0]["behavior"]),
                    pupil_center=kit.tensor(trials[0]["pupil_center"]),
                )
            )
            alone = [(await kit.stream_trial(srv.channel, t, model=mouse))[1] for t in trials]
            together = await asyncio.gather(
                *(kit.stream_trial(srv.channel, t, model=mouse, in_flight=3) for t in trials)
            )
            return clip, alone, [res for _, res in together]

    clip, alone, together = asyncio.run(scenario())
    np.testing.assert_allclose(kit.to_array(clip.responses), references[0], atol=1e-5, rtol=0)
    for reference, a, b in zip(references, alone, together, strict=True):
        streamed = np.stack([kit.to_array(x.responses) for x in a])
        assert np.abs(streamed[r - 1 :] - reference).max() <= 1e-4
        np.testing.assert_allclose(
            np.stack([kit.to_array(x.responses) for x in b]), streamed, atol=1e-5, rtol=0
        )
