"""The training loop: one shared core, one readout per mouse, early stopping on oracle correlation.

Reads top to bottom: set up (process group, data, model, optimizer, resume), then per epoch: train on random
clips, validate on whole oracle trials (rank 0), step the scheduler, write last.pt / best.pt / metrics.jsonl.
Every random choice is seeded from (seed, epoch, step, part), never from a running RNG, so a resumed run replays
the epochs it has not done exactly as an uninterrupted run would, and DDP matches gradient accumulation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from models.config import ModelConfig, get_config
from models.training import checkpoint as ckpt
from models.training import distributed as dist_utils
from models.training.data import MouseData, load_mice, to_tensors
from models.training.loss import poisson_loss
from models.training.model import build, model_config_dict
from models.training.options import TrainOptions
from models.training.sampler import ClipBatch, ClipSampler, shard
from models.training.validation import validate, validation_trials

log = logging.getLogger(__name__)

RF_MAPPING_TRIALS = 64  # training trials per mouse read to map receptive fields (readout position start)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_score: float
    best_epoch: int
    epochs_run: int  # epochs completed in total (including those before a resume)
    stopped_early: bool


def _set_threads(threads: int | None, ctx: dist_utils.DistContext) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
    elif ctx.distributed and ctx.device.type == "cpu":
        import os

        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))


def plateau_scheduler(
    optimizer: torch.optim.Optimizer, factor: float, patience: int, threshold: float
) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """lr x `factor` after `patience` epochs in which the oracle correlation rose by less than `threshold`."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=factor, patience=patience, threshold=threshold, threshold_mode="abs"
    )


def _stop_reason(completed: int, best_epoch: int, lr: float, options: TrainOptions) -> str | None:
    """Why training stops before the next epoch (early stopping), or None."""
    if best_epoch and completed - best_epoch >= options.early_stop_patience:
        return f"no improvement of the oracle correlation for {completed - best_epoch} epochs"
    if lr < options.min_lr:
        return f"learning rate {lr:.2g} below {options.min_lr:.2g}"
    return None


def _restore(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
    options: TrainOptions,
    device: torch.device,
) -> tuple[int, float, list[dict[str, Any]]]:
    path = run_dir / ckpt.LAST
    state = ckpt.load_checkpoint(path, map_location=device)
    saved = TrainOptions.from_dict(state.get("training", {}))
    changed = {
        k: (v, getattr(options, k))
        for k, v in saved.to_dict().items()
        if k != "epochs" and getattr(options, k) != v
    }
    if changed:
        log.warning("resuming with options that differ from the checkpoint's: %s", changed)
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    scheduler.load_state_dict(state["scheduler_state"])
    log.info(
        "resumed from %s after epoch %d (best oracle correlation %.4f)",
        path,
        state["epoch"],
        state["best_score"],
    )
    return int(state["epoch"]), float(state["best_score"]), list(state["history"])


def _train_step(
    model: torch.nn.Module,
    batch: ClipBatch,
    mice: dict[str, MouseData],
    ctx: dist_utils.DistContext,
    options: TrainOptions,
    optimizer: torch.optim.Optimizer,
    step_seed: tuple[int, int, int],
) -> float:
    """One optimizer step on this process's share of a global batch; returns its mean Poisson loss.

    Micro-batch k of process r is part r * grad_accum + k of the global batch, and torch's RNG (the readout's
    position sampling) is seeded from (seed, epoch, step, part): the same global batch gives the same
    gradient whether its parts run in parallel (DDP) or one after another (gradient accumulation).
    """
    local = shard(batch, ctx.rank, ctx.world_size)
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for k in range(options.grad_accum):
        micro = shard(local, k, options.grad_accum)
        part = ctx.rank * options.grad_accum + k
        torch.manual_seed(int(np.random.SeedSequence([*step_seed, part]).generate_state(1)[0]))
        video, behavior, pupil, target = to_tensors(mice[micro.session].clips(micro), ctx.device)
        last = k == options.grad_accum - 1
        sync = contextlib.nullcontext() if last or not ctx.distributed else model.no_sync()
        with sync:
            rate = model(micro.session, video, behavior, pupil)  # [B, T-R+1, N]
            loss = poisson_loss(rate, target[:, target.shape[1] - rate.shape[1] :])
            core = model.module if isinstance(model, DistributedDataParallel) else model
            penalty = core.regularizer(micro.session) if hasattr(core, "regularizer") else 0.0
            ((loss + penalty) / options.grad_accum).backward()
        total += float(loss.detach())
    optimizer.step()
    return total / options.grad_accum


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    config: str | ModelConfig = "default",
    options: TrainOptions | None = None,
    device: str = "auto",
    resume: bool = False,
    threads: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on every mouse folder of `data_dir` and write the run to `out_dir` (see docs/TRAINING.md).

    `config` is a named model config (models.config.CONFIGS) or a ModelConfig. Under torchrun every process
    calls this; only rank 0 writes. `progress`: tqdm bars on rank 0 when stderr is a terminal.
    """
    options = options or TrainOptions()
    run_dir = Path(out_dir)
    ctx = dist_utils.init_distributed(device)
    try:
        return _train(Path(data_dir), run_dir, config, options, ctx, resume, threads, progress)
    finally:
        dist_utils.shutdown()


def _train(
    data_dir: Path,
    run_dir: Path,
    config: str | ModelConfig,
    options: TrainOptions,
    ctx: dist_utils.DistContext,
    resume: bool,
    threads: int | None,
    progress: bool,
) -> TrainResult:
    label = config if isinstance(config, str) else "custom"
    config = get_config(config) if isinstance(config, str) else config  # a bad name fails before data loads
    _set_threads(threads, ctx)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    global_batch = options.batch_size * options.grad_accum * ctx.world_size

    mice = load_mice(data_dir)
    sampler = ClipSampler(
        {s: m.train_trials for s, m in mice.items()},
        {s: m.lengths[m.train_trials] for s, m in mice.items()},
        options.clip_frames,
        global_batch,
        options.seed,
    )
    torch.manual_seed(options.seed)  # identical initialisation on every process
    model, model_config = build(config, mice)
    for s, m in mice.items():  # start each neuron at its mean response and mapped RF (unless resumed below)
        model.readout(s).initialize_bias(m.mean_response())
        trials = (m.trial(int(i)) for i in m.train_trials[:RF_MAPPING_TRIALS])
        rms = model.initialize_positions(s, ((t.video, t.responses) for t in trials))
        log.info("%s: readout positions initialised from RF mapping (fit RMS %.3f grid units)", s, rms)
    model.to(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    scheduler = plateau_scheduler(optimizer, options.lr_factor, options.lr_patience, options.threshold)

    start_epoch, best_score, history = 0, -math.inf, []
    if resume:
        if (run_dir / ckpt.LAST).is_file():
            start_epoch, best_score, history = _restore(
                run_dir, model, optimizer, scheduler, options, ctx.device
            )
        else:
            log.warning("--resume: %s does not exist, starting a new run", run_dir / ckpt.LAST)
    net: torch.nn.Module = model
    if ctx.distributed:
        if options.sync_batchnorm and ctx.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DistributedDataParallel(
            model,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=True,  # one mouse per step: the other readouts get no gradient
        )
    if ctx.is_main:
        n_neurons = sum(len(m.unit_ids) for m in mice.values())
        n_params = sum(p.numel() for p in model.parameters())
        log.info(
            "training %r (%d parameters) on %d mice, %d neurons, %d train / %d oracle trials; %d steps per "
            "epoch of %d clips x %d frames (%d process(es)) on %s",
            label, n_params, len(mice), n_neurons,
            sum(len(m.train_trials) for m in mice.values()), sum(len(m.oracle_trials) for m in mice.values()),
            len(sampler), global_batch, options.clip_frames, ctx.world_size, ctx.device,
        )  # fmt: skip
    val_trials = {s: validation_trials(m, options.val_trials, options.seed) for s, m in mice.items()}
    provenance = ckpt.provenance(data_dir, options.seed) if ctx.is_main else {}
    mice_meta = {s: m.checkpoint_entry() for s, m in mice.items()}

    best_epoch = max((h["epoch"] for h in history if h.get("improved")), default=0)
    completed, stopped_early = start_epoch, False
    for epoch in range(start_epoch + 1, options.epochs + 1):
        reason = _stop_reason(completed, best_epoch, optimizer.param_groups[0]["lr"], options)
        if reason:
            if ctx.is_main:
                log.info("stopping after epoch %d: %s", completed, reason)
            stopped_early = True
            break
        t0, cpu0 = time.perf_counter(), time.process_time()
        net.train()
        losses = []
        batches = sampler.epoch(epoch)
        bar = tqdm(batches, desc=f"epoch {epoch}/{options.epochs}", unit="step", leave=False,
                   disable=None if progress and ctx.is_main else True)  # fmt: skip
        for step, batch in enumerate(bar):
            losses.append(_train_step(net, batch, mice, ctx, options, optimizer, (options.seed, epoch, step)))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        train_loss = dist_utils.mean_over_processes(float(np.mean(losses)), ctx)
        train_time = time.perf_counter() - t0

        scores: dict[str, Any] | None = None
        if ctx.is_main:
            scores = validate(
                model, mice, ctx.device, options.val_chunk, progress and ctx.is_main, val_trials
            )
        scores = dist_utils.broadcast(scores, ctx)
        assert scores is not None
        score = scores["overall"]
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(score)
        improved = score > best_score + options.threshold
        if improved:
            best_score, best_epoch = score, epoch
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_correlation": score,
            "val_per_mouse": scores["per_mouse"],
            "lr": lr,
            "train_time_s": round(train_time, 3),
            "epoch_time_s": round(time.perf_counter() - t0, 3),
            "epoch_cpu_s": round(time.process_time() - cpu0, 3),  # this process's CPU time (shared machines)
            "improved": improved,
        }
        history.append(record)
        if ctx.is_main:
            state = {
                "config": model_config_dict(model_config),
                "mice": mice_meta,
                "model_state": model.state_dict(),
                "epoch": epoch,
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "best_score": best_score,
                "history": history,
                "provenance": provenance,
                "validation": {
                    s: {"oracle_single_trial_correlation": v} for s, v in scores["per_mouse"].items()
                },
                "training": options.to_dict(),
            }
            ckpt.save_checkpoint(state, run_dir / ckpt.LAST)
            if improved:
                ckpt.save_checkpoint(state, run_dir / ckpt.BEST)
            with (run_dir / ckpt.METRICS_LOG).open("a") as f:
                f.write(json.dumps(record) + "\n")
            per_mouse = ", ".join(f"{s[:16]} {v:.3f}" for s, v in scores["per_mouse"].items())
            log.info(
                "epoch %d/%d  loss %.4f  oracle corr %.4f%s  (%s)  lr %.2g  %.1fs",
                epoch, options.epochs, train_loss, score, " *best*" if improved else "", per_mouse, lr,
                record["epoch_time_s"],
            )  # fmt: skip
        completed = epoch

    if ctx.is_main:
        log.info("done: best oracle correlation %.4f at epoch %d -> %s", best_score, best_epoch,
                 run_dir / ckpt.BEST)  # fmt: skip
    return TrainResult(run_dir, best_score, best_epoch, completed, stopped_early)
