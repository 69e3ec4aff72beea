"""The synthetic generator: determinism, released layout, tiers, repeats, OOD families, oracle band."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from models.benchmark import DOTS_FRAMES, MOVIE_FRAMES, OOD_FAMILIES, STIMULUS_FAMILIES, TEST_TIERS
from models.data import layout
from models.data.normalisation import NormalisationStats
from models.data.oracle import oracle_single_trial_correlation
from models.data.reader import open_dataset
from models.data.synthetic import SynthConfig, generate
from models.data.synthetic.generator import _mouse_plan
from models.data.synthetic.stimuli import make_stimulus
from models.data.truth import TRUTH_TIERS, open_truth
from models.metrics import single_trial_correlation

# The documented band of the oracle single-trial correlation on the main test tiers (docs/DATA.md).
ORACLE_BAND = (0.3, 0.6)
SMALL = SynthConfig(
    mice=1, neurons=8, seed=11, train_trials=2, repeats=1, ood_repeats=1, none_trials=1, calibration_movies=2
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.npy"))}


def test_deterministic_from_seed(tmp_path: Path) -> None:
    generate(tmp_path / "a", SMALL, progress=False)
    generate(tmp_path / "b", SMALL, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) > 100 and a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)
    # another seed: other session names, neurons and stimuli
    other = _mouse_plan(SynthConfig(**{**SMALL.__dict__, "seed": 12}), 0)
    same = _mouse_plan(SMALL, 0)
    assert other.session != same.session and not np.array_equal(other.unit_ids, same.unit_ids)
    assert not np.array_equal(make_stimulus(0, (12, 1, 0, 0)), make_stimulus(0, (11, 1, 0, 0)))


def test_generated_folders_pass_the_reader(tiny_synth) -> None:
    root, manifest = tiny_synth
    mice = open_dataset(root / "public", validate="full")
    assert sorted(mice) == sorted(manifest["sessions"])
    for session, mouse in mice.items():
        assert re.fullmatch(r"dynamic\d{5}-\d+-\d+-Video-[0-9a-f]{32}", session)
        assert mouse.n_neurons == 24
        assert np.any(np.diff(mouse.unit_ids) > 1), "unit ids should not be contiguous"
        assert mouse.coordinates.dtype.kind == "i"
        train = mouse.trials("train")
        assert not np.array_equal(train, np.arange(train[0], train[0] + len(train))), (
            "file order not shuffled"
        )
        assert mouse.tier_counts["none"] == 1
        assert mouse.statistics["videos"]["mean"].shape == (36, 64, mouse.padded_length)
        stats = NormalisationStats.from_mouse(mouse)
        assert 40 < float(stats.video_mean.mean()) < 120  # grey levels like the release (~80)
        pupil, running = np.nanmean(mouse.statistics["behavior"]["mean"], axis=-1)
        assert 20 < pupil < 90 and 0 < running < 10  # released units: pupil ~50, running ~1.3
        assert np.all(stats.pupil_mean > 90)  # pupil centre ~120 as in the release


def test_test_tiers_hidden_in_public_present_in_truth(tiny_synth) -> None:
    root, _ = tiny_synth
    public = open_dataset(root / "public")
    truth = open_truth(root / "truth")
    for session, mouse in public.items():
        t = truth[session]
        np.testing.assert_array_equal(t.tiers, mouse.tiers)
        np.testing.assert_array_equal(t.unit_ids, mouse.unit_ids)
        for tier in TEST_TIERS:
            for i in mouse.trials(tier):
                assert not mouse.responses(int(i)).any()
                assert t.responses(int(i)).shape == (24, mouse.length(int(i)))
            assert sum(float(t.responses(int(i)).sum()) for i in mouse.trials(tier)) > 0
        for i in mouse.trials("oracle"):
            np.testing.assert_array_equal(mouse.responses(int(i)), t.responses(int(i)))
            assert (t.rates(int(i)) >= 0).all()
        with pytest.raises(KeyError):
            t.responses(int(mouse.trials("train")[0]))


def test_repeats_repeat_with_different_behaviour(tiny_synth) -> None:
    root, _ = tiny_synth
    public = open_dataset(root / "public")
    truth = open_truth(root / "truth")
    for session, mouse in public.items():
        t = truth[session]
        for tier in ("oracle", "live_test_main", "final_test_main"):
            trials = mouse.trials(tier)
            ids = t.video_ids[trials]
            assert len(np.unique(ids)) == 6 and np.all(np.unique(ids, return_counts=True)[1] == 3)
            same = trials[ids == ids[0]]
            np.testing.assert_array_equal(mouse.video(int(same[0])), mouse.video(int(same[1])))
            assert not np.array_equal(mouse.behavior(int(same[0])), mouse.behavior(int(same[1])))
            assert not np.array_equal(mouse.pupil_center(int(same[0])), mouse.pupil_center(int(same[1])))
            other = trials[ids != ids[0]][0]
            assert not np.array_equal(mouse.video(int(same[0])), mouse.video(int(other)))
        assert len(np.unique(t.video_ids[mouse.trials("train")])) == len(mouse.trials("train"))


def test_ood_families_and_lengths(tiny_synth) -> None:
    root, _ = tiny_synth
    public = open_dataset(root / "public")
    truth = open_truth(root / "truth")
    seen = set()
    for session, mouse in public.items():
        t = truth[session]
        live = {t.family(int(i)) for i in mouse.trials("live_test_bonus")}
        final = {t.family(int(i)) for i in mouse.trials("final_test_bonus")}
        assert len(live) == 1 and len(final) == 2 and not live & final
        seen |= live | final
        for i in mouse.trials():
            expected = DOTS_FRAMES if t.family(int(i)) == "gaussian_dots" else MOVIE_FRAMES
            assert mouse.length(int(i)) == expected
        main = {
            t.family(int(i)) for tier in ("train", "oracle", "live_test_main") for i in mouse.trials(tier)
        }
        assert main == {STIMULUS_FAMILIES[0]}
    assert seen == set(OOD_FAMILIES)


def test_oracle_correlation_in_band(tiny_synth) -> None:
    """Noise-free rate vs noisy response, standardised, scored by models.metrics, on the main test tiers."""
    root, _ = tiny_synth
    oracle = oracle_single_trial_correlation(root, tiers=("live_test_main", "final_test_main"))
    values = [v for per_mouse in oracle.values() for v in per_mouse.values()]
    assert len(values) == 4
    assert all(ORACLE_BAND[0] <= v <= ORACLE_BAND[1] for v in values), oracle
    # the same number by hand for one mouse and tier: raw x 1 / std[n, t] of the released (N, T) statistics,
    # floored at 1 % of their nanmean (the official loader's NeuroNormalizer)
    truth = open_truth(root / "truth")
    session = sorted(truth)[0]
    std = np.load(root / "public" / session / "meta/statistics/responses/all/std.npy").astype(np.float64)
    assert std.ndim == 2
    floor = 0.01 * np.nanmean(std)
    precision = np.where(std > floor, 1 / np.where(std > floor, std, 1), 1 / floor)
    trials = truth[session].trials("final_test_main")
    rates = [
        truth[session].rates(int(i)) * precision[:, : truth[session].rates(int(i)).shape[1]] for i in trials
    ]
    resp = [
        truth[session].responses(int(i)) * precision[:, : truth[session].responses(int(i)).shape[1]]
        for i in trials
    ]
    assert np.mean(single_trial_correlation(rates, resp)) == pytest.approx(oracle["final_test_main"][session])


def test_truth_layout(tiny_synth) -> None:
    root, _ = tiny_synth
    for session in open_truth(root / "truth"):
        folder = root / "truth" / session
        tiers = np.load(folder / "meta" / "tiers.npy")
        stored = {int(p.stem) for p in (folder / "rates").glob("*.npy")}
        assert stored == {i for i, t in enumerate(tiers) if t in TRUTH_TIERS}
        sids = np.load(folder / "meta" / "stimulus_ids.npy")
        assert (sids[tiers == "none"] == -1).all() and set(sids[tiers != "none"]) <= set(STIMULUS_FAMILIES)
        assert (root / "public" / session / layout.TIERS_FILE).exists()


def _fake_meta(root: Path) -> Path:
    """A one-mouse stand-in for the real metadata folder (same files, tiny)."""
    rng = np.random.default_rng(0)
    folder = root / "mouseA"
    (folder / "statistics").mkdir(parents=True)
    n = 12
    np.save(folder / "neuron_coordinates.npy", rng.integers(-900, -300, (n, 3)))
    sids = [0] * 5 + [0] * 6 + [1, 1, 2, 2, 2, 4, 4] + [-1]
    vids = [*range(5), 10, 10, 11, 11, 12, 12, 20, 20, 21, 21, 21, 22, 22, -1]
    order = rng.permutation(len(sids))
    np.save(folder / "stimulus_ids.npy", np.array(sids)[order])
    np.save(folder / "video_ids.npy", np.array(vids)[order])
    stats = {
        "response": {"mean": rng.uniform(1, 3, n), "std": rng.uniform(8, 14, n)},
        "behavior": {"mean": np.array([50.0, 1.0]), "std": np.array([14.0, 3.0])},
        "pupil_center": {"mean": np.array([120.0, 118.0]), "std": np.array([5.0, 6.0])},
    }
    for kind, values in stats.items():
        (folder / "statistics" / kind).mkdir()
        for stat, arr in values.items():
            np.save(folder / "statistics" / kind / f"{stat}.npy", np.asarray(arr, dtype=np.float32))
    return root


def test_like_sensorium_follows_the_real_structure(tmp_path: Path) -> None:
    meta = _fake_meta(tmp_path / "meta")
    cfg = SynthConfig(mice=1, like_sensorium=True, meta_dir=str(meta), calibration_movies=2)
    generate(tmp_path / "out", cfg, progress=False)
    (mouse,) = open_dataset(tmp_path / "out" / "public", validate="full").values()
    (truth,) = open_truth(tmp_path / "out" / "truth").values()
    assert mouse.n_neurons == 12
    np.testing.assert_array_equal(truth.video_ids, np.load(meta / "mouseA" / "video_ids.npy"))
    assert mouse.tier_counts == {
        "train": 5,
        "oracle": 2,
        "live_test_main": 2,
        "final_test_main": 2,
        "live_test_bonus": 2,
        "final_test_bonus": 5,
        "none": 1,
    }
    assert {truth.family(int(i)) for i in mouse.trials("live_test_bonus")} == {"directional_pink_noise"}
    assert mouse.padded_length == DOTS_FRAMES
