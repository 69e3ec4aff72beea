"""The benchmark's evaluation server: `sensorium.v1.Scoring` (docs/SCORING.md).

`register(grpc_server, settings)` adds the service to a grpc.aio server; the main server calls it when
``settings.truth_dir`` is set. Layers: servicer (gRPC edge) -> service (daily limit, concurrency) -> session
(validation + streaming metrics per submission) -> ground truth (truth folder) and store (SQLAlchemy).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import grpc.aio

    from server.config import Settings
    from server.scoring.ground_truth import GroundTruth

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "sensorium.v1.Scoring"
SCORING_THREADS: Final = 2  # per-trial numpy work and database calls, off the event loop


def register(grpc_server: grpc.aio.Server, settings: Settings, truth: GroundTruth | None = None) -> list[str]:
    """Add `sensorium.v1.Scoring` to `grpc_server`; returns the full service names it registered.

    Ground truth comes from ``settings.truth_dir`` (statistics from its sibling ``public`` folder) unless
    `truth` is given (benchmarks); results go to ``settings.db_url``; ``settings.submissions_per_day`` (0: no
    limit) caps recorded submissions per submitter per UTC day. ``settings.max_message_bytes`` must hold
    one trial (8,000 neurons x 300 frames float32 = 9.6 MB)."""
    from protos.sensorium.v1 import scoring_pb2_grpc
    from server.scoring.allocator import tune_malloc
    from server.scoring.db import ScoreStore
    from server.scoring.ground_truth import FolderGroundTruth
    from server.scoring.service import ScoringService
    from server.scoring.servicer import ScoringServicer

    if truth is None:
        if settings.truth_dir is None:
            raise ValueError("the scoring service needs a truth folder (--truth DIR/truth)")
        truth = FolderGroundTruth(Path(settings.truth_dir))
    tune_malloc()  # keeps the ~10 MB per-trial buffers in the heap (server.scoring.allocator)
    store = ScoreStore(settings.db_url)
    service = ScoringService(truth, store, submissions_per_day=settings.submissions_per_day)
    executor = ThreadPoolExecutor(max_workers=SCORING_THREADS, thread_name_prefix="scoring")
    scoring_pb2_grpc.add_ScoringServicer_to_server(ScoringServicer(service, executor), grpc_server)
    log.info(
        "scoring service: %d mice, database %s, %s submissions per submitter per day",
        len(truth.mice()),
        store.engine.url.render_as_string(hide_password=True),
        settings.submissions_per_day or "unlimited",
    )
    return [SERVICE_NAME]
