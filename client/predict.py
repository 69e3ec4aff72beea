"""Predict a whole tier with PredictClip and write the official submission file.

Frame alignment: the clip graph answers T - R + 1 outputs, row j belonging to frame j + R - 1 (its receptive
field ends there). The submission holds frames [SKIP_FRAMES, T), i.e. the *last* T - SKIP_FRAMES outputs -
the official format (SENSORIUM.md), which the scorer aligns to the trial's last frames. When a model's warm-up
is longer than the skip (R - 1 > SKIP_FRAMES) the first frames after the skip have no clip output; they are
filled with the first available output (edge padding) and a warning says so. For every model of this project
R - 1 = 18 < 50, so this never happens in practice.

Units: the graph answers in model units (response / the model's per-neuron `response_std`); the file holds the
official scored units, like the truth it is scored against: raw = output x `response_std` (GetModel), then x the
released response precision of each neuron and frame of the trial (`ScoredUnits` from the session's public
statistics, frame index = the trial file's). Only this offline path converts: streaming graphs stay free of any
trial clock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client.predictor import PredictorClient
from client.submission import SubmissionWriter, submission_file_name
from client.tensors import pixels_to_uint8
from client.trials import list_sessions, open_session, trial_inputs
from models.benchmark import SKIP_FRAMES, TEST_ROUNDS, TRACKS
from models.data.normalisation import ScoredUnits

log = logging.getLogger(__name__)


def submission_frames(
    responses: np.ndarray, first_frame: int, n_frames: int, skip: int = SKIP_FRAMES
) -> np.ndarray:
    """Clip outputs (T - R + 1, N) for frames first_frame.. -> the submission's (N, T - skip) for frames [skip, T)."""
    if responses.shape[0] + first_frame != n_frames:
        raise ValueError(
            f"clip output has {responses.shape[0]} frames from frame {first_frame}, but the trial has {n_frames}"
        )
    if n_frames <= skip:
        raise ValueError(f"trial has {n_frames} frames, not more than the {skip}-frame skip")
    if first_frame > skip:
        pad = np.repeat(responses[:1], first_frame - skip, axis=0)
        responses = np.concatenate([pad, responses], axis=0)
        first_frame = skip
    return np.ascontiguousarray(responses[skip - first_frame :].T, dtype=np.float32)


def default_output_name(tier: str) -> str:
    """Official file name for a test tier (e.g. final_test_main -> predictions_final_main.parquet.brotli)."""
    round_, _, track = tier.partition("_test_")
    if round_ in TEST_ROUNDS and track in TRACKS:
        return submission_file_name(track, round_)
    return f"predictions_{tier}.parquet.brotli"


@dataclass
class PredictSummary:
    path: Path
    trials: int
    per_mouse: dict[str, int]
    warnings: list[str]


def predict_tier(
    target: str,
    data: Path,
    tier: str,
    out: Path,
    *,
    mice: Sequence[str] | None = None,
    version: int = 0,
    send_uint8: bool = False,
    round_robin: bool = False,
    progress: bool = True,
    token: str | None = None,
    credentials: Any = None,
) -> PredictSummary:
    """Predict every trial of `tier` for each mouse (default: every session in `data`) into `out`."""
    from tqdm import tqdm

    data = Path(data)
    out = Path(out)
    if out.is_dir():
        out = out / default_output_name(tier)
    mice = list(mice) if mice else list_sessions(data)
    if not mice:
        raise FileNotFoundError(f"{data}: no session folders")
    folders = {m: open_session(data, m) for m in mice}
    plan = {m: [int(i) for i in f.trials(tier)] for m, f in folders.items()}
    total = sum(len(v) for v in plan.values())
    if total == 0:
        raise ValueError(f"no trials of tier {tier!r} in {data} for {mice}")
    warnings: list[str] = []
    client = PredictorClient(target, round_robin=round_robin, token=token, credentials=credentials)
    with client, SubmissionWriter(out) as writer:
        client.wait_ready()
        bar = tqdm(total=total, unit="trial", desc=f"predict {tier}", disable=not progress)
        for mouse, indices in plan.items():
            if not indices:
                continue
            info = client.get_model(mouse).version(version)
            ids = folders[mouse].unit_ids
            units = ScoredUnits.from_mouse(folders[mouse])
            if info.unit_ids.size and not np.array_equal(info.unit_ids, ids):
                raise ValueError(
                    f"model {mouse} v{info.version} has {info.unit_ids.size} unit ids that differ from "
                    f"{data / mouse}/meta/neurons/unit_ids.npy ({ids.size} ids): wrong model for this data"
                )
            if info.response_std.size != ids.size:
                raise ValueError(
                    f"model {mouse} v{info.version} reports {info.response_std.size} response_std values for "
                    f"{ids.size} neurons: its outputs cannot be turned into the scored units"
                )
            if info.receptive_field - 1 > SKIP_FRAMES:
                msg = (
                    f"{mouse}: warm-up R - 1 = {info.receptive_field - 1} > skip {SKIP_FRAMES}; "
                    f"the first frames after the skip are edge-padded"
                )
                log.warning(msg)
                warnings.append(msg)
            for index in indices:
                trial = trial_inputs(folders[mouse], index)
                video = pixels_to_uint8(trial.video) if send_uint8 else trial.video
                clip = client.predict_clip(
                    mouse, video, trial.behavior, trial.pupil_center, version=info.version
                )
                prediction = submission_frames(clip.responses, clip.first_frame, trial.n_frames)
                prediction = units.from_model_units(prediction, info.response_std, trial.n_frames)
                writer.write(mouse, index, prediction, ids)
                bar.update()
        bar.close()
    log.info("wrote %d trials of %s to %s", total, tier, out)
    return PredictSummary(out, total, {m: len(v) for m, v in plan.items()}, warnings)
