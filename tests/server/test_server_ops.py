"""Operations: gRPC health (NOT_SERVING while draining), server reflection, Prometheus metrics, metadata."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc


def test_health_serving_then_not_serving_while_draining(serving, kit) -> None:
    trial = kit.make_trial(seed=11, frames=4)

    async def scenario():
        async with serving() as srv:
            health = health_pb2_grpc.HealthStub(srv.channel)
            overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
            predictor = await health.Check(health_pb2.HealthCheckRequest(service="sensorium.v1.Predictor"))
            watch = health.Watch(health_pb2.HealthCheckRequest(service="sensorium.v1.Predictor"))
            first = await watch.read()
            call = predictor_pb2_grpc.PredictorStub(srv.channel).StreamPredict()
            await call.write(kit.open_request())
            await call.read()
            await call.write(kit.frame_request(trial, 0))
            stopping = asyncio.create_task(srv.app.stop(grace=5))
            result = await call.read()  # the frame in flight still completes
            second = await watch.read()
            watch.cancel()  # a watcher would otherwise hold the shutdown for the whole grace period
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call.read()  # then the server ends the stream
            await stopping
            return overall, predictor, first, second, result, info.value

    overall, predictor, first, second, result, error = asyncio.run(scenario())
    assert overall.status == predictor.status == first.status == health_pb2.HealthCheckResponse.SERVING
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert result.result.sequence == 0
    assert error.code() == grpc.StatusCode.UNAVAILABLE and "draining" in error.details()


def test_reflection_lists_and_describes_the_services(serving) -> None:
    async def scenario():
        async with serving() as srv:
            call = reflection_pb2_grpc.ServerReflectionStub(srv.channel).ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            listed = await call.read()
            await call.write(
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="sensorium.v1.Predictor")
            )
            described = await call.read()
            await call.done_writing()
            return listed, described

    listed, described = asyncio.run(scenario())
    names = {s.name for s in listed.list_services_response.service}
    assert {
        "sensorium.v1.Predictor",
        "sensorium.v1.ModelRepository",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    predictor = next(f for f in files if f.name == "sensorium/v1/predictor.proto")
    methods = {m.name for s in predictor.service if s.name == "Predictor" for m in s.method}
    assert methods == {"ListModels", "GetModel", "PredictClip", "StreamPredict"}


def _scrape(port: int) -> dict[str, dict]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    return families


def test_metrics_names_buckets_and_counts_move(serving, kit) -> None:
    frames = 7
    trial = kit.make_trial(seed=12, frames=frames)

    async def scenario():
        async with serving(http_port=0) as srv:
            before = await asyncio.to_thread(_scrape, srv.app.http_port)
            await kit.stream_trial(srv.channel, trial)
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetModel(predictor_pb2.GetModelRequest(model="nope"))
            after = await asyncio.to_thread(_scrape, srv.app.http_port)
            return before, after

    before, after = asyncio.run(scenario())
    model = (("model", kit.MOUSE),)
    for name in (
        "sensorium_serve_frame_seconds",
        "sensorium_serve_frame_queue_seconds",
        "sensorium_serve_frame_compute_seconds",
    ):
        buckets = sorted(
            float(dict(labels)["le"]) for (sample, labels) in after[name] if sample.endswith("_bucket")
        )
        assert 1 / 30 in buckets and 0.0005 in buckets and 0.05 in buckets
        assert sum(0.0005 <= b <= 0.05 for b in buckets) >= 15  # dense in the frame-budget range
        assert after[name][(f"{name}_count", model)] == frames
    assert after["sensorium_serve_frames"][("sensorium_serve_frames_total", model)] == frames
    assert ("sensorium_serve_frames_total", model) not in before.get("sensorium_serve_frames", {})
    batches = after["sensorium_serve_batch_size"][("sensorium_serve_batch_size_count", ())]
    assert batches == frames  # one stream alone: one onnxruntime call per frame
    requests = after["sensorium_serve_requests"]
    assert requests[("sensorium_serve_requests_total", (("method", "StreamPredict"),))] == 1
    errors = after["sensorium_serve_errors"]
    assert errors[("sensorium_serve_errors_total", (("code", "NOT_FOUND"), ("method", "GetModel")))] == 1
    assert after["sensorium_serve_loaded_models"][("sensorium_serve_loaded_models", ())] == 6
    assert after["sensorium_serve_active_streams"][("sensorium_serve_active_streams", model)] == 0
    assert "sensorium_serve_clip_seconds" in after


def test_list_and_get_model_metadata(serving, kit) -> None:
    async def scenario():
        async with serving() as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            listed = await stub.ListModels(predictor_pb2.ListModelsRequest())
            one = await stub.GetModel(predictor_pb2.GetModelRequest(model=kit.MOUSE))
            return listed, one

    listed, one = asyncio.run(scenario())
    assert sorted(m.name for m in listed.models) == sorted([kit.MOUSE, kit.OTHER_MOUSE])
    summary = next(m for m in listed.models if m.name == kit.MOUSE)
    assert [v.version for v in summary.versions] == [1, 2] and summary.latest_version == 2
    assert summary.versions[0].n_neurons == kit.N_NEURONS and not summary.versions[0].unit_ids
    v2 = one.versions[1]
    assert v2.clip.ready and v2.step.ready and v2.clip.repository_name == f"{kit.MOUSE}-clip"
    assert (
        list(v2.unit_ids) == list(range(1000, 1000 + kit.N_NEURONS)) and len(v2.response_std) == kit.N_NEURONS
    )
    assert (v2.fps, v2.frame_height, v2.frame_width, v2.receptive_field, v2.skip) == (
        30,
        36,
        64,
        kit.RECEPTIVE_FIELD,
        50,
    )
    assert [(s.input_name, list(s.shape)) for s in v2.state] == [
        ("state_in_0", [kit.RECEPTIVE_FIELD - 1, kit.N_NEURONS]),
        ("state_in_1", [1]),
    ]
    assert json.loads(v2.provenance_json)["version"] == 2


def test_scoring_registers_only_with_a_truth_folder(serving, monkeypatch, tmp_path) -> None:
    import server.scoring

    calls = []

    def fake_register(grpc_server, settings):
        calls.append(settings.truth_dir)
        return ["sensorium.v1.Scoring"]

    monkeypatch.setattr(server.scoring, "register", fake_register)

    async def scenario():
        async with serving() as plain:
            names_plain = list(plain.app.service_names)
        async with serving(truth_dir=tmp_path) as srv:
            status = await health_pb2_grpc.HealthStub(srv.channel).Check(
                health_pb2.HealthCheckRequest(service="sensorium.v1.Scoring")
            )
            return names_plain, list(srv.app.service_names), status.status

    names_plain, names, status = asyncio.run(scenario())
    assert calls == [tmp_path]
    assert "sensorium.v1.Scoring" not in names_plain and "sensorium.v1.Scoring" in names
    assert status == health_pb2.HealthCheckResponse.SERVING
