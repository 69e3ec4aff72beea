"""A closed-loop rig, replayed: send a trial's frames at a fixed rate and time every answer.

Over StreamPredict (``protocol="sensorium"``), or over KServe v2 / Triton's ModelStreamInfer with one sequence
per trial (``protocol="kserve"``, client.kserve): the same replay loop and report for both.

Like a real rig, one frame is in flight: frame i is due at ``t0 + i / fps`` on a monotonic clock; the rig waits
for it, sends it, and waits for its answer before it can send the next. A frame's *deadline* is the moment the
next frame is due (``due + 1 / fps``): an answer after it is a deadline miss. Each trial gets its own stream
(fresh model state), opened before the clock starts.

Where the time of a frame went (all from the client's view, `client.predictor.FrameResponse`):
client = encode + decode, network = round trip - server time, queue and compute as the server reports them,
server other = server time - queue - compute (decode, validation, response building on the server).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from client.kserve import AsyncKServeClient
from client.predictor import AsyncPredictorClient, FrameResponse
from client.recording import SessionRecorder
from client.tensors import pixels_to_uint8
from client.trials import TrialInputs

PERCENTILES = (50, 90, 99)
PROTOCOLS = {"sensorium": AsyncPredictorClient, "kserve": AsyncKServeClient}


@dataclass
class FrameTiming:
    trial: int
    sequence: int
    send_lag: float  # sent this long after its due time (waiting for the previous answer, or timer jitter)
    latency: float  # send -> answer decoded (encode + round trip + decode)
    deadline_miss: bool
    response: FrameResponse


@dataclass
class RigReport:
    target: str
    model: str
    version: int
    fps: float
    trials: list[int]
    frames: list[FrameTiming] = field(default_factory=list)
    protocol: str = "sensorium"
    wall_seconds: float = 0.0

    @property
    def budget_seconds(self) -> float:
        return 1.0 / self.fps

    def _ms(self, values: Sequence[float]) -> dict[str, float]:
        a = np.asarray(values, dtype=np.float64) * 1e3
        if a.size == 0:
            return {f"p{p}": math.nan for p in PERCENTILES} | {"mean": math.nan, "max": math.nan}
        out = {f"p{p}": float(np.percentile(a, p)) for p in PERCENTILES}
        return out | {"mean": float(a.mean()), "max": float(a.max())}

    def breakdown(self) -> dict[str, list[float]]:
        rs = [f.response for f in self.frames]
        return {
            "client": [r.encode_seconds + r.decode_seconds for r in rs],
            "network": [r.network_seconds for r in rs],
            "queue": [r.queue_seconds for r in rs],
            "compute": [r.compute_seconds for r in rs],
            "server_other": [max(0.0, r.server_seconds - r.queue_seconds - r.compute_seconds) for r in rs],
        }

    def to_dict(self) -> dict[str, Any]:
        """The `--json` object."""
        n = len(self.frames)
        return {
            "target": self.target,
            "protocol": self.protocol,
            "model": self.model,
            "version": self.version,
            "fps": self.fps,
            "trials": self.trials,
            "frames": n,
            "budget_ms": self.budget_seconds * 1e3,
            "round_trip_ms": self._ms([f.latency for f in self.frames]),
            "deadline_misses": sum(f.deadline_miss for f in self.frames),
            "late_sends": sum(f.send_lag > self.budget_seconds for f in self.frames),
            "send_lag_ms": self._ms([f.send_lag for f in self.frames]),
            "breakdown_ms": {k: self._ms(v) for k, v in self.breakdown().items()},
            "batch_size": {
                "mean": float(np.mean([f.response.batch_size for f in self.frames])) if n else math.nan,
                "max": max((f.response.batch_size for f in self.frames), default=0),
            },
            "achieved_fps": n / self.wall_seconds if self.wall_seconds else math.nan,
        }

    def table(self) -> str:
        """Human summary: one row per quantity, percentiles in ms."""
        d = self.to_dict()
        head = (
            f"rig: {d['frames']} frames from {len(self.trials)} trial(s) of {self.model} (v{self.version}) "
            f"at {self.fps:g} fps over {self.target} ({self.protocol})"
        )
        cols = ("p50", "p90", "p99", "max", "mean")
        lines = [head, f"{'ms':<16}" + "".join(f"{c:>9}" for c in cols)]

        def row(name: str, stats: dict[str, float]) -> str:
            return f"{name:<16}" + "".join(f"{stats[c]:>9.2f}" for c in cols)

        lines.append(row("round trip", d["round_trip_ms"]))
        for name, stats in d["breakdown_ms"].items():
            lines.append(row(f"  {name.replace('_', ' ')}", stats))
        lines.append(row("send lag", d["send_lag_ms"]))
        lines.append(
            f"deadline misses: {d['deadline_misses']} / {d['frames']} (budget {d['budget_ms']:.1f} ms per frame); "
            f"late sends: {d['late_sends']}; batch size mean {d['batch_size']['mean']:.2f} max {d['batch_size']['max']}; "
            f"achieved {d['achieved_fps']:.1f} fps"
        )
        return "\n".join(lines)


async def _sleep_until(deadline: float) -> None:
    """Sleep on the event loop until `deadline` (perf_counter seconds); the loop's timer is ~1 ms coarse."""
    delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def replay_trial(
    client: AsyncPredictorClient | AsyncKServeClient,
    trial: TrialInputs,
    fps: float,
    *,
    version: int = 0,
    frame_dtype: type = np.float32,
    stream_id: str = "",
    report: RigReport | None = None,
    model: str | None = None,
    recorder: SessionRecorder | None = None,
) -> list[FrameTiming]:
    """Stream one trial at `fps` with one frame in flight; returns per-frame timings.

    `model`: the model to stream to (default: the trial's mouse). `recorder`: each streamed frame is handed to it
    with the trial's responses at that frame (what a replaying rig "measured"), and the trial ends with its tier.
    """
    if recorder is not None and trial.responses is None:
        raise ValueError(
            f"trial {trial.index}: recording needs its responses (trial_inputs(..., with_responses))"
        )
    period = 1.0 / fps
    video = pixels_to_uint8(trial.video) if frame_dtype is np.uint8 else trial.video
    timings: list[FrameTiming] = []
    async with await client.open_stream(
        model or trial.mouse, version, stream_id, frames=trial.n_frames
    ) as stream:
        if report is not None:
            report.version = stream.info.version
        t0 = time.perf_counter()
        for i in range(trial.n_frames):
            due = t0 + i * period
            await _sleep_until(due)
            sent = time.perf_counter()
            response = await stream.send(video[i], trial.behavior[i], trial.pupil_center[i])
            done = time.perf_counter()
            timings.append(
                FrameTiming(trial.index, i, sent - due, done - sent, done > due + period, response)
            )
            if recorder is not None:
                assert trial.responses is not None
                recorder.add_frame(video[i], trial.behavior[i], trial.pupil_center[i], trial.responses[i])
    if recorder is not None:
        recorder.end_trial(trial.tier)
    return timings


async def run_rig(
    target: str,
    trials: Sequence[TrialInputs],
    fps: float,
    *,
    version: int = 0,
    frame_dtype: type = np.float32,
    round_robin: bool = False,
    progress: bool = False,
    token: str | None = None,
    credentials: Any = None,
    protocol: str = "sensorium",
    model: str | None = None,
    recorder: SessionRecorder | None = None,
) -> RigReport:
    """Replay `trials` (one mouse) one after another over `protocol` (a `PROTOCOLS` key); returns the report
    with every frame's timing.

    `model`: stream to this model instead of the trials' mouse; `recorder`: record what was streamed (see
    `replay_trial`)."""
    if not trials:
        raise ValueError("no trials to replay")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    report = RigReport(
        target, model or trials[0].mouse, version, fps, [t.index for t in trials], protocol=protocol
    )
    async with PROTOCOLS[protocol](
        target, round_robin=round_robin, token=token, credentials=credentials
    ) as client:
        await client.wait_ready()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(t.n_frames for t in trials), unit="frame", desc="rig", leave=False)
        start = time.perf_counter()
        for trial in trials:
            frames = await replay_trial(
                client,
                trial,
                fps,
                version=version,
                frame_dtype=frame_dtype,
                stream_id=f"rig-trial-{trial.index}",
                report=report,
                model=model,
                recorder=recorder,
            )
            report.frames.extend(frames)
            if bar is not None:
                bar.update(len(frames))
        report.wall_seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
    return report
