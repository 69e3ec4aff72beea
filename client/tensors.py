"""numpy <-> `sensorium.v1.Tensor`: raw little-endian bytes, never Python lists (FIELD-NOTES: 6 us vs 2.4 ms)."""

from __future__ import annotations

from typing import Final

import numpy as np

from protos.sensorium.v1 import tensor_pb2

_TO_WIRE: Final = {
    np.dtype(np.float32): tensor_pb2.DTYPE_FLOAT32,
    np.dtype(np.uint8): tensor_pb2.DTYPE_UINT8,
    np.dtype(np.float64): tensor_pb2.DTYPE_FLOAT64,
}
_FROM_WIRE: Final = {wire: np.dtype(dt).newbyteorder("<") for dt, wire in _TO_WIRE.items()}


def to_tensor(array: np.ndarray, *, name: str = "array") -> tensor_pb2.Tensor:
    """Encode a float32/float64/uint8 array (other floats and ints are sent as float32)."""
    array = np.asarray(array)
    if array.dtype not in _TO_WIRE:
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise TypeError(f"{name}: cannot send dtype {array.dtype}; use float32 or uint8")
        array = array.astype(np.float32)
    wire_dtype = _TO_WIRE[array.dtype]
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
    return tensor_pb2.Tensor(dtype=wire_dtype, shape=array.shape, data=data)


def from_tensor(tensor: tensor_pb2.Tensor, *, name: str = "tensor") -> np.ndarray:
    """Decode a Tensor into a read-only numpy view on its bytes; ValueError names `name` when malformed."""
    try:
        dtype = _FROM_WIRE[tensor.dtype]
    except KeyError:
        raise ValueError(f"{name}: unsupported dtype {tensor.dtype}") from None
    shape = tuple(int(s) for s in tensor.shape)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise ValueError(f"{name}: {len(tensor.data)} bytes for shape {shape} {dtype}, expected {expected}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def pixels_to_uint8(video: np.ndarray) -> np.ndarray:
    """Raw grey levels (float 0..255) as uint8, rounded and clipped: 4x fewer bytes on the wire."""
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)
