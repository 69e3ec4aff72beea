"""Export a tiny real model (the export area's own test fixtures + `models.export`) into a repository.

Run as a subprocess by test_server_real_model.py: torch stays out of the test process, and the dynamo exporter
gets a fresh process per export (FIELD-NOTES). Usage: python export_real_model.py ARCHITECTURE REPO
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "export"))

from export_fixtures import make_model, tiny_mice, write_checkpoint  # noqa: E402

from models.export.repository import export_checkpoint  # noqa: E402


def main(architecture: str, repo: str) -> None:
    run = Path(repo).parent / f"run-{architecture}"
    write_checkpoint(run / "best.pt", make_model(architecture), tiny_mice())
    for exported in export_checkpoint(run, Path(repo)):
        print(exported)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
