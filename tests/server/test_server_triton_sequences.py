"""Triton clients unchanged on the step graphs: tritonclient.grpc (in a subprocess, triton_sequence_check.py)
drives sequences over ModelInfer and ModelStreamInfer, every sequence error, idle expiry and the repository,
configuration and statistics extensions; the answers are compared with StreamPredict and the clip graph."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from models import contract
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc

SCRIPT = Path(__file__).with_name("triton_sequence_check.py")
FRAMES = 300
START_TEXT = (
    "inference request for sequence {id} to model '{model}' must specify the START flag on the first request "
    "of the sequence"
)


async def _tritonclient(*args: str, timeout: float = 120) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode == 0, stderr.decode()
    return json.loads(stdout)


def _save_trials(path: Path, kit, frames: int = FRAMES) -> dict[str, dict[str, np.ndarray]]:
    trials = {"a": kit.make_trial(seed=41, frames=frames), "b": kit.make_trial(seed=42, frames=frames)}
    np.savez(path, **{f"{label}_{k}": v for label, t in trials.items() for k, v in t.items()})
    return trials


async def _clip(channel, kit, trial) -> np.ndarray:
    response = await predictor_pb2_grpc.PredictorStub(channel).PredictClip(
        predictor_pb2.PredictClipRequest(
            model=kit.MOUSE,
            video=kit.tensor(trial["video"]),
            behavior=kit.tensor(trial["behavior"]),
            pupil_center=kit.tensor(trial["pupil_center"]),
        )
    )
    return kit.to_array(response.responses)


def test_sequences_over_infer_and_stream_equal_stream_predict_and_clip(serving, kit, tmp_path: Path) -> None:
    trials = _save_trials(tmp_path / "trials.npz", kit)
    model = f"{kit.MOUSE}-step"

    async def scenario():
        async with serving() as srv:
            summary = await _tritonclient(
                "sequences", srv.target, model, str(tmp_path / "trials.npz"), str(tmp_path / "out.npz")
            )
            live_after = len(srv.app.plane.streams)
            reference = {}
            for label, trial in trials.items():
                _, frames = await kit.stream_trial(srv.channel, trial)
                reference[label] = np.stack([kit.to_array(f.responses) for f in frames])
                reference[f"{label}_clip"] = await _clip(srv.channel, kit, trial)
            gauge = srv.app.metrics.active_streams.labels(kit.MOUSE)._value.get()
            frames_counted = srv.app.metrics.frames.labels(kit.MOUSE)._value.get()
            return summary, live_after, reference, gauge, frames_counted

    summary, live_after, reference, gauge, frames_counted = asyncio.run(scenario())
    got = np.load(tmp_path / "out.npz")
    warm = kit.RECEPTIVE_FIELD - 1
    for name, label in (("unary", "a"), ("stream_a", "a"), ("stream_b", "b")):
        assert got[name].shape == (FRAMES, kit.N_NEURONS)
        np.testing.assert_allclose(got[name], reference[label], rtol=0, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(
            got[name][warm:], reference[f"{label}_clip"], rtol=0, atol=1e-5, err_msg=name
        )
    assert np.abs(got["stream_a"] - got["stream_b"]).max() > 0.1  # two interleaved sequences did not mix
    # One answer per request, in request order, the failed one in place; the stream went on after it.
    assert summary["order"] == [("<error>" if r == "bad" else r) for r in summary["sent"]]
    assert summary["stream_errors"] == [START_TEXT.format(id=999, model=model)]
    # END freed every sequence (the last one was START + END in one request); the gauge counts sequences too.
    assert live_after == 0 and gauge == 0 and frames_counted >= 3 * FRAMES
    # ModelMetadata: the implicit state is not the client's business.
    meta = summary["metadata"]
    assert [(i["name"], [int(d) for d in i["shape"]]) for i in meta["inputs"]] == [
        ("video", [-1, 36, 64]),
        ("behavior", [-1, 2]),
        ("pupil_center", [-1, 2]),
    ]
    assert [(o["name"], [int(d) for d in o["shape"]]) for o in meta["outputs"]] == [
        ("responses", [-1, kit.N_NEURONS])
    ]
    params = summary["response_parameters"]
    assert (
        params["sensorium_warm"] == "bool_param: false" and params["sensorium_batch_size"] == "int64_param: 1"
    )
    assert float(params["sensorium_server_seconds"].split()[-1]) > 0


def test_every_sequence_error_answers_tritons_status_and_text(serving, kit, tmp_path: Path) -> None:
    _save_trials(tmp_path / "trials.npz", kit, frames=8)
    model = f"{kit.MOUSE}-step"

    async def scenario():
        async with serving() as srv:
            out = await _tritonclient("errors", srv.target, model, str(tmp_path / "trials.npz"))
            return out, len(srv.app.plane.streams)

    out, live = asyncio.run(scenario())
    invalid = "StatusCode.INVALID_ARGUMENT"
    assert out["no_start"] == {"status": invalid, "message": START_TEXT.format(id=55, model=model)}
    assert out["after_end"] == {"status": invalid, "message": START_TEXT.format(id=56, model=model)}
    assert out["no_sequence_id"] == {
        "status": invalid,
        "message": f"inference request to model '{model}' must specify a non-zero or non-empty correlation ID",
    }
    assert out["batch_of_two"] == {
        "status": invalid,
        "message": f"inference request to model '{model}' must specify batch-size 1 due to requirements of "
        "sequence batcher",
    }
    # The failed START started nothing; a START on a live id restarted it from zero state; it then went on.
    assert out["after_failed_start"] == {"status": invalid, "message": START_TEXT.format(id=58, model=model)}
    assert out["restart_max_diff"] == 0.0 and out["restart_continues"] is None
    assert live == 0


def test_an_idle_sequence_expires_after_the_configs_max_sequence_idle(
    serving, kit, model_repo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    config = repo / f"{kit.MOUSE}-step" / contract.CONFIG_FILENAME
    text = config.read_text()
    assert "max_sequence_idle_microseconds: 5000000" in text
    config.write_text(
        text.replace("max_sequence_idle_microseconds: 5000000", "max_sequence_idle_microseconds: 300000")
    )
    _save_trials(tmp_path / "trials.npz", kit, frames=4)
    model = f"{kit.MOUSE}-step"

    async def scenario():
        async with serving(repo=repo) as srv:
            out = await _tritonclient("expiry", srv.target, model, str(tmp_path / "trials.npz"), "1.0")
            return out, srv.app.metrics.evictions._value.get(), len(srv.app.plane.streams)

    out, evictions, live = asyncio.run(scenario())
    assert out["expired"] == {
        "status": "StatusCode.INVALID_ARGUMENT",
        "message": START_TEXT.format(id=77, model=model),
    }
    assert out["restarted"] is None and live == 1  # a new START works; that sequence is live
    assert evictions == 1  # the evictor freed the idle sequence's state before the late request came


def test_repository_config_and_statistics_as_triton_reports_them(serving, kit, tmp_path: Path) -> None:
    _save_trials(tmp_path / "trials.npz", kit, frames=8)
    step, other_clip = f"{kit.MOUSE}-step", f"{kit.OTHER_MOUSE}-clip"

    async def scenario():
        async with serving() as srv:
            await _tritonclient("errors", srv.target, step, str(tmp_path / "trials.npz"))  # traffic to count
            out = await _tritonclient("repository", srv.target, step, other_clip)
            versions = [e.version for e in srv.app.plane.registry.versions(other_clip)]
            return out, versions

    out, versions_after = asyncio.run(scenario())
    assert out["extensions"] == ["model_repository", "model_configuration", "statistics", "sequence"]
    index = {(m["name"], m.get("version", "")): (m["state"], m.get("reason", "")) for m in out["index"]}
    assert index == {
        (f"{mouse}-{kind}", str(v)): ("READY", "")
        for mouse, vs in ((kit.MOUSE, (1, 2)), (kit.OTHER_MOUSE, (1,)))
        for kind in ("clip", "step")
        for v in vs
    }
    # config.pbtxt as written by the exporter: implicit state, batch axis, the idle time the server applies.
    config = out["step_config"]
    assert (
        config["name"] == step and config["platform"] == "onnxruntime_onnx" and config["max_batch_size"] == 8
    )
    assert [(i["name"], i["dims"]) for i in config["input"]] == [
        ("video", ["36", "64"]),
        ("behavior", ["2"]),
        ("pupil_center", ["2"]),
    ]
    sequence = config["sequence_batching"]
    assert sequence["max_sequence_idle_microseconds"] == "5000000"
    assert [(s["input_name"], s["output_name"], s["dims"]) for s in sequence["state"]] == [
        ("state_in_0", "state_out_0", [str(kit.RECEPTIVE_FIELD - 1), str(kit.N_NEURONS)]),
        ("state_in_1", "state_out_1", ["1"]),
    ]
    assert all(s["initial_state"][0]["zero_data"] for s in sequence["state"])
    assert out["clip_config"]["name"] == other_clip and "dynamic_batching" in out["clip_config"]
    # Statistics of the step model: every version, the newest carries the "errors" scenario's traffic.
    stats = {s["version"]: s for s in out["statistics"]["model_stats"]}
    assert set(stats) == {"1", "2"} and all(s["name"] == step for s in stats.values())
    assert "inference_count" not in stats["1"]  # proto3 JSON leaves zeros out: version 1 had no traffic
    v2 = stats["2"]
    # ids 56: 2 frames; 57: 3, then 3 after the restart and 1 more; "fresh": 3 (triton_sequence_check.py)
    successes = 2 + 7 + 3
    assert int(v2["inference_count"]) == successes == int(v2["execution_count"])
    infer = v2["inference_stats"]
    assert (
        int(infer["success"]["count"]) == successes and int(infer["fail"]["count"]) == 1
    )  # the batch of two
    for part in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert int(infer[part]["count"]) == successes
    assert 0 < int(infer["compute_infer"]["ns"]) < int(infer["success"]["ns"])
    assert int(v2["last_inference"]) > 1.7e12  # milliseconds since the epoch
    assert v2["batch_stats"] == [
        {
            "batch_size": "1",
            "compute_input": {"count": str(successes)},
            "compute_infer": {"count": str(successes), "ns": infer["compute_infer"]["ns"]},
            "compute_output": {"count": str(successes)},
        }
    ]
    everything = {(s["name"], s["version"]) for s in out["all_statistics"]["model_stats"]}
    assert everything == set(index)
    # Unload / load map onto the registry; Triton's index lists an unloaded model as UNAVAILABLE.
    assert out["unload"] is None and out["ready_after_unload"] is False
    after = {m["name"]: m for m in out["index_after_unload"] if m["name"] == other_clip}
    assert after[other_clip]["state"] == "UNAVAILABLE" and after[other_clip]["reason"] == "unloaded"
    assert out["load"] is None and out["ready_after_load"] is True and versions_after == [1]
    assert out["load_unknown"]["status"] == "StatusCode.NOT_FOUND"
    assert (
        "failed to load 'no-such-model', failed to poll from model repository"
        in out["load_unknown"]["message"]
    )
