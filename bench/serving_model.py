"""A synthetic step graph with the tensor sizes of a real SENSORIUM model, for the serving benchmark.

Built with onnx.helper (no torch), following models/contract.py. Per frame:
video [B, 36, 64] -> normalise -> conv 1->16 (5x5) -> ELU -> conv 16->32 (3x3) -> ELU = features [B, 32, 36, 64];
a causal temporal filter over the last R = 19 feature maps (state_in_0 [B, 18, 32, 36, 64] float32 = 5.3 MB per
stream, like the 7.7 MB temporal-conv buffers of the factorised core in FIELD-NOTES); a readout that gathers
one feature position per neuron (8,000 neurons) and weighs its 32 channels, plus behaviour and pupil centre;
softplus. Compute is lighter than the real core (~12 M multiply-adds vs several hundred M), so serving
overhead is a larger share here than with a trained model: a conservative test of the +1 ms target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import contract
from models.benchmark import FPS, FRAME_HEIGHT, FRAME_WIDTH, SKIP_FRAMES
from models.contract import ModelMetadata, StateSpec

N_NEURONS = 8000
CHANNELS = 32
RECEPTIVE_FIELD = 19
OPSET = 17
MOUSE = "dynamic29515-10-12-Video-bench0000000000000000000000000000"


def _c(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def build_step_graph(n_neurons: int = N_NEURONS, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    h, w, c, r = FRAME_HEIGHT, FRAME_WIDTH, CHANNELS, RECEPTIVE_FIELD
    inits = [
        _c("mean", np.float32(80.0)),
        _c("std", np.float32(60.0)),
        _c("img_shape", np.array([-1, 1, h, w], np.int64)),
        _c("k1", (rng.standard_normal((16, 1, 5, 5)) * 0.2).astype(np.float32)),
        _c("k2", (rng.standard_normal((c, 16, 3, 3)) * 0.08).astype(np.float32)),
        _c("axis1", np.array([1], np.int64)),
        _c("taps", rng.uniform(0.0, 0.1, (1, r, 1, 1, 1)).astype(np.float32)),
        _c("one", np.array([1], np.int64)),
        _c("big", np.array([np.iinfo(np.int64).max], np.int64)),
        _c("flat_shape", np.array([-1, c, h * w], np.int64)),
        _c("positions", rng.integers(0, h * w, n_neurons).astype(np.int64)),
        _c("readout", (rng.standard_normal((c, n_neurons)) * 0.2).astype(np.float32)),
        _c("beh_w", (rng.standard_normal((4, n_neurons)) * 0.05).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Sub", ["video", "mean"], ["v0"]),
        helper.make_node("Div", ["v0", "std"], ["v1"]),
        helper.make_node("Reshape", ["v1", "img_shape"], ["img"]),
        helper.make_node("Conv", ["img", "k1"], ["c1"], pads=[2, 2, 2, 2]),
        helper.make_node("Elu", ["c1"], ["e1"]),
        helper.make_node("Conv", ["e1", "k2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Elu", ["c2"], ["feat"]),  # [B, C, H, W]
        helper.make_node("Unsqueeze", ["feat", "axis1"], ["feat_t"]),  # [B, 1, C, H, W]
        helper.make_node("Concat", ["state_in_0", "feat_t"], ["window"], axis=1),  # [B, R, C, H, W]
        helper.make_node("Slice", ["window", "one", "big", "axis1"], ["state_out_0"]),
        helper.make_node("Mul", ["window", "taps"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axis1"], ["temporal"], keepdims=0),  # [B, C, H, W]
        helper.make_node("Reshape", ["temporal", "flat_shape"], ["flat"]),  # [B, C, H*W]
        helper.make_node("Gather", ["flat", "positions"], ["sampled"], axis=2),  # [B, C, N]
        helper.make_node("Mul", ["sampled", "readout"], ["weighed"]),
        helper.make_node("ReduceSum", ["weighed", "axis1"], ["drive"], keepdims=0),  # [B, N]
        helper.make_node("Concat", ["behavior", "pupil_center"], ["beh"], axis=1),
        helper.make_node("MatMul", ["beh", "beh_w"], ["beh_drive"]),
        helper.make_node("Add", ["drive", "beh_drive"], ["total"]),
        helper.make_node("Softplus", ["total"], ["responses"]),
    ]
    inputs = [
        helper.make_tensor_value_info("video", TensorProto.FLOAT, ["B", h, w]),
        helper.make_tensor_value_info("behavior", TensorProto.FLOAT, ["B", 2]),
        helper.make_tensor_value_info("pupil_center", TensorProto.FLOAT, ["B", 2]),
        helper.make_tensor_value_info("state_in_0", TensorProto.FLOAT, ["B", r - 1, c, h, w]),
    ]
    outputs = [
        helper.make_tensor_value_info("responses", TensorProto.FLOAT, ["B", n_neurons]),
        helper.make_tensor_value_info("state_out_0", TensorProto.FLOAT, ["B", r - 1, c, h, w]),
    ]
    graph = helper.make_graph(nodes, "bench_step", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def state_shape() -> tuple[int, ...]:
    return (RECEPTIVE_FIELD - 1, CHANNELS, FRAME_HEIGHT, FRAME_WIDTH)


def write_repository(repo: Path, mouse: str = MOUSE, n_neurons: int = N_NEURONS) -> Path:
    """REPO/<mouse>-step/1/{model.onnx, metadata.json} + config.pbtxt; returns the model file."""
    name = contract.repository_model_name(mouse, contract.STEP)
    version_dir = Path(repo) / name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    (Path(repo) / name / contract.CONFIG_FILENAME).write_text(
        f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 0\n'
    )
    model_file = version_dir / contract.MODEL_FILENAME
    onnx.save(build_step_graph(n_neurons), str(model_file))
    ModelMetadata(
        mouse=mouse,
        kind=contract.STEP,
        unit_ids=list(range(n_neurons)),
        fps=FPS,
        frame_height=FRAME_HEIGHT,
        frame_width=FRAME_WIDTH,
        receptive_field=RECEPTIVE_FIELD,
        skip=SKIP_FRAMES,
        architecture="bench-synthetic",
        response_std=[1.0] * n_neurons,
        state=[StateSpec("state_in_0", "state_out_0", state_shape())],
        provenance={"created": "bench/serving_model.py"},
    ).write(version_dir)
    return model_file
