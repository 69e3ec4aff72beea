"""The container image, checked without a Docker engine: the Dockerfile's instructions are parsed and its exact
ENTRYPOINT + CMD and HEALTHCHECK commands are run here, with the image's ENV, against a real server; the serving
install imports no torch; the CUDA base matches the CUDA build of the installed onnxruntime-gpu."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ops_support import ROOT, free_port, wait_serving

DOCKERFILE = ROOT / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def last(name: str) -> str:
    found = [args for word, args in instructions() if word == name]
    assert found, f"Dockerfile has no {name}"
    return found[-1]


def final_stage() -> list[tuple[str, str]]:
    items = instructions()
    start = max(i for i, (word, _) in enumerate(items) if word == "FROM")
    return items[start:]


def exec_form(args: str, what: str) -> list[str]:
    """JSON array (exec form): the process gets signals itself, no shell in between."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"{what} must use the exec form (a JSON array), got {args!r}")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), what
    return value


def image_env() -> dict[str, str]:
    """The ENV of the final stage (KEY=VALUE pairs; PATH is left to this machine)."""
    env: dict[str, str] = {}
    for word, args in final_stage():
        if word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    env.pop("PATH", None)
    return env


def test_base_image_matches_the_cuda_build_of_onnxruntime_gpu() -> None:
    from onnxruntime.capi import build_and_package_info

    args = [a for w, a in instructions() if w == "ARG" and a.startswith("CUDA_IMAGE=")]
    assert args, "the CUDA base image is an ARG CUDA_IMAGE=..."
    image = args[0].split("=", 1)[1]
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-cudnn-runtime-ubuntu(\d\d\.\d\d)", image)
    assert match, f"expected an nvidia/cuda cuDNN runtime tag, got {image}"
    cuda_major = build_and_package_info.cuda_version.split(".")[0]
    assert match.group(1) == cuda_major, (
        f"onnxruntime-gpu is built for CUDA {build_and_package_info.cuda_version}; base image has {image}"
    )
    assert all(
        a == "${CUDA_IMAGE}" or a.startswith("${CUDA_IMAGE} ") for w, a in instructions() if w == "FROM"
    )


def test_final_stage_runs_as_non_root_with_volumes_ports_and_sigterm() -> None:
    stage = final_stage()
    users = [a for w, a in stage if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the server must not run as root"
    volumes = [v for w, a in stage if w == "VOLUME" for v in exec_form(a, "VOLUME")]
    env = image_env()
    assert env["SENSORIUM_SERVE_REPO"] in volumes, "the model repository is a volume"
    assert env["SENSORIUM_SERVE_DB_URL"].startswith("sqlite:////data/") and "/data" in volumes
    exposed = {int(p) for w, a in stage if w == "EXPOSE" for p in a.split()}
    ports = {int(env[f"SENSORIUM_SERVE_{k}"]) for k in ("PORT", "HTTP_PORT", "WEB_PORT")}
    assert ports <= exposed, f"{ports} not all exposed ({exposed})"
    assert last("STOPSIGNAL") == "SIGTERM"
    # The serving install: no train extra (torch) anywhere in the build.
    runs = " ".join(a for w, a in instructions() if w == "RUN")
    assert "pip install ." in runs and "[train" not in runs and "torch==" not in runs
    assert "psycopg" in runs  # docs/OPERATIONS.md: replicas share a PostgreSQL scores database


def test_dockerignore_keeps_the_context_small_but_not_the_sources() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "runs", "data", "tests"} <= ignored
    copied = [a.split()[:-1] for w, a in instructions() if w == "COPY" and "--from" not in a]
    for sources in copied:
        for src in sources:
            assert src not in ignored, f"COPY {src} but .dockerignore drops it"
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the build context"


def test_serving_install_imports_no_torch() -> None:
    """Every module of server/ and client/ imports with torch made unimportable (as in the image)."""
    script = """
import importlib, pkgutil, sys
sys.modules["torch"] = None  # `import torch` now raises ImportError
import server, client
names = []
for pkg in (server, client):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
assert "server.web.http" in names and "server.app" in names, names
print(len(names))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip()) >= 20


def test_entrypoint_and_healthcheck_commands_run_here(model_repo: Path, tmp_path: Path) -> None:
    """ENTRYPOINT + CMD with the image's ENV (repo, db, ports remapped to this test) serves; the HEALTHCHECK
    command says SERVING (exit 0); SIGTERM (STOPSIGNAL) drains and exits 0; the health check then fails."""
    entrypoint = exec_form(last("ENTRYPOINT"), "ENTRYPOINT")
    cmd = exec_form(last("CMD"), "CMD")
    health = last("HEALTHCHECK")
    assert re.search(r"--interval=\d+s", health) and re.search(r"--timeout=\d+s", health)
    health_cmd = exec_form(health.split(" CMD ", 1)[1], "HEALTHCHECK CMD")
    assert health_cmd[:2] == ["sensorium-serve", "health"], "health goes through the gRPC health protocol"

    env = image_env()
    port, http_port, web_port = free_port(), free_port(), free_port()
    env.update(
        SENSORIUM_SERVE_REPO=str(model_repo),
        SENSORIUM_SERVE_HOST="127.0.0.1",
        SENSORIUM_SERVE_PORT=str(port),
        SENSORIUM_SERVE_HTTP_PORT=str(http_port),
        SENSORIUM_SERVE_WEB_PORT=str(web_port),
        SENSORIUM_SERVE_DB_URL=f"sqlite:///{tmp_path / 'scores.sqlite'}",
        SENSORIUM_SERVE_PROVIDERS="cpu",
        SENSORIUM_SERVE_SHUTDOWN_GRACE_S="2",
    )
    full_env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(entrypoint + cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_serving(f"127.0.0.1:{port}", proc, log_path)
        probe = subprocess.run(health_cmd, env=full_env, capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert "SERVING" in probe.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-3000:]
        assert "signal received: shutting down" in log_path.read_text()
        started = time.monotonic()
        after = subprocess.run(health_cmd, env=full_env, capture_output=True, text=True, timeout=30)
        assert after.returncode == 2, after.stdout + after.stderr  # unreachable: the container is unhealthy
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
