"""Facts of the SENSORIUM 2023 benchmark (SENSORIUM.md), defined once and imported everywhere."""

from typing import Final

FPS: Final = 30
FRAME_HEIGHT: Final = 36
FRAME_WIDTH: Final = 64
BEHAVIOR_CHANNELS: Final = 2  # row 0 pupil dilation, row 1 running speed
PUPIL_CHANNELS: Final = 2  # eye position x, y

MOVIE_FRAMES: Final = 300  # natural movies and most OOD families: 10 s at 30 Hz
DOTS_FRAMES: Final = 315  # flashing Gaussian dots trials are longer
SCORED_FRAMES: Final = 300  # only the first 300 frames of a trial count for scoring
SKIP_FRAMES: Final = 50  # warm-up frames dropped from every trial before scoring

CORRELATION_EPS: Final = 1e-8  # added to each std in Pearson correlation (population std, ddof 0)
FEV_THRESHOLD: Final = 0.15  # FEVE is averaged over neurons with FEV >= this
RESPONSE_STD_FLOOR: Final = 0.01  # response std floored at this fraction of its nanmean

TIER_TRAIN: Final = "train"
TIER_ORACLE: Final = "oracle"
TIER_NONE: Final = "none"
TIERS: Final = (
    "train",
    "oracle",
    "live_test_main",
    "live_test_bonus",
    "final_test_main",
    "final_test_bonus",
    "none",
)
TEST_TIERS: Final = ("live_test_main", "live_test_bonus", "final_test_main", "final_test_bonus")
TRACKS: Final = ("main", "bonus")
TEST_ROUNDS: Final = ("live", "final")
# The validation round: the oracle tier (main track, natural movies), whose responses are public, so participants
# check a submission locally before spending a test submission. Scored like the test rounds.
VALIDATION_ROUND: Final = TIER_ORACLE
SCORED_ROUNDS: Final = (*TEST_ROUNDS, VALIDATION_ROUND)


def test_tier(track: str, round_: str) -> str:
    """Tier folder name for a scoring track (main|bonus) and round (live|final)."""
    if track not in TRACKS:
        raise ValueError(f"track must be one of {TRACKS}, got {track!r}")
    if round_ not in TEST_ROUNDS:
        raise ValueError(f"tier must be one of {TEST_ROUNDS}, got {round_!r}")
    return f"{round_}_test_{track}"


def scored_tier(track: str, round_: str) -> str:
    """The tier a submission for (track, round) is scored on: a test tier, or the oracle tier (main track)."""
    if round_ == VALIDATION_ROUND:
        if track != "main":
            raise ValueError(f"the {VALIDATION_ROUND} tier belongs to the main track, not {track!r}")
        return TIER_ORACLE
    return test_tier(track, round_)


# Stimulus families, by the ids the real metadata uses (shared/data/sensorium2023-meta/*/stimulus_ids.npy).
STIMULUS_FAMILIES: Final = {
    0: "natural_movie",
    1: "directional_pink_noise",
    2: "gaussian_dots",
    3: "random_dot_kinematogram",
    4: "drifting_gabor",
    5: "flashing_images",
}
OOD_FAMILIES: Final = tuple(name for sid, name in STIMULUS_FAMILIES.items() if sid != 0)

# Official submission file names per (track, round).
SUBMISSION_FILE_NAMES: Final = {
    ("main", "live"): "predictions_live_main.parquet.brotli",
    ("main", "final"): "predictions_final_main.parquet.brotli",
    ("bonus", "live"): "predictions_live_test_bonus_ood.parquet.brotli",
    ("bonus", "final"): "predictions_final_test_bonus_ood.parquet.brotli",
}

# Exported graphs must match torch, and the streamed step graph the clip graph, to this max abs difference
# (standardised response units) once the receptive field is full (DESIGN.md: Models).
PARITY_TOLERANCE: Final = 1e-4
