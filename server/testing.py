"""Small contract-following ONNX test models built with onnx.helper (no torch), for tests and benchmarks.

Test model (per mouse): p_t = W·norm(video_t) + V·norm([behavior_t, pupil_center_t]) (a linear projection per
frame), y_t = softplus(sum_k h_k p_{t-k}) (a causal temporal filter over R frames). The clip graph computes it
for a whole trial; the step graph carries the last R-1 projections as ``state_in_0`` (and a frame counter as
``state_in_1``, to exercise several state tensors), so after R-1 frames both give the same responses.
`write_model` lays both graphs out as `sensorium-serve export` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import contract
from models.benchmark import FPS, FRAME_HEIGHT, FRAME_WIDTH, SKIP_FRAMES
from models.contract import ModelMetadata, StateSpec
from models.export import triton  # torch-free: Triton's config text only

MOUSE = "dynamic29515-10-12-Video-0123456789abcdef0123456789abcdef"
OTHER_MOUSE = "dynamic29623-4-9-Video-fedcba9876543210fedcba9876543210"
N_NEURONS = 24
RECEPTIVE_FIELD = 5
OPSET = 17


@dataclass(frozen=True)
class TestModelParams:
    __test__ = False  # not a pytest test class

    w: np.ndarray  # [H*W, N]
    v: np.ndarray  # [4, N]
    h: np.ndarray  # [R] filter taps, h[k] weights frame t-k
    video_mean: float = 120.0
    video_std: float = 60.0
    beh_mean: tuple[float, ...] = (5.0, 0.5, 30.0, 20.0)
    beh_std: tuple[float, ...] = (2.0, 1.5, 4.0, 3.0)


def make_params(seed: int, n: int = N_NEURONS, r: int = RECEPTIVE_FIELD) -> TestModelParams:
    rng = np.random.default_rng(seed)
    pixels = FRAME_HEIGHT * FRAME_WIDTH
    return TestModelParams(
        w=(rng.standard_normal((pixels, n)) / np.sqrt(pixels)).astype(np.float32),
        v=(rng.standard_normal((4, n)) * 0.3).astype(np.float32),
        h=rng.uniform(0.2, 1.0, r).astype(np.float32),
    )


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _projection_nodes(prefix_shape: list[int], p: TestModelParams) -> tuple[list, list]:
    """video [..., H, W], behavior/pupil [..., 2] -> proj [..., N] (prefix_shape: leading dims of the reshape)."""
    inits = [
        _const("video_mean", np.float32(p.video_mean)),
        _const("video_std", np.float32(p.video_std)),
        _const("beh_mean", np.array(p.beh_mean, np.float32)),
        _const("beh_std", np.array(p.beh_std, np.float32)),
        _const("W", p.w),
        _const("V", p.v),
        _const("flat_shape", np.array([*prefix_shape, FRAME_HEIGHT * FRAME_WIDTH], np.int64)),
    ]
    nodes = [
        helper.make_node("Sub", ["video", "video_mean"], ["v_centered"]),
        helper.make_node("Div", ["v_centered", "video_std"], ["v_norm"]),
        helper.make_node("Reshape", ["v_norm", "flat_shape"], ["v_flat"]),
        helper.make_node("MatMul", ["v_flat", "W"], ["p_video"]),
        helper.make_node("Concat", ["behavior", "pupil_center"], ["beh"], axis=-1),
        helper.make_node("Sub", ["beh", "beh_mean"], ["beh_centered"]),
        helper.make_node("Div", ["beh_centered", "beh_std"], ["beh_norm"]),
        helper.make_node("MatMul", ["beh_norm", "V"], ["p_beh"]),
        helper.make_node("Add", ["p_video", "p_beh"], ["proj"]),
    ]
    return nodes, inits


def build_clip_graph(p: TestModelParams) -> onnx.ModelProto:
    r = len(p.h)
    nodes, inits = _projection_nodes([0, 0], p)  # Reshape 0 = copy B, T
    inits.append(_const("axis_t", np.array([1], np.int64)))
    terms = []
    for k in range(r):
        start, end = r - 1 - k, (-k if k else np.iinfo(np.int64).max)
        inits += [
            _const(f"start_{k}", np.array([start], np.int64)),
            _const(f"end_{k}", np.array([end], np.int64)),
        ]
        inits.append(_const(f"h_{k}", np.float32(p.h[k])))
        nodes.append(helper.make_node("Slice", ["proj", f"start_{k}", f"end_{k}", "axis_t"], [f"sl_{k}"]))
        nodes.append(helper.make_node("Mul", [f"sl_{k}", f"h_{k}"], [f"term_{k}"]))
        terms.append(f"term_{k}")
    nodes.append(helper.make_node("Sum", terms, ["filtered"]))
    nodes.append(helper.make_node("Softplus", ["filtered"], ["responses"]))
    n = p.w.shape[1]
    inputs = [
        helper.make_tensor_value_info("video", TensorProto.FLOAT, ["B", "T", FRAME_HEIGHT, FRAME_WIDTH]),
        helper.make_tensor_value_info("behavior", TensorProto.FLOAT, ["B", "T", 2]),
        helper.make_tensor_value_info("pupil_center", TensorProto.FLOAT, ["B", "T", 2]),
    ]
    outputs = [helper.make_tensor_value_info("responses", TensorProto.FLOAT, ["B", "T_out", n])]
    graph = helper.make_graph(nodes, "test_clip", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def build_step_graph(p: TestModelParams) -> onnx.ModelProto:
    r = len(p.h)
    n = p.w.shape[1]
    nodes, inits = _projection_nodes([0], p)  # proj [B, N]
    inits += [
        _const("axis_t", np.array([1], np.int64)),
        _const("h_rev", p.h[::-1].reshape(r, 1).copy()),  # window row j is frame t-(R-1-j)
        _const("one_start", np.array([1], np.int64)),
        _const("big_end", np.array([np.iinfo(np.int64).max], np.int64)),
        _const("one", np.float32(1.0)),
    ]
    nodes += [
        helper.make_node("Unsqueeze", ["proj", "axis_t"], ["proj_t"]),
        helper.make_node("Concat", ["state_in_0", "proj_t"], ["window"], axis=1),  # [B, R, N]
        helper.make_node("Mul", ["window", "h_rev"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axis_t"], ["filtered"], keepdims=0),
        helper.make_node("Softplus", ["filtered"], ["responses"]),
        helper.make_node("Slice", ["window", "one_start", "big_end", "axis_t"], ["state_out_0"]),
        helper.make_node("Add", ["state_in_1", "one"], ["state_out_1"]),
    ]
    inputs = [
        helper.make_tensor_value_info("video", TensorProto.FLOAT, ["B", FRAME_HEIGHT, FRAME_WIDTH]),
        helper.make_tensor_value_info("behavior", TensorProto.FLOAT, ["B", 2]),
        helper.make_tensor_value_info("pupil_center", TensorProto.FLOAT, ["B", 2]),
        helper.make_tensor_value_info("state_in_0", TensorProto.FLOAT, ["B", r - 1, n]),
        helper.make_tensor_value_info("state_in_1", TensorProto.FLOAT, ["B", 1]),
    ]
    outputs = [
        helper.make_tensor_value_info("responses", TensorProto.FLOAT, ["B", n]),
        helper.make_tensor_value_info("state_out_0", TensorProto.FLOAT, ["B", r - 1, n]),
        helper.make_tensor_value_info("state_out_1", TensorProto.FLOAT, ["B", 1]),
    ]
    graph = helper.make_graph(nodes, "test_step", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def config_pbtxt(mouse: str, kind: str, n_neurons: int, state: list[StateSpec]) -> str:
    """The config.pbtxt `sensorium-serve export` writes (Triton's ModelConfig; implicit state on step models)."""
    name = contract.repository_model_name(mouse, kind)  # type: ignore[arg-type]
    if kind == contract.CLIP:
        return triton.clip_config(name, FRAME_HEIGHT, FRAME_WIDTH, n_neurons)
    return triton.step_config(name, FRAME_HEIGHT, FRAME_WIDTH, n_neurons, state)


def write_model(repo: Path, mouse: str, version: int, params: TestModelParams) -> None:
    """Both graphs of one mouse version, as `sensorium-serve export` lays them out."""
    r, n = len(params.h), params.w.shape[1]
    rng = np.random.default_rng(version)
    for kind, build in ((contract.CLIP, build_clip_graph), (contract.STEP, build_step_graph)):
        name = contract.repository_model_name(mouse, kind)
        version_dir = repo / name / str(version)
        version_dir.mkdir(parents=True, exist_ok=True)
        onnx.save(build(params), str(version_dir / contract.MODEL_FILENAME))
        state = (
            [StateSpec("state_in_0", "state_out_0", (r - 1, n)), StateSpec("state_in_1", "state_out_1", (1,))]
            if kind == contract.STEP
            else []
        )
        (repo / name / contract.CONFIG_FILENAME).write_text(config_pbtxt(mouse, kind, n, state))
        ModelMetadata(
            mouse=mouse,
            kind=kind,
            unit_ids=list(range(1000, 1000 + n)),
            fps=FPS,
            frame_height=FRAME_HEIGHT,
            frame_width=FRAME_WIDTH,
            receptive_field=r,
            skip=SKIP_FRAMES,
            architecture="test-linear-filter",
            response_std=rng.uniform(0.5, 2.0, n).round(3).tolist(),
            state=state,
            provenance={"created": "test", "version": version},
            validation={"single_trial_correlation": 0.1 * version},
        ).write(version_dir)


def make_trial(seed: int, frames: int = 20) -> dict[str, np.ndarray]:
    """Raw-unit inputs of one trial: video [T, H, W] uint8-valued float32, behavior [T, 2], pupil [T, 2]."""
    rng = np.random.default_rng(seed)
    return {
        "video": rng.integers(0, 256, (frames, FRAME_HEIGHT, FRAME_WIDTH)).astype(np.float32),
        "behavior": (rng.standard_normal((frames, 2)) * [2.0, 1.5] + [5.0, 0.5]).astype(np.float32),
        "pupil_center": (rng.standard_normal((frames, 2)) * 3 + [30.0, 20.0]).astype(np.float32),
    }
