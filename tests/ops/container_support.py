"""Build the repository's Dockerfile with podman and enter the built image, on a machine without a Docker engine
where `podman run` is refused (crun cannot set RLIMIT_NOFILE / RLIMIT_NPROC in this sandbox).

- The CUDA base image cannot be pulled here: a Debian base made by `debootstrap --variant=minbase` replaces it
  (`--build-arg CUDA_IMAGE=localhost/...`). Its root file system is cached as a tar file between runs.
- pip inside the build reaches the package index the way this machine's pip does: a copy of the CA bundle and a
  pip.conf naming it are mounted (`-v`) on pip's site-wide config folder, a folder of their own (mounting over
  /etc/ssl/certs would break the image's own ca-certificates).
- Every podman call uses a storage of its own (vfs, one folder per test run), so the test touches nothing of
  anyone else's podman and removes all it made.
- The built image runs as a container would: `podman create` + `podman mount` give its root file system, /proc
  is mounted in it, and `chroot --userspec=<image user>` + `env -C <WorkingDir>` start its commands with its Env.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sensorium-serve"
BASE_TAR = CACHE / f"debian-{SUITE}-minbase.tar"
BASE_IMAGE = f"localhost/sensorium-serve-base:{SUITE}"  # passed as --build-arg CUDA_IMAGE
# pip reads /etc/xdg/pip/pip.conf (XDG_CONFIG_DIRS defaults to /etc/xdg): the build's index settings go there.
INDEX_MOUNT = "/etc/xdg/pip"
CA_NAME = "ca-bundle.crt"
# pip settings that say how to reach an index (copied into the build's pip.conf when this machine's pip has them).
INDEX_SETTINGS = ("index-url", "extra-index-url", "trusted-host", "timeout", "retries", "proxy")
BUILD_FLAGS = [
    "--isolation", "chroot",  # no OCI runtime needed for RUN (crun is refused here)
    "--network", "host",
    "--pull=never",  # the base is local
    "--layers=false",  # one commit per stage: vfs copies the whole tree at every commit
    "--force-rm",  # no build container left behind, even on failure
    "--format", "docker",  # keeps HEALTHCHECK (OCI drops it)
]  # fmt: skip


class CannotBuild(Exception):
    """podman cannot build on this machine at all (a step before the Dockerfile's own failed)."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"podman cannot build here: {step} failed: {tail(detail, 15)}")


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def remove_tree(path: Path) -> None:
    """rm -rf that never crosses into a mounted file system (a /proc left mounted by a killed run)."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False, timeout=300)


def debian_base_tar() -> Path:
    """The root file system of `debootstrap --variant=minbase bookworm` as a tar file, made once per machine
    (~30 s) and kept in ~/.cache/sensorium-serve (delete it to refresh); several runs at once wait for one."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if BASE_TAR.exists():
            return BASE_TAR
        work = CACHE / f"debootstrap-{os.getpid()}"
        try:
            rootfs, partial = work / "rootfs", work / "base.tar"
            step = f"debootstrap --variant=minbase {SUITE}"
            done = _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs)], timeout=1200)
            if done.returncode != 0:
                raise CannotBuild(step, done.stdout + done.stderr)
            # The image runs `apt-get update` itself: the base's package lists and .deb cache stay out.
            done = _run(
                ["tar", "--numeric-owner", "--exclude=./var/lib/apt/lists/*", "--exclude=./var/cache/apt/*",
                 "-C", str(rootfs), "-cf", str(partial), "."],
                timeout=300,
            )  # fmt: skip
            if done.returncode != 0:
                raise CannotBuild(f"tar of the {step} tree", done.stderr)
            os.replace(partial, BASE_TAR)
        finally:
            remove_tree(work)
    return BASE_TAR


def pip_settings() -> dict[str, str]:
    """This machine's pip configuration (files and PIP_* variables; later lines win, as in pip)."""
    listed = _run([sys.executable, "-m", "pip", "config", "list"], timeout=60)
    settings: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            name = key.rsplit(".", 1)[-1]
            settings["timeout" if name == "default-timeout" else name] = ast.literal_eval(value)
    return settings


def write_index_config(folder: Path) -> Path:
    """`folder` with a copy of the CA bundle this machine's pip trusts and a pip.conf naming it (as mounted at
    INDEX_MOUNT) plus this machine's index settings; local (file://, folder) indexes are left out."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = pip_settings()
    lines = ["[global]"]
    cert = settings.get("cert") or os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().cafile
    if cert and Path(cert).is_file():
        shutil.copyfile(cert, folder / CA_NAME)
        lines.append(f"cert = {INDEX_MOUNT}/{CA_NAME}")
    for key in INDEX_SETTINGS:
        values = settings.get(key, "").split()
        if key.endswith("index-url"):
            values = [v for v in values if v.startswith(("http://", "https://"))]
        if values:
            lines.append(f"{key} = {' '.join(values)}")
    (folder / "pip.conf").write_text("\n".join(lines) + "\n")
    return folder


def _run(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


@dataclass
class Podman:
    """podman on a storage of its own under `home` (vfs driver, own run root and tmp folder)."""

    home: Path

    @classmethod
    def temporary(cls) -> Podman:
        """A fresh storage in a short folder of its own (podman refuses a run root longer than 50 characters)."""
        return cls(Path(tempfile.mkdtemp(prefix="sensorium-podman-")))

    def argv(self, *args: str) -> list[str]:
        return [
            "podman", "--root", str(self.home / "storage"), "--runroot", str(self.home / "run"),
            "--tmpdir", str(self.home / "tmp"), "--storage-driver", "vfs", *args,
        ]  # fmt: skip

    def run(self, *args: str, timeout: float = 300) -> str:
        done = _run(self.argv(*args), timeout)
        if done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> exit {done.returncode}:\n{tail(done.stderr)}")
        return done.stdout.strip()

    def check_usable(self) -> None:
        done = _run(self.argv("info"), timeout=120)
        if done.returncode != 0:
            raise CannotBuild("podman info", done.stderr)

    def import_base(self, tar: Path) -> str:
        """Image id of `tar` imported as BASE_IMAGE."""
        done = _run(self.argv("import", "--quiet", str(tar), BASE_IMAGE), 600)
        if done.returncode != 0:
            raise CannotBuild(f"podman import of {tar}", done.stderr)
        return done.stdout.strip().splitlines()[-1]

    def probe_build(self, base: str, index: Path) -> None:
        """A one-line build on the base with the real flags: can podman build here at all?"""
        context = self.home / "probe"
        context.mkdir(exist_ok=True)
        (context / "Containerfile").write_text(f"FROM {base}\nRUN test -r {INDEX_MOUNT}/pip.conf\n")
        iid = context / "iid"
        done = _run(
            self.argv(
                "build", *BUILD_FLAGS, "-v", f"{index}:{INDEX_MOUNT}:ro", "--iidfile", str(iid), str(context)
            ),
            timeout=600,
        )
        if done.returncode != 0:
            raise CannotBuild(
                f"a one-line probe build (FROM the base, RUN) with {' '.join(BUILD_FLAGS)}", done.stderr
            )
        self.run("rmi", iid.read_text().strip())

    def build(self, context: Path, build_args: dict[str, str], index: Path, log_path: Path) -> str:
        """Image id of `context`'s Dockerfile; the build's output goes to log_path (its tail in the failure)."""
        iid = self.home / "image.iid"
        args = [a for k, v in build_args.items() for a in ("--build-arg", f"{k}={v}")]
        argv = self.argv(
            "build", *BUILD_FLAGS, *args, "-v", f"{index}:{INDEX_MOUNT}:ro", "--iidfile", str(iid)
        )
        with open(log_path, "w") as log:
            done = subprocess.run([*argv, str(context)], stdout=log, stderr=subprocess.STDOUT, timeout=1800)
        if done.returncode != 0:
            raise AssertionError(
                f"podman build of {context}/Dockerfile failed:\n{tail(log_path.read_text())}"
            )
        return iid.read_text().strip()

    def inspect(self, image: str) -> dict:
        return json.loads(self.run("image", "inspect", image))[0]

    @contextlib.contextmanager
    def mounted_container(self, image: str) -> Iterator[Path]:
        """The root file system of a new container of `image` (its anonymous volumes included in `rm -v`)."""
        container = self.run("create", "--pull=never", image)
        try:
            yield Path(self.run("mount", container))
        finally:
            with contextlib.suppress(AssertionError):
                self.run("umount", container)
            self.run("rm", "-v", container)

    def containers(self) -> list[str]:
        return self.run("ps", "--all", "--quiet").split()

    def remove(self) -> None:
        remove_tree(self.home)


@contextlib.contextmanager
def proc_mounted(rootfs: Path) -> Iterator[None]:
    """/proc in the image's tree, as a container runtime mounts it (onnxruntime reads /proc/cpuinfo)."""
    target = rootfs / "proc"
    subprocess.run(["mount", "-t", "proc", "proc", str(target)], check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(["umount", str(target)], check=True, timeout=30)


@dataclass
class ImageRoot:
    """A built image's mounted root file system and its `podman image inspect` Config (and Healthcheck, kept
    beside Config by podman): runs commands as the image would (its user, Env, WorkingDir), without an OCI
    runtime."""

    path: Path
    config: dict
    healthcheck: dict

    @classmethod
    def of(cls, path: Path, inspected: dict) -> ImageRoot:
        return cls(path, inspected["Config"], inspected.get("Healthcheck") or {})

    def user(self) -> tuple[int, int]:
        """(uid, gid) of the image's USER, looked up in the image's own /etc/passwd and /etc/group."""
        spec = self.config.get("User") or "root"
        name, _, group = spec.partition(":")
        passwd = [line.split(":") for line in (self.path / "etc/passwd").read_text().splitlines() if line]
        groups = [line.split(":") for line in (self.path / "etc/group").read_text().splitlines() if line]
        entry = next((e for e in passwd if name in (e[0], e[2])), None)
        assert entry is not None, f"USER {spec}: no such user in the image's /etc/passwd"
        gid = int(entry[3])
        if group:
            found = next((g for g in groups if group in (g[0], g[2])), None)
            assert found is not None, f"USER {spec}: no such group in the image's /etc/group"
            gid = int(found[2])
        return int(entry[2]), gid

    def home(self) -> str:
        uid = self.user()[0]
        for line in (self.path / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 5 and fields[2] == str(uid):
                return fields[5]
        return "/"

    def env(self, **overrides: str) -> dict[str, str]:
        """The image's Env (HOME from its passwd when unset, as Docker does), then `overrides`."""
        env = dict(item.split("=", 1) for item in self.config.get("Env") or [])
        env.setdefault("HOME", self.home())
        return {**env, **overrides}

    def argv(self, command: list[str]) -> list[str]:
        """`command` run inside the image as its user, in its WorkingDir (PATH lookup with the image's PATH)."""
        uid, gid = self.user()
        workdir = self.config.get("WorkingDir") or "/"
        return ["chroot", f"--userspec={uid}:{gid}", str(self.path), "/usr/bin/env", "-C", workdir, *command]
