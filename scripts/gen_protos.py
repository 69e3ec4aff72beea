#!/usr/bin/env python3
"""Regenerate the Python gRPC stubs for every .proto under protos/ (run after editing a .proto).

Stubs land beside their .proto inside the importable ``protos`` package, e.g.
``protos/sensorium/v1/predictor.proto`` -> ``protos/sensorium/v1/predictor_pb2.py`` + ``predictor_pb2_grpc.py``,
imported as ``from protos.sensorium.v1 import predictor_pb2``. protoc is run with ``-I protos`` (so the .proto
files import each other as ``"sensorium/v1/tensor.proto"`` and the descriptor pool sees those names), then the
generated absolute imports are rewritten to live under the ``protos`` package, which works for editable and
regular installs alike. ``--out DIR`` writes the same tree elsewhere (the staleness test compares the two).

Usage: .venv/bin/python scripts/gen_protos.py [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE = "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py")


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(proto_root.rglob("*.proto"))


def generated_files(root: Path) -> list[Path]:
    return sorted(p for suffix in GENERATED_SUFFIXES for p in root.rglob(f"*{suffix}"))


def _rewrite_imports(path: Path, top_packages: set[str]) -> None:
    """``from sensorium.v1 import x_pb2`` -> ``from protos.sensorium.v1 import x_pb2`` (ours only)."""
    pattern = re.compile(rf"^(from|import) ({'|'.join(map(re.escape, sorted(top_packages)))})([.\s])", re.M)
    text = path.read_text()
    path.write_text(pattern.sub(rf"\1 {PACKAGE}.\2\3", text))


def generate(out: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc on every .proto under proto_root, writing stubs under out; returns the generated files."""
    from grpc_tools import protoc

    protos = proto_files(proto_root)
    if not protos:
        raise SystemExit(f"no .proto files under {proto_root}")
    well_known = str(resources.files("grpc_tools") / "_proto")
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(proto_root)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see its message above)")
    top_packages = {p.relative_to(proto_root).parts[0] for p in protos}
    files = generated_files(out)
    for path in files:
        _rewrite_imports(path, top_packages)
    return files


def stale_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """Generated files that differ from a fresh generation (or are missing / orphaned); empty when fresh."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        fresh = {p.relative_to(fresh_root) for p in generate(fresh_root, proto_root)}
        current = {p.relative_to(proto_root) for p in generated_files(proto_root)}
        problems = [f"{rel}: missing" for rel in sorted(fresh - current)]
        problems += [f"{rel}: no .proto generates it" for rel in sorted(current - fresh)]
        problems += [
            f"{rel}: stale"
            for rel in sorted(fresh & current)
            if not filecmp.cmp(fresh_root / rel, proto_root / rel, shallow=False)
        ]
        return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=PROTO_ROOT, help="output root (default: protos/ itself)")
    parser.add_argument("--check", action="store_true", help="only report stale stubs; exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files()
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    files = generate(args.out)
    for path in files:  # every folder on the way down must be a package for the imports to resolve
        for folder in [path.parent, *path.parent.parents]:
            if not folder.is_relative_to(args.out):
                break
            init = folder / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated gRPC stubs (scripts/gen_protos.py)."""\n')
    print(f"generated {len(files)} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
