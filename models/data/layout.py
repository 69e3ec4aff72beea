"""Names of the released SENSORIUM 2023 on-disk layout (SENSORIUM.md "Data on disk"), defined once.

One folder per mouse (session)::

    <session>/data/videos/{i}.npy            (36, 64, T) float32, grey levels 0..255
    <session>/data/responses/{i}.npy         (N, T)      float32, deconvolved activity >= 0
    <session>/data/behavior/{i}.npy          (2, T)      float32, [pupil dilation, running speed]
    <session>/data/pupil_center/{i}.npy      (2, T)      float32, eye position [x, y]
    <session>/meta/neurons/unit_ids.npy      (N,)        int
    <session>/meta/neurons/cell_motor_coordinates.npy (N, 3) int, micrometres
    <session>/meta/trials/tiers.npy          (n_trials,) str
    <session>/meta/statistics/<kind>/all/{min,max,mean,std}.npy

All per-trial arrays of one mouse are NaN-padded to one length; a trial's true length is its first NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from models.benchmark import BEHAVIOR_CHANNELS, FRAME_HEIGHT, FRAME_WIDTH, PUPIL_CHANNELS

VIDEOS: Final = "videos"
RESPONSES: Final = "responses"
BEHAVIOR: Final = "behavior"
PUPIL_CENTER: Final = "pupil_center"
KINDS: Final = (VIDEOS, RESPONSES, BEHAVIOR, PUPIL_CENTER)
STATISTICS: Final = ("min", "max", "mean", "std")

UNIT_IDS: Final = Path("meta/neurons/unit_ids.npy")
COORDINATES: Final = Path("meta/neurons/cell_motor_coordinates.npy")
TIERS_FILE: Final = Path("meta/trials/tiers.npy")

# dtype written for every per-trial array. NaN padding needs a float type; we could not confirm the release's
# exact float width here, so float32 (what the official loader casts to anyway). The reader accepts any float.
TRIAL_DTYPE: Final = "float32"


def trial_file(root: Path, kind: str, index: int) -> Path:
    return Path(root) / "data" / kind / f"{index}.npy"


def statistics_file(root: Path, kind: str, stat: str) -> Path:
    return Path(root) / "meta" / "statistics" / kind / "all" / f"{stat}.npy"


def leading_shape(kind: str, n_neurons: int) -> tuple[int, ...]:
    """Shape of one trial array without its (last) time axis."""
    return {
        VIDEOS: (FRAME_HEIGHT, FRAME_WIDTH),
        RESPONSES: (n_neurons,),
        BEHAVIOR: (BEHAVIOR_CHANNELS,),
        PUPIL_CENTER: (PUPIL_CHANNELS,),
    }[kind]
