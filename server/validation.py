"""Checks on decoded input arrays; every error names the field and the problem."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from server.errors import InvalidArgument


def as_float32(array: np.ndarray, field: str) -> np.ndarray:
    """uint8 pixels and float64 become float32; float arrays must be finite."""
    if array.dtype == np.uint8:
        return array.astype(np.float32)
    if array.dtype.kind != "f":
        raise InvalidArgument(f"{field}: dtype {array.dtype} not accepted (float32, float64 or uint8)")
    out = array.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise InvalidArgument(f"{field}: {bad} non-finite values (NaN or Inf)")
    return out


def check_shape(
    array: np.ndarray, expected: Sequence[int | None], field: str, names: Sequence[str] = ()
) -> None:
    """``expected`` uses None for a free dimension; ``names`` labels the dims in the message (e.g. T, H, W)."""
    shape = array.shape
    if len(shape) == len(expected) and all(
        need is None or got == need for got, need in zip(shape, expected, strict=True)
    ):
        return  # per frame: no message text built unless it is needed
    labels = ", ".join(names) if names else ", ".join("?" if d is None else str(d) for d in expected)
    want = "[" + ", ".join("?" if d is None else str(d) for d in expected) + "]"
    if array.ndim != len(expected):
        raise InvalidArgument(
            f"{field}: shape {list(array.shape)}, expected rank {len(expected)} [{labels}] = {want}"
        )
    for axis, (got, need) in enumerate(zip(array.shape, expected, strict=True)):
        if need is not None and got != need:
            label = f" ({names[axis]})" if names else ""
            raise InvalidArgument(
                f"{field}: shape {list(array.shape)}, expected {want}: axis {axis}{label} must be {need}"
            )
