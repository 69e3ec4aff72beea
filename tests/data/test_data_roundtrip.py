"""Writer -> reader round trip on a hand-made mouse folder."""

from __future__ import annotations

import numpy as np
import pytest

from models.benchmark import TEST_TIERS
from models.data import layout
from models.data.normalisation import (
    NormalisationStats,
    normalise_behavior,
    normalise_pupil_center,
    normalise_responses,
    normalise_video,
    standardise_responses,
)
from models.data.reader import open_dataset, open_mouse


def test_round_trip_values_shapes_lengths(handmade) -> None:
    path, trials, unit_ids, coords, tiers, lengths = handmade
    mouse = open_mouse(path, validate="full")
    assert mouse.session == path.name
    np.testing.assert_array_equal(mouse.unit_ids, unit_ids)
    np.testing.assert_array_equal(mouse.coordinates, coords)
    assert mouse.coordinates.dtype.kind == "i"
    assert mouse.tiers.tolist() == tiers
    assert mouse.padded_length == 12
    for i, (tier, length, arrays) in enumerate(zip(tiers, lengths, trials, strict=True)):
        if tier == "none":
            assert mouse.lengths[i] == -1
            with pytest.raises(IndexError):
                mouse.video(i)
            continue
        assert mouse.length(i) == length
        trial = mouse.trial(i)
        assert trial.video.shape == (36, 64, length) and trial.video.dtype == np.float32
        np.testing.assert_array_equal(trial.video, arrays["video"])
        np.testing.assert_array_equal(trial.behavior, arrays["behavior"])
        np.testing.assert_array_equal(trial.pupil_center, arrays["pupil_center"])
        expected = np.zeros_like(arrays["responses"]) if tier in TEST_TIERS else arrays["responses"]
        np.testing.assert_array_equal(trial.responses, expected)
        raw = np.load(layout.trial_file(path, layout.RESPONSES, i))
        assert raw.shape == (5, 12) and np.isnan(raw[:, length:]).all() and np.isfinite(raw[:, :length]).all()


def test_trials_by_tier_skips_none(handmade) -> None:
    mouse = open_mouse(handmade[0])
    assert mouse.trials("train").tolist() == [0, 1, 5]
    assert mouse.trials().tolist() == [0, 1, 2, 3, 5, 6]
    assert mouse.trials("none").size == 0
    assert [t.index for t in mouse.iter_trials("oracle")] == [2]
    with pytest.raises(ValueError, match="unknown tier"):
        mouse.trials("test")


def test_statistics_are_time_resolved_over_train(handmade) -> None:
    path, trials = handmade[:2]
    mouse = open_mouse(path)
    train = [trials[i] for i in (0, 1, 5)]
    stats = mouse.statistics
    assert stats["videos"]["mean"].shape == (36, 64, 12)
    assert stats["responses"]["std"].shape == (5, 12)
    assert stats["behavior"]["mean"].shape == (2, 12)
    # frame 3: all three train trials; frame 11: only trial 1 (length 12) reaches it
    frame3 = np.stack([t["responses"][:, 3] for t in train])
    np.testing.assert_allclose(stats["responses"]["mean"][:, 3], frame3.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["responses"]["std"][:, 3], frame3.std(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["pupil_center"]["max"][:, 11], train[1]["pupil_center"][:, 11])
    np.testing.assert_allclose(stats["videos"]["min"][..., 0], np.min([t["video"][..., 0] for t in train], 0))


def test_normalisation_contract(handmade) -> None:
    path = handmade[0]
    mouse = open_mouse(path)
    st = NormalisationStats.from_mouse(mouse)
    s = mouse.statistics
    assert st.video_mean.shape == (36, 64) and st.response_std.shape == (5,)
    np.testing.assert_allclose(st.video_mean, np.nanmean(s["videos"]["mean"], -1), rtol=1e-5)
    std = np.nanmean(s["responses"]["std"], -1)
    np.testing.assert_allclose(st.response_std, np.maximum(std, 0.01 * std.mean()), rtol=1e-5)
    np.testing.assert_allclose(st.response_precision, 1 / st.response_std, rtol=1e-6)
    trial = mouse.trial(0)
    r_tn = trial.responses.T
    np.testing.assert_allclose(normalise_responses(r_tn, st), r_tn / st.response_std, rtol=1e-6)
    np.testing.assert_allclose(standardise_responses(trial.responses, st), normalise_responses(r_tn, st).T)
    v = np.moveaxis(trial.video, -1, 0)
    np.testing.assert_allclose(
        normalise_video(v, st), (v - st.video_mean) / st.video_std, rtol=1e-5, atol=1e-5
    )
    b = trial.behavior.T
    np.testing.assert_allclose(normalise_behavior(b, st), b / st.behavior_std, rtol=1e-6)
    p = trial.pupil_center.T
    np.testing.assert_allclose(normalise_pupil_center(p, st), (p - st.pupil_mean) / st.pupil_std, rtol=1e-5)
    again = NormalisationStats.from_dict(st.to_dict())
    for key, value in st.to_dict().items():
        np.testing.assert_array_equal(getattr(again, key), value)


def test_response_std_floor_and_untimed_statistics() -> None:
    stats = {
        "videos": {"mean": np.float32(80.0), "std": np.float32(57.0)},
        "responses": {"mean": np.ones(4), "std": np.array([0.0, 10.0, 20.0, np.nan])},
        "behavior": {"mean": np.array([50.0, 1.0]), "std": np.array([14.0, 0.0])},
        "pupil_center": {"mean": np.array([120.0, 121.0]), "std": np.array([5.0, 6.0])},
    }
    st = NormalisationStats.from_statistics(stats, 4)
    floor = 0.01 * 10.0  # 0.01 * nanmean([0, 10, 20])
    np.testing.assert_allclose(st.response_std, [floor, 10.0, 20.0, floor], rtol=1e-6)
    assert st.video_mean.shape == (36, 64) and float(st.video_std[5, 5]) == 57.0
    assert st.behavior_std.tolist() == [14.0, 1.0]  # a zero std scales by 1


def test_open_dataset(handmade, tmp_path) -> None:
    mice = open_dataset(handmade[0].parent)
    assert list(mice) == [handmade[0].name]
    with pytest.raises(ValueError, match="mouse folder"):
        open_dataset(handmade[0])
    (tmp_path / "root" / "public").mkdir(parents=True)
    (tmp_path / "root" / "truth").mkdir()
    with pytest.raises(ValueError, match=r"not a mouse folder.*pass DIR/public"):
        open_dataset(tmp_path / "root")
