"""The bridge to `models.networks`: build a model for the mice of a data folder or of a checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from models.config import ModelConfig, get_config
from models.networks import MouseInfo, build_model


def _infos(mice: Mapping[str, Any]) -> dict[str, MouseInfo]:
    """MouseInfo per session from objects or dicts carrying `unit_ids` and `coordinates`."""
    infos = {}
    for session, mouse in mice.items():
        get = mouse.get if isinstance(mouse, Mapping) else lambda k, m=mouse: getattr(m, k)
        infos[session] = MouseInfo(
            unit_ids=np.asarray(get("unit_ids"), dtype=np.int64),
            coordinates=np.asarray(get("coordinates"), dtype=np.float64),
        )
    return infos


def build(config: str | ModelConfig, mice: Mapping[str, Any]) -> tuple[torch.nn.Module, ModelConfig]:
    """A freshly initialised model of a config (or the name of one) for these mice (seed torch first)."""
    if isinstance(config, str):
        config = get_config(config)
    return build_model(config, _infos(mice)), config


def model_config_dict(config: ModelConfig) -> dict[str, Any]:
    return config.to_dict()


def model_from_checkpoint(
    checkpoint: Mapping[str, Any], device: torch.device | str = "cpu"
) -> torch.nn.Module:
    """The trained model of a checkpoint dict (see models.training.checkpoint), in eval mode."""
    config = ModelConfig.from_dict(dict(checkpoint["config"]))
    model = build_model(config, _infos(checkpoint["mice"]))
    model.load_state_dict(checkpoint["model_state"])
    return model.to(device).eval()
