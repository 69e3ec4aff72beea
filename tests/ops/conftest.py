"""Fixtures of the operations tests: a model repository of the server tests' tiny ONNX models, the scoring
tests' tiny dataset (tests/scoring/scoring_support.py), and real `sensorium-serve serve` subprocesses.
Helpers live in ops_support.py (this folder is put on sys.path)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ops_support import (
    MOUSE,
    ROOT,
    ServerProcess,
    launch,
    load_module,
    server_models,
    wait_serving,
)


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with MOUSE version 1 (clip + step graphs of the server tests' linear-filter model)."""
    repo = tmp_path_factory.mktemp("ops-repo")
    server_models.write_model(repo, MOUSE, 1, server_models.make_params(1))
    return repo


@pytest.fixture(scope="session")
def scoring_kit() -> ModuleType:
    """tests/scoring/scoring_support.py: the scoring tests' tiny dataset writer and truth submissions."""
    sys.path.insert(0, str(ROOT / "tests" / "scoring"))
    return load_module("scoring_support", ROOT / "tests" / "scoring" / "scoring_support.py")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory, scoring_kit: ModuleType) -> Path:
    """DIR/public + DIR/truth of two tiny mice (every tier; see tests/scoring/conftest.py)."""
    root = tmp_path_factory.mktemp("ops-data")
    for seed, (mouse, n) in enumerate(scoring_kit.NEURONS.items()):
        scoring_kit.write_mouse(root, mouse, n, seed + 11)
    return root


@pytest.fixture
def start_server(model_repo: Path, tmp_path: Path) -> Iterator:
    """start(*flags, web=False, repo=None) -> ServerProcess (gRPC, metrics [and web] on free ports); killed at teardown."""
    started: list[ServerProcess] = []

    def start(*flags: str, web: bool = False, repo: Path | None = None) -> ServerProcess:
        server = launch(repo or model_repo, tmp_path, *flags, web=web, name=f"server-{len(started)}")
        started.append(server)
        wait_serving(server.target, server.proc, server.log_path)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL, timeout=10)
