"""Oracle ceilings: how well the noise-free rate predicts the noisy responses (numpy only).

Both are put in the official scored units with the public folder's response statistics (`ScoredUnits`: per
neuron and frame) and scored with
`models.metrics.single_trial_correlation` (frames [SKIP_FRAMES, min(T, SCORED_FRAMES)), per neuron).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.normalisation import ScoredUnits
from models.data.reader import open_dataset
from models.data.truth import TRUTH_TIERS, open_truth


def oracle_single_trial_correlation(
    data_dir: Path | str, tiers: tuple[str, ...] = TRUTH_TIERS
) -> dict[str, dict[str, float]]:
    """{tier: {session: mean over neurons of corr(rate, response)}} from DIR/public + DIR/truth."""
    from models.metrics import single_trial_correlation

    data_dir = Path(data_dir)
    public = open_dataset(data_dir / "public", validate="off")
    truth = open_truth(data_dir / "truth")
    out: dict[str, dict[str, float]] = {}
    for tier in tiers:
        for session, folder in truth.items():
            trials = folder.trials(tier)
            if not trials.size:
                continue
            units = ScoredUnits.from_mouse(public[session])
            rates = [units.standardise(folder.rates(int(i))) for i in trials]
            responses = [units.standardise(folder.responses(int(i))) for i in trials]
            out.setdefault(tier, {})[session] = float(np.mean(single_trial_correlation(rates, responses)))
    return out
