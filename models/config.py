"""Model configuration: one dataclass, a few named configs (`CONFIGS`), JSON-able for checkpoints.

Torch-free so that anything (CLI help, metadata) can read a config. Training hyper-parameters live in
`models/training/` (TrainConfig, owned by training); this file only describes the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from models.benchmark import BEHAVIOR_CHANNELS

Architecture = Literal["factorised", "gru"]
ARCHITECTURES: tuple[str, ...] = ("factorised", "gru")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a `models.networks.SensoriumModel` (see docs/MODEL_REPOSITORY.md for the exported form).

    Core layer i: spatial conv (1, k_s, k_s) -> temporal conv (k_t, 1, 1), no temporal padding (causal, the
    output is aligned to the last input frame) -> BatchNorm -> ELU. Layer 0 uses the ``*_input_kernel`` sizes,
    the others the ``*_hidden_kernel`` sizes. ``architecture="gru"`` adds a convolutional GRU on top of the core
    (with temporal kernels of 1 the core is a per-frame 2D core).
    """

    architecture: Architecture = "factorised"
    input_pool: int = 1  # average-pool the video by this factor (both axes) before the core; 1 = none
    channels: tuple[int, ...] = (16, 16)
    spatial_input_kernel: int = 9
    temporal_input_kernel: int = 7
    spatial_hidden_kernel: int = 5
    temporal_hidden_kernel: int = 5
    spatial_padding: bool = False  # "same" spatial padding; the official baseline uses none
    behavior_channels: int = (
        BEHAVIOR_CHANNELS  # behaviour (normalised) broadcast over space as input channels
    )
    batchnorm_momentum: float = 0.1
    # Convolutional GRU (architecture "gru" only)
    gru_channels: int = 16
    gru_input_kernel: int = 3
    gru_recurrent_kernel: int = 3
    # Gaussian readout
    readout_bias: bool = True
    readout_init_sigma: float = 0.2  # std (grid units, [-1, 1] = frame) of the position sampled in training
    position_hidden: int = 32  # hidden units of the MLP: cortical coordinates -> readout position
    # Shifter (pupil centre -> readout shift), one per mouse; 0 layers disables it
    shifter_layers: int = 2
    shifter_hidden: int = 5
    # Regularisation weights read by `SensoriumModel.regularizer`
    gamma_readout: float = 0.0  # L1 on readout feature weights
    gamma_input_spatial: float = 0.0  # Laplace smoothness of the first spatial kernels

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"config.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if not self.channels or any(int(c) < 1 for c in self.channels):
            raise ValueError(
                f"config.channels must be a non-empty list of positive ints, got {self.channels!r}"
            )
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        for name in (
            "input_pool",
            "spatial_input_kernel",
            "temporal_input_kernel",
            "spatial_hidden_kernel",
            "temporal_hidden_kernel",
            "gru_input_kernel",
            "gru_recurrent_kernel",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"config.{name} must be a positive int, got {value!r}")
        for name in (
            "spatial_input_kernel",
            "spatial_hidden_kernel",
            "gru_input_kernel",
            "gru_recurrent_kernel",
        ):
            if self.spatial_padding and getattr(self, name) % 2 == 0:
                raise ValueError(f"config.{name} must be odd with spatial_padding, got {getattr(self, name)}")
        if self.architecture == "gru" and self.gru_recurrent_kernel % 2 == 0:
            raise ValueError("config.gru_recurrent_kernel must be odd (same padding keeps the state's size)")

    @property
    def temporal_kernels(self) -> tuple[int, ...]:
        return tuple(
            self.temporal_input_kernel if i == 0 else self.temporal_hidden_kernel
            for i in range(len(self.channels))
        )

    @property
    def spatial_kernels(self) -> tuple[int, ...]:
        return tuple(
            self.spatial_input_kernel if i == 0 else self.spatial_hidden_kernel
            for i in range(len(self.channels))
        )

    @property
    def receptive_field(self) -> int:
        """R: input frames behind one output frame of the convolutional part, 1 + sum(k_t - 1).

        For the GRU variant the recurrent state reaches further back (a stream starts from zero state, so
        clip and step graphs agree frame by frame from the clip's first frame on; see docs/MODEL_REPOSITORY.md).
        """
        return 1 + sum(k - 1 for k in self.temporal_kernels)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def _factorised_default() -> ModelConfig:
    # One factorised layer x 32 channels on the video average-pooled 2x2 (18 x 32), "same" padding so the
    # readout covers the whole frame: 9 x 9 pooled px = 18 x 18 screen px (~36 deg, a mouse V1 RF with its
    # flanks), 10 frames (333 ms) of temporal memory, R = 10. A small readout jitter (sigma 0.05 grid units
    # ~ 0.8 pooled px): at 0.2 it scrambles the phase of ~14 px-period features. Trains to >= 0.7 x oracle on
    # the default synthetic data in ~20 epochs (~5 CPU min here, docs/benchmarks/training.md); a second
    # layer made the visual pathway learn several times slower at this budget.
    return ModelConfig(
        input_pool=2,
        channels=(32,),
        spatial_padding=True,
        spatial_input_kernel=9,
        temporal_input_kernel=10,
        readout_init_sigma=0.05,
    )


def _baseline() -> ModelConfig:
    # The official SENSORIUM 2023 factorised baseline: [32, 64, 128], kernels 11/5/5 spatial and temporal, no
    # spatial padding, shifter 3 layers x 5 units; R = 1 + 10 + 4 + 4 = 19 frames.
    return ModelConfig(
        channels=(32, 64, 128),
        spatial_input_kernel=11,
        temporal_input_kernel=11,
        spatial_hidden_kernel=5,
        temporal_hidden_kernel=5,
        shifter_layers=3,
        shifter_hidden=5,
        gamma_readout=0.0,
    )


def _gru() -> ModelConfig:
    # Per-frame 2D core (temporal kernels 1, R = 1) + convolutional GRU carrying the temporal memory.
    return ModelConfig(
        architecture="gru",
        channels=(16, 16),
        temporal_input_kernel=1,
        temporal_hidden_kernel=1,
        gru_channels=16,
    )


CONFIGS: dict[str, ModelConfig] = {
    "default": _factorised_default(),
    "baseline": _baseline(),
    "gru": _gru(),
}


def get_config(name: str) -> ModelConfig:
    """A named config (`default`, `baseline`, `gru`); raises ValueError naming the choices."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}") from None
