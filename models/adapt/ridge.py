"""A closed-form start for a new readout's feature weights: ridge regression on the frozen core's features.

With the readout positions where RF mapping put them (and the shifter's shift per frame), each neuron's input is
the C core channels sampled at its position, s_t, and its response y_t (standardised, the model's units). A ridge
regression y_t ~ w_lin . s_t + c per neuron is one pass over the cached features (C+1 x C+1 sufficient
statistics per neuron) and one batched solve. It is then mapped through the readout's output nonlinearity
ELU(x) + 1 around the neuron's mean response mu: for mu >= 1 the linear branch (x = y - 1: w = w_lin,
b = c - 1), below it the exponential branch linearised at mu (exp(x) ~ mu (1 + x - log mu): w = w_lin / mu,
b = log mu + (c - mu) / mu). On the default synthetic data this start alone scores 0.95-0.98 x the oracle
correlation of the fully fitted readout (`adapt --epochs 0` stops there), a level that gradient fitting from
random weights reaches only after ~6 epochs (docs/benchmarks/adapt.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.adapt.features import FrozenFeatures
from models.networks import SensoriumModel

RIDGE = 1e-2  # penalty as a fraction of the mean diagonal of each neuron's feature Gram matrix
CHUNK_FRAMES = 128  # frames sampled at a time (the sampled features are [frames, C + 1, N])


@torch.no_grad()
def ridge_start(model: SensoriumModel, name: str, train: FrozenFeatures, ridge: float = RIDGE) -> None:
    """Set mouse `name`'s readout feature weights and bias from a ridge regression on `train`."""
    readout = model.readout(name)
    was_training = readout.training
    readout.eval()  # mean positions, no jitter
    n, c = readout.n_neurons, readout.features.shape[1]
    gram = torch.zeros(n, c + 1, c + 1, dtype=torch.float64)
    cross = torch.zeros(n, c + 1, dtype=torch.float64)
    total = torch.zeros(n, dtype=torch.float64)
    frames = 0
    for k in range(len(train)):
        features = train.trial_features(k)  # [T', C, H', W']
        for start in range(0, features.shape[0], CHUNK_FRAMES):
            part = features[start : start + CHUNK_FRAMES]
            grid = readout.positions(model.shift(name, train.pupil[k][start : start + CHUNK_FRAMES]))
            sampled = F.grid_sample(part, grid[:, None], mode="bilinear", align_corners=True).flatten(2)
            x = torch.cat([sampled, sampled.new_ones(sampled.shape[0], 1, n)], dim=1)  # [M, C + 1, N]
            x = x.permute(2, 0, 1).contiguous()  # [N, M, C + 1] (float32 bmm: float64 is ~100x slower)
            y = train.targets[k][start : start + CHUNK_FRAMES]  # [M, N]
            gram += (x.transpose(1, 2) @ x).double().cpu()
            cross += (x * y.t()[:, :, None]).sum(dim=1).double().cpu()
            total += y.sum(dim=0).double().cpu()
            frames += y.shape[0]
    diagonal = torch.diagonal(gram[:, :c, :c], dim1=1, dim2=2).mean(dim=1)  # [N]
    penalty = torch.zeros(n, c + 1, c + 1, dtype=torch.float64)
    penalty[:, range(c), range(c)] = (ridge * diagonal.clamp_min(1e-12))[:, None]  # the intercept is free
    solution = torch.linalg.solve(gram + penalty, cross)  # [N, C + 1]
    w_lin, intercept = solution[:, :c], solution[:, c]
    mean = (total / max(frames, 1)).clamp_min(1e-3)
    exponential = mean < 1
    weights = torch.where(exponential[:, None], w_lin / mean[:, None], w_lin)
    bias = torch.where(exponential, torch.log(mean) + (intercept - mean) / mean, intercept - 1)
    readout.features.copy_(weights.to(readout.features))
    if readout.bias is not None:
        readout.bias.copy_(bias.to(readout.bias))
    readout.train(was_training)
