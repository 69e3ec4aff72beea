"""One submission being scored: validate each trial as it arrives, fold it into the streaming
`models.metrics.scoreboard.Scoreboard` (split over neuron shards scored in parallel threads,
`server.scoring.sharding`), and at the end check completeness and compute the scores.

Memory holds the trial in hand plus the accumulators: O(neurons) for single-trial correlation and, for
correlation to average and FEVE, per distinct stimulus two (N, F) float64 sums (`models.metrics.streaming`). It
does not grow with the number of trials (repeats). On the bonus track trials are split by OOD family
(per-family scores); per-mouse scores pool the families.
"""

from __future__ import annotations

import logging

import numpy as np

from protos.sensorium.v1 import scoring_pb2, tensor_pb2
from server.scoring import neuron_scores
from server.scoring.ground_truth import GroundTruth, TrialInfo
from server.scoring.results import (
    METRICS,
    MetricScores,
    SubmissionScores,
)
from server.scoring.sharding import ShardedScoreboard
from server.scoring.validation import (
    Header,
    NeuronOrder,
    SubmissionInvalid,
    check_complete,
    check_finite,
    check_frame_count,
    check_prediction_array,
    check_trial_membership,
    trial_name,
)

log = logging.getLogger(__name__)


class ScoringSession:
    """Not thread safe: the servicer feeds one trial at a time."""

    def __init__(
        self, truth: GroundTruth, header: Header, expected: dict[str, list[int]], shards: int | None = None
    ) -> None:
        self.truth = truth
        self.header = header
        self.expected = expected  # trials of the tier per mouse
        self._trials: dict[str, dict[int, TrialInfo]] = {m: truth.trials(m) for m in expected}
        self._received: dict[str, set[int]] = {m: set() for m in expected}
        self._orders: dict[str, NeuronOrder] = {m: NeuronOrder(m, truth.unit_ids(m)) for m in expected}
        self._by_family = header.track == "bonus"
        self._board = ShardedScoreboard({m: len(truth.unit_ids(m)) for m in expected}, shards)
        self.bytes_received = 0

    @property
    def n_trials(self) -> int:
        return sum(map(len, self._received.values()))

    def add_trial_message(self, message: scoring_pb2.TrialPrediction) -> None:
        """Decode and add one trial from the wire."""
        mouse, trial = message.mouse, int(message.trial_index)
        where = trial_name(mouse, trial)
        tensor = message.prediction
        if tensor.dtype != tensor_pb2.DTYPE_FLOAT32:
            name = (
                tensor_pb2.DType.Name(tensor.dtype)
                if tensor.dtype in tensor_pb2.DType.values()
                else tensor.dtype
            )
            raise SubmissionInvalid(f"{where}: prediction dtype must be DTYPE_FLOAT32, got {name}")
        shape = tuple(int(s) for s in tensor.shape)
        if len(shape) != 2 or min(shape) < 0:
            raise SubmissionInvalid(
                f"{where}: prediction shape must be [n_neurons, n_frames], got {list(shape)}"
            )
        data = tensor.data
        if len(data) != shape[0] * shape[1] * 4:
            raise SubmissionInvalid(
                f"{where}: prediction holds {len(data)} bytes; shape {list(shape)} float32 needs "
                f"{shape[0] * shape[1] * 4}"
            )
        prediction = np.frombuffer(data, dtype="<f4").reshape(shape)
        neuron_ids = np.fromiter(message.neuron_ids, dtype=np.int64, count=len(message.neuron_ids))
        self.add(mouse, trial, neuron_ids, prediction)
        self.bytes_received += len(data)

    def add(self, mouse: str, trial: int, neuron_ids: np.ndarray, prediction: np.ndarray) -> None:
        """Validate one trial (raises SubmissionInvalid, changing nothing) and accumulate it."""
        info = check_trial_membership(
            mouse,
            trial,
            self._trials.get(mouse),
            self.header.tier_name,
            self._received.get(mouse, set()),
            len(self.expected),
        )
        check_prediction_array(mouse, trial, prediction, len(neuron_ids))
        rows = self._orders[mouse].rows(trial, neuron_ids)
        target = self.truth.responses(mouse, trial)
        check_frame_count(mouse, trial, prediction.shape[1], target.shape[1])
        check_finite(mouse, trial, prediction, neuron_ids)
        if rows is not None:
            prediction = prediction[rows]
        family = info.family if self._by_family else None
        try:
            self._board.add(mouse, prediction, target, info.stimulus, family, trial=trial)
        except ValueError as exc:  # the prediction was checked above: this is the truth's fault
            raise RuntimeError(f"ground truth of {trial_name(mouse, trial)} cannot be scored: {exc}") from exc
        self._received[mouse].add(trial)

    def result(self) -> SubmissionScores:
        """Scores of the complete submission; raises SubmissionInvalid naming missing trials."""
        check_complete(self.expected, self._received, self.header.tier_name)
        board = self._board.result()
        families = board.get("per_family", {})
        metrics = {
            name: MetricScores(
                overall=_float(board[name]["overall"]),
                per_mouse={m: _float(v) for m, v in sorted(board[name]["per_mouse"].items())},
                per_family={f: _float(families[f][name]["overall"]) for f in sorted(families)},
            )
            for name in METRICS
        }
        return SubmissionScores(
            track=self.header.track,
            tier=self.header.tier,
            submitter=self.header.submitter,
            label=self.header.label,
            n_trials=self.n_trials,
            n_neurons=int(board["n_neurons"]["overall"]),
            metrics=metrics,
            neurons=neuron_scores.collect(self._board, {m: self.truth.unit_ids(m) for m in self.expected}),
        )


def _float(value: float | None) -> float:
    """None (metric undefined, e.g. FEVE without a reliable neuron) -> NaN."""
    return float("nan") if value is None else float(value)
