"""glibc malloc settings for a scoring server: keep the ~10 MB per-trial buffers in the heap.

Every trial of a submission is a ~10 MB message: gRPC, protobuf and numpy allocate and free buffers of that size
for each one. With glibc's defaults such a buffer is mmap'd, or the freed top of the heap is trimmed back to the
kernel, so the next trial faults the same pages in again: system CPU time, ~0.8 ms per MB of predictions on the
server (docs/benchmarks/scoring.md). These settings keep up to `TRIM_THRESHOLD` bytes of freed heap for reuse
instead (a bounded amount: it does not grow with the submission). Applied once by `server.scoring.register`;
a ``MALLOC_*_`` environment variable that the operator set wins over the value here. Not glibc: nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Final

log = logging.getLogger(__name__)

MIB: Final = 1024 * 1024
MMAP_THRESHOLD: Final = 32 * MIB  # glibc's maximum: allocations below it come from the heap
TRIM_THRESHOLD: Final = 256 * MIB  # freed heap kept before trimming (a few trials' buffers)
TOP_PAD: Final = 64 * MIB  # extra heap requested per growth

# mallopt parameter numbers (malloc.h) and the environment variables glibc reads for them at start-up
_PARAMS: Final = {
    "MALLOC_TRIM_THRESHOLD_": (-1, TRIM_THRESHOLD),
    "MALLOC_TOP_PAD_": (-2, TOP_PAD),
    "MALLOC_MMAP_THRESHOLD_": (-3, MMAP_THRESHOLD),
}


def tune_malloc() -> dict[str, int]:
    """Set the parameters above through mallopt(3); returns those set, by environment variable name."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None:
        log.info("malloc settings unchanged: no glibc mallopt in this process")
        return {}
    applied = {}
    for env, (param, value) in _PARAMS.items():
        if env in os.environ:
            continue  # the operator's setting (glibc applied it at start-up)
        if mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
            applied[env] = value
    if applied:
        log.info(
            "malloc tuned for ~10 MB trial buffers: %s", ", ".join(f"{k}={v}" for k, v in applied.items())
        )
    return applied
