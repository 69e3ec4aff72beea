"""The metric code is numpy only: the serving path imports it without torch."""

from __future__ import annotations

import subprocess
import sys


def test_metrics_import_without_torch() -> None:
    code = "import sys, models.metrics; bad = [m for m in ('torch', 'tritonclient') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
