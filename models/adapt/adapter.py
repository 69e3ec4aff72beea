"""Adapt a trained run to new mice: a new readout (+ shifter) per mouse on the run's frozen shared core.

Reads top to bottom: load the base run; build a model of the new mice whose shared part (core, GRU) is the base's,
frozen, with each new mouse's shifter copied from the base's first mouse; per new mouse: take its first
`minutes` of train trials (trial-index order = recording order, as `rig --record` writes them), start the
readout biases at the mean responses and the positions at RF centres mapped from those trials
(models/networks/rf_mapping.py, as training does), cache the frozen features of the train and oracle trials
(features.py), start the feature weights at a ridge regression on them (ridge.py), fit readout + shifter with
the training loss (Poisson, AdamW, reduce-on-plateau), keep the epoch with the best oracle single-trial
correlation (`models.metrics`), stop early; then write RUN2/best.pt in the checkpoint contract with only the new
mice, so `sensorium-serve export RUN2` exports just them.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.adapt.features import FrozenFeatures, Window, feature_bytes
from models.adapt.options import AdaptOptions
from models.adapt.ridge import ridge_start
from models.benchmark import FPS, SKIP_FRAMES
from models.config import ModelConfig
from models.metrics import single_trial_correlation
from models.networks import MouseInfo, SensoriumModel, build_model
from models.networks.model import module_key
from models.training import checkpoint as ckpt
from models.training.data import MouseData, load_mice
from models.training.distributed import resolve_device
from models.training.loss import poisson_loss
from models.training.trainer import RF_MAPPING_TRIALS, plateau_scheduler
from models.training.validation import validation_trials

log = logging.getLogger(__name__)

SHARED_PREFIXES = ("core.", "gru.")  # state-dict keys of the frozen shared part
SUMMARY_FILE = "adapt.json"


@dataclass(frozen=True)
class MouseResult:
    """What adapting one mouse did (one line of the summary)."""

    session: str  # folder name in --data
    name: str  # model name in the adapted run (the exported model's mouse name)
    train_trials: int
    minutes: float  # of training data used
    oracle_correlation: float  # best oracle single-trial correlation
    initial_correlation: float  # before gradient fitting (RF-mapped positions, ridge-regression weights)
    best_epoch: int
    epochs: int  # epochs run
    seconds: float  # wall time for this mouse: reading, RF mapping, features, fitting (the first: + loading)
    fit_seconds: float  # ... of which gradient fitting (the epochs, with their validation)
    cached: bool  # whether the frozen features were cached

    def summary(self) -> str:
        return (
            f"adapted {self.name}: {self.minutes:.1f} min of data ({self.train_trials} train trials), "
            f"{self.seconds:.1f} s, oracle correlation {self.oracle_correlation:.4f} "
            + (
                f"(start {self.initial_correlation:.4f}, best epoch {self.best_epoch} of {self.epochs})"
                if self.epochs
                else "(the start, no epochs)"
            )
        )


@dataclass(frozen=True)
class FitOutcome:
    history: list[dict[str, Any]]  # one record per epoch
    best_epoch: int  # 0: no epoch beat the initialisation
    best_score: float  # oracle single-trial correlation of the parameters left in place
    initial_score: float  # ... of the initialisation (bias at the mean response, RF-mapped positions)


@dataclass(frozen=True)
class AdaptResult:
    run_dir: Path
    mice: list[MouseResult]
    seconds: float


def first_minutes(mouse: MouseData, minutes: float | None) -> np.ndarray:
    """Train trials in index (recording) order: all, or as many whole trials as fit in `minutes` (at least one)."""
    trials = np.sort(mouse.train_trials)
    if minutes is None:
        return trials
    cumulative = np.cumsum(mouse.lengths[trials])
    return trials[: max(1, int(np.searchsorted(cumulative, minutes * 60 * FPS, side="right")))]


def build_adapted_model(base: Mapping[str, Any], infos: Mapping[str, MouseInfo]) -> SensoriumModel:
    """A model of the mice `infos` (model name -> neurons) with the base run's shared part, frozen, and each
    mouse's shifter copied from the base's first mouse; readouts freshly initialised (seed torch first)."""
    config = ModelConfig.from_dict(dict(base["config"]))
    model = build_model(config, dict(infos))
    state = base["model_state"]
    loaded = {k: v for k, v in state.items() if k.startswith(SHARED_PREFIXES)}
    source = f"shifters.{module_key(next(iter(base['mice'])))}."
    for name in infos:
        loaded |= {
            f"shifters.{module_key(name)}.{k.removeprefix(source)}": v
            for k, v in state.items()
            if k.startswith(source)
        }
    missing, unexpected = model.load_state_dict(loaded, strict=False)
    not_loaded = [k for k in missing if not k.startswith("readouts.")]
    if unexpected or not_loaded:
        raise ValueError(
            f"base run does not match its own config: unexpected {unexpected[:5]}, missing {not_loaded[:5]}"
        )
    for module in (model.core, model.gru):
        if module is not None:
            module.requires_grad_(False)
    return model.eval()  # the shared part stays in eval mode (BatchNorm running statistics) throughout


@torch.inference_mode()
def oracle_correlation(model: SensoriumModel, name: str, val: FrozenFeatures) -> float:
    """Mean single-trial correlation over neurons on the validation trials, as training validates
    (`models.training.validation`): frames [50, T) of whole trials, official scored units, `models.metrics`."""
    readout = model.readout(name)
    was_training = readout.training
    readout.eval()
    predictions = []
    for k in range(len(val)):
        rates = model.frame_responses(name, val.trial_features(k), val.pupil[k])  # [T', N]
        n_frames = val.scored[k].shape[1]
        keep = n_frames - SKIP_FRAMES
        if rates.shape[0] < keep:
            raise ValueError(
                f"receptive field {model.receptive_field} exceeds the {SKIP_FRAMES}-frame warm-up"
            )
        model_units = rates[rates.shape[0] - keep :].T.float().cpu().numpy()
        predictions.append(val.mouse.scored_predictions(model_units, n_frames))
    readout.train(was_training)
    return float(np.mean(single_trial_correlation(predictions, val.scored)))


def epoch_windows(train: FrozenFeatures, frames: int, rng: np.random.Generator) -> list[Window]:
    """Every trial cut into windows of `frames` output frames from a random phase, in random order."""
    windows = []
    for k, total in enumerate(train.output_frames):
        phase = int(rng.integers(0, min(frames, total - frames + 1)))
        windows += [Window(k, s, frames) for s in range(phase, total - frames + 1, frames)]
    return [windows[i] for i in rng.permutation(len(windows))]


def fit_readout(
    model: SensoriumModel,
    name: str,
    train: FrozenFeatures,
    val: FrozenFeatures,
    options: AdaptOptions,
    progress: bool = False,
) -> FitOutcome:
    """Fit mouse `name`'s readout and shifter; leaves the best epoch's parameters in place (epoch 0: as
    initialised)."""
    parts = [model.readout(name), *([model.shifters[module_key(name)]] if model.shifters else [])]
    params = [p for part in parts for p in part.parameters()]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    scheduler = plateau_scheduler(optimizer, options.lr_factor, options.lr_patience, options.threshold)
    frames = min(options.window_frames, *train.output_frames)
    initial = best_score = oracle_correlation(model, name, val)
    best_epoch = 0
    best_state = [copy.deepcopy(part.state_dict()) for part in parts]
    history: list[dict[str, Any]] = []
    bar = tqdm(range(1, options.epochs + 1), desc=f"adapt {name[:24]}", unit="epoch", leave=False,
               disable=None if progress else True)  # fmt: skip
    for epoch in bar:
        t0 = time.perf_counter()
        torch.manual_seed(int(np.random.SeedSequence([options.seed, epoch]).generate_state(1)[0]))
        windows = epoch_windows(train, frames, np.random.default_rng([options.seed, epoch]))
        model.readout(name).train()  # position jitter; the shared part stays in eval mode
        losses = []
        for i in range(0, len(windows), options.batch_windows):
            features, pupil, targets = train.batch(windows[i : i + options.batch_windows])
            loss = poisson_loss(model.frame_responses(name, features, pupil), targets)
            optimizer.zero_grad(set_to_none=True)
            (loss + model.regularizer(name)).backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        score = oracle_correlation(model, name, val)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(score)
        improved = score > best_score + options.threshold
        if improved:
            best_score, best_epoch = score, epoch
            best_state = [copy.deepcopy(part.state_dict()) for part in parts]
        history.append(
            {
                "mouse": name,
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_correlation": score,
                "lr": lr,
                "epoch_time_s": round(time.perf_counter() - t0, 3),
                "improved": improved,
            }
        )
        bar.set_postfix(oracle=f"{score:.4f}", best=f"{best_score:.4f}")
        log.debug(
            "%s epoch %d: loss %.4f, oracle correlation %.4f", name, epoch, history[-1]["train_loss"], score
        )
        if (
            epoch - best_epoch >= options.early_stop_patience
            or optimizer.param_groups[0]["lr"] < options.min_lr
        ):
            break
    for part, state in zip(parts, best_state, strict=True):
        part.load_state_dict(state)
    return FitOutcome(history, best_epoch, best_score, initial)


def adapt(
    base_run: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    options: AdaptOptions | None = None,
    device: str = "auto",
    mice: Sequence[str] | None = None,
    name: str | None = None,
    progress: bool = True,
) -> AdaptResult:
    """Fit readouts for the mice of `data_dir` (all, or the sessions `mice`) on `base_run`'s frozen core and
    write the run `out_dir` (best.pt, metrics.jsonl, adapt.json). `name`: the model name of a single new mouse
    (default: its session folder name); an existing model's name makes `export` write a new version of it."""
    options = options or AdaptOptions()
    started = time.perf_counter()
    device_ = resolve_device(device)
    base_path = Path(base_run)
    base = ckpt.load_checkpoint(base_path, map_location="cpu")
    folders = load_mice(data_dir)
    selected = list(mice) if mice else sorted(folders)
    unknown = sorted(set(selected) - set(folders))
    if unknown:
        raise ValueError(f"sessions {unknown} are not in {data_dir} (it has {sorted(folders)})")
    if name is not None and len(selected) != 1:
        raise ValueError(f"a model name is for one new mouse; {data_dir} has {len(selected)}: {selected}")
    names = {s: (name if name is not None else s) for s in selected}
    torch.manual_seed(options.seed)
    model = build_adapted_model(
        base, {names[s]: MouseInfo(folders[s].unit_ids, folders[s].coordinates) for s in selected}
    )
    # Every new readout starts on the CPU (as in training: RF mapping is numpy + CPU torch), then the model moves.
    seconds = {}
    for session in selected:
        t0 = time.perf_counter()
        _initialise_readout(model, names[session], folders[session], options.minutes)
        seconds[session] = time.perf_counter() - t0
    seconds[selected[0]] += time.perf_counter() - started - sum(seconds.values())  # loading, for the first
    model.to(device_)
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results, history = [], []
    for session in selected:
        t0 = time.perf_counter()
        mouse, model_name = folders[session], names[session]
        val_trials = validation_trials(mouse, options.val_trials, options.seed)
        r = model.receptive_field
        frames = int(sum(mouse.lengths[i] - r + 1 for i in [*mouse.train_trials, *val_trials]))
        cached = feature_bytes(model, frames) <= options.cache_gb * 2**30
        if not cached:
            log.warning("%s: features of %d frames exceed --cache-gb %g: recomputing the core every batch",
                        model_name, frames, options.cache_gb)  # fmt: skip
        train = FrozenFeatures(model, mouse, mouse.train_trials, device_, cached, progress, "train features")
        val = FrozenFeatures(model, mouse, val_trials, device_, cached, progress, "oracle features")
        if options.ridge > 0:
            ridge_start(model, model_name, train, options.ridge)
        fitting = time.perf_counter()
        fit = fit_readout(model, model_name, train, val, options, progress)
        fit_seconds = time.perf_counter() - fitting
        history += fit.history
        result = MouseResult(
            session=session,
            name=model_name,
            train_trials=len(mouse.train_trials),
            minutes=float(mouse.lengths[mouse.train_trials].sum()) / (60 * FPS),
            oracle_correlation=fit.best_score,
            initial_correlation=fit.initial_score,
            best_epoch=fit.best_epoch,
            epochs=len(fit.history),
            seconds=seconds[session] + time.perf_counter() - t0,
            fit_seconds=fit_seconds,
            cached=cached,
        )
        results.append(result)
        del train, val
    _write_run(run_dir, base, base_path, model, {s: folders[s] for s in selected}, names, results, history,
               options, Path(data_dir))  # fmt: skip
    return AdaptResult(run_dir, results, time.perf_counter() - started)


def _initialise_readout(model: SensoriumModel, name: str, mouse: MouseData, minutes: float | None) -> None:
    """Select the mouse's training trials (its first `minutes`), start its readout biases at the mean responses
    and its positions at RF centres mapped from those trials (as training does)."""
    mouse.train_trials = first_minutes(mouse, minutes)
    model.readout(name).initialize_bias(mouse.mean_response(len(mouse.train_trials)))
    mapping = (mouse.trial(int(i)) for i in mouse.train_trials[:RF_MAPPING_TRIALS])
    rms = model.initialize_positions(name, ((t.video, t.responses) for t in mapping))
    log.info("%s: readout positions initialised from RF mapping (fit RMS %.3f grid units)", name, rms)


def _write_run(
    run_dir: Path,
    base: Mapping[str, Any],
    base_path: Path,
    model: SensoriumModel,
    mice: Mapping[str, MouseData],
    names: Mapping[str, str],
    results: Sequence[MouseResult],
    history: list[dict[str, Any]],
    options: AdaptOptions,
    data_dir: Path,
) -> None:
    by_name = {r.name: r for r in results}
    pooled = np.mean([r.oracle_correlation for r in results]) if results else math.nan
    adapted = {
        "base_run": str(base_path.resolve()),
        "base_provenance": dict(base.get("provenance") or {}),
        "mice": {r.name: {k: v for k, v in r.__dict__.items() if k != "name"} for r in results},
    }
    provenance = ckpt.provenance(data_dir, options.seed) | {"adapted_from": adapted}
    state = {
        "config": dict(base["config"]),
        "mice": {names[s]: m.checkpoint_entry() for s, m in mice.items()},
        "model_state": model.state_dict(),
        "epoch": max((r.best_epoch for r in results), default=0),
        "optimizer_state": {},  # one optimizer per mouse, not kept: adapting is redone, not resumed
        "scheduler_state": {},
        "best_score": float(pooled),
        "history": history,
        "provenance": provenance,
        "validation": {
            n: {"oracle_single_trial_correlation": r.oracle_correlation} for n, r in by_name.items()
        },
        "training": options.to_dict(),
    }
    ckpt.save_checkpoint(state, run_dir / ckpt.BEST)
    with (run_dir / ckpt.METRICS_LOG).open("w") as f:
        f.writelines(json.dumps(h) + "\n" for h in history)
    (run_dir / SUMMARY_FILE).write_text(json.dumps(adapted, indent=1))
