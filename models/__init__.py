"""Torch side of sensorium-serve: data, networks, training, ONNX export.

Only the subpackages that need torch import it; `models.benchmark`, `models.metrics`, `models.data.reader`
and `models.contract` are numpy-only, so the serving install can use them.
"""
