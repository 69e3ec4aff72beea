"""Networks (torch): causal factorised-3D core, convolutional GRU, Gaussian readout + shifter per mouse."""

from models.networks.model import MouseInfo, SensoriumModel, build_model, module_key

__all__ = ["MouseInfo", "SensoriumModel", "build_model", "module_key"]
