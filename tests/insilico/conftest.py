"""Fixtures of the in-silico tests: analytic cells (insilico_support.py, importable: this folder is put on
sys.path), a reduced protocol that runs in seconds, and a tiny synthetic dataset with its neurons' truth."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from insilico_support import QUICK, TINY_SYNTH

from models.data.synthetic import generate


@pytest.fixture(scope="session")
def analytic_result():
    """The QUICK protocol run on insilico_support.CELLS (analytic Gabor cells with known answers)."""
    from insilico_support import CELLS, GaborCells, quarter_period_delay

    from models.insilico.experiment import run_protocol
    from models.insilico.results import analyse
    from models.insilico.stimuli import Background

    model = GaborCells(CELLS, delay=quarter_period_delay(QUICK.gratings.temporal_frequencies[0]))
    gratings, noise = run_protocol(model, QUICK, Background(grey=80.0), progress=False)
    return analyse({"model": "analytic", "label": "analytic"}, model.unit_ids, QUICK, gratings, noise)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR with public/ and truth/ (neurons/ included) of one synthetic mouse of 40 neurons."""
    out = tmp_path_factory.mktemp("insilico-synth")
    generate(out, TINY_SYNTH, progress=False)
    return out
