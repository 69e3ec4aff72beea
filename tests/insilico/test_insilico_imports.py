"""The layout rule for the in-silico code: the analysis is numpy only (the serving path imports it), the MEI
module is the one torch module, and the report pages import no client code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NUMPY_ONLY = (
    "models.insilico.stimuli",
    "models.insilico.experiment",
    "models.insilico.tuning",
    "models.insilico.receptive_fields",
    "models.insilico.results",
    "models.insilico.truth_check",
    "models.insilico.generator_model",
    "models.data.synthetic.neurons",
    "server.web.insilico",
    "client.insilico",
)


def test_analysis_and_pages_import_without_torch_and_mei_needs_it() -> None:
    script = f"""
import importlib, sys
sys.modules["torch"] = None  # `import torch` now raises ImportError
for name in {NUMPY_ONLY!r}:
    importlib.import_module(name)
try:
    importlib.import_module("models.insilico.mei")
except ImportError:
    print("mei needs torch")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0] == "mei needs torch"


def test_server_web_imports_no_client_module() -> None:
    script = "import sys, server.web.http, server.web.insilico; print([m for m in sys.modules if m.startswith('client')])"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
