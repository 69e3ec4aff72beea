"""Model registry: scans the model repository (Triton layout, models/contract.py) and holds onnxruntime sessions.

Every (repository model, version) on disk becomes an `Entry`: ready with a loaded `Graph`, or not ready with the
reason (a corrupt model never stops the others from serving). `scan()` reconciles with the disk: new versions
load, changed files reload, removed ones unload. A reload swaps in a new `Graph` object; streams hold the
`Graph` they opened, so they finish on their version, and the old graph is retired when its last stream ends.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models import contract
from models.contract import ModelMetadata, StateSpec
from protos.inference.model_config_pb2 import ModelConfig
from server.errors import FailedPrecondition, NotFound
from server.model_config import read_model_config
from server.statistics import InferenceStatistics

log = logging.getLogger(__name__)

SessionFactory = Callable[[Path], ort.InferenceSession]
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(uint8)": "uint8"}
_VERSION_DIR = re.compile(r"^[1-9][0-9]*$")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | None, ...]  # None: symbolic (batch, time)


@dataclass(frozen=True)
class Change:
    """One thing a load / unload / scan did (reported by the ModelRepository service and the logs)."""

    name: str
    version: int
    action: str  # loaded | reloaded | unloaded | failed
    reason: str = ""


class Graph:
    """One loaded graph version: its onnxruntime session, metadata, tensor specs, config.pbtxt (None: no file)
    and inference statistics."""

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        metadata: ModelMetadata,
        session: ort.InferenceSession,
        config: ModelConfig | None = None,
    ):
        self.name = name
        self.mouse, self.kind = contract.split_repository_model_name(name)
        self.version = version
        self.path = path
        self.metadata = metadata
        self.session = session
        self.inputs = {i.name: _spec(i) for i in session.get_inputs()}
        self.outputs = [_spec(o) for o in session.get_outputs()]
        self.output_names = [o.name for o in self.outputs]
        self.state: tuple[StateSpec, ...] = ()
        self.batchable = True  # the leading (batch) axis is symbolic everywhere
        self.config = config
        self.stats = InferenceStatistics()
        self._validate()
        self._lock = threading.Lock()
        self._streams = 0
        self._retired = False
        self.on_idle_retired: list[Callable[[Graph], None]] = []  # called once retired and without streams

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, version={self.version})"

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.metadata.frame_height, self.metadata.frame_width

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))

    # Stream reference counting: a retired graph (unloaded or replaced) lives until its last stream ends.
    def acquire(self) -> None:
        with self._lock:
            self._streams += 1

    def release(self) -> None:
        with self._lock:
            self._streams -= 1
            idle = self._retired and self._streams == 0
        if idle:
            self._fire_idle()

    def retire(self) -> None:
        with self._lock:
            self._retired = True
            idle = self._streams == 0
        if idle:
            self._fire_idle()

    @property
    def active_streams(self) -> int:
        return self._streams

    @property
    def retired(self) -> bool:
        return self._retired

    def _fire_idle(self) -> None:
        callbacks, self.on_idle_retired = self.on_idle_retired, []
        for callback in callbacks:
            callback(self)

    def _validate(self) -> None:
        md = self.metadata
        if md.kind != self.kind or md.mouse != self.mouse:
            raise ValueError(
                f"metadata.json says mouse {md.mouse!r} kind {md.kind!r}, folder says {self.mouse!r} {self.kind!r}"
            )
        rank = 4 if self.kind == contract.CLIP else 3
        expected = {contract.VIDEO: rank, contract.BEHAVIOR: rank - 1, contract.PUPIL_CENTER: rank - 1}
        for name, want in expected.items():
            spec = self.inputs.get(name)
            if spec is None:
                raise ValueError(f"model.onnx has no input {name!r} (inputs: {sorted(self.inputs)})")
            if len(spec.shape) != want:
                raise ValueError(f"model.onnx input {name!r} has rank {len(spec.shape)}, expected {want}")
        video = self.inputs[contract.VIDEO].shape[-2:]
        if any(got is not None and got != want for got, want in zip(video, self.frame_shape, strict=True)):
            raise ValueError(
                f"model.onnx input 'video' frame {video} differs from metadata {self.frame_shape}"
            )
        if contract.RESPONSES not in self.output_names:
            raise ValueError(f"model.onnx has no output 'responses' (outputs: {self.output_names})")
        if self.kind == contract.STEP:
            self.state = self._state_specs()
        self.batchable = all(s.shape[0] is None for s in [*self.inputs.values(), *self.outputs])

    def _state_specs(self) -> tuple[StateSpec, ...]:
        names = sorted(n for n in self.inputs if n.startswith(contract.STATE_IN_PREFIX))
        specs = list(self.metadata.state)
        if not specs:  # derive from the graph when metadata.json does not list them
            for name in names:
                shape = self.inputs[name].shape[1:]
                if any(d is None for d in shape):
                    raise ValueError(
                        f"state input {name!r} has symbolic dims {shape}; list it in metadata.state"
                    )
                index = name.removeprefix(contract.STATE_IN_PREFIX)
                specs.append(StateSpec(name, contract.STATE_OUT_PREFIX + index, tuple(shape)))  # type: ignore[arg-type]
        if sorted(s.input_name for s in specs) != names:
            raise ValueError(f"metadata.state lists {[s.input_name for s in specs]}, model.onnx has {names}")
        for spec in specs:
            graph_shape = self.inputs[spec.input_name].shape[1:]
            if len(graph_shape) != len(spec.shape) or any(
                g is not None and g != s for g, s in zip(graph_shape, spec.shape, strict=True)
            ):
                raise ValueError(
                    f"state {spec.input_name!r}: metadata shape {spec.shape}, model.onnx {graph_shape}"
                )
            if spec.output_name not in self.output_names:
                raise ValueError(f"state output {spec.output_name!r} missing from model.onnx outputs")
        return tuple(specs)


@dataclass
class Entry:
    """One (repository model, version) found on disk: ready with a graph, or not ready with the reason."""

    name: str
    version: int
    path: Path
    fingerprint: tuple[int, ...]
    graph: Graph | None = None
    reason: str = ""
    metadata: ModelMetadata | None = field(default=None, repr=False)
    config: ModelConfig | None = field(default=None, repr=False)  # config.pbtxt; None: the folder has none

    @property
    def ready(self) -> bool:
        return self.graph is not None


def _spec(node: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in node.shape)
    return TensorSpec(node.name, _ORT_DTYPES.get(node.type, node.type), shape)


def _fingerprint(version_dir: Path) -> tuple[int, ...]:
    out: list[int] = []
    files = [version_dir / contract.MODEL_FILENAME, version_dir / contract.METADATA_FILENAME]
    for path in [*files, version_dir.parent / contract.CONFIG_FILENAME]:  # config.pbtxt: the model's, shared
        try:
            stat = path.stat()
            out += [stat.st_mtime_ns, stat.st_size]
        except FileNotFoundError:
            out += [-1, -1]
    return tuple(out)


class Registry:
    """Thread-safe map of (repository model, version) -> Entry, reconciled with the repository on demand."""

    def __init__(self, repo: Path, session_factory: SessionFactory):
        self.repo = Path(repo)
        self._session_factory = session_factory
        self._entries: dict[tuple[str, int], Entry] = {}
        self._lock = threading.RLock()  # guards _entries; loads run outside it

    # ---- reading -------------------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        with self._lock:
            return [self._entries[k] for k in sorted(self._entries)]

    def ready_count(self) -> int:
        return sum(e.ready for e in self.entries())

    def mice(self) -> dict[str, dict[int, dict[str, Entry]]]:
        """{mouse: {version: {kind: Entry}}} for the Predictor's model view."""
        out: dict[str, dict[int, dict[str, Entry]]] = {}
        for entry in self.entries():
            mouse, kind = contract.split_repository_model_name(entry.name)
            out.setdefault(mouse, {}).setdefault(entry.version, {})[kind] = entry
        return out

    def model_names_on_disk(self) -> list[str]:
        """Repository model folders with at least one version folder, loaded or not (sorted)."""
        return sorted({name for name, _ in self._discover()})

    def versions(self, name: str) -> list[Entry]:
        return [e for e in self.entries() if e.name == name]

    def entry(self, name: str, version: int = 0) -> Entry:
        """One repository model version; version 0 = the newest ready one (else the newest)."""
        entries = self.versions(name)
        if not entries:
            known = sorted({e.name for e in self.entries()})
            raise NotFound(f"model {name!r}: not in the repository (models: {', '.join(known) or 'none'})")
        if version == 0:
            ready = [e for e in entries if e.ready]
            return (ready or entries)[-1]
        for e in entries:
            if e.version == version:
                return e
        raise NotFound(
            f"model {name!r} version {version}: not in the repository (versions: "
            f"{', '.join(str(e.version) for e in entries)})"
        )

    def graph(self, name: str, version: int = 0) -> Graph:
        """A ready graph or NotFound / FailedPrecondition naming the reason."""
        entry = self.entry(name, version)
        if entry.graph is None:
            raise FailedPrecondition(f"model {name!r} version {entry.version} is not ready: {entry.reason}")
        return entry.graph

    def resolve(self, model: str, kind: str, version: int = 0) -> Graph:
        """The Predictor's lookup: ``model`` is the mouse (or the repository name of the right kind)."""
        name = model if model.endswith(f"-{kind}") else contract.repository_model_name(model, kind)  # type: ignore[arg-type]
        if not self.versions(name) and not any(e.name.startswith(f"{model}-") for e in self.entries()):
            mice = sorted(self.mice())
            raise NotFound(f"model {model!r}: no such model (models: {', '.join(mice) or 'none'})")
        if not self.versions(name):
            raise NotFound(f"model {model!r}: no {kind} graph in the repository")
        return self.graph(name, version)

    # ---- changing --------------------------------------------------------------------------------------------
    def scan(self) -> list[Change]:
        """Reconcile with the repository on disk; returns what changed."""
        on_disk = self._discover()
        changes: list[Change] = []
        with self._lock:
            gone = [key for key in self._entries if key not in on_disk]
        for key in gone:
            changes += self._remove(key)
        for key, path in sorted(on_disk.items()):
            with self._lock:
                current = self._entries.get(key)
            if current is None or current.fingerprint != _fingerprint(path):
                changes.append(self._load_one(key[0], key[1], path, replacing=current))
        return changes

    def load(self, name: str, version: int = 0) -> list[Change]:
        """(Re)load one repository model: one version, or every version on disk (version 0)."""
        on_disk = {k: p for k, p in self._discover().items() if k[0] == name and version in (0, k[1])}
        if not on_disk:
            where = f"{name}/{version}" if version else name
            raise NotFound(f"model {where!r}: not found under repository {self.repo}")
        changes = []
        for (n, v), path in sorted(on_disk.items()):
            with self._lock:
                current = self._entries.get((n, v))
            changes.append(self._load_one(n, v, path, replacing=current))
        return changes

    def unload(self, name: str, version: int = 0) -> list[Change]:
        with self._lock:
            keys = [k for k in self._entries if k[0] == name and version in (0, k[1])]
        if not keys:
            raise NotFound(f"model {name!r} version {version or 'any'}: not loaded")
        return [c for key in keys for c in self._remove(key)]

    def close(self) -> None:
        with self._lock:
            keys = list(self._entries)
        for key in keys:
            self._remove(key)

    def _remove(self, key: tuple[str, int]) -> list[Change]:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            return []
        if entry.graph is not None:
            entry.graph.retire()
        log.info("unloaded %s version %d", *key)
        return [Change(key[0], key[1], "unloaded")]

    def _discover(self) -> dict[tuple[str, int], Path]:
        found: dict[tuple[str, int], Path] = {}
        if not self.repo.is_dir():
            log.warning("model repository %s does not exist", self.repo)
            return found
        # Hidden folders are skipped quietly: `sensorium-serve export` stages a version in REPO/.<model>-* and
        # moves it into place whole, and a watching server (`serve --watch`) must not log them on every scan.
        for model_dir in sorted(p for p in self.repo.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                contract.split_repository_model_name(model_dir.name)
            except ValueError as exc:
                log.warning("skipping %s: %s", model_dir, exc)
                continue
            for version_dir in model_dir.iterdir():
                if version_dir.is_dir() and _VERSION_DIR.match(version_dir.name):
                    found[(model_dir.name, int(version_dir.name))] = version_dir
        return found

    def _load_one(self, name: str, version: int, path: Path, replacing: Entry | None) -> Change:
        fingerprint = _fingerprint(path)
        entry = Entry(name, version, path, fingerprint)
        try:
            entry.metadata = ModelMetadata.read(path)
            entry.config = read_model_config(path.parent)
            model_file = path / contract.MODEL_FILENAME
            if not model_file.is_file():
                raise FileNotFoundError(f"{model_file}: missing")
            try:
                session = self._session_factory(model_file)
            except Exception as exc:
                raise ValueError(f"{model_file}: onnxruntime cannot load it ({exc})") from exc
            entry.graph = Graph(name, version, path, entry.metadata, session, entry.config)
        except Exception as exc:
            entry.reason = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
            log.error("model %s version %d is not ready: %s", name, version, entry.reason)
        with self._lock:
            old = self._entries.get((name, version))
            keep_old = not entry.ready and old is not None and old.graph is not None
            if keep_old:  # a failed reload keeps serving the version that was loaded, and says why
                assert old is not None
                old.fingerprint = fingerprint  # retried when the files change again, not on every scan
                old.reason = f"reload failed, still serving the previously loaded files: {entry.reason}"
            else:
                self._entries[(name, version)] = entry
        if old is not None and old.graph is not None and not keep_old:
            old.graph.retire()
        if not entry.ready:
            return Change(name, version, "failed", entry.reason)
        action = "reloaded" if replacing is not None else "loaded"
        providers = entry.graph.session.get_providers() if entry.graph else []
        log.info("%s %s version %d (%s)", action, name, version, providers[0] if providers else "?")
        return Change(name, version, action)


def make_session_factory(
    providers: list[str], intra_op_threads: int = 0, inter_op_threads: int = 1
) -> SessionFactory:
    """onnxruntime sessions with the configured providers and thread counts."""

    def factory(model_file: Path) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.log_severity_level = 3
        return ort.InferenceSession(str(model_file), sess_options=options, providers=providers)

    return factory
