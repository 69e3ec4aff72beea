"""Server settings: defaults < environment variables ``SENSORIUM_SERVE_<FIELD>`` < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "SENSORIUM_SERVE_"
BATCHING_MODES = ("auto", "on", "off")
MAX_BATCH_WAIT_LIMIT_MS = 10.0  # a longer wait would eat a visible part of the 33 ms frame budget
DEFAULT_WATCH_S = 2.0  # `serve --watch` without a value: the repository is re-scanned this often


@dataclass(frozen=True)
class Settings:
    """Everything `sensorium-serve serve` can be told. Field names double as env var suffixes (upper case)."""

    repo: Path = Path("repo")
    host: str = "0.0.0.0"
    port: int = 50051  # 0 = any free port
    http_port: int = 8000  # Prometheus /metrics; -1 = off, 0 = any free port
    web_port: int = -1  # read-only leaderboard pages of db_url (server/web); -1 = off, 0 = any free port
    # in-silico results the web pages show at /insilico (server/web/insilico.py)
    insilico_dir: Path | None = None
    # onnxruntime threads inside one operator; 0 = onnxruntime's choice (all cores). 1 + a worker per core serves
    # many streams best (frames of different streams run in parallel, no thread-pool hand-offs).
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    providers: str = "auto"  # auto (CUDA when a GPU really works) | cpu | cuda
    # Run concurrent streams' step calls as one onnxruntime call: on | off | auto = on for graphs on CUDA only
    # (on a CPU a batch of B frames costs B frames' time, and parallel workers beat it: docs/benchmarks/serving.md).
    batching: str = "auto"
    max_batch_size: int = 16
    max_batch_wait_ms: float = 1.0  # how long a batch waits for more streams' frames
    # The server's only stream runs its step calls on the event-loop thread: no hand-offs to a worker and back.
    inline_lone_stream: bool = True
    max_streams: int = 256
    idle_timeout_s: float = 60.0  # a stream without a frame this long is evicted
    max_message_bytes: int = 64 * 1024 * 1024
    clip_workers: int = 2  # threads for PredictClip / ModelInfer
    step_workers: int = 0  # threads running step calls per graph version; 0 = cores // intra-op threads
    shutdown_grace_s: float = 10.0
    # Re-scan the model repository every this many seconds (`--watch`): new versions load while streams run.
    watch_s: float = 0.0  # 0 = off (SIGHUP or `sensorium-serve rescan` only)
    # Scoring service (server/scoring): enabled when truth_dir is set.
    truth_dir: Path | None = None
    db_url: str = "sqlite:///sensorium-scores.sqlite"
    submissions_per_day: int = 5
    # Security (server/auth.py): token file and TLS / mutual TLS, all off by default.
    auth_tokens: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    def __post_init__(self) -> None:
        # True/False (code, tests) and boolean words (env vars) mean on/off
        object.__setattr__(self, "batching", _batching_mode(self.batching))
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be 0-65535, got {self.port}")
        if not -1 <= self.http_port <= 65535:
            problems.append(f"http_port must be -1 (off) or 0-65535, got {self.http_port}")
        if not -1 <= self.web_port <= 65535:
            problems.append(f"web_port must be -1 (off) or 0-65535, got {self.web_port}")
        if self.providers not in ("auto", "cpu", "cuda"):
            problems.append(f"providers must be auto, cpu or cuda, got {self.providers!r}")
        if self.batching not in BATCHING_MODES:
            problems.append(f"batching must be one of {', '.join(BATCHING_MODES)}, got {self.batching!r}")
        if self.max_batch_size < 1:
            problems.append(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if not 0 <= self.max_batch_wait_ms <= MAX_BATCH_WAIT_LIMIT_MS:
            problems.append(
                f"max_batch_wait_ms must be 0-{MAX_BATCH_WAIT_LIMIT_MS}, got {self.max_batch_wait_ms}"
            )
        for name in ("max_streams", "max_message_bytes", "clip_workers"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("intra_op_threads", "inter_op_threads", "submissions_per_day", "step_workers"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.watch_s < 0:
            problems.append(f"watch_s must be >= 0 (0: off), got {self.watch_s}")
        if self.idle_timeout_s <= 0 or self.shutdown_grace_s < 0:
            problems.append("idle_timeout_s must be > 0 and shutdown_grace_s >= 0")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("tls_cert and tls_key go together (TLS needs both)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            problems.append("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))

    @property
    def max_batch_wait_s(self) -> float:
        return self.max_batch_wait_ms / 1000.0

    def batches_on(self, providers: list[str]) -> bool:
        """Whether step calls of a graph whose session runs on ``providers`` (onnxruntime's list) batch."""
        if self.batching == "auto":
            return bool(providers) and providers[0] == "CUDAExecutionProvider"
        return self.batching == "on"

    @property
    def step_worker_count(self) -> int:
        """`step_workers`, or with 0: one per `intra_op_threads` cores (one in all with onnxruntime's choice)."""
        if self.step_workers > 0:
            return self.step_workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.intra_op_threads) if self.intra_op_threads > 0 else 1

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``SENSORIUM_SERVE_*`` variables, then explicit overrides (None = not given)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, kind in _field_types().items():
            key = ENV_PREFIX + name.upper()
            if key in env:
                try:
                    values[name] = _parse_batching(env[key]) if name == "batching" else _parse(kind, env[key])
                except ValueError as exc:
                    raise ValueError(f"{key}={env[key]!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
        return cls.from_env(env, **{name: getattr(args, name, None) for name in _field_types()})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field; a flag left out falls back to its environment variable, then the default."""
    helps = {
        "repo": "model repository (Triton layout, see docs/MODEL_REPOSITORY.md); required",
        "host": "address to bind (gRPC and metrics)",
        "port": "gRPC port (0: any free port)",
        "intra_op_threads": "onnxruntime threads inside one operator (0: onnxruntime's choice = all cores); "
        "1 with a step worker per core serves many streams best, more (with fewer --step-workers) lowers one "
        "stream's latency",
        "step_workers": "threads running StreamPredict step calls per model version "
        "(0: cores // intra-op threads, at least 1)",
        "inter_op_threads": "onnxruntime threads across operators",
        "max_batch_size": "most streams in one onnxruntime step call",
        "inline_lone_stream": "while only one stream is open, run its step calls on the event-loop thread "
        "(saves two thread hand-offs per frame; other RPCs then wait at most one step call); "
        "--no-inline-lone-stream: always through the step workers",
        "max_streams": "most open StreamPredict streams; more get RESOURCE_EXHAUSTED",
        "max_message_bytes": "largest gRPC message in or out; larger get RESOURCE_EXHAUSTED",
        "clip_workers": "threads running PredictClip / ModelInfer",
        "shutdown_grace_s": "on SIGTERM, how long in-flight calls may take to finish",
        "submissions_per_day": "scoring: recorded submissions per submitter per UTC day (0: no limit)",
        "truth_dir": "hidden truth folder (DIR/truth); enables the sensorium.v1.Scoring service",
        "db_url": "SQLAlchemy URL of the scoring database (SQLite file or PostgreSQL)",
        "providers": "onnxruntime execution providers: auto (CUDA only when a GPU really works), cpu, cuda",
        "batching": "batch concurrent streams' step calls into one onnxruntime call: on, off, or auto = on "
        "only for graphs running on CUDA (on a CPU a batch saves nothing and parallel workers beat it); "
        "--batching alone = on, --no-batching = off",
        "http_port": "Prometheus /metrics HTTP port (-1: off)",
        "web_port": "HTTP port of the read-only leaderboard pages of --db (-1: off)",
        "insilico_dir": "results folder of `sensorium-serve insilico` shown at /insilico on the web pages",
        "idle_timeout_s": "evict a stream that sent no frame for this many seconds",
        "max_batch_wait_ms": f"how long a batch waits for other streams' frames (0-{MAX_BATCH_WAIT_LIMIT_MS})",
        "auth_tokens": "token file, one 'TOKEN ROLE[,ROLE...]' per line (roles predict, submit, admin); "
        "every RPC but health then needs 'authorization: Bearer TOKEN' (docs/RELIABILITY.md)",
        "tls_cert": "PEM certificate chain: serve TLS (with --tls-key)",
        "tls_key": "PEM private key of --tls-cert",
        "tls_client_ca": "PEM CA certificate: require client certificates signed by it (mutual TLS)",
        "watch_s": "re-scan --repo every SECONDS (--watch alone: every "
        f"{DEFAULT_WATCH_S:g} s): exported models and versions load, changed ones reload, removed ones unload, "
        "while streams run (0: off; SIGHUP and `sensorium-serve rescan` always work)",
    }
    flag_names = {"truth_dir": "--truth", "db_url": "--db", "insilico_dir": "--insilico"}
    defaults = Settings()
    for name, kind in _field_types().items():
        flag = flag_names.get(name, "--" + name.replace("_", "-"))
        text = f"{helps.get(name, name.replace('_', ' '))} [env {ENV_PREFIX}{name.upper()}; default {getattr(defaults, name)}]"
        if name == "watch_s":
            parser.add_argument(
                "--watch",
                dest=name,
                nargs="?",
                const=DEFAULT_WATCH_S,
                type=float,
                metavar="SECONDS",
                help=text,
            )
        elif name == "batching":
            parser.add_argument(flag, dest=name, nargs="?", const="on", choices=BATCHING_MODES, help=text)
            parser.add_argument(
                "--no-batching", dest=name, action="store_const", const="off", help="= --batching off"
            )
        elif kind is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(flag, dest=name, type=kind, default=None, help=text)


def _field_types() -> dict[str, type]:
    hints = get_type_hints(Settings)
    types: dict[str, type] = {}
    for f in fields(Settings):
        hint = hints[f.name]
        types[f.name] = Path if "Path" in str(hint) else hint
    return types


def _parse(kind: type, text: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected a boolean (1/0, true/false, yes/no, on/off)")
    return kind(text)


def _batching_mode(value: object) -> object:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        lowered = value.strip().lower()
        return {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}.get(
            lowered, lowered
        )
    return value


def _parse_batching(text: str) -> str:
    mode = _batching_mode(text)
    if mode not in BATCHING_MODES:
        raise ValueError(f"expected {', '.join(BATCHING_MODES)} (or a boolean)")
    return str(mode)
