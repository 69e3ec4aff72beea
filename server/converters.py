"""protobuf <-> numpy at the edge: the one place that turns wire messages into arrays and back.

Arrays stay raw bytes end to end (np.frombuffer in, tobytes out): no Python lists on the hot path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np

from models.contract import ModelMetadata
from protos.inference import grpc_predict_v2_pb2 as kserve_pb2
from protos.sensorium.v1 import predictor_pb2, tensor_pb2
from server.errors import InvalidArgument
from server.sequences import SequenceRequest
from server.statistics import Duration, StatisticsSnapshot

NO_SEQUENCE = SequenceRequest(0)

DTYPES: dict[int, np.dtype] = {
    tensor_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DTYPE_UINT8: np.dtype("u1"),
    tensor_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
}
_DTYPE_ENUMS = {dtype.name: enum for enum, dtype in DTYPES.items()}
_DTYPE_BY_DTYPE = {dtype: enum for enum, dtype in DTYPES.items()}  # native little-endian dtypes

# KServe v2 datatype names (raw contents); the typed-contents field that carries each when not raw.
KSERVE_DTYPES: dict[str, np.dtype] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "FP16": np.dtype("<f2"),
    "UINT8": np.dtype("u1"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
}
_KSERVE_NAMES = {dtype: name for name, dtype in KSERVE_DTYPES.items()}
_KSERVE_CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "UINT8": "uint_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
}


MAX_RANK = 32  # numpy's own limit is 64; no input here has more than 4
MAX_DIM = 2**31 - 1  # numpy refuses shapes like [0, 2**62] even with zero elements


def _element_count(shape: list[int], field: str) -> int:
    """prod(shape) in Python ints (np.prod would wrap around for huge dims), after checking the dims."""
    if len(shape) > MAX_RANK:
        raise InvalidArgument(f"{field}.shape: {len(shape)} dimensions, at most {MAX_RANK}")
    if any(d < 0 or d > MAX_DIM for d in shape):
        raise InvalidArgument(f"{field}.shape {list(shape)}: dimensions must be 0-{MAX_DIM}")
    return math.prod(shape)


def _from_bytes(data: bytes, dtype: np.dtype, shape: list[int], field: str) -> np.ndarray:
    count = _element_count(shape, field)
    if len(data) != count * dtype.itemsize:
        raise InvalidArgument(
            f"{field}.data: {len(data)} bytes, but shape {list(shape)} of {dtype.name} needs {count * dtype.itemsize}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def tensor_to_array(tensor: tensor_pb2.Tensor, field: str) -> np.ndarray:
    """Decode a sensorium.v1.Tensor (read-only view on the message bytes)."""
    dtype = DTYPES.get(tensor.dtype)
    if dtype is None:
        names = ", ".join(tensor_pb2.DType.Name(e) for e in DTYPES)
        label = (
            tensor_pb2.DType.Name(tensor.dtype) if tensor.dtype in tensor_pb2.DType.values() else tensor.dtype
        )
        raise InvalidArgument(f"{field}.dtype: {label} not supported (use {names})")
    return _from_bytes(tensor.data, dtype, list(tensor.shape), field)


def _le_bytes(array: np.ndarray) -> bytes:
    """Little-endian row-major bytes (one copy; byte-swapped only on big-endian data)."""
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and np.little_endian is False):
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.tobytes()


def array_to_tensor(array: np.ndarray) -> tensor_pb2.Tensor:
    return fill_tensor(tensor_pb2.Tensor(), array)


def fill_tensor(tensor: tensor_pb2.Tensor, array: np.ndarray) -> tensor_pb2.Tensor:
    """Write `array` into `tensor` in place (a sub-message of a reply: no copy of the bytes into a parent)."""
    array = np.ascontiguousarray(array)
    enum = _DTYPE_BY_DTYPE.get(array.dtype)  # per frame: dtype.name costs ~10 us, a dict lookup ~0.1 us
    if enum is None:
        enum = _DTYPE_ENUMS.get(array.dtype.name)
    if enum is None:
        raise TypeError(f"cannot send dtype {array.dtype}")
    tensor.dtype = enum
    tensor.shape[:] = array.shape
    tensor.data = _le_bytes(array)
    return tensor


# ---- KServe v2 --------------------------------------------------------------------------------------------


def infer_inputs_to_arrays(request: kserve_pb2.ModelInferRequest) -> dict[str, np.ndarray]:
    """Inputs of a ModelInferRequest (raw_input_contents or typed contents) as arrays by name."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs (one per input expected)"
        )
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        field = f"inputs[{i}] ({tensor.name})"
        dtype = KSERVE_DTYPES.get(tensor.datatype)
        if dtype is None:
            raise InvalidArgument(
                f"{field}.datatype: {tensor.datatype!r} not supported ({', '.join(KSERVE_DTYPES)})"
            )
        if tensor.name in arrays:
            raise InvalidArgument(f"{field}.name: input {tensor.name!r} given twice")
        if raw:
            arrays[tensor.name] = _from_bytes(raw[i], dtype, list(tensor.shape), field)
            continue
        contents_field = _KSERVE_CONTENTS.get(tensor.datatype)
        if contents_field is None:
            raise InvalidArgument(f"{field}: {tensor.datatype} must travel as raw_input_contents")
        count = _element_count(list(tensor.shape), field)
        try:
            values = np.asarray(getattr(tensor.contents, contents_field), dtype=dtype)
        except (OverflowError, ValueError) as exc:
            raise InvalidArgument(f"{field}.contents.{contents_field}: {exc}") from None
        if values.size != count:
            raise InvalidArgument(
                f"{field}.contents.{contents_field}: {values.size} values, shape {list(tensor.shape)} needs {count}"
            )
        arrays[tensor.name] = values.reshape(list(tensor.shape))
    return arrays


def arrays_to_infer_response(
    model_name: str, version: int, request_id: str, outputs: dict[str, np.ndarray]
) -> kserve_pb2.ModelInferResponse:
    response = kserve_pb2.ModelInferResponse(model_name=model_name, model_version=str(version), id=request_id)
    for name, array in outputs.items():
        array = np.ascontiguousarray(array)
        response.outputs.add(name=name, datatype=kserve_datatype(array.dtype), shape=array.shape)
        response.raw_output_contents.append(_le_bytes(array))
    return response


def kserve_datatype(numpy_dtype: str | np.dtype) -> str:
    name = (
        _KSERVE_NAMES.get(numpy_dtype) if isinstance(numpy_dtype, np.dtype) else None
    )  # per frame: no parsing
    name = name or _KSERVE_NAMES.get(np.dtype(numpy_dtype).newbyteorder("<"))
    if name is None:
        raise TypeError(f"no KServe datatype for {numpy_dtype}")
    return name


# ---- metadata ---------------------------------------------------------------------------------------------


def version_to_proto(
    version: int,
    metadata: ModelMetadata | None,
    clip: predictor_pb2.GraphStatus,
    step: predictor_pb2.GraphStatus,
    full: bool,
) -> predictor_pb2.ModelVersion:
    out = predictor_pb2.ModelVersion(version=version, clip=clip, step=step)
    if metadata is None:
        return out
    out.n_neurons = metadata.n_neurons
    out.fps = metadata.fps
    out.frame_height = metadata.frame_height
    out.frame_width = metadata.frame_width
    out.receptive_field = metadata.receptive_field
    out.skip = metadata.skip
    out.architecture = metadata.architecture
    out.response_units = metadata.response_units
    out.provenance_json = json.dumps(metadata.provenance)
    out.validation_json = json.dumps(metadata.validation)
    for spec in metadata.state:
        out.state.add(
            input_name=spec.input_name,
            output_name=spec.output_name,
            shape=spec.shape,
            dtype=_DTYPE_ENUMS.get(spec.dtype, tensor_pb2.DTYPE_UNSPECIFIED),
        )
    if full:
        out.unit_ids.extend(metadata.unit_ids)
        out.response_std.extend(metadata.response_std)
    return out


# ---- Triton extensions ------------------------------------------------------------------------------------


def _parameter_type_error(name: str, expected: str) -> InvalidArgument:  # Triton's text
    return InvalidArgument(f"invalid value type for '{name}' parameter, expected {expected}.")


def sequence_parameters(parameters: Mapping[str, kserve_pb2.InferParameter]) -> SequenceRequest:
    """Triton's sequence request parameters: ``sequence_id`` (int64_param read as uint64 as Triton does, or
    string_param; uint64_param accepted too), ``sequence_start`` and ``sequence_end`` (bool_param)."""
    if "sequence_id" not in parameters:
        return NO_SEQUENCE
    param = parameters["sequence_id"]
    kind = param.WhichOneof("parameter_choice")
    if kind == "int64_param":
        sequence_id: int | str = param.int64_param % 2**64
    elif kind == "uint64_param":
        sequence_id = param.uint64_param
    elif kind == "string_param":
        sequence_id = param.string_param
    else:
        raise _parameter_type_error("sequence_id", "int64_param or string_param")
    flags = []
    for name in ("sequence_start", "sequence_end"):
        flag = parameters.get(name)
        if flag is not None and flag.WhichOneof("parameter_choice") != "bool_param":
            raise _parameter_type_error(name, "bool_param")
        flags.append(flag is not None and flag.bool_param)
    return SequenceRequest(sequence_id, start=flags[0], end=flags[1])


def _duration(target: kserve_pb2.StatisticDuration, source: Duration) -> None:
    target.count = source.count
    target.ns = source.ns


def statistics_to_proto(name: str, version: int, s: StatisticsSnapshot) -> kserve_pb2.ModelStatistics:
    out = kserve_pb2.ModelStatistics(
        name=name,
        version=str(version),
        last_inference=s.last_inference_ms,
        inference_count=s.inference_count,
        execution_count=s.execution_count,
    )
    stats = out.inference_stats
    for field_name in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
        _duration(getattr(stats, field_name), getattr(s, field_name))
    for size, batch in s.batches.items():
        entry = out.batch_stats.add(batch_size=size)
        _duration(entry.compute_input, batch.compute_input)
        _duration(entry.compute_infer, batch.compute_infer)
        _duration(entry.compute_output, batch.compute_output)
    return out
