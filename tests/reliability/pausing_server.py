"""`sensorium-serve` with an optional pause inside the scoring database transaction (a test helper, run as a
subprocess by test_reliability_kill.py).

With RELIABILITY_PAUSE_IN_TRANSACTION=1, every SQLAlchemy flush (the INSERTs of a submission, not yet committed)
prints RECORDING-IN-TRANSACTION on stderr and sleeps, so the test can SIGKILL the server mid-transaction.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

if os.environ.get("RELIABILITY_PAUSE_IN_TRANSACTION") == "1":
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    @event.listens_for(Session, "after_flush")
    def _pause(session: Session, flush_context: object) -> None:
        print("RECORDING-IN-TRANSACTION", file=sys.stderr, flush=True)
        time.sleep(60)


from server.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
