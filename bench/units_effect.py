#!/usr/bin/env python3
"""What the official scored units change (docs/METRICS.md "Units"), on a dataset with a truth folder.

Per test tier, single-trial correlation (models.metrics) of:
  - the truth in the official units, scored as if the units were per neuron (the time axis collapsed), and the
    reverse: how far from 1.0 a "perfect" submission lands when the two sides disagree on the units;
  - a noisy submission (official truth + Gaussian noise of twice its std) in each side's own units: how much
    the rule alone moves an imperfect submission's score.

    .venv/bin/python bench/units_effect.py runs/demo/data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.benchmark import SKIP_FRAMES
from models.data.normalisation import NormalisationStats, ScoredUnits
from models.data.reader import open_dataset
from models.data.truth import open_truth
from models.metrics import single_trial_correlation


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="dataset root DIR with public/ and truth/")
    parser.add_argument(
        "--tier", action="append", default=None, help="tier (repeatable; default final main+bonus)"
    )
    args = parser.parse_args()
    public = open_dataset(args.data / "public", validate="off")
    truth = open_truth(args.data / "truth")
    rng = np.random.default_rng(0)
    print(
        f"{'tier':<18}{'official truth, per-neuron rule':>34}{'noisy, official':>18}{'noisy, per-neuron':>19}"
    )
    for tier in args.tier or ["final_test_main", "final_test_bonus"]:
        cross, noisy_official, noisy_neuron = [], [], []
        for session, folder in truth.items():
            units = ScoredUnits.from_mouse(public[session])
            per_neuron = NormalisationStats.from_mouse(public[session]).response_precision[:, None]
            trials = [int(i) for i in folder.trials(tier)]
            official = [units.standardise(folder.responses(i)) for i in trials]
            collapsed = [folder.responses(i) * per_neuron for i in trials]
            noisy = [o + rng.normal(0, 2 * o.std(), o.shape).astype(np.float32) for o in official]
            raw_noisy = [n / units.frames(0, n.shape[1]) for n in noisy]
            cross.append(single_trial_correlation([o[:, SKIP_FRAMES:] for o in official], collapsed))
            noisy_official.append(single_trial_correlation([n[:, SKIP_FRAMES:] for n in noisy], official))
            noisy_neuron.append(
                single_trial_correlation([(r * per_neuron)[:, SKIP_FRAMES:] for r in raw_noisy], collapsed)
            )
        values = [float(np.concatenate(v).mean()) for v in (cross, noisy_official, noisy_neuron)]
        print(f"{tier:<18}{values[0]:>34.3f}{values[1]:>18.3f}{values[2]:>19.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
