"""Drive a server's step models with tritonclient.grpc, unchanged: Triton's sequence protocol, streaming and the
repository / configuration / statistics extensions (run as a subprocess: see test_server_triton_sequences.py).

tritonclient registers Triton's own `inference.*` protos, which clash with the server's stubs in one process, so
this script imports no project code. Every scenario prints one JSON object on stdout; arrays go to OUT.npz.

    python triton_sequence_check.py sequences TARGET MODEL TRIALS.npz OUT.npz
    python triton_sequence_check.py errors TARGET MODEL TRIALS.npz
    python triton_sequence_check.py expiry TARGET MODEL TRIALS.npz IDLE_S
    python triton_sequence_check.py repository TARGET STEP_MODEL OTHER_CLIP_MODEL [TOKEN]

TRIALS.npz holds trial arrays named a_video, a_behavior, a_pupil_center (and b_...): [T, ...] each.
"""

import json
import queue
import sys
import time

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

FRAME_INPUTS = ("video", "behavior", "pupil_center")


def frame_inputs(trial: dict, i: int) -> list:
    """Frame i as Triton inputs with the batch axis of one the step model's config asks for."""
    inputs = []
    for name in FRAME_INPUTS:
        array = np.ascontiguousarray(trial[name][i : i + 1], dtype=np.float32)
        tensor = triton.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def load_trials(path: str) -> dict[str, dict]:
    data = np.load(path)
    trials: dict[str, dict] = {}
    for key in data.files:
        label, _, name = key.partition("_")
        trials.setdefault(label, {})[name] = data[key]
    return trials


def error_of(call) -> dict | None:
    try:
        call()
    except InferenceServerException as exc:
        return {"status": exc.status(), "message": exc.message()}
    return None


def sequences(target: str, model: str, trials_path: str, out_path: str) -> None:
    """Trial a over unary ModelInfer (uint64 id); trials a and b interleaved on one stream (string and uint64
    ids), with a request of an unknown sequence in the middle of the stream."""
    trials = load_trials(trials_path)
    a, b = trials["a"], trials["b"]
    frames = len(a["video"])
    client = triton.InferenceServerClient(url=target)
    unary = []
    for i in range(frames):
        result = client.infer(
            model,
            frame_inputs(a, i),
            request_id=f"u-{i}",
            sequence_id=1001,
            sequence_start=i == 0,
            sequence_end=i == frames - 1,
        )
        unary.append(result.as_numpy("responses")[0])

    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    sent = []
    for i in range(frames):
        for label, trial, sequence_id in (("a", a, "trial-a"), ("b", b, 7)):
            client.async_stream_infer(
                model,
                frame_inputs(trial, i),
                request_id=f"{label}-{i}",
                sequence_id=sequence_id,
                sequence_start=i == 0,
                sequence_end=i == frames - 1,
            )
            sent.append(f"{label}-{i}")
        if i == frames // 2:  # never started: answered in-stream, the stream goes on
            client.async_stream_infer(model, frame_inputs(a, i), request_id="bad", sequence_id=999)
            sent.append("bad")
    streamed: dict[str, np.ndarray] = {}
    order, stream_errors = [], []
    for _ in sent:
        result, error = answers.get(timeout=60)
        if error is not None:
            order.append("<error>")
            stream_errors.append(error.message())
            continue
        response = result.get_response()
        order.append(response.id)
        streamed[response.id] = result.as_numpy("responses")[0]
    client.stop_stream()
    np.savez(
        out_path,
        unary=np.stack(unary),
        stream_a=np.stack([streamed[f"a-{i}"] for i in range(frames)]),
        stream_b=np.stack([streamed[f"b-{i}"] for i in range(frames)]),
    )
    last = client.infer(model, frame_inputs(a, 0), sequence_id=1001, sequence_start=True, sequence_end=True)
    print(
        json.dumps(
            {
                "sent": sent,
                "order": order,
                "stream_errors": stream_errors,
                "metadata": client.get_model_metadata(model, as_json=True),
                "response_parameters": {k: str(v).strip() for k, v in last.get_response().parameters.items()},
            }
        )
    )


def errors(target: str, model: str, trials_path: str) -> None:
    """Every sequence error a Triton client may hit, plus a restart (START on a live id) and an explicit-state
    call that must still work."""
    trial = load_trials(trials_path)["a"]
    client = triton.InferenceServerClient(url=target)

    def infer(i: int, **kw):
        return client.infer(model, frame_inputs(trial, i), **kw).as_numpy("responses")[0]

    out = {"no_start": error_of(lambda: infer(0, sequence_id=55))}
    infer(0, sequence_id=56, sequence_start=True)
    infer(1, sequence_id=56, sequence_end=True)
    out["after_end"] = error_of(lambda: infer(2, sequence_id=56))
    out["no_sequence_id"] = error_of(lambda: infer(0))
    batch = []
    for name in FRAME_INPUTS:
        array = np.ascontiguousarray(trial[name][:2], dtype=np.float32)
        tensor = triton.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        batch.append(tensor)
    out["batch_of_two"] = error_of(lambda: client.infer(model, batch, sequence_id=58, sequence_start=True))
    out["after_failed_start"] = error_of(lambda: infer(0, sequence_id=58))
    # Restart: frames 0-2 on id 57, then START again at frame 3: the answer must be a fresh sequence's.
    for i in range(3):
        infer(i, sequence_id=57, sequence_start=i == 0)
    restarted = [infer(3 + i, sequence_id=57, sequence_start=i == 0) for i in range(3)]
    fresh = [infer(3 + i, sequence_id="fresh", sequence_start=i == 0, sequence_end=i == 2) for i in range(3)]
    out["restart_max_diff"] = float(np.abs(np.stack(restarted) - np.stack(fresh)).max())
    out["restart_continues"] = error_of(lambda: infer(6, sequence_id=57, sequence_end=True))
    print(json.dumps(out))


def expiry(target: str, model: str, trials_path: str, idle_s: str) -> None:
    """A sequence left idle longer than max_sequence_idle_microseconds is gone; a new START works."""
    trial = load_trials(trials_path)["a"]
    client = triton.InferenceServerClient(url=target)
    client.infer(model, frame_inputs(trial, 0), sequence_id=77, sequence_start=True)
    client.infer(model, frame_inputs(trial, 1), sequence_id=77)
    time.sleep(float(idle_s))
    expired = error_of(lambda: client.infer(model, frame_inputs(trial, 2), sequence_id=77))
    restarted = error_of(
        lambda: client.infer(model, frame_inputs(trial, 0), sequence_id=77, sequence_start=True)
    )
    print(json.dumps({"expired": expired, "restarted": restarted}))


def repository(target: str, step_model: str, other_clip: str, token: str = "") -> None:
    """What a Triton user reaches for: index, config, statistics, unload / load, server extensions."""
    headers = {"authorization": f"Bearer {token}"} if token else None
    client = triton.InferenceServerClient(url=target)
    out = {
        "extensions": client.get_server_metadata(headers=headers, as_json=True).get("extensions", []),
        "index": client.get_model_repository_index(headers=headers, as_json=True).get("models", []),
        "step_config": client.get_model_config(step_model, headers=headers, as_json=True)["config"],
        "clip_config": client.get_model_config(other_clip, headers=headers, as_json=True)["config"],
        "statistics": client.get_inference_statistics(step_model, headers=headers, as_json=True),
        "all_statistics": client.get_inference_statistics(headers=headers, as_json=True),
    }
    out["unload"] = error_of(lambda: client.unload_model(other_clip, headers=headers))
    out["ready_after_unload"] = client.is_model_ready(other_clip, headers=headers)
    out["index_after_unload"] = client.get_model_repository_index(headers=headers, as_json=True).get(
        "models", []
    )
    out["load"] = error_of(lambda: client.load_model(other_clip, headers=headers))
    out["ready_after_load"] = client.is_model_ready(other_clip, headers=headers)
    out["load_unknown"] = error_of(lambda: client.load_model("no-such-model", headers=headers))
    print(json.dumps(out))


if __name__ == "__main__":
    {"sequences": sequences, "errors": errors, "expiry": expiry, "repository": repository}[sys.argv[1]](
        *sys.argv[2:]
    )
