"""Networks: configs, causality, the three views of one model (clip, trunk + head, step) and the readout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from export_fixtures import TINY, make_model

from models.config import CONFIGS, ModelConfig, get_config
from models.networks.readout import GaussianReadout


def clip_inputs(batch: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, frames, 36, 64, generator=g),
        torch.randn(batch, frames, 2, generator=g),
        torch.randn(batch, frames, 2, generator=g),
    )


def test_named_configs_and_receptive_fields() -> None:
    assert set(CONFIGS) >= {"default", "baseline", "gru"}
    baseline = get_config("baseline")
    assert baseline.channels == (32, 64, 128)
    assert baseline.receptive_field == 19  # 1 + 10 + 4 + 4
    assert get_config("gru").architecture == "gru"
    assert ModelConfig.from_dict(baseline.to_dict()) == baseline
    with pytest.raises(ValueError, match="unknown model config field"):
        ModelConfig.from_dict({**baseline.to_dict(), "chanels": [1]})
    with pytest.raises(ValueError, match="unknown model config 'nope'"):
        get_config("nope")
    with pytest.raises(ValueError, match="architecture"):
        ModelConfig(architecture="transformer")  # type: ignore[arg-type]


@pytest.mark.parametrize("architecture", ["factorised", "gru"])
def test_output_shape_and_positive(architecture: str) -> None:
    model = make_model(architecture)
    r = model.receptive_field
    assert r == TINY[architecture].receptive_field
    session = model.sessions[0]
    out = model(session, *clip_inputs(2, r + 6))
    assert out.shape == (2, 7, model.readout(session).n_neurons)
    assert bool((out > 0).all())  # ELU + 1


@pytest.mark.parametrize("architecture", ["factorised", "gru"])
def test_causality_changing_frame_t_leaves_earlier_outputs_unchanged(architecture: str) -> None:
    model = make_model(architecture)
    r, session = model.receptive_field, model.sessions[0]
    video, behavior, pupil = clip_inputs(1, r + 10)
    t = r + 4  # output j belongs to input frame j + R - 1
    with torch.no_grad():
        before = model(session, video, behavior, pupil)
        for changed in (video, behavior, pupil):
            changed[:, t] += 3.0
        after = model(session, video, behavior, pupil)
    j = t - (r - 1)
    assert torch.equal(before[:, :j], after[:, :j])
    assert (before[:, j] - after[:, j]).abs().max() > 1e-4  # the change is seen at its own frame


@pytest.mark.parametrize("architecture", ["factorised", "gru"])
def test_step_and_trunk_head_equal_the_clip_forward(architecture: str) -> None:
    model = make_model(architecture)
    r, session = model.receptive_field, model.sessions[1]
    video, behavior, pupil = clip_inputs(2, r + 8, seed=3)
    with torch.no_grad():
        clip = model(session, video, behavior, pupil)
        state, streamed = model.init_state(2), []
        for t in range(video.shape[1]):
            out, state = model.step(session, video[:, t], behavior[:, t], pupil[:, t], state)
            streamed.append(out)
        features, shift = model.trunk(session, video, behavior, pupil)
        hidden = (
            torch.zeros(2, model.gru.hidden_channels, *model.feature_size) if model.gru is not None else None
        )
        heads = []
        for t in range(features.shape[0]):
            out, hidden = model.head(session, features[t], shift[t], hidden)
            heads.append(out)
    assert [tuple(s.shape[1:]) for s in state] == model.state_shapes()
    torch.testing.assert_close(torch.stack(streamed, 1)[:, r - 1 :], clip, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(heads, 1), clip, atol=1e-5, rtol=0)


def test_gather_sampling_equals_grid_sample() -> None:
    torch.manual_seed(0)
    readout = GaussianReadout(5, np.random.default_rng(0).uniform(0, 500, (40, 3)), 8, 0.1, True).eval()
    features = torch.randn(3, 5, 9, 13)
    grid = torch.rand(3, 40, 2) * 2 - 1
    grid[0, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])  # corners: edge handling
    expected = readout.sample_grid(features, grid)
    torch.testing.assert_close(readout.sample_gather(features, grid), expected, atol=1e-5, rtol=0)
    # and grid_sample itself is what we think it is: the corner reads the corner pixel
    corner = F.grid_sample(features, grid[:, None, :1], align_corners=True).flatten(1)
    torch.testing.assert_close(corner[0], features[0, :, 0, 0])


def test_training_mode_samples_positions_eval_is_deterministic() -> None:
    model = make_model("factorised")
    session = model.sessions[0]
    inputs = clip_inputs(1, model.receptive_field + 2)
    model.train()
    a, b = model(session, *inputs), model(session, *inputs)
    assert not torch.equal(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(session, *inputs), model(session, *inputs))


def test_regularizer_and_unknown_session() -> None:
    model = make_model("factorised")
    assert float(model.regularizer(model.sessions[0])) == 0.0
    with pytest.raises(KeyError, match="unknown session"):
        model.readout("nobody")
