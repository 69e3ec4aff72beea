"""Self-checks of an export, run in onnxruntime before anything lands in the repository.

1. torch vs onnxruntime, clip graph, at two batch sizes and two clip lengths other than the traced ones;
2. the step graph replayed frame by frame from zero state vs the clip graph, once the receptive field is full.
Each returns the max abs difference; `ExportCheckError` (exit non-zero in the CLI) when one exceeds tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch

from models import contract
from models.benchmark import PARITY_TOLERANCE
from models.data.normalisation import NormalisationStats
from models.export.graphs import ExportError
from models.export.wrappers import ClipModel
from models.networks import SensoriumModel

TOLERANCE = PARITY_TOLERANCE


class ExportCheckError(ExportError):
    """A parity check failed: the graphs would serve different numbers than the trained model."""


@dataclass(frozen=True)
class CheckReport:
    clip_vs_torch: float
    step_vs_clip: float
    frames: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "clip_vs_torch_max_abs": self.clip_vs_torch,
            "step_vs_clip_max_abs": self.step_vs_clip,
            "frames": self.frames,
        }


def session(model: onnx.ModelProto | bytes | str, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def raw_inputs(
    stats: NormalisationStats, batch: int, frames: int, seed: int, height: int, width: int
) -> dict[str, np.ndarray]:
    """Plausible raw inputs: grey levels 0-255, behaviour and pupil centre around the data's statistics."""
    rng = np.random.default_rng(seed)
    behavior = np.abs(1 + 0.5 * rng.standard_normal((batch, frames, 2))) * stats.behavior_std
    pupil = stats.pupil_mean + stats.pupil_std * rng.standard_normal((batch, frames, 2))
    return {
        contract.VIDEO: (rng.random((batch, frames, height, width)) * 255).astype(np.float32),
        contract.BEHAVIOR: behavior.astype(np.float32),
        contract.PUPIL_CENTER: pupil.astype(np.float32),
    }


def replay_step(
    step: ort.InferenceSession, inputs: dict[str, np.ndarray], state_shapes: list[tuple[int, ...]]
) -> np.ndarray:
    """Stream a clip through the step graph from zero state: responses [B, T, N], one per input frame."""
    batch, frames = inputs[contract.VIDEO].shape[:2]
    state = [np.zeros((batch, *shape), np.float32) for shape in state_shapes]
    names = [contract.state_in_name(i) for i in range(len(state))]
    outputs = []
    for t in range(frames):
        feed = {name: value[:, t] for name, value in inputs.items()}
        feed.update(zip(names, state, strict=True))
        responses, *state = step.run(None, feed)
        outputs.append(responses)
    return np.stack(outputs, axis=1)


def check_export(
    model: SensoriumModel,
    session_name: str,
    stats: NormalisationStats,
    clip: onnx.ModelProto,
    step: onnx.ModelProto,
    tolerance: float = TOLERANCE,
    extra_frames: int = 12,
) -> CheckReport:
    """Run both checks; raise ExportCheckError naming the check, the difference and where it happened."""
    r = model.receptive_field
    h, w = model.frame_size
    clip_session, step_session = session(clip), session(step)
    reference = ClipModel(model, session_name, stats).eval()
    worst_clip = 0.0
    for batch, frames, seed in ((1, r + extra_frames, 1), (3, r + 5, 2)):
        inputs = raw_inputs(stats, batch, frames, seed, h, w)
        (ort_out,) = clip_session.run(None, inputs)
        with torch.no_grad():
            torch_out = reference(*(torch.from_numpy(inputs[k]) for k in contract_inputs())).numpy()
        if ort_out.shape != torch_out.shape:
            raise ExportCheckError(
                f"{session_name}: clip graph output shape {ort_out.shape} != torch {torch_out.shape} "
                f"(batch {batch}, {frames} frames)"
            )
        worst_clip = max(worst_clip, float(np.abs(ort_out - torch_out).max()))
        if worst_clip > tolerance:
            raise ExportCheckError(
                f"{session_name}: clip graph (onnxruntime) differs from torch by {worst_clip:.3g} > {tolerance:g} "
                f"(batch {batch}, {frames} frames)"
            )
    frames = r + extra_frames
    inputs = raw_inputs(stats, 2, frames, 3, h, w)
    (clip_out,) = clip_session.run(None, inputs)  # [B, T - R + 1, N]
    streamed = replay_step(step_session, inputs, model.state_shapes())[:, r - 1 :]
    if streamed.shape != clip_out.shape:
        raise ExportCheckError(
            f"{session_name}: step graph replay gives {streamed.shape}, clip graph {clip_out.shape}"
        )
    per_frame = np.abs(streamed - clip_out).max(axis=(0, 2))
    worst_step = float(per_frame.max())
    if worst_step > tolerance:
        first = int(np.argmax(per_frame > tolerance)) + r - 1
        raise ExportCheckError(
            f"{session_name}: step graph replayed frame by frame differs from the clip graph by {worst_step:.3g} "
            f"> {tolerance:g} (first at input frame {first}, receptive field {r})"
        )
    return CheckReport(clip_vs_torch=worst_clip, step_vs_clip=worst_step, frames=frames)


def contract_inputs() -> tuple[str, str, str]:
    return (contract.VIDEO, contract.BEHAVIOR, contract.PUPIL_CENTER)
