"""The container image. Fast: the Dockerfile's instructions are parsed and its exact ENTRYPOINT + CMD and
HEALTHCHECK commands are run here, with the image's ENV, against a real server; the serving install imports no
torch; the CUDA base matches the CUDA build of the installed onnxruntime-gpu. Slow: the image is built for real
with podman (CUDA base swapped for a local Debian one) and its own entrypoint serves from its own file system
(container_support.py says how, without `podman run`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from container_support import (
    BASE_IMAGE,
    INDEX_MOUNT,
    CannotBuild,
    ImageRoot,
    Podman,
    debian_base_tar,
    proc_mounted,
    write_index_config,
)
from ops_support import MOUSE, ROOT, ServerProcess, free_port, need, server_models, wait_serving

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


TRITON_CHECK = ROOT / "tests" / "server" / "triton_client_check.py"
# Run with the image's own python: what the serving install can import (torch must not be there).
IMPORTS_CHECK = """
import importlib.util, json, os
names = ("torch", "onnxruntime", "grpc", "server", "client")
print(json.dumps({"uid": os.getuid(), "cwd": os.getcwd(),
                  "found": {n: importlib.util.find_spec(n) is not None for n in names}}))
"""


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_image_builds_and_its_entrypoint_serves_from_its_own_file_system(
    model_repo: Path, tmp_path: Path
) -> None:
    """The Dockerfile builds with podman (CUDA base swapped for a local Debian one); the image has no torch and
    a non-root user; its ENTRYPOINT + CMD and HEALTHCHECK, read from `podman inspect`, run in its own file
    system as its user with its Env and WorkingDir (ports remapped: several suites share this machine) and serve
    a small exported repository: gRPC health SERVING, a KServe ModelInfer that tritonclient accepts and that
    matches onnxruntime here, /metrics, the leaderboard page from /data; the STOPSIGNAL drains and exits 0.
    Skips only when podman cannot build here at all (the step that failed is in the reason)."""
    need("podman", "ensure_podman.sh")
    need("debootstrap", "ensure_podman.sh")
    podman = Podman.temporary()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(podman.remove)
        index = write_index_config(tmp_path / "index")
        try:
            podman.check_usable()
            base = podman.import_base(debian_base_tar())
            cleanup.callback(podman.run, "rmi", base)
            podman.probe_build(base, index)
        except CannotBuild as exc:
            pytest.skip(str(exc))
        image = podman.build(ROOT, {"CUDA_IMAGE": BASE_IMAGE}, index, tmp_path / "build.log")
        cleanup.callback(podman.run, "rmi", image)
        inspected = podman.inspect(image)
        with contextlib.ExitStack() as container:
            root = ImageRoot.of(container.enter_context(podman.mounted_container(image)), inspected)
            container.enter_context(proc_mounted(root.path))
            uid, _ = root.user()
            assert uid != 0, f"the image runs as root (USER {root.config.get('User')!r})"
            _check_serving_install(root, uid)
            server = _start_entrypoint(root, model_repo, tmp_path)
            container.callback(server.stop, signal.SIGKILL, 10)
            _check_serves(root, server, model_repo, tmp_path, uid)
            stop = getattr(signal, root.config.get("StopSignal") or "SIGTERM")
            assert server.stop(stop, timeout=30) == 0, server.log()[-3000:]
            assert "signal received: shutting down" in server.log()
        assert podman.containers() == [], "the build or the test left a container behind"


def _check_serving_install(root: ImageRoot, uid: int) -> None:
    """The image's python, as its user in its WorkingDir: serving packages present, torch absent; the build's
    index configuration (a build-time mount) left nothing in the image."""
    env = root.env()
    done = subprocess.run(
        root.argv(["python3", "-c", IMPORTS_CHECK]), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"the image's python3 fails as its user:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    assert report["uid"] == uid and report["cwd"] == root.config["WorkingDir"]
    assert report["found"] == {
        "torch": False,
        "onnxruntime": True,
        "grpc": True,
        "server": True,
        "client": True,
    }
    leftovers = root.path / INDEX_MOUNT.lstrip("/")
    assert not leftovers.exists() or not any(leftovers.iterdir()), (
        "the build's pip.conf / CA copy is in the image"
    )


def _start_entrypoint(root: ImageRoot, model_repo: Path, tmp_path: Path) -> ServerProcess:
    """ENTRYPOINT + CMD with the image's Env; the repository goes where the image expects it (its VOLUME)."""
    command = (root.config.get("Entrypoint") or []) + (root.config.get("Cmd") or [])
    assert command, "the image has neither ENTRYPOINT nor CMD"
    image_env = root.env()
    repo = image_env["SENSORIUM_SERVE_REPO"]
    assert repo in (root.config.get("Volumes") or {}), f"{repo} is not a VOLUME of the image"
    _install_readable(model_repo, root.path / repo.lstrip("/"))
    port, http_port, web_port = free_port(), free_port(), free_port()
    env = root.env(
        SENSORIUM_SERVE_HOST="127.0.0.1",
        SENSORIUM_SERVE_PORT=str(port),
        SENSORIUM_SERVE_HTTP_PORT=str(http_port),
        SENSORIUM_SERVE_WEB_PORT=str(web_port),
    )
    log_path = tmp_path / "image-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(root.argv(command), env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, port, http_port, web_port, log_path)
    try:
        wait_serving(server.target, proc, log_path, timeout=120)
    except BaseException:
        server.stop(signal.SIGKILL, timeout=10)
        raise
    return server


def _install_readable(source: Path, target: Path) -> None:
    """Copy `source` into `target` (owned by root, readable by all: a read-only repository volume)."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _check_serves(root: ImageRoot, server: ServerProcess, model_repo: Path, tmp_path: Path, uid: int) -> None:
    import onnxruntime as ort

    from models import contract

    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == [str(uid)] * 4, f"the server runs as {uids}, not as the image's user {uid}"
    assert "CPUExecutionProvider" in server.log()  # providers=auto: no CUDA in this base, the CPU serves

    # The image's HEALTHCHECK command, inside the image (kept by --format docker).
    health = root.healthcheck.get("Test") or []
    assert health[:1] == ["CMD"], f"HEALTHCHECK {health}"
    env = root.env(SENSORIUM_SERVE_PORT=str(server.port))
    probe = subprocess.run(root.argv(health[1:]), env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and "SERVING" in probe.stdout, probe.stdout + probe.stderr

    # KServe ModelInfer with tritonclient, against onnxruntime here on the same graph.
    model = contract.repository_model_name(MOUSE, contract.CLIP)
    trial = server_models.make_trial(seed=5, frames=12)
    batch = {k: np.stack([v, v[::-1].copy()]) for k, v in trial.items()}
    np.savez(tmp_path / "inputs.npz", **batch)
    done = subprocess.run(
        [sys.executable, str(TRITON_CHECK), server.target, model, str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["live"] and summary["ready"] and summary["model_ready"]
    assert summary["response"]["model_version"] == "1"
    session = ort.InferenceSession(
        str(model_repo / model / "1" / contract.MODEL_FILENAME), providers=["CPUExecutionProvider"]
    )
    expected = session.run(["responses"], {k: v.astype(np.float32) for k, v in batch.items()})[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["responses"], expected, rtol=1e-5, atol=1e-6)

    assert server.sample("sensorium_serve_requests_total", method="ModelInfer") == 1
    assert server.sample("sensorium_serve_loaded_models") == 2  # clip + step graph of MOUSE version 1

    # The leaderboard page, from the scores database the image keeps in /data (written as its user).
    with urllib.request.urlopen(f"http://127.0.0.1:{server.web_port}/", timeout=10) as page:
        assert page.status == 200 and b"<html" in page.read().lower()
    db = root.path / root.env()["SENSORIUM_SERVE_DB_URL"].removeprefix("sqlite:///").lstrip("/")
    assert db.is_file() and db.stat().st_uid == uid, f"{db} not written by the image's user"
