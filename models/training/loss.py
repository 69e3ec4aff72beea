"""Poisson loss on standardised responses (the model's output is a positive rate in those units)."""

from __future__ import annotations

import torch

POISSON_EPS = 1e-8


def poisson_loss(rate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Poisson negative log likelihood (without the log(target!) constant) over all elements.

    `rate` and `target` have the same shape ([B, T_out, N]); the mean keeps the gradient scale independent of
    batch size, clip length and neuron count, so micro-batches and DDP processes average exactly.
    """
    if rate.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(rate.shape)} != target shape {tuple(target.shape)}")
    return (rate - target * torch.log(rate + POISSON_EPS)).mean()
