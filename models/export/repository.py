"""`sensorium-serve export`: a training checkpoint -> per-mouse clip and step models in a Triton-layout repository.

For each mouse: build both graphs, check them (models/export/checks.py), and only then write
``REPO/<mouse>-{clip,step}/<version>/{model.onnx,metadata.json}`` and ``config.pbtxt``. A failed check raises
ExportCheckError and leaves the repository as it was (graphs are staged in a temporary folder first).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from models import contract
from models.benchmark import FPS, SKIP_FRAMES
from models.config import ModelConfig
from models.data.normalisation import NormalisationStats
from models.export import checks, graphs, triton
from models.networks import MouseInfo, SensoriumModel, build_model

log = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
REQUIRED_KEYS = ("config", "mice", "model_state")


@dataclass(frozen=True)
class ExportedModel:
    mouse: str
    version: int
    clip_dir: Path
    step_dir: Path
    report: checks.CheckReport


def resolve_checkpoint(run: Path) -> Path:
    """RUN may be a training output folder (its best.pt) or a checkpoint file."""
    path = Path(run)
    if path.is_dir():
        path = path / BEST_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint (give a run folder with {BEST_CHECKPOINT} or a .pt file)"
        )
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    # numpy arrays (unit ids, coordinates, statistics) travel inside: not a weights-only load.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(checkpoint).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing} (see TEAM-BRIEF: Checkpoint)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[SensoriumModel, dict[str, NormalisationStats]]:
    config = ModelConfig.from_dict(dict(checkpoint["config"]))
    mice, stats = {}, {}
    for session, info in checkpoint["mice"].items():
        mice[session] = MouseInfo(np.asarray(info["unit_ids"], np.int64), np.asarray(info["coordinates"]))
        stats[session] = NormalisationStats.from_dict(info["stats"])
        if stats[session].n_neurons != len(mice[session].unit_ids):
            raise ValueError(
                f"mouse {session}: {stats[session].n_neurons} response stds for {len(mice[session].unit_ids)} units"
            )
    model = build_model(config, mice)
    model.load_state_dict(checkpoint["model_state"], strict=True)
    return model.eval(), stats


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def next_version(repo: Path, mouse: str) -> int:
    versions = [
        int(p.name)
        for kind in (contract.CLIP, contract.STEP)
        for p in (repo / contract.repository_model_name(mouse, kind)).glob("*")
        if p.is_dir() and p.name.isdigit()
    ]
    return max(versions, default=0) + 1


def _metadata(
    model: SensoriumModel,
    session: str,
    kind: contract.GraphKind,
    stats: NormalisationStats,
    unit_ids: np.ndarray,
    checkpoint: dict[str, Any],
    checkpoint_path: Path,
    report: checks.CheckReport,
) -> contract.ModelMetadata:
    state = []
    if kind == contract.STEP:
        state = [
            contract.StateSpec(contract.state_in_name(i), contract.state_out_name(i), tuple(shape))
            for i, shape in enumerate(model.state_shapes())
        ]
    provenance = dict(checkpoint.get("provenance") or {})
    provenance.update(
        {
            "checkpoint": str(checkpoint_path),
            "epoch": checkpoint.get("epoch"),
            "config": model.config.to_dict(),
            "exported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "export_git_commit": _git_commit(),
            "exporter": f"torch {torch.__version__} (TorchScript exporter), onnx {onnx.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, opset {graphs.OPSET}",
            "parity": report.to_dict(),
        }
    )
    validation = (checkpoint.get("validation") or {}).get(session, {})
    return contract.ModelMetadata(
        mouse=session,
        kind=kind,
        unit_ids=[int(u) for u in unit_ids],
        fps=FPS,
        frame_height=model.frame_size[0],
        frame_width=model.frame_size[1],
        receptive_field=model.receptive_field,
        skip=SKIP_FRAMES,
        architecture=model.config.architecture,
        response_std=[float(s) for s in stats.response_std],
        state=state,
        provenance=provenance,
        validation={
            k: float(v) if isinstance(v, (int, float, np.floating)) else v for k, v in validation.items()
        },
    )


@dataclass
class PreparedMouse:
    """Both graphs of one mouse, built and checked, not yet written."""

    session: str
    stats: NormalisationStats
    unit_ids: np.ndarray
    clip: onnx.ModelProto
    step: onnx.ModelProto
    report: checks.CheckReport


def prepare_mouse(
    model: SensoriumModel,
    session: str,
    stats: NormalisationStats,
    unit_ids: np.ndarray,
    tolerance: float = checks.TOLERANCE,
) -> PreparedMouse:
    """Build and check one mouse's graphs; raise ExportCheckError on any mismatch."""
    clip = graphs.build_clip_graph(model, session, stats)
    step = graphs.build_step_graph(model, session, stats)
    report = checks.check_export(model, session, stats, clip, step, tolerance)
    log.info(
        "%s: clip vs torch %.2g, step vs clip %.2g (max abs, tolerance %g)",
        session,
        report.clip_vs_torch,
        report.step_vs_clip,
        tolerance,
    )
    return PreparedMouse(session, stats, unit_ids, clip, step, report)


def write_mouse(
    model: SensoriumModel,
    prepared: PreparedMouse,
    checkpoint: dict[str, Any],
    checkpoint_path: Path,
    repo: Path,
    version: int | None = None,
) -> ExportedModel:
    """Write REPO/<mouse>-{clip,step}/<version>/ (model.onnx, metadata.json) and each config.pbtxt."""
    session = prepared.session
    version = version or next_version(repo, session)
    h, w = model.frame_size
    n = len(prepared.unit_ids)
    folders = {}
    for kind, graph in ((contract.CLIP, prepared.clip), (contract.STEP, prepared.step)):
        name = contract.repository_model_name(session, kind)
        target = repo / name / str(version)
        if target.exists():
            raise FileExistsError(f"{target} exists: choose another --version or remove it")
        meta = _metadata(
            model,
            session,
            kind,
            prepared.stats,
            prepared.unit_ids,
            checkpoint,
            checkpoint_path,
            prepared.report,
        )
        if kind == contract.CLIP:
            config = triton.clip_config(name, h, w, n)
        else:
            config = triton.step_config(name, h, w, n, meta.state)
        with tempfile.TemporaryDirectory(dir=repo, prefix=f".{name}-") as staging:
            stage = Path(staging) / str(version)
            graphs.save(graph, stage / contract.MODEL_FILENAME)
            meta.write(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(stage), str(target))
        (repo / name / contract.CONFIG_FILENAME).write_text(config)
        folders[kind] = target
        log.info("wrote %s", target)
    return ExportedModel(session, version, folders[contract.CLIP], folders[contract.STEP], prepared.report)


def export_checkpoint(
    run: Path,
    repo: Path,
    version: int | None = None,
    mice: list[str] | None = None,
    tolerance: float = checks.TOLERANCE,
) -> list[ExportedModel]:
    """Export every mouse (or the named ones) of RUN (folder with best.pt, or a checkpoint file) into REPO."""
    checkpoint_path = resolve_checkpoint(run)
    checkpoint = load_checkpoint(checkpoint_path)
    model, stats = model_from_checkpoint(checkpoint)
    sessions = list(checkpoint["mice"])
    unknown = sorted(set(mice or []) - set(sessions))
    if unknown:
        raise ValueError(f"mice {unknown} are not in {checkpoint_path} (it has {sessions})")
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    selected = mice or sessions
    torch.set_grad_enabled(False)
    try:
        # Build and check every mouse before writing anything: a failed check leaves REPO untouched.
        prepared = []
        for i, session in enumerate(selected, 1):
            log.info("exporting %s (%d/%d)", session, i, len(selected))
            unit_ids = np.asarray(checkpoint["mice"][session]["unit_ids"], np.int64)
            prepared.append(prepare_mouse(model, session, stats[session], unit_ids, tolerance))
    finally:
        torch.set_grad_enabled(True)
    return [write_mouse(model, p, checkpoint, checkpoint_path, repo, version) for p in prepared]
