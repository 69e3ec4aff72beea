"""Build the ONNX graphs of one mouse: the clip graph (trunk + Scan over frames of the head) and the step graph.

We use torch's TorchScript-based exporter (``dynamo=False``, opset 18): ~0.2 s per graph here against ~3 s for
the dynamo exporter, and it does not have the dynamo exporter's "second export bakes the time axis" trap
(FIELD-NOTES trap 2). Every graph is still checked for symbolic batch/time input dims (`assert_symbolic`)
and, by models/export/checks.py, run at sizes other than the traced ones.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper

from models import contract
from models.data.normalisation import NormalisationStats
from models.export.wrappers import ClipTrunk, FrameHead, StepGraph
from models.networks import SensoriumModel

OPSET = 18
BATCH, TIME, TIME_OUT = "batch", "time", "time_out"
_TRACE_BATCH = 2  # traced sizes differ from every size the checks run at


class ExportError(RuntimeError):
    """An exported graph is unusable (non-symbolic dims, failed self-check); the message says why."""


def _to_onnx(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> onnx.ModelProto:
    module.eval()  # FIELD-NOTES trap 3: the exporter restores the *wrapper's* training flag recursively
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            module,
            args,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def assert_symbolic(model: onnx.ModelProto, axes: dict[str, Sequence[int]], what: str) -> None:
    """Raise ExportError unless each named input has a symbolic (dim_param) size on the given axes."""
    inputs = {value.name: value for value in model.graph.input}
    for name, wanted in axes.items():
        if name not in inputs:
            raise ExportError(f"{what}: input {name!r} missing (inputs: {sorted(inputs)})")
        dims = inputs[name].type.tensor_type.shape.dim
        for axis in wanted:
            if axis >= len(dims) or not dims[axis].dim_param:
                shown = [d.dim_param or d.dim_value for d in dims]
                raise ExportError(f"{what}: input {name!r} axis {axis} is not symbolic (dims {shown})")


def _example_clip(model: SensoriumModel, batch: int, frames: int) -> tuple[torch.Tensor, ...]:
    h, w = model.frame_size
    g = torch.Generator().manual_seed(0)
    return (
        torch.rand(batch, frames, h, w, generator=g) * 255,
        torch.rand(batch, frames, 2, generator=g) * 10,
        torch.randn(batch, frames, 2, generator=g),
    )


def _prefixed_body(head: onnx.ModelProto, prefix: str) -> onnx.GraphProto:
    """The head graph as a Scan body, every name prefixed (a subgraph may not shadow outer names)."""
    graph = copy.deepcopy(head.graph)

    def rename(name: str) -> str:
        return prefix + name if name else name

    for node in graph.node:
        node.name = rename(node.name)
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for collection in (graph.input, graph.output, graph.value_info):
        for value in collection:
            value.name = rename(value.name)
    for init in graph.initializer:
        init.name = rename(init.name)
    graph.name = prefix.rstrip("/") or "frame"
    return graph


def build_clip_graph(model: SensoriumModel, session: str, stats: NormalisationStats) -> onnx.ModelProto:
    """video [B, T, H, W], behavior [B, T, 2], pupil_center [B, T, 2] (raw) -> responses [B, T - R + 1, N]."""
    gru = model.gru is not None
    example = _example_clip(model, _TRACE_BATCH, model.receptive_field + 3)
    io_axes = {contract.VIDEO: {0: BATCH, 1: TIME}, contract.BEHAVIOR: {0: BATCH, 1: TIME}}
    io_axes[contract.PUPIL_CENTER] = {0: BATCH, 1: TIME}
    trunk_outputs = ["features", "shift"] + (["hidden0"] if gru else [])
    trunk_axes = {**io_axes, "features": {0: TIME_OUT, 1: BATCH}, "shift": {0: TIME_OUT, 1: BATCH}}
    if gru:
        trunk_axes["hidden0"] = {0: BATCH}
    trunk = _to_onnx(
        ClipTrunk(model, session, stats),
        example,
        [contract.VIDEO, contract.BEHAVIOR, contract.PUPIL_CENTER],
        trunk_outputs,
        trunk_axes,
    )
    with torch.no_grad():
        trunk_values = ClipTrunk(model, session, stats).eval()(*example)
    head_inputs = (["hidden_in"] if gru else []) + ["features_t", "shift_t"]
    head_outputs = (["hidden_out"] if gru else []) + ["responses_t"]
    head_args = ((trunk_values[2],) if gru else ()) + (trunk_values[0][0], trunk_values[1][0])
    head = _to_onnx(
        FrameHead(model, session),
        head_args,
        head_inputs,
        head_outputs,
        {name: {0: BATCH} for name in head_inputs + head_outputs},
    )
    body = _prefixed_body(head, "frame/")
    scan_inputs = (["hidden0"] if gru else []) + ["features", "shift"]
    scan_outputs = (["hidden_last"] if gru else []) + [contract.RESPONSES]
    scan = helper.make_node(
        "Scan",
        scan_inputs,
        scan_outputs,
        name="frames",
        body=body,
        num_scan_inputs=2,
        scan_output_axes=[1],  # stack the per-frame responses [B, N] on axis 1: [B, T', N]
    )
    n = model.readout(session).n_neurons
    graph = helper.make_graph(
        [*trunk.graph.node, scan],
        f"{contract.repository_model_name(session, contract.CLIP)}",
        list(trunk.graph.input),
        [helper.make_tensor_value_info(contract.RESPONSES, TensorProto.FLOAT, [BATCH, TIME_OUT, n])],
        initializer=list(trunk.graph.initializer),
    )
    clip = helper.make_model(graph, opset_imports=list(trunk.opset_import), producer_name="sensorium-serve")
    clip.ir_version = trunk.ir_version
    onnx.checker.check_model(clip)
    assert_symbolic(clip, {name: (0, 1) for name in io_axes}, "clip graph")
    return clip


def build_step_graph(model: SensoriumModel, session: str, stats: NormalisationStats) -> onnx.ModelProto:
    """video [B, H, W], behavior [B, 2], pupil_center [B, 2], state_in_* -> responses [B, N], state_out_*."""
    video, behavior, pupil = (x[:, 0] for x in _example_clip(model, _TRACE_BATCH, 1))
    state = [torch.randn(_TRACE_BATCH, *shape) for shape in model.state_shapes()]
    state_in = [contract.state_in_name(i) for i in range(len(state))]
    state_out = [contract.state_out_name(i) for i in range(len(state))]
    inputs = [contract.VIDEO, contract.BEHAVIOR, contract.PUPIL_CENTER, *state_in]
    outputs = [contract.RESPONSES, *state_out]
    step = _to_onnx(
        StepGraph(model, session, stats),
        (video, behavior, pupil, *state),
        inputs,
        outputs,
        {name: {0: BATCH} for name in inputs + outputs},
    )
    onnx.checker.check_model(step)
    assert_symbolic(step, {name: (0,) for name in inputs}, "step graph")
    return step


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
