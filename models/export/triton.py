"""config.pbtxt in Triton's ModelConfig text format (protobuf text), written without tritonclient.

Clip model: ``platform: "onnxruntime_onnx"``, dynamic batch (``max_batch_size`` > 0, dims without batch),
variable time (-1). Step model: the same plus ``sequence_batching`` with one implicit ``state`` entry per
state tensor, each starting from zeros (``initial_state { zero_data: true }``), so Triton itself carries the
state between the requests of a sequence and resets it when a sequence starts. The graphs have no control
inputs (START/READY/...): zero initial state is all a new stream needs. tests/export checks that these files
parse as Triton's ModelConfig.
"""

from __future__ import annotations

from collections.abc import Sequence

from models import contract
from models.benchmark import BEHAVIOR_CHANNELS, PUPIL_CHANNELS

MAX_BATCH_SIZE = 8
SEQUENCE_IDLE_US = 5_000_000  # Triton drops a sequence idle this long (5 s: > 100 frames at 30 Hz)


def _dims(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def _join(items: Sequence[str]) -> str:
    return ",\n".join(items)


def _tensor(name: str, dims: Sequence[int]) -> str:
    return f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: {_dims(dims)}\n  }}'


def clip_config(model_name: str, height: int, width: int, n_neurons: int) -> str:
    inputs = [
        _tensor(contract.VIDEO, (-1, height, width)),
        _tensor(contract.BEHAVIOR, (-1, BEHAVIOR_CHANNELS)),
        _tensor(contract.PUPIL_CENTER, (-1, PUPIL_CHANNELS)),
    ]
    outputs = [_tensor(contract.RESPONSES, (-1, n_neurons))]
    return (
        f'name: "{model_name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {MAX_BATCH_SIZE}\n'
        f"input [\n{_join(inputs)}\n]\noutput [\n{_join(outputs)}\n]\n"
        "dynamic_batching { }\nversion_policy: { latest: { num_versions: 1 } }\n"
    )


def step_config(
    model_name: str, height: int, width: int, n_neurons: int, state: Sequence[contract.StateSpec]
) -> str:
    inputs = [
        _tensor(contract.VIDEO, (height, width)),
        _tensor(contract.BEHAVIOR, (BEHAVIOR_CHANNELS,)),
        _tensor(contract.PUPIL_CENTER, (PUPIL_CHANNELS,)),
    ]
    outputs = [_tensor(contract.RESPONSES, (n_neurons,))]
    states = []
    for spec in state:
        dims = _dims(spec.shape)
        states.append(
            f'    {{\n      input_name: "{spec.input_name}"\n      output_name: "{spec.output_name}"\n'
            f"      data_type: TYPE_FP32\n      dims: {dims}\n"
            f"      initial_state: {{\n        data_type: TYPE_FP32\n        dims: {dims}\n"
            f'        zero_data: true\n        name: "zeros"\n      }}\n    }}'
        )
    sequence = f"sequence_batching {{\n  max_sequence_idle_microseconds: {SEQUENCE_IDLE_US}\n"
    if states:
        sequence += "  state [\n" + ",\n".join(states) + "\n  ]\n"
    sequence += "}\n"
    return (
        f'name: "{model_name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {MAX_BATCH_SIZE}\n'
        f"input [\n{_join(inputs)}\n]\noutput [\n{_join(outputs)}\n]\n"
        f"{sequence}version_policy: {{ latest: {{ num_versions: 1 }} }}\n"
    )
