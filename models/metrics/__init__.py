"""SENSORIUM 2023 metrics (numpy only; shared by training, scoring and the demo). See docs/METRICS.md.

Arrays are per trial, (N, T) neurons x frames, in standardised units (response / per-neuron std).

- batch reference functions: `single_trial_correlation`, `correlation_to_average`, `fev_feve`, `mean_feve`
- streaming: `Scoreboard` (per mouse, pooled, per family; plain-dict results), `MouseAccumulator`
- frames: `align` (scored frames of a prediction/target pair), `accepted_prediction_frames`
- repeats: `group_repeats`, `video_fingerprint`, `true_length`
"""

from models.metrics.batch import (
    MIN_TOTAL_VARIANCE,
    corr,
    correlation_to_average,
    fev_feve,
    mean_feve,
    single_trial_correlation,
)
from models.metrics.frames import (
    accepted_prediction_frames,
    align,
    describe_accepted_frames,
    n_scored_frames,
    scored_stop,
)
from models.metrics.repeats import group_repeats, true_length, video_fingerprint
from models.metrics.scoreboard import METRICS, NeuronScores, Scoreboard, ScoredTrial, score_trials, summarise
from models.metrics.streaming import MouseAccumulator, PearsonAccumulator, StimulusAccumulator

__all__ = [
    "METRICS",
    "MIN_TOTAL_VARIANCE",
    "MouseAccumulator",
    "NeuronScores",
    "PearsonAccumulator",
    "Scoreboard",
    "ScoredTrial",
    "StimulusAccumulator",
    "accepted_prediction_frames",
    "align",
    "corr",
    "correlation_to_average",
    "describe_accepted_frames",
    "fev_feve",
    "group_repeats",
    "mean_feve",
    "n_scored_frames",
    "score_trials",
    "scored_stop",
    "single_trial_correlation",
    "summarise",
    "true_length",
    "video_fingerprint",
]
