"""Synthetic SENSORIUM 2023 data with a known ground truth (see docs/DATA.md)."""

from models.data.synthetic.generator import SynthConfig, generate

__all__ = ["SynthConfig", "generate"]
