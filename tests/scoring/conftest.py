"""Fixtures of the scoring tests: a tiny synthetic dataset (public + truth folders, written with the data
area's writers), a real grpc.aio server with the scoring service on a free loopback port, and a client.

Dataset: two mice (23 and 17 neurons, non-contiguous unit ids), real trial lengths (300 frames, 315 for the
Gaussian dots), every tier: train, oracle, live/final main (natural movies, 2 stimuli x 3 repeats), live bonus
(pink noise, 2 x 2), final bonus (Gaussian dots and drifting Gabors, 2 x 2 each), one `none` trial. Responses =
noise-free rates x gamma noise (mean = rate), per-neuron scales spread over a decade, so standardisation matters.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scoring_support import NEURONS, Scoring, ServerThread, write_mouse

from client.scoring import ScoringClient
from server.config import Settings
from server.scoring.db import ScoreStore
from server.scoring.ground_truth import FolderGroundTruth


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR with DIR/public/<session> and DIR/truth/<session> for two tiny mice."""
    root = tmp_path_factory.mktemp("scoring-data")
    for seed, (mouse, n) in enumerate(NEURONS.items()):
        write_mouse(root, mouse, n, seed + 11)
    return root


@pytest.fixture(scope="session")
def truth(dataset: Path) -> FolderGroundTruth:
    return FolderGroundTruth(dataset / "truth")


@pytest.fixture
def scoring_factory(dataset: Path, tmp_path: Path, truth: FolderGroundTruth) -> Iterator:
    """start(db_url=None, submissions_per_day=0) -> Scoring; everything is stopped at teardown."""
    started: list[Scoring] = []

    def start(db_url: str | None = None, submissions_per_day: int = 0) -> Scoring:
        url = db_url or f"sqlite:///{tmp_path / f'scores-{len(started)}.sqlite'}"
        settings = Settings(truth_dir=dataset / "truth", db_url=url, submissions_per_day=submissions_per_day)
        server = ServerThread(settings, truth=truth)
        scoring = Scoring(server, ScoringClient(server.target, timeout_s=60), ScoreStore(url), url)
        started.append(scoring)
        return scoring

    yield start
    for s in started:
        s.client.close()
        s.server.stop()
        s.store.close()


@pytest.fixture
def scoring(scoring_factory) -> Scoring:
    """A scoring server on a fresh SQLite database, no daily limit."""
    return scoring_factory()


# ------------------------------------------------------------------------------------------ PostgreSQL


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary: Debian keeps them under /usr/lib/postgresql/<version>/bin."""
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: p.parts[-3])
    if candidates:
        return str(candidates[-1])
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"PostgreSQL's {name} not found: run scripts/ensure_postgres.sh (installs Debian's postgresql)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server in a temp dir on a free port (initdb + pg_ctl), one database, torn down at the
    end. initdb refuses to run as root, so as root it runs as the `postgres` user (runuser)."""
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.fail(
                "running as root and no 'postgres' user to run PostgreSQL as (scripts/ensure_postgres.sh)"
            )
        as_user = ["runuser", "-u", user, "--"]
    base = Path(tempfile.mkdtemp(prefix="sensorium-pg-"))
    data, log_file = base / "data", base / "server.log"
    if as_user:
        shutil.chown(base, user="postgres")
    port = _free_port()

    def run(*cmd: str) -> None:
        result = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = log_file.read_text() if log_file.exists() else ""
            pytest.fail(f"{' '.join(cmd)} failed: {result.stdout}\n{result.stderr}\n{log}")

    run(_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off"
    run(_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log_file), "-o", options, "-w", "-t", "60", "start")
    try:
        run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "scoring")
        yield f"postgresql://postgres@127.0.0.1:{port}/scoring"
    finally:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fresh_postgres(postgres_url: str) -> str:
    """The PostgreSQL URL with empty scoring tables."""
    from sqlalchemy import create_engine

    from server.scoring.db import Base, normalise_url
    from server.scoring.neuron_scores import NeuronBase

    engine = create_engine(normalise_url(postgres_url))
    for base in (NeuronBase, Base):
        base.metadata.drop_all(engine)
    engine.dispose()
    return postgres_url
