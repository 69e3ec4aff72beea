"""The checkpoint contract (TEAM-BRIEF, Checkpoint) and the provenance that travels with it.

A checkpoint is a `torch.save` dict with the keys in CHECKPOINT_KEYS; `training` (TrainOptions.to_dict())
is added so `--resume` and operators know how a run was trained. Files are written atomically (temporary file
+ rename) so a run killed mid-save never leaves a truncated last.pt behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_KEYS = (
    "config",
    "mice",
    "model_state",
    "epoch",
    "optimizer_state",
    "scheduler_state",
    "best_score",
    "history",
    "provenance",
    "validation",
)
LAST = "last.pt"
BEST = "best.pt"
METRICS_LOG = "metrics.jsonl"
SYNTH_MANIFESTS = ("synth.json", "manifest.json", "synthetic.json")  # where a generator may record its seed


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    missing = [k for k in CHECKPOINT_KEYS if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint for {path} lacks keys {missing}")
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (a file, or a run folder: its best.pt) and check the contract keys."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    # numpy arrays (unit ids, coordinates, statistics) travel inside, so this is not a weights-only load.
    checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint {path}: expected a dict, got {type(checkpoint).__name__}")
    missing = [k for k in CHECKPOINT_KEYS if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {path} lacks keys {missing}")
    return checkpoint


def data_hash(data_dir: str | Path) -> str:
    """sha256 over every file's relative path and size plus the content of each mouse's meta/ folder.

    Cheap on the 148 GB release (sizes, not content, of the trial arrays) yet changes whenever the neurons,
    tiers, statistics or trial set change.
    """
    root = Path(data_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
        if "meta" in path.relative_to(root).parts:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def data_seed(data_dir: str | Path) -> int | None:
    """The synthetic generator's seed when a manifest beside DIR/public records one, else None."""
    root = Path(data_dir)
    for folder in (root, root.parent):
        for name in SYNTH_MANIFESTS:
            path = folder / name
            if path.is_file():
                try:
                    manifest = json.loads(path.read_text())
                    seed = manifest.get("seed", manifest.get("config", {}).get("seed"))
                except (json.JSONDecodeError, AttributeError):
                    continue
                if isinstance(seed, int):
                    return seed
    return None


def git_commit() -> str:
    """HEAD of the repository holding this file, '-dirty' when the tree has changes, 'unknown' without git."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def provenance(data_dir: str | Path, seed: int) -> dict[str, Any]:
    return {
        "data_dir": str(Path(data_dir).resolve()),
        "data_hash": data_hash(data_dir),
        "data_seed": data_seed(data_dir),
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "train_seed": seed,
    }
