"""Our `inference` protos against Triton's (field numbers, types, enums, RPC signatures), config.pbtxt as
Triton's ModelConfig, and the Triton extensions through our own stubs: parameter types, stream errors,
explicit-state calls, readiness of unknown models."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from proto_shape import describe

from models import contract
from protos.inference import grpc_predict_v2_pb2 as pb2
from protos.inference import grpc_predict_v2_pb2_grpc as pb2_grpc
from protos.inference import model_config_pb2
from server.converters import sequence_parameters
from server.errors import InvalidArgument

HERE = Path(__file__).resolve().parent
OURS = describe([pb2.DESCRIPTOR, model_config_pb2.DESCRIPTOR])


@pytest.fixture(scope="module")
def tritons() -> dict:
    """The shape of tritonclient's copy of Triton's protocol (a subprocess: the two cannot share a process)."""
    out = subprocess.run(
        [sys.executable, str(HERE / "triton_protocol_dump.py")], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def differences(ours: dict, theirs: dict) -> list[str]:
    """Every message, enum and RPC we declare must be Triton's exactly (we may leave whole ones out)."""
    problems = []
    for kind in ("messages", "enums", "methods"):
        for name, shape in ours[kind].items():
            if name not in theirs[kind]:
                problems.append(f"{kind[:-1]} {name}: not in Triton's protocol")
            elif shape != theirs[kind][name]:
                problems.append(f"{kind[:-1]} {name}: ours {shape} != Triton's {theirs[kind][name]}")
    return problems


def test_every_message_enum_and_rpc_matches_tritons_protocol(tritons) -> None:
    assert differences(OURS, tritons) == []
    # ... and what Triton clients use is all there (left out: shared memory, trace and log settings).
    wanted = {
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
        "ModelInfer",
        "ModelMetadata",
    }
    assert {m.rsplit("/", 1)[1] for m in OURS["methods"]} >= wanted
    assert set(OURS["messages"]) >= {m for m in tritons["messages"] if m.startswith("inference.Model")} - {
        m for m in tritons["messages"] if "SharedMemory" in m
    }


def test_a_drifted_field_number_or_type_is_caught(tritons) -> None:
    drifted = copy.deepcopy(OURS)
    drifted["messages"]["inference.ModelStreamInferResponse"]["infer_response"]["number"] = 3
    drifted["messages"]["inference.ModelSequenceBatching"]["max_sequence_idle_microseconds"]["type"] = 13
    drifted["enums"]["inference.DataType"]["TYPE_FP32"] = 12
    drifted["messages"]["inference.ModelConfig"]["sequence_batch"] = drifted["messages"][
        "inference.ModelConfig"
    ].pop("sequence_batching")
    problems = differences(drifted, tritons)
    assert sorted(p.split(":")[0] for p in problems) == [
        "enum inference.DataType",
        "message inference.ModelConfig",
        "message inference.ModelSequenceBatching",
        "message inference.ModelStreamInferResponse",
    ]


# ---- config.pbtxt ------------------------------------------------------------------------------------------


def test_config_pbtxt_must_parse_as_a_model_config_naming_its_folder(
    serving, kit, model_repo, tmp_path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    (repo / f"{kit.OTHER_MOUSE}-clip" / contract.CONFIG_FILENAME).write_text(
        'name: "x"\nmax_batch_size: eight\n'
    )
    (repo / f"{kit.OTHER_MOUSE}-step" / contract.CONFIG_FILENAME).write_text('name: "someone-else-step"\n')
    (repo / f"{kit.MOUSE}-clip" / contract.CONFIG_FILENAME).unlink()

    async def scenario():
        async with serving(repo=repo) as srv:
            stub = pb2_grpc.GRPCInferenceServiceStub(srv.channel)
            index = await stub.RepositoryIndex(pb2.RepositoryIndexRequest())
            described = await stub.ModelConfig(pb2.ModelConfigRequest(name=f"{kit.MOUSE}-clip"))
            ready = await stub.ModelReady(pb2.ModelReadyRequest(name=f"{kit.OTHER_MOUSE}-clip"))
            unknown = await stub.ModelReady(pb2.ModelReadyRequest(name="no-such-model"))
            return index, described, ready, unknown

    index, described, ready, unknown = asyncio.run(scenario())
    states = {(m.name, m.version): (m.state, m.reason) for m in index.models}
    state, reason = states[(f"{kit.OTHER_MOUSE}-clip", "1")]
    assert (
        state == "UNAVAILABLE"
        and "config.pbtxt: not a Triton ModelConfig" in reason
        and "max_batch_size" in reason
    )
    state, reason = states[(f"{kit.OTHER_MOUSE}-step", "1")]
    assert state == "UNAVAILABLE" and "name 'someone-else-step' differs from its folder" in reason
    assert states[(f"{kit.MOUSE}-clip", "2")] == ("READY", "")
    assert not ready.ready and not unknown.ready  # Triton answers "not ready", not NOT_FOUND
    # No config.pbtxt: the server describes the graph (as Triton's auto-complete would).
    config = described.config
    assert (config.name, config.platform, config.max_batch_size) == (
        f"{kit.MOUSE}-clip",
        "onnxruntime_onnx",
        0,
    )
    assert [(i.name, list(i.dims), i.data_type) for i in config.input] == [
        ("video", [-1, -1, 36, 64], model_config_pb2.TYPE_FP32),
        ("behavior", [-1, -1, 2], model_config_pb2.TYPE_FP32),
        ("pupil_center", [-1, -1, 2], model_config_pb2.TYPE_FP32),
    ]
    assert not config.HasField("sequence_batching")


# ---- parameters, streams and explicit state through our own stubs ------------------------------------------


def _frame_request(kit, trial, i: int, model: str, **parameters) -> pb2.ModelInferRequest:
    request = pb2.ModelInferRequest(model_name=model, id=f"r{i}")
    for name in ("video", "behavior", "pupil_center"):
        array = np.ascontiguousarray(trial[name][i : i + 1])
        request.inputs.add(name=name, datatype="FP32", shape=array.shape)
        request.raw_input_contents.append(array.tobytes())
    for key, value in parameters.items():
        param = request.parameters[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, str):
            param.string_param = value
        elif isinstance(value, float):
            param.double_param = value
        else:
            param.int64_param = value
    return request


def _parameters(**choices: tuple[str, object]):
    request = pb2.ModelInferRequest()
    for key, (kind, value) in choices.items():
        setattr(request.parameters[key], kind, value)
    return request.parameters


def test_sequence_parameters_read_as_triton_reads_them() -> None:
    seq = sequence_parameters(
        _parameters(sequence_id=("int64_param", -1), sequence_start=("bool_param", True))
    )
    assert (seq.id, seq.start, seq.end, seq.given) == (2**64 - 1, True, False, True)  # int64 read as uint64
    assert sequence_parameters(_parameters(sequence_id=("uint64_param", 7))).id == 7
    assert sequence_parameters(_parameters(sequence_id=("string_param", "trial-3"))).id == "trial-3"
    assert not sequence_parameters(_parameters(sequence_id=("int64_param", 0))).given
    assert not sequence_parameters(_parameters(sequence_id=("string_param", ""))).given
    assert not sequence_parameters(_parameters()).given
    with pytest.raises(InvalidArgument) as info:
        sequence_parameters(_parameters(sequence_id=("bool_param", True)))
    assert (
        str(info.value)
        == "invalid value type for 'sequence_id' parameter, expected int64_param or string_param."
    )
    with pytest.raises(InvalidArgument) as info:
        sequence_parameters(_parameters(sequence_id=("int64_param", 3), sequence_end=("int64_param", 1)))
    assert str(info.value) == "invalid value type for 'sequence_end' parameter, expected bool_param."


def test_stream_errors_stay_in_the_stream_and_explicit_state_still_works(serving, kit, in_process) -> None:
    trial = kit.make_trial(seed=31, frames=6)
    model = f"{kit.MOUSE}-step"

    async def scenario():
        async with serving() as srv:
            stub = pb2_grpc.GRPCInferenceServiceStub(srv.channel)
            call = stub.ModelStreamInfer()
            requests = [
                _frame_request(kit, trial, 0, model, sequence_id=5, sequence_start=True),
                _frame_request(kit, trial, 1, model, sequence_id=5, sequence_start=1),  # wrong type
                _frame_request(kit, trial, 1, model, sequence_id=5, state_in_1=0),  # unknown param: ignored
                _frame_request(kit, trial, 2, "no-such-model", sequence_id=5),
                _frame_request(kit, trial, 2, model, sequence_id=5, sequence_end=True),
            ]
            bad_version = _frame_request(kit, trial, 0, model, sequence_id=6, sequence_start=True)
            bad_version.model_version = "1"
            requests += [bad_version, _frame_request(kit, trial, 1, model, sequence_id=6)]
            requests[-1].model_version = "2"
            with_state = _frame_request(kit, trial, 2, model, sequence_id=6)
            with_state.inputs.add(name="state_in_1", datatype="FP32", shape=[1, 1])
            with_state.raw_input_contents.append(np.zeros((1, 1), np.float32).tobytes())
            requests.append(with_state)
            for request in requests:
                await call.write(request)
            await call.done_writing()
            answers = [answer async for answer in call]
            # Explicit state: every state tensor sent and returned, no sequence id; stateless on the server.
            zeros = {
                s: np.zeros((1, *shape), np.float32)
                for s, shape in (("state_in_0", (4, kit.N_NEURONS)), ("state_in_1", (1,)))
            }
            explicit = _frame_request(kit, trial, 0, model)
            for name, array in zeros.items():
                explicit.inputs.add(name=name, datatype="FP32", shape=array.shape)
                explicit.raw_input_contents.append(array.tobytes())
            explicit.model_version = "2"
            stateless = await stub.ModelInfer(explicit)
            return answers, stateless, zeros, len(srv.app.plane.streams)

    answers, stateless, zeros, live = asyncio.run(scenario())
    assert [a.infer_response.id for a in answers] == [f"r{i}" for i in (0, 1, 1, 2, 2, 0, 1, 2)]
    errors = [a.error_message for a in answers]
    assert errors[0] == errors[2] == errors[4] == errors[5] == ""
    assert errors[1] == "invalid value type for 'sequence_start' parameter, expected bool_param."
    assert "no-such-model" in errors[3]
    assert errors[6] == (
        f"model_version: sequence 6 runs on version 1 of '{model}', the request asks for version 2 (leave it "
        "empty to continue)"
    )
    assert errors[7].startswith("inputs: ['state_in_1'] are held by the server for sequence requests")
    assert answers[5].infer_response.model_version == "1" and answers[0].infer_response.model_version == "2"
    assert not answers[1].HasField("infer_response") or not answers[1].infer_response.outputs
    assert live == 1  # sequence 6 is still live; 5 ended
    feeds = {n: trial[n][0:1] for n in ("video", "behavior", "pupil_center")} | zeros
    expected = in_process(model, 2, feeds)
    got = {
        o.name: np.frombuffer(raw, "<f4").reshape(list(o.shape))
        for o, raw in zip(stateless.outputs, stateless.raw_output_contents, strict=True)
    }
    assert sorted(got) == ["responses", "state_out_0", "state_out_1"]
    np.testing.assert_array_equal(got["responses"], expected[0])
    np.testing.assert_array_equal(got["state_out_0"], expected[1])
    first = np.frombuffer(answers[0].infer_response.raw_output_contents[0], "<f4")
    np.testing.assert_array_equal(first, expected[0][0])  # frame 0 of a sequence == stateless frame 0


def test_sequences_share_the_stream_cap_and_free_it_at_end(serving, kit) -> None:
    trial = kit.make_trial(seed=32, frames=3)
    model = f"{kit.MOUSE}-step"

    async def scenario():
        async with serving(max_streams=1) as srv:
            stub = pb2_grpc.GRPCInferenceServiceStub(srv.channel)
            await stub.ModelInfer(_frame_request(kit, trial, 0, model, sequence_id=1, sequence_start=True))
            with pytest.raises(grpc.aio.AioRpcError) as full:
                await stub.ModelInfer(
                    _frame_request(kit, trial, 0, model, sequence_id=2, sequence_start=True)
                )
            with pytest.raises(grpc.aio.AioRpcError) as stream_full:
                await kit.stream_trial(srv.channel, trial)
            await stub.ModelInfer(_frame_request(kit, trial, 1, model, sequence_id=1, sequence_end=True))
            second = await stub.ModelInfer(
                _frame_request(kit, trial, 0, model, sequence_id=2, sequence_start=True, sequence_end=True)
            )
            return full.value, stream_full.value, second, len(srv.app.plane.streams)

    full, stream_full, second, live = asyncio.run(scenario())
    assert full.code() == stream_full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams is 1" in full.details()
    assert second.outputs[0].name == "responses" and live == 0


def test_garbage_in_a_stream_ends_it_after_the_answers_before_it(serving, kit) -> None:
    trial = kit.make_trial(seed=33, frames=2)
    first = _frame_request(kit, trial, 0, f"{kit.MOUSE}-step", sequence_id=4, sequence_start=True)

    async def scenario():
        async with serving() as srv:
            call = srv.channel.stream_stream(
                "/inference.GRPCInferenceService/ModelStreamInfer",
                response_deserializer=pb2.ModelStreamInferResponse.FromString,
            )(iter([first.SerializeToString(), b"\xb4\x11"]), timeout=10)
            answers = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for answer in call:
                    answers.append(answer)
            await asyncio.sleep(0.05)
            return answers, info.value, len(srv.app.plane.streams)

    answers, error, live = asyncio.run(scenario())
    assert [a.infer_response.id for a in answers] == ["r0"] and not answers[0].error_message
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid inference.ModelInferRequest" in error.details()
    assert live == 1  # the sequence outlives the stream (as in Triton): it ends by END or by idling out
