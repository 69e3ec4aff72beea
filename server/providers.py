"""onnxruntime execution providers: CUDA only when a GPU really works, a quiet CPU fallback otherwise.

onnxruntime-gpu lists CUDAExecutionProvider as available even without a GPU, and asking for it there prints an
error line before falling back. So we look for the NVIDIA device files first, then probe a tiny session with
onnxruntime's logging silenced and keep CUDA only if the session still reports it.
"""

from __future__ import annotations

import base64
import functools
import glob
import logging

import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# A one-node Identity model (float32 [1] -> [1]), opset 17: enough to see whether CUDA initialises.
_PROBE_MODEL = base64.b64decode(
    "CAg6OwoQCgF4EgF5IghJZGVudGl0eRIFcHJvYmVaDwoBeBIKCggIARIECgIIAWIPCgF5EgoKCAgBEgQKAggBQgQKABAR"
)


def _nvidia_device_present() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*")) or bool(glob.glob("/dev/dxg"))


@functools.cache
def cuda_usable() -> bool:
    """True when a CUDA session can really be created (checked once per process)."""
    if CUDA not in ort.get_available_providers() or not _nvidia_device_present():
        return False
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failed CUDA init must not print an error line
    try:
        session = ort.InferenceSession(_PROBE_MODEL, sess_options=options, providers=[CUDA, CPU])
    except Exception as exc:  # a broken driver raises instead of falling back on some versions
        log.info("CUDA execution provider unusable (%s); using CPU", exc)
        return False
    usable = session.get_providers()[0] == CUDA
    if not usable:
        log.info("CUDA execution provider did not initialise; using CPU")
    return usable


def resolve_providers(choice: str) -> list[str]:
    """Provider list for InferenceSession from the ``providers`` setting (auto | cpu | cuda)."""
    if choice == "cpu":
        return [CPU]
    if choice == "cuda":
        if not cuda_usable():
            raise RuntimeError(
                "providers=cuda but no usable GPU (CUDA execution provider failed to initialise)"
            )
        return [CUDA, CPU]
    if choice == "auto":
        return [CUDA, CPU] if cuda_usable() else [CPU]
    raise ValueError(f"providers must be auto, cpu or cuda, got {choice!r}")
