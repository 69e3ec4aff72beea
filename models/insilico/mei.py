"""Most exciting inputs (MEIs): the short clip that drives a neuron most under a fixed contrast budget (torch).

The published recipe (Walker et al. 2019, "inception loops"): gradient ascent on the input of the trained
model, the gradient blurred by a Gaussian whose width shrinks over the steps (no pixel-level noise patterns),
after each step the clip clipped to the pixel range and projected back onto the contrast budget, several random
starts (the best is kept). Objective: the neuron's predicted response (standardised units) averaged over the
clip's last `frames_out` output frames, with behaviour and eye position held at the training means.

Budget: the clip's RMS contrast, sqrt(mean((x - grey)^2)) over all its pixels and frames, grey = the training
mean pixel. The comparison is the best natural clip: `natural_clips` clips of the same length cut from the
mouse's training videos, each rescaled to exactly the budget around the same grey (then clipped to the pixel
range), scored the same way; per neuron the one with the largest response.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.benchmark import TIER_ORACLE, TIER_TRAIN
from models.data.normalisation import NormalisationStats
from models.data.reader import MouseFolder, open_mouse
from models.export.wrappers import ClipModel
from models.insilico.results import MEIOptions, MEIResult
from models.insilico.stimuli import Background
from models.training.checkpoint import load_checkpoint
from models.training.data import MouseData
from models.training.model import model_from_checkpoint
from models.training.validation import per_neuron_correlation

log = logging.getLogger(__name__)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable spatial Gaussian blur of [..., H, W] with reflected borders."""
    if sigma <= 0:
        return x
    r = max(int(3 * sigma), 1)
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    shape = x.shape
    y = x.reshape(-1, 1, *shape[-2:])
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return y.reshape(shape)


def project(x: torch.Tensor, grey: float, contrast: float) -> torch.Tensor:
    """Clip [B, T, H, W] to 0..255, then shrink each clip toward grey until its RMS contrast <= `contrast`
    (shrinking toward grey never leaves the pixel range)."""
    x = x.clamp(0.0, 255.0)
    d = x - grey
    rms = d.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return grey + d * torch.clamp(contrast / (rms + 1e-8), max=1.0)


def rms_contrast(x: np.ndarray, grey: float) -> np.ndarray:
    """RMS contrast of each clip of [B, T, H, W]."""
    return np.sqrt(((np.asarray(x, np.float64) - grey) ** 2).reshape(len(x), -1).mean(axis=1))


class Objective:
    """Responses of one mouse's model to raw clips, behaviour and eye position at the training means."""

    def __init__(
        self, model: torch.nn.Module, session: str, stats: NormalisationStats, background: Background
    ):
        self.clip_model = ClipModel(model, session, stats).eval()
        self.background = background
        self.receptive_field = int(model.receptive_field)

    def responses(self, video: torch.Tensor, frames_out: int) -> torch.Tensor:
        """[B, T, H, W] raw pixels -> [B, N] mean response over the last `frames_out` output frames."""
        b, t = video.shape[:2]
        behavior, pupil = (torch.from_numpy(a) for a in self.background.traces(b, t))
        out = self.clip_model(video, behavior, pupil)  # [B, T - R + 1, N]
        return out[:, -frames_out:].mean(dim=1)


def natural_clips(folder: MouseFolder, frames: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` clips [count, frames, H, W] at random trials and start frames of the training tier."""
    trials = folder.trials(TIER_TRAIN)
    if not len(trials):
        raise ValueError(f"{folder.path}: no training trials to take natural clips from")
    clips = []
    for i in rng.choice(trials, size=count, replace=True):
        video = folder.video(int(i))
        start = int(rng.integers(0, folder.length(int(i)) - frames + 1))
        clips.append(np.moveaxis(video[..., start : start + frames], -1, 0))
    return np.stack(clips).astype(np.float32)


def to_budget(clips: np.ndarray, grey: float, contrast: float) -> np.ndarray:
    """Each clip's deviation from grey scaled to RMS `contrast` exactly, then clipped to 0..255."""
    d = clips.astype(np.float64) - grey
    scale = contrast / np.maximum(rms_contrast(clips, grey), 1e-6)
    return np.clip(grey + d * scale[:, None, None, None], 0.0, 255.0).astype(np.float32)


def oracle_correlation(model: torch.nn.Module, data: MouseData) -> np.ndarray:
    """(N,) single-trial correlation of the model on the released oracle tier (public responses, official units):
    how well each neuron is predicted, as training validation measures it."""
    trials = data.folder.trials(TIER_ORACLE)
    if not len(trials):
        raise ValueError(f"{data.folder.path}: no oracle trials to rank neurons by")
    with torch.no_grad():
        return per_neuron_correlation(model, data, trials, torch.device("cpu"), chunk=8)


def optimise(
    objective: Objective,
    neurons: np.ndarray,
    frames: int,
    grey: float,
    contrast: float,
    options: MEIOptions,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """MEIs [K, frames, H, W] of neuron indices `neurons` and the activation of every start [K, starts]."""
    k, s = len(neurons), options.starts
    gen = torch.Generator().manual_seed(options.seed)
    h, w = objective.clip_model.normalise.video_mean.shape
    x = grey + contrast * torch.randn(k * s, frames, h, w, generator=gen)
    x = project(x, grey, contrast)
    target = torch.as_tensor(np.repeat(neurons, s))
    rows = torch.arange(k * s)
    steps = max(options.steps, 1)
    for step in tqdm(range(steps), desc="MEI steps", unit="step", disable=not progress):
        frac = step / max(steps - 1, 1)
        sigma = options.blur_start * (options.blur_end / options.blur_start) ** frac
        size = options.step_start * (options.step_end / options.step_start) ** frac
        x = x.detach().requires_grad_(True)
        activation = objective.responses(x, options.frames_out)[rows, target]
        (grad,) = torch.autograd.grad(activation.sum(), x)
        grad = gaussian_blur(grad, sigma)
        grad = grad / (grad.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)
        x = project(x.detach() + size * grad, grey, contrast)
    with torch.no_grad():
        final = objective.responses(x, options.frames_out)[rows, target].reshape(k, s)
    best = final.argmax(dim=1)
    meis = x.reshape(k, s, frames, h, w)[torch.arange(k), best]
    return meis.numpy(), final.numpy()


def run(
    run_dir: Path | str,
    mouse: str,
    out: Path | str,
    unit_ids: list[int] | None = None,
    top: int | None = None,
    data: Path | str | None = None,
    options: MEIOptions | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """MEIs of the given neurons (unit ids) or the `top` best predicted; writes OUT/mei.npz, returns a summary."""
    options = options or MEIOptions()
    started = time.perf_counter()
    torch.manual_seed(options.seed)
    checkpoint = load_checkpoint(run_dir)
    if mouse not in checkpoint["mice"]:
        raise LookupError(f"mouse {mouse} is not in the checkpoint (it has {sorted(checkpoint['mice'])})")
    model = model_from_checkpoint(checkpoint)
    for p in model.parameters():
        p.requires_grad_(False)
    entry = checkpoint["mice"][mouse]
    stats = NormalisationStats.from_dict(entry["stats"])
    public = Path(data) if data else Path(checkpoint.get("provenance", {}).get("data_dir", ""))
    if not (public / mouse).is_dir():
        raise FileNotFoundError(f"{public / mouse}: no released data for {mouse} (give --data DIR/public)")
    folder = open_mouse(public / mouse, validate="off")
    background = Background.from_statistics(folder.statistics)
    all_ids = np.asarray(entry["unit_ids"], dtype=np.int64)
    mouse_data = MouseData(folder)
    mouse_data.stats = stats
    corr = oracle_correlation(model, mouse_data)
    if unit_ids is not None:
        index = {int(u): i for i, u in enumerate(all_ids)}
        unknown = [u for u in unit_ids if u not in index]
        if unknown:
            raise LookupError(f"no neuron with unit id {unknown[0]} in {mouse}")
        neurons = np.array([index[u] for u in unit_ids], dtype=np.int64)
    elif top and top >= 1:
        neurons = np.argsort(-corr)[:top]
    else:
        raise ValueError("give unit ids or top >= 1")
    correlation = corr[neurons]
    objective = Objective(model, mouse, stats, background)
    frames = objective.receptive_field + options.frames_out - 1
    grey = background.grey
    rng = np.random.default_rng(options.seed)
    natural = natural_clips(folder, frames, options.natural_clips, rng)
    contrast = options.contrast or float(np.median(rms_contrast(natural, grey)))
    natural = to_budget(natural, grey, contrast)
    with torch.no_grad():
        natural_act = torch.cat(
            [objective.responses(torch.from_numpy(c), options.frames_out) for c in np.array_split(natural, 8)]
        ).numpy()[:, neurons]  # [clips, K]
    best_natural = natural_act.argmax(axis=0)
    meis, starts = optimise(objective, neurons, frames, grey, contrast, options, progress)
    mei_act = starts.max(axis=1)
    nat_act = natural_act[best_natural, np.arange(len(neurons))]
    summary = {
        "mouse": mouse,
        "run": str(run_dir),
        "contrast_budget": contrast,
        "grey": grey,
        "frames": frames,
        "frames_out": options.frames_out,
        "options": asdict(options),
        "seconds": round(time.perf_counter() - started, 2),
        "neurons": [
            {
                "unit_id": int(all_ids[n]),
                "oracle_correlation": float(c),
                "mei_activation": float(m),
                "natural_activation": float(a),
                "ratio": float(m / a) if a > 0 else None,
            }
            for n, c, m, a in zip(neurons, correlation, mei_act, nat_act, strict=True)
        ],
    }
    ratios = np.array([r["ratio"] or np.nan for r in summary["neurons"]])
    summary["median_ratio"] = float(np.nanmedian(ratios))
    summary["min_ratio"] = float(np.nanmin(ratios))
    path = MEIResult(
        meta=summary,
        unit_ids=all_ids[neurons],
        mei=meis.astype(np.float32),
        mei_activation=mei_act,
        start_activations=starts,
        natural=natural[best_natural],
        natural_activation=nat_act,
        oracle_correlation=np.asarray(correlation, dtype=np.float64),
    ).save(out)
    summary["file"] = str(path)
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['mouse']}: MEIs of {len(summary['neurons'])} neurons, RMS contrast budget "
        f"{summary['contrast_budget']:.1f} grey levels around {summary['grey']:.1f}, {summary['frames']} frames, "
        f"{summary['seconds']:.0f} s -> {summary['file']}",
        f"  {'unit':>8}{'oracle r':>10}{'MEI':>9}{'natural':>9}{'ratio':>8}",
    ]
    for n in summary["neurons"]:
        ratio = "n/a" if n["ratio"] is None else f"{n['ratio']:.2f}"
        lines.append(
            f"  {n['unit_id']:>8}{n['oracle_correlation']:>10.3f}{n['mei_activation']:>9.3f}"
            f"{n['natural_activation']:>9.3f}{ratio:>8}"
        )
    lines.append(f"  median ratio {summary['median_ratio']:.2f}, min {summary['min_ratio']:.2f}")
    return "\n".join(lines)
