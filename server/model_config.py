"""A repository model's ``config.pbtxt`` as Triton's ModelConfig message (protos/inference/model_config.proto).

The registry reads it when it loads a model: a file that does not parse as a ModelConfig, or names another
model, makes the model not ready (as in Triton). Without a config.pbtxt the server describes the graph itself
(`describe_graph`, the counterpart of Triton's auto-complete for ONNX models). The step models' sequence
settings (``sequence_batching.max_sequence_idle_microseconds``) drive the sequence requests of the KServe
service (server/sequences.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf import text_format

from models import contract
from protos.inference import model_config_pb2 as mc

if TYPE_CHECKING:
    from server.registry import Graph

PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
# Triton's default when a config leaves max_sequence_idle_microseconds at 0 (1 second).
DEFAULT_SEQUENCE_IDLE_US = 1_000_000
DATA_TYPES = {"float32": mc.TYPE_FP32, "float64": mc.TYPE_FP64, "uint8": mc.TYPE_UINT8}


def read_model_config(model_dir: Path) -> mc.ModelConfig | None:
    """``model_dir/config.pbtxt`` parsed, or None when there is none; ValueError naming the file if invalid."""
    path = Path(model_dir) / contract.CONFIG_FILENAME
    if not path.is_file():
        return None
    config = mc.ModelConfig()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), config)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a Triton ModelConfig ({exc})") from None
    if config.name and config.name != path.parent.name:
        raise ValueError(f"{path}: name {config.name!r} differs from its folder {path.parent.name!r}")
    config.name = path.parent.name
    return config


def sequence_idle_seconds(config: mc.ModelConfig | None) -> float:
    """How long a sequence may go without a request before its state is released."""
    us = config.sequence_batching.max_sequence_idle_microseconds if config is not None else 0
    return (us or DEFAULT_SEQUENCE_IDLE_US) / 1e6


def describe_graph(graph: Graph) -> mc.ModelConfig:
    """A ModelConfig for a model without config.pbtxt, from its graph (batch axis kept in the dims)."""
    config = mc.ModelConfig(name=graph.name, platform=PLATFORM, backend=BACKEND, max_batch_size=0)
    state_inputs = {s.input_name for s in graph.state}
    state_outputs = {s.output_name for s in graph.state}
    for spec in graph.inputs.values():
        if spec.name not in state_inputs:
            config.input.add(name=spec.name, data_type=_data_type(spec.dtype), dims=_dims(spec.shape))
    for spec in graph.outputs:
        if spec.name not in state_outputs:
            config.output.add(name=spec.name, data_type=_data_type(spec.dtype), dims=_dims(spec.shape))
    if graph.kind == contract.STEP:
        sequence = config.sequence_batching
        sequence.max_sequence_idle_microseconds = DEFAULT_SEQUENCE_IDLE_US
        for s in graph.state:
            state = sequence.state.add(
                input_name=s.input_name,
                output_name=s.output_name,
                data_type=_data_type(s.dtype),
                dims=s.shape,
            )
            state.initial_state.add(data_type=state.data_type, dims=s.shape, zero_data=True, name="zeros")
    return config


def _data_type(dtype: str) -> int:
    return DATA_TYPES.get(dtype, mc.TYPE_INVALID)


def _dims(shape: tuple[int | None, ...]) -> list[int]:
    return [-1 if d is None else d for d in shape]
