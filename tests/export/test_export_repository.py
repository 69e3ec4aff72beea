"""`sensorium-serve export`: parity self-checks, refusal of broken graphs, repository layout, metadata, Triton."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from export_fixtures import SESSIONS, make_model, tiny_mice, tiny_stats, write_checkpoint

from models import contract
from models.export import checks, graphs
from models.export.repository import export_checkpoint
from models.export.wrappers import ClipModel, StepGraph
from server.cli import main

HERE = Path(__file__).parent


def export_cli(run: Path, repo: Path, *extra: str) -> int:
    return main(["export", str(run), "--repo", str(repo), *extra])


def test_export_writes_triton_layout_and_metadata(run_dir: Path, tmp_path: Path, architecture: str) -> None:
    repo = tmp_path / "repo"
    assert export_cli(run_dir, repo) == 0
    expected = {
        contract.repository_model_name(s, k) for s in SESSIONS for k in (contract.CLIP, contract.STEP)
    }
    assert {p.name for p in repo.iterdir() if not p.name.startswith(".")} == expected
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]  # no staging leftovers
    mice = tiny_mice()
    for session, n in SESSIONS.items():
        for kind in (contract.CLIP, contract.STEP):
            folder = repo / contract.repository_model_name(session, kind)
            assert sorted(p.name for p in folder.iterdir()) == ["1", contract.CONFIG_FILENAME]
            assert sorted(p.name for p in (folder / "1").iterdir()) == [
                contract.METADATA_FILENAME,
                contract.MODEL_FILENAME,
            ]
            meta = contract.ModelMetadata.read(folder / "1")
            assert (meta.mouse, meta.kind, meta.architecture) == (session, kind, architecture)
            assert meta.unit_ids == mice[session].unit_ids.tolist() and meta.n_neurons == n
            assert (meta.fps, meta.frame_height, meta.frame_width, meta.skip) == (30, 36, 64, 50)
            assert meta.receptive_field == make_model(architecture).receptive_field
            np.testing.assert_allclose(
                meta.response_std, tiny_stats(n, list(SESSIONS).index(session)).response_std
            )
            assert meta.provenance["data_seed"] == 7 and meta.provenance["git_commit"] == "abc123"
            assert meta.provenance["parity"]["step_vs_clip_max_abs"] <= 1e-4
            assert meta.validation["oracle_single_trial_correlation"] == pytest.approx(
                0.3 + 0.1 * list(SESSIONS).index(session)
            )
            assert contract.ModelMetadata.from_json(meta.to_json()) == meta  # round trip
            graph = onnx.load(str(folder / "1" / contract.MODEL_FILENAME))
            assert graph.opset_import[0].version >= 17
            if kind == contract.STEP:
                names = [s.input_name for s in meta.state]
                assert names == [contract.state_in_name(i) for i in range(len(names))]
                assert [i.name for i in graph.graph.input] == ["video", "behavior", "pupil_center", *names]
            else:
                assert meta.state == []
    # a second export goes to version 2 and leaves version 1 alone
    assert export_cli(run_dir, repo) == 0
    assert (repo / contract.repository_model_name(next(iter(SESSIONS)), contract.STEP) / "2").is_dir()


def test_exported_graphs_match_torch_and_each_other(run_dir: Path, tmp_path: Path) -> None:
    """Independent of the export's own check: ORT clip vs torch, ORT step replay vs ORT clip, other sizes."""
    repo = tmp_path / "repo"
    (item, *_) = export_checkpoint(run_dir, repo)
    checkpoint = torch.load(run_dir / "best.pt", weights_only=False)
    from models.export.repository import model_from_checkpoint

    model, stats = model_from_checkpoint(checkpoint)
    r = model.receptive_field
    inputs = checks.raw_inputs(stats[item.mouse], 4, r + 20, 11, 36, 64)
    clip = checks.session(str(item.clip_dir / contract.MODEL_FILENAME))
    (out,) = clip.run(None, inputs)
    n = len(checkpoint["mice"][item.mouse]["unit_ids"])
    assert out.shape == (4, 21, n)
    with torch.no_grad():
        ref = ClipModel(model, item.mouse, stats[item.mouse]).eval()(
            *(torch.from_numpy(inputs[k]) for k in checks.contract_inputs())
        )
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-4, rtol=0)
    step = checks.session(str(item.step_dir / contract.MODEL_FILENAME))
    streamed = checks.replay_step(step, inputs, model.state_shapes())
    np.testing.assert_allclose(streamed[:, r - 1 :], out, atol=1e-4, rtol=0)
    # the exported input dims carry the symbolic names
    assert clip.get_inputs()[0].shape[:2] == ["batch", "time"]
    assert step.get_inputs()[0].shape[0] == "batch"


def test_export_refuses_a_step_graph_that_breaks_parity(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = StepGraph.forward

    def faulty(self: StepGraph, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        responses, *state = original(self, *args)
        return (responses + 1e-3, *state)  # a small, systematic error

    monkeypatch.setattr(StepGraph, "forward", faulty)
    repo = tmp_path / "repo"
    assert export_cli(run_dir, repo) == 2
    assert "step graph replayed frame by frame differs from the clip graph" in caplog.text
    assert not any(p for p in repo.iterdir() if not p.name.startswith("."))  # nothing written


def test_export_refuses_a_model_changed_between_graphs(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Perturb a weight after the clip graph is built: the step graph (and torch) no longer match it."""
    original = graphs.build_clip_graph

    def clip_then_perturb(model, session, stats):  # type: ignore[no-untyped-def]
        clip = original(model, session, stats)
        with torch.no_grad():
            model.core.layers[0].temporal.weight.add_(0.05)
        return clip

    monkeypatch.setattr(graphs, "build_clip_graph", clip_then_perturb)
    assert export_cli(run_dir, tmp_path / "repo", "--mouse", next(iter(SESSIONS))) == 2
    assert "export FAILED" in caplog.text and "differs" in caplog.text


def test_assert_symbolic_rejects_fixed_dims(tmp_path: Path) -> None:
    model = make_model("factorised")
    session = model.sessions[0]
    fixed = graphs._to_onnx(
        ClipModel(model, session, tiny_stats(7)),
        checks_inputs(model),
        ["video", "behavior", "pupil_center"],
        ["responses"],
        {},
    )
    with pytest.raises(graphs.ExportError, match="axis 0 is not symbolic"):
        graphs.assert_symbolic(fixed, {"video": (0, 1)}, "clip graph")


def checks_inputs(model) -> tuple[torch.Tensor, ...]:  # type: ignore[no-untyped-def]
    inputs = checks.raw_inputs(tiny_stats(7), 1, model.receptive_field + 1, 0, 36, 64)
    return tuple(torch.from_numpy(inputs[k]) for k in checks.contract_inputs())


def test_export_errors_are_precise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert export_cli(tmp_path / "nothing", tmp_path / "repo") == 2
    assert "no checkpoint" in caplog.text
    run = tmp_path / "run"
    write_checkpoint(run / "best.pt", make_model("factorised"), tiny_mice())
    assert export_cli(run, tmp_path / "repo", "--mouse", "nobody") == 2
    assert "not in" in caplog.text


def test_configs_parse_as_triton_model_config(run_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert export_cli(run_dir, repo) == 0
    paths = sorted(str(p) for p in repo.glob(f"*/{contract.CONFIG_FILENAME}"))
    result = subprocess.run(
        [sys.executable, str(HERE / "triton_parse_config.py"), *paths],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    parsed = {Path(c["path"]).parent.name: c for c in map(json.loads, result.stdout.splitlines())}
    assert len(parsed) == 2 * len(SESSIONS)
    for session, n in SESSIONS.items():
        clip = parsed[contract.repository_model_name(session, contract.CLIP)]
        step = parsed[contract.repository_model_name(session, contract.STEP)]
        for config in (clip, step):
            assert config["platform"] == "onnxruntime_onnx" and config["max_batch_size"] > 0
            assert config["data_types"] == ["TYPE_FP32"]
        assert clip["name"] == contract.repository_model_name(session, contract.CLIP)
        assert clip["inputs"] == {"video": [-1, 36, 64], "behavior": [-1, 2], "pupil_center": [-1, 2]}
        assert clip["outputs"] == {"responses": [-1, n]} and not clip["sequence_batching"]
        assert step["inputs"] == {"video": [36, 64], "behavior": [2], "pupil_center": [2]}
        assert step["outputs"] == {"responses": [n]} and step["sequence_batching"]
        meta = contract.ModelMetadata.read(repo / step["name"] / "1")
        assert step["states"] == [
            {
                "input_name": s.input_name,
                "output_name": s.output_name,
                "dims": list(s.shape),
                "zero_initial": True,
            }
            for s in meta.state
        ]
        assert step["states"]  # every tiny model has state


def test_triton_parser_rejects_a_malformed_config(tmp_path: Path) -> None:
    bad = tmp_path / "config.pbtxt"
    bad.write_text(
        'name: "x"\nplatform: "onnxruntime_onnx"\nsequence_batching { state [ { nonsense: 1 } ] }\n'
    )
    result = subprocess.run(
        [sys.executable, str(HERE / "triton_parse_config.py"), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "nonsense" in result.stderr


def test_export_refuses_graphs_without_symbolic_dims(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exporter that bakes the batch/time axes (FIELD-NOTES trap 2) is caught before anything is written."""
    original = graphs._to_onnx

    def baked(module, args, input_names, output_names, dynamic_axes):  # type: ignore[no-untyped-def]
        return original(module, args, input_names, output_names, {})

    monkeypatch.setattr(graphs, "_to_onnx", baked)
    repo = tmp_path / "repo"
    assert export_cli(run_dir, repo) == 2
    assert "is not symbolic" in caplog.text
    assert not any(p for p in repo.iterdir() if not p.name.startswith("."))
