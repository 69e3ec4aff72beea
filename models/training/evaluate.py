"""Score a checkpoint (torch) on test tiers against the hidden truth, next to the oracle ceiling.

Model: predictions from the public inputs of each trial (whole trials), normalised with the checkpoint's own
statistics, turned into the official scored units (raw x the released precision of each neuron and frame), vs
the true responses in the same units. Oracle: the noise-free rates the
synthetic generator stored (DIR/truth/<session>/rates) vs the same responses, i.e. the best single-trial
correlation any model could reach. Both through `models.metrics.single_trial_correlation`, pooled over the
neurons of all mice. `make demo` prints this table; `python -m models.training.evaluate RUN DIR` too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.benchmark import TEST_TIERS
from models.data.normalisation import NormalisationStats
from models.data.reader import open_dataset
from models.data.truth import open_truth
from models.metrics import single_trial_correlation
from models.training.checkpoint import load_checkpoint
from models.training.data import MouseData
from models.training.model import model_from_checkpoint
from models.training.validation import predict_trials, summarise

log = logging.getLogger(__name__)

MAIN_TIERS = tuple(t for t in TEST_TIERS if t.endswith("_main"))
BONUS_TIERS = tuple(t for t in TEST_TIERS if t.endswith("_bonus"))


def data_folders(data_root: str | Path) -> tuple[Path, Path]:
    """(DIR/public, DIR/truth) from DIR or DIR/public."""
    root = Path(data_root)
    if root.name == "public" and not (root / "public").is_dir():
        root = root.parent
    public, truth = root / "public", root / "truth"
    for folder in (public, truth):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} does not exist (expected DIR/public and DIR/truth under {root})"
            )
    return public, truth


def _ratio(model: float, oracle: float) -> float:
    return model / oracle if oracle > 0 else float("nan")


def evaluate_against_truth(
    checkpoint_path: str | Path,
    data_root: str | Path,
    tiers: Sequence[str] = TEST_TIERS,
    device: str | torch.device = "cpu",
    chunk: int = 8,
) -> dict[str, Any]:
    """{tier: {"model": {"overall", "per_mouse"}, "oracle": {...}, "ratio", "trials",
    "per_family": {family: {"model", "oracle", "ratio"}}}} for each tier, single-trial correlation.

    `checkpoint_path`: a checkpoint file or a run folder (its best.pt); `data_root`: DIR (or DIR/public) of a
    dataset with a truth folder.
    """
    unknown = [t for t in tiers if t not in TEST_TIERS]
    if unknown:
        raise ValueError(f"unknown test tier(s) {unknown}; choose from {TEST_TIERS}")
    device = torch.device(device)
    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    model = model_from_checkpoint(checkpoint, device)
    public_dir, truth_dir = data_folders(data_root)
    folders = open_dataset(public_dir, validate="off")
    truths = open_truth(truth_dir)

    results: dict[str, Any] = {}
    for tier in tiers:
        model_scores: dict[str, np.ndarray] = {}
        oracle_scores: dict[str, np.ndarray] = {}
        families: dict[str, dict[str, list[np.ndarray]]] = {}
        n_trials = 0
        for session, entry in checkpoint["mice"].items():
            if session not in folders or session not in truths:
                raise FileNotFoundError(
                    f"mouse {session} of the checkpoint is not in {public_dir} and {truth_dir}"
                )
            truth = truths[session]
            if not np.array_equal(truth.unit_ids, np.asarray(entry["unit_ids"])):
                raise ValueError(f"{truth.path}: unit ids differ from the checkpoint's for {session}")
            mouse = MouseData(folders[session])
            stats = NormalisationStats.from_dict(entry["stats"])
            mouse.stats = stats  # predict with the statistics the model was trained with
            trials = mouse.folder.trials(tier)
            if len(trials) == 0:
                continue
            n_trials += len(trials)
            inputs = [mouse.trial(int(i)) for i in trials]
            predictions = predict_trials(model, session, inputs, device, chunk)
            predictions = [
                mouse.scored_predictions(p, t.video.shape[0])
                for p, t in zip(predictions, inputs, strict=True)
            ]
            targets = [mouse.scored_units.standardise(truth.responses(int(i))) for i in trials]
            oracle = [mouse.scored_units.standardise(truth.rates(int(i))) for i in trials]
            model_scores[session] = single_trial_correlation(predictions, targets)
            oracle_scores[session] = single_trial_correlation(oracle, targets)
            by_family: dict[str, list[int]] = {}
            for k, i in enumerate(trials):
                by_family.setdefault(truth.family(int(i)), []).append(k)
            for family, ks in by_family.items():
                slot = families.setdefault(family, {"model": [], "oracle": []})
                slot["model"].append(
                    single_trial_correlation([predictions[k] for k in ks], [targets[k] for k in ks])
                )
                slot["oracle"].append(
                    single_trial_correlation([oracle[k] for k in ks], [targets[k] for k in ks])
                )
        if not model_scores:
            log.warning("no trials of tier %s in %s", tier, public_dir)
            continue
        m, o = summarise(model_scores), summarise(oracle_scores)
        per_family = {}
        for family, slot in families.items():
            fm, fo = float(np.concatenate(slot["model"]).mean()), float(np.concatenate(slot["oracle"]).mean())
            per_family[family] = {"model": fm, "oracle": fo, "ratio": _ratio(fm, fo)}
        results[tier] = {
            "model": m,
            "oracle": o,
            "ratio": _ratio(m["overall"], o["overall"]),  # type: ignore[arg-type]
            "trials": n_trials,
            "per_family": per_family,
        }
    return results


def format_table(results: dict[str, Any]) -> str:
    """Plain-text table: tier, trials, model, oracle, ratio."""
    lines = [f"{'tier':<18} {'trials':>6} {'model':>8} {'oracle':>8} {'ratio':>6}"]
    for tier, r in results.items():
        lines.append(
            f"{tier:<18} {r['trials']:>6} {r['model']['overall']:>8.4f} {r['oracle']['overall']:>8.4f} "
            f"{r['ratio']:>6.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.training.evaluate",
        description="Single-trial correlation of a checkpoint vs the oracle (noise-free rates) on test tiers.",
    )
    parser.add_argument("run", type=Path, help="run folder (best.pt) or checkpoint file")
    parser.add_argument("data", type=Path, help="dataset root DIR holding public/ and truth/")
    parser.add_argument("--tier", action="append", choices=TEST_TIERS, help="tier (repeatable; default all)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = evaluate_against_truth(args.run, args.data, args.tier or TEST_TIERS, args.device)
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
