"""Fixtures of the reliability & security tests.

Reused, not copied: the tiny contract-following ONNX models and the in-process server fixtures of
tests/server/conftest.py (loaded by path: with --import-mode=importlib a conftest is not importable by name), and
the tiny SENSORIUM dataset writer of tests/scoring/scoring_support.py. Added here: a server running in a
background thread (for hypothesis, whose tests are synchronous), a token file, and test certificates made with
the openssl CLI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(TESTS / "scoring"))  # scoring_support (dataset writer)
sys.path.append(str(TESTS))  # area_modules; appended: tests/<area> folders must not shadow packages
from area_modules import load_module  # noqa: E402

_server_kit = load_module("reliability_server_kit", TESTS / "server" / "conftest.py")

# The server tests' fixtures, re-exported (same names, same behaviour).
model_repo = _server_kit.model_repo
settings_factory = _server_kit.settings_factory
serving = _server_kit.serving
kit = _server_kit.kit

from reliability_support import ADMIN_TOKEN, ALL_TOKEN, PREDICT_TOKEN, SUBMIT_TOKEN, ThreadedServer  # noqa: E402


@pytest.fixture(scope="session")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.txt"
    path.write_text(
        "# sensorium-serve tokens: TOKEN ROLE[,ROLE...]\n\n"
        f"{PREDICT_TOKEN} predict\n"
        f"{SUBMIT_TOKEN}   submit\n"
        f"{ADMIN_TOKEN}\tadmin\n"
        f"{ALL_TOKEN} predict,submit,admin\n"
    )
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def scoring_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/public + DIR/truth of two tiny mice (tests/scoring's writer)."""
    from scoring_support import NEURONS, write_mouse

    root = tmp_path_factory.mktemp("reliability-data")
    for seed, (mouse, n) in enumerate(NEURONS.items()):
        write_mouse(root, mouse, n, seed + 11)
    return root


# ---- certificates ---------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr}")


def _ca(cwd: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}", cwd=cwd)  # fmt: skip


def _signed(cwd: Path, name: str, ca: str, extensions: str) -> None:
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=cwd)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)  # fmt: skip


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A CA, a server certificate for localhost / 127.0.0.1, a client certificate from the same CA, and a
    client certificate from another CA (must be refused)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make the test certificates (Debian package openssl)")
    d = tmp_path_factory.mktemp("certs")
    _ca(d, "ca")
    _ca(d, "rogue-ca")
    _signed(d, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _signed(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _signed(d, "rogue-client", "rogue-ca", "extendedKeyUsage=clientAuth\n")
    return SimpleNamespace(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        rogue_cert=d / "rogue-client.pem",
        rogue_key=d / "rogue-client.key",
    )


@pytest.fixture
def threaded_server(settings_factory) -> Iterator:
    """start(**settings) -> ThreadedServer; all stopped at teardown."""
    started: list[ThreadedServer] = []

    def start(**changes) -> ThreadedServer:
        server = ThreadedServer(settings_factory(**changes))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
