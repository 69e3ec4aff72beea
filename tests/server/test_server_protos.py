"""The generated stubs under protos/ are exactly what scripts/gen_protos.py produces from the .proto files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gen_protos_module():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_protos", module)
    spec.loader.exec_module(module)
    return module


def test_generated_stubs_are_fresh() -> None:
    problems = _gen_protos_module().stale_files()
    assert problems == [], f"stale stubs, run `.venv/bin/python scripts/gen_protos.py`: {problems}"


def test_staleness_check_detects_an_edited_proto(tmp_path: Path) -> None:
    gen = _gen_protos_module()
    tree = tmp_path / "protos"
    gen.generate(tree, ROOT / "protos")
    for proto in gen.proto_files(ROOT / "protos"):
        target = tree / proto.relative_to(ROOT / "protos")
        target.write_text(proto.read_text())
    assert gen.stale_files(tree) == []
    tensor = tree / "sensorium" / "v1" / "tensor.proto"
    tensor.write_text(tensor.read_text().replace("bytes data = 3;", "bytes data = 3;\n  string note = 4;"))
    assert gen.stale_files(tree) == ["sensorium/v1/tensor_pb2.py: stale"]


def test_stubs_import_under_the_protos_package() -> None:
    from protos.inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
    from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc, tensor_pb2

    assert predictor_pb2.DESCRIPTOR.package == "sensorium.v1"
    assert grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name == (
        "inference.GRPCInferenceService"
    )
    assert hasattr(predictor_pb2_grpc, "PredictorStub")
    assert hasattr(grpc_predict_v2_pb2_grpc, "GRPCInferenceServiceServicer")
    assert predictor_pb2.Frame.DESCRIPTOR.fields_by_name["video"].message_type is tensor_pb2.Tensor.DESCRIPTOR
