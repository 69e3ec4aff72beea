"""The contract between export (models/) and serving (server/): tensor names, repository layout, metadata.

Numpy-free and torch-free on purpose: the server imports it. docs/MODEL_REPOSITORY.md explains it in prose.

Repository (Triton layout)::

    REPO/<mouse>-clip/config.pbtxt
    REPO/<mouse>-clip/<version>/model.onnx
    REPO/<mouse>-clip/<version>/metadata.json
    REPO/<mouse>-step/config.pbtxt
    REPO/<mouse>-step/<version>/model.onnx
    REPO/<mouse>-step/<version>/metadata.json

Clip graph: ``video`` [B, T, H, W], ``behavior`` [B, T, 2], ``pupil_center`` [B, T, 2] (float32, raw units:
pixels 0-255, behaviour and pupil centre as in the released files) -> ``responses`` [B, T - R + 1, N]
(float32, standardised units) where R = ``receptive_field``; output j belongs to input frame j + R - 1.

Step graph: ``video`` [B, H, W], ``behavior`` [B, 2], ``pupil_center`` [B, 2] and every state input
``state_in_<i>`` -> ``responses`` [B, N] and every ``state_out_<i>`` (same shape as ``state_in_<i>``).
A new stream starts from zero state; its output for frame t equals the clip graph's once t >= R - 1
(the warm-up, ``warmup_frames``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

VIDEO: Final = "video"
BEHAVIOR: Final = "behavior"
PUPIL_CENTER: Final = "pupil_center"
RESPONSES: Final = "responses"
STATE_IN_PREFIX: Final = "state_in_"
STATE_OUT_PREFIX: Final = "state_out_"

CLIP: Final = "clip"
STEP: Final = "step"
GraphKind = Literal["clip", "step"]

MODEL_FILENAME: Final = "model.onnx"
METADATA_FILENAME: Final = "metadata.json"
CONFIG_FILENAME: Final = "config.pbtxt"
RESPONSE_UNITS: Final = "standardised"  # responses / per-neuron std; raw = standardised * response_std


def state_in_name(index: int) -> str:
    return f"{STATE_IN_PREFIX}{index}"


def state_out_name(index: int) -> str:
    return f"{STATE_OUT_PREFIX}{index}"


def repository_model_name(mouse: str, kind: GraphKind) -> str:
    """Name of a Triton model folder: one clip model and one step model per mouse."""
    return f"{mouse}-{kind}"


def split_repository_model_name(name: str) -> tuple[str, GraphKind]:
    """Inverse of `repository_model_name`; raises ValueError for names that do not follow it."""
    mouse, sep, kind = name.rpartition("-")
    if not sep or not mouse or kind not in (CLIP, STEP):
        raise ValueError(f"model folder {name!r} is not named <mouse>-clip or <mouse>-step")
    return mouse, kind  # type: ignore[return-value]


@dataclass(frozen=True)
class StateSpec:
    """One state tensor of a step graph; ``shape`` excludes the leading batch axis."""

    input_name: str
    output_name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass
class ModelMetadata:
    """What travels with every exported graph (metadata.json beside model.onnx)."""

    mouse: str
    kind: GraphKind
    unit_ids: list[int]
    fps: int
    frame_height: int
    frame_width: int
    receptive_field: int  # R: input frames per output frame of the clip graph
    skip: int  # frames dropped before scoring (benchmark convention)
    architecture: str  # e.g. "factorised" or "gru"
    response_units: str = RESPONSE_UNITS
    # Per-neuron std that maps standardised outputs back to raw response units (raw = out * std).
    response_std: list[float] = field(default_factory=list)
    state: list[StateSpec] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)  # data seed/hash, git commit, config, created
    validation: dict[str, Any] = field(default_factory=dict)  # validation scores at export

    @property
    def n_neurons(self) -> int:
        return len(self.unit_ids)

    @property
    def warmup_frames(self) -> int:
        return self.receptive_field - 1

    def to_json(self) -> str:
        data = asdict(self)
        data["n_neurons"] = self.n_neurons
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        data = json.loads(text)
        data.pop("n_neurons", None)
        data["state"] = [StateSpec(**{**s, "shape": tuple(s["shape"])}) for s in data.get("state", [])]
        return cls(**data)

    def write(self, version_dir: Path) -> Path:
        path = Path(version_dir) / METADATA_FILENAME
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, version_dir: Path) -> ModelMetadata:
        path = Path(version_dir) / METADATA_FILENAME
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: missing model metadata") from None
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise ValueError(f"{path}: malformed model metadata ({exc})") from exc
