"""Predicted vs recorded traces of a served model on a PUBLIC trial (train or oracle tier), for the model pages.

Recorded responses come from the released public folder only (``DIR/public/<mouse>``, where test-tier
responses are zero anyway); a trial of any other tier is refused before anything is read. Predictions come from
the server itself (PredictClip). Both are in the graphs' model units (responses / one std per neuron), so the
pictures compare like with like; the benchmark's scores use the official per-frame units instead (docs/METRICS.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from models.benchmark import TIER_ORACLE, TIER_TRAIN

PUBLIC_TIERS: Final = (TIER_ORACLE, TIER_TRAIN)  # released responses; every test tier stays hidden
TRACE_NEURONS: Final = 4

# (mouse, video [T, H, W], behavior [T, 2], pupil_center [T, 2]) -> (responses [T_out, N], first_frame, unit_ids)
Predict = Callable[[str, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, int, np.ndarray]]


class HiddenTier(Exception):
    """The trial belongs to a tier whose responses are not released."""


@dataclass(frozen=True)
class Trace:
    mouse: str
    trial: int
    tier: str
    first_frame: int  # frame of the first predicted row (receptive field - 1)
    unit_ids: np.ndarray  # (k,) the plotted neurons
    predicted: np.ndarray  # (k, T_out) model units
    recorded: np.ndarray  # (k, T_out) model units
    correlation: np.ndarray  # (k,) Pearson over the predicted frames


class TraceSource:
    def __init__(self, public_dir: Path, predict: Predict) -> None:
        self.public_dir = Path(public_dir)
        self.predict = predict
        self._folders: dict[str, Any] = {}  # mouse -> models.data.reader.MouseFolder (opened once)
        self._lock = threading.Lock()

    def mice(self) -> list[str]:
        from models.data.reader import is_mouse_folder

        if not self.public_dir.is_dir():
            return []
        return sorted(p.name for p in self.public_dir.iterdir() if is_mouse_folder(p))

    def _folder(self, mouse: str):  # type: ignore[no-untyped-def]
        from models.data.reader import open_mouse

        with self._lock:
            if mouse not in self._folders:
                if mouse not in self.mice():
                    raise KeyError(f"no public data for mouse {mouse!r}")
                self._folders[mouse] = open_mouse(self.public_dir / mouse, validate="off")
            return self._folders[mouse]

    def public_trials(self, mouse: str) -> dict[str, list[int]]:
        folder = self._folder(mouse)
        return {tier: [int(i) for i in folder.trials(tier)] for tier in PUBLIC_TIERS}

    def trace(self, mouse: str, trial: int, neurons: int = TRACE_NEURONS) -> Trace:
        """Raises KeyError (unknown mouse/trial) or HiddenTier (a test tier: nothing is read)."""
        from models.data.normalisation import NormalisationStats

        folder = self._folder(mouse)
        if not 0 <= trial < folder.n_trials:
            raise KeyError(f"mouse {mouse} has no trial {trial}")
        tier = str(folder.tiers[trial])
        if tier not in PUBLIC_TIERS:
            raise HiddenTier(
                f"trial {trial} is in tier {tier!r}: its responses are hidden; traces are shown for tiers "
                f"{', '.join(PUBLIC_TIERS)} only"
            )
        video = np.ascontiguousarray(np.moveaxis(folder.video(trial), -1, 0), dtype=np.float32)
        behavior = np.ascontiguousarray(folder.behavior(trial).T, dtype=np.float32)
        pupil = np.ascontiguousarray(folder.pupil_center(trial).T, dtype=np.float32)
        predicted, first, model_ids = self.predict(mouse, video, behavior, pupil)
        stats = NormalisationStats.from_mouse(folder)
        recorded = np.asarray(folder.responses(trial), dtype=np.float64) * stats.response_precision[:, None]
        row_of = {int(u): i for i, u in enumerate(folder.unit_ids)}
        if len(model_ids) != len(row_of) or any(int(u) not in row_of for u in model_ids):
            raise KeyError(f"the served model of {mouse} predicts other neurons than the public data has")
        k = min(neurons, len(model_ids))
        rows = [row_of[int(u)] for u in model_ids[:k]]
        pred = np.asarray(predicted, dtype=np.float64)[:, :k].T  # (k, T_out)
        rec = recorded[rows, first : first + pred.shape[1]]
        return Trace(mouse, trial, tier, first, np.asarray(model_ids[:k]), pred, rec, _pearson(pred, rec))


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / denom, np.nan)


def grpc_predict(target: str) -> Predict:
    """A `Predict` calling PredictClip on `target` (the server's own port) through the generated stubs."""
    import grpc

    from protos.auth import auth_metadata
    from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc
    from server.converters import array_to_tensor, tensor_to_array

    stub = predictor_pb2_grpc.PredictorStub(grpc.insecure_channel(target))

    def predict(
        mouse: str, video: np.ndarray, behavior: np.ndarray, pupil: np.ndarray
    ) -> tuple[np.ndarray, int, np.ndarray]:
        request = predictor_pb2.PredictClipRequest(
            model=mouse,
            video=array_to_tensor(np.asarray(video, np.float32)),
            behavior=array_to_tensor(np.asarray(behavior, np.float32)),
            pupil_center=array_to_tensor(np.asarray(pupil, np.float32)),
        )
        out = stub.PredictClip(request, metadata=auth_metadata())
        info = stub.GetModel(predictor_pb2.GetModelRequest(model=mouse), metadata=auth_metadata())
        version = next(v for v in info.versions if v.version == out.version)
        responses = tensor_to_array(out.responses, "responses")
        return responses, int(out.first_frame), np.asarray(version.unit_ids, dtype=np.int64)

    return predict
