"""Synthetic SENSORIUM datasets: plan the trials of each mouse, simulate, write public + truth folders.

Videos are simulated once per distinct stimulus (repeats and stimuli shared by mice reuse the filter maps);
trials are streamed to disk as they are made. Everything is deterministic from the seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.benchmark import STIMULUS_FAMILIES, TIER_NONE, TIER_ORACLE, TIER_TRAIN
from models.data.synthetic import population as pop_mod
from models.data.synthetic.behaviour import BehaviourScales, behaviour_traces
from models.data.synthetic.neurons import write_neurons
from models.data.synthetic.stimuli import FAMILY_FRAMES, make_stimulus
from models.data.truth import TruthWriter
from models.data.writer import MouseWriter

log = logging.getLogger(__name__)

# The real metadata (shared/data/sensorium2023-meta); SENSORIUM_META overrides. Without it, drawn stand-ins.
# Default: the shared/ folder that lies beside a checkout of this repository (as on the team's and CI's machines).
_BESIDE_REPO = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sensorium2023-meta"
META_DIR = Path(os.environ.get("SENSORIUM_META") or _BESIDE_REPO)
META_MICE = tuple("ABCDEFGHIJ")
ANIMAL_IDS = ("29156", "29228", "29234", "29513", "29514", "29515", "29623", "29647", "29712", "29755")
MAIN_TIERS = ("oracle", "live_test_main", "final_test_main")
CLIPS_PER_MAIN_TIER = 6
OOD_STIMULI = {1: 6, 2: 6, 3: 8, 4: 6, 5: 6}  # distinct stimuli per OOD family (SENSORIUM.md)

# Stimulus keys: (kind, a, b) -> a seed tuple; shared keys give identical videos across mice and repeats.
TRAIN, MAIN, OOD, NONE, CALIBRATION, REAL = 1, 2, 3, 4, 5, 6


@dataclass
class SynthConfig:
    """What `sensorium-serve data synth` generates. Defaults: small, learnable, < 20 s here."""

    mice: int = 2
    neurons: int = 300
    seed: int = 0
    train_trials: int = 80
    repeats: int = 10  # per clip of the oracle / live_test_main / final_test_main tiers (6 clips each)
    ood_repeats: int = 4  # per OOD stimulus
    none_trials: int = 2
    like_sensorium: bool = False
    calibration_movies: int = 8  # movies that set each neuron's scale and noise level (not written)
    meta_dir: str = str(META_DIR)
    # Index of the first mouse drawn: mice of one seed are numbered 0, 1, ...; `like_config` starts after the
    # mice of an existing dataset to draw new mice of the same ground truth (filter bank, stimuli).
    first_mouse: int = 0


def like_config(like_dir: Path | str, new_mice: int = 1, **overrides: object) -> SynthConfig:
    """The config of `new_mice` new mice of the same ground truth as the dataset in `like_dir` (its synth.json):
    same seed, filter bank and stimuli, the next mouse numbers (new neurons, new sessions). `overrides`
    (e.g. neurons, train_trials) replace the dataset's values."""
    manifest_path = Path(like_dir) / "synth.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: no synth.json (--like needs a `data synth` output folder)")
    recorded = json.loads(manifest_path.read_text()).get("config", {})
    known = {f for f in SynthConfig.__dataclass_fields__}
    base = SynthConfig(**{k: v for k, v in recorded.items() if k in known})
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown synth option(s) {unknown}")
    return replace(base, **overrides, mice=new_mice, first_mouse=base.first_mouse + base.mice)


@dataclass
class PlannedTrial:
    tier: str
    family: int
    key: tuple[int, ...]
    video_id: int = -1


@dataclass
class MousePlan:
    session: str
    meta: str | None  # meta mouse letter
    unit_ids: np.ndarray
    coordinates: np.ndarray
    target_mean: np.ndarray
    target_std: np.ndarray
    scales: BehaviourScales
    trials: list[PlannedTrial] = field(default_factory=list)


# --- meta ------------------------------------------------------------------------------------------------------
def _meta(meta_dir: Path, letter: str) -> dict[str, np.ndarray] | None:
    folder = meta_dir / f"mouse{letter}"
    if not (folder / "neuron_coordinates.npy").exists():
        return None
    out = {
        "coordinates": np.load(folder / "neuron_coordinates.npy"),
        "stimulus_ids": np.load(folder / "stimulus_ids.npy"),
        "video_ids": np.load(folder / "video_ids.npy"),
    }
    for kind in ("response", "behavior", "pupil_center"):
        for stat in ("mean", "std"):
            out[f"{kind}_{stat}"] = np.load(folder / "statistics" / kind / f"{stat}.npy")
    return out


def _fallback_meta(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Without the meta folder: a 600 x 600 um patch, log-normal response scales like the real ones."""
    mean = rng.lognormal(np.log(2.0), 0.8, n).astype(np.float32)
    return {
        "coordinates": np.stack(
            [rng.uniform(-600, 0, n), rng.uniform(-600, 0, n), rng.uniform(200, 420, n)], 1
        ),
        "response_mean": mean,
        "response_std": (mean * rng.lognormal(np.log(4.7), 0.25, n)).astype(np.float32),
        "behavior_mean": np.array([50.0, 1.3]),
        "behavior_std": np.array([14.0, 3.0]),
        "pupil_center_mean": np.array([120.0, 120.0]),
        "pupil_center_std": np.array([5.0, 6.5]),
    }


def _session_name(seed: int, index: int, animal: str, rng: np.random.Generator) -> str:
    digest = hashlib.md5(f"sensorium-serve-synthetic-{seed}-{index}".encode()).hexdigest()
    return f"dynamic{animal}-{int(rng.integers(1, 12))}-{int(rng.integers(1, 14))}-Video-{digest}"


def _mouse_plan(cfg: SynthConfig, m: int) -> MousePlan:
    rng = np.random.default_rng([cfg.seed, 1, m])
    letter = META_MICE[(5 + m) % 10] if not cfg.like_sensorium else META_MICE[m % 10]
    meta = _meta(Path(cfg.meta_dir), letter)
    if meta is None:
        if cfg.like_sensorium:
            raise FileNotFoundError(f"{cfg.meta_dir}/mouse{letter}: --like-sensorium needs the real metadata")
        log.warning("no metadata in %s: drawing neuron geometry and scales", cfg.meta_dir)
        meta, letter = _fallback_meta(rng, max(cfg.neurons, 1)), None
    n_real = len(meta["coordinates"])
    if cfg.like_sensorium:
        idx = np.arange(n_real)
    else:
        idx = np.sort(rng.choice(n_real, size=cfg.neurons, replace=cfg.neurons > n_real))
    rmean = np.asarray(meta["response_mean"], dtype=np.float64)[idx]
    rstd = np.asarray(meta["response_std"], dtype=np.float64)[idx]
    floor = 0.05 * np.median(meta["response_mean"])
    unit_ids = np.sort(rng.choice(np.arange(1, 12 * len(idx) + 2), size=len(idx), replace=False))
    scales = BehaviourScales(
        pupil_mean=float(meta["behavior_mean"][0]),
        pupil_std=float(meta["behavior_std"][0]),
        running_mean=float(np.clip(meta["behavior_mean"][1], 0.3, 6.0)),
        pupil_center_mean=tuple(float(v) for v in meta["pupil_center_mean"]),
        pupil_center_std=tuple(float(v) for v in meta["pupil_center_std"]),
    )
    plan = MousePlan(
        session=_session_name(cfg.seed, m, ANIMAL_IDS[META_MICE.index(letter)] if letter else "29999", rng),
        meta=letter,
        unit_ids=unit_ids,
        coordinates=np.asarray(meta["coordinates"])[idx],
        target_mean=np.maximum(rmean, floor),
        target_std=np.maximum(rstd, 2 * np.maximum(rmean, floor)),
        scales=scales,
    )
    plan.trials = _real_trials(meta, m) if cfg.like_sensorium else _default_trials(cfg, m)
    order = rng.permutation(len(plan.trials)) if not cfg.like_sensorium else np.arange(len(plan.trials))
    plan.trials = [plan.trials[i] for i in order]  # file names carry no temporal order
    return plan


def _default_trials(cfg: SynthConfig, m: int) -> list[PlannedTrial]:
    trials = [PlannedTrial(TIER_TRAIN, 0, (TRAIN, j, 0)) for j in range(cfg.train_trials)]
    for t, tier in enumerate(MAIN_TIERS):
        for c in range(CLIPS_PER_MAIN_TIER):
            trials += [PlannedTrial(tier, 0, (MAIN, t, c)) for _ in range(cfg.repeats)]
    families = [(3 * m + j) % 5 + 1 for j in range(3)]  # 3 of the 5 families per mouse; all 5 over 2 mice
    for j, family in enumerate(families):
        tier = "live_test_bonus" if j == 0 else "final_test_bonus"
        for s in range(OOD_STIMULI[family]):
            trials += [PlannedTrial(tier, family, (OOD, family, s)) for _ in range(cfg.ood_repeats)]
    trials += [PlannedTrial(TIER_NONE, 0, (NONE, m, j)) for j in range(cfg.none_trials)]
    return trials


def _real_trials(meta: dict[str, np.ndarray], m: int) -> list[PlannedTrial]:
    """Tiers of a real mouse from its stimulus and video ids, in its real trial order."""
    sids, vids = meta["stimulus_ids"], meta["video_ids"]
    natural = vids[sids == 0]
    ids, counts = np.unique(natural, return_counts=True)
    repeated = ids[counts > 1]
    main_tier = {int(v): MAIN_TIERS[min(k * 3 // max(len(repeated), 1), 2)] for k, v in enumerate(repeated)}
    families = sorted(int(f) for f in np.unique(sids) if f > 0)
    trials = []
    for sid, vid in zip(sids.tolist(), vids.tolist(), strict=True):
        if sid < 0:
            tier, family = TIER_NONE, 0
        elif sid == 0:
            tier, family = main_tier.get(vid, TIER_TRAIN), 0
        else:
            tier, family = ("live_test_bonus" if sid == families[0] else "final_test_bonus"), sid
        trials.append(PlannedTrial(tier, family, (REAL, m, vid + 1), video_id=vid))  # seeds must be >= 0
    return trials


# --- simulation ---------------------------------------------------------------------------------------------------
def _calibration(seed: int, scales: BehaviourScales, maps: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
    out = []
    for j, mp in enumerate(maps):
        behavior, pupil_center = behaviour_traces(
            np.random.default_rng([seed, CALIBRATION, j]), mp.shape[1], scales
        )
        out.append((mp, behavior, pupil_center))
    return out


def generate(out: Path | str, cfg: SynthConfig | None = None, progress: bool = True) -> dict:
    """Write DIR/public/<session>/ and DIR/truth/<session>/ for every mouse; returns the manifest."""
    cfg = cfg or SynthConfig()
    out = Path(out)
    started = time.perf_counter()
    n_mice = cfg.mice if not cfg.like_sensorium else min(cfg.mice, 10)
    indices = [cfg.first_mouse + m for m in range(n_mice)]  # mouse numbers: they seed each mouse's draws
    plans = [_mouse_plan(cfg, m) for m in indices]
    calibration_maps = [
        pop_mod.spatial_maps(make_stimulus(0, (cfg.seed, CALIBRATION, j)))
        for j in range(cfg.calibration_movies)
    ]
    populations = []
    for m, plan in enumerate(plans):
        rng = np.random.default_rng([cfg.seed, 2, indices[m]])
        cal = _calibration(cfg.seed, plan.scales, calibration_maps)
        populations.append(
            pop_mod.build_population(
                rng, plan.coordinates, plan.target_mean, plan.target_std, plan.scales, cal
            )
        )
    del calibration_maps
    # Video ids: one per distinct stimulus key (shared across mice), unless the real ids are used.
    keys = sorted({t.key for p in plans for t in p.trials})
    key_id = {k: i for i, k in enumerate(keys)}
    uses: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for m, plan in enumerate(plans):
        for i, t in enumerate(plan.trials):
            t.video_id = t.video_id if cfg.like_sensorium else key_id[t.key]
            uses[t.key].append((m, i))
    public, truth = [], []
    for plan in plans:
        padded = max(FAMILY_FRAMES[t.family] for t in plan.trials)
        public.append(
            MouseWriter(
                out / "public" / plan.session, plan.unit_ids, plan.coordinates, len(plan.trials), padded
            )
        )
        truth.append(TruthWriter(out / "truth" / plan.session, plan.unit_ids, len(plan.trials)))
    for plan, population in zip(plans, populations, strict=True):  # each neuron's true parameters
        write_neurons(out / "truth" / plan.session, plan.unit_ids, population)
    total = sum(len(p.trials) for p in plans)
    with tqdm(total=total, desc="synth trials", unit="trial", disable=not progress) as bar:
        for key in keys:
            family = plans[uses[key][0][0]].trials[uses[key][0][1]].family
            video = make_stimulus(family, (cfg.seed, *key))
            maps = pop_mod.spatial_maps(video)
            video_hwt = np.ascontiguousarray(video.transpose(1, 2, 0))
            first_use: dict[int, int] = {}
            for m, i in uses[key]:
                plan, trial = plans[m], plans[m].trials[i]
                same_video_as = first_use.setdefault(m, i)
                behavior, pupil_center = behaviour_traces(
                    np.random.default_rng([cfg.seed, 3, indices[m], i]), video.shape[0], plan.scales
                )
                rates = populations[m].rates(maps, behavior, pupil_center)
                responses = populations[m].sample(np.random.default_rng([cfg.seed, 4, indices[m], i]), rates)
                public[m].write_trial(
                    i,
                    trial.tier,
                    video_hwt,
                    responses,
                    behavior,
                    pupil_center,
                    same_video_as=None if same_video_as == i else same_video_as,
                )
                truth[m].write_trial(i, trial.tier, trial.family, trial.video_id, responses, rates)
                bar.update()
    for w in (*public, *truth):
        w.close()
    elapsed = time.perf_counter() - started
    manifest = {
        "generator": "sensorium-serve data synth",
        "config": asdict(cfg),
        "sessions": [p.session for p in plans],
        "meta_mice": [p.meta for p in plans],
        "trials": {p.session: _tier_counts(p) for p in plans},
        "families": {p.session: sorted({STIMULUS_FAMILIES[t.family] for t in p.trials}) for p in plans},
        "seconds": round(elapsed, 2),
    }
    (out / "synth.json").write_text(json.dumps(manifest, indent=1))
    log.info("wrote %d mice, %d trials to %s in %.1f s", len(plans), total, out, elapsed)
    return manifest


def _tier_counts(plan: MousePlan) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for t in plan.trials:
        counts[t.tier] += 1
    return dict(counts)


__all__ = ["TIER_ORACLE", "SynthConfig", "generate", "like_config"]
