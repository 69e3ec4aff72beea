"""Fixtures of the export tests; helpers live in export_fixtures.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from export_fixtures import make_model, tiny_mice, write_checkpoint


@pytest.fixture(params=["factorised", "gru"])
def architecture(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def run_dir(tmp_path: Path, architecture: str) -> Path:
    """A training output folder with best.pt of a tiny model."""
    run = tmp_path / "run"
    write_checkpoint(run / "best.pt", make_model(architecture), tiny_mice())
    return run
