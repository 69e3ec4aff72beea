"""Limits hold and give their slots back: an oversize submission message, more concurrent submissions than
allowed, cancelled submissions; and no RPC answer can carry per-trial ground truth.

Stream and message limits of the Predictor are tested in tests/server/test_server_errors.py
(test_oversize_message_is_resource_exhausted, test_more_streams_than_allowed)."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor
from reliability_support import sync_channel
from scoring_support import truth_submission

from client.errors import ResourceExhaustedError
from client.scoring import ScoringClient, submit_requests
from client.submission import TrialPrediction
from protos.sensorium.v1 import scoring_pb2
from server.scoring.db import ScoreStore
from server.scoring.ground_truth import FolderGroundTruth


@pytest.fixture
def scoring_server(threaded_server, scoring_dataset: Path, tmp_path: Path):
    db_url = f"sqlite:///{tmp_path / 'scores.sqlite'}"
    server = threaded_server(
        truth_dir=scoring_dataset / "truth", db_url=db_url, max_message_bytes=200_000, http_port=0
    )
    store = ScoreStore(db_url)
    yield server, store, FolderGroundTruth(scoring_dataset / "truth")
    store.close()


def test_oversize_submission_message_is_refused_and_nothing_is_stored(scoring_server) -> None:
    server, store, truth = scoring_server
    trials = truth_submission(truth, "main", "live")
    huge = trials[0]
    oversize = TrialPrediction(huge.mouse, huge.trial_index, np.zeros((len(huge.neuron_ids), 60_000), np.float32),
                               huge.neuron_ids)  # fmt: skip
    with ScoringClient(server.target, timeout_s=30) as client:
        with pytest.raises(ResourceExhaustedError) as info:
            client.submit([oversize, *trials[1:]], "main", "live", "big-team")
        assert "larger than max" in info.value.details
        assert not any(store.row_counts().values())
        record = client.submit(trials, "main", "live", "big-team")  # the slot came back
    assert record.scores.ranking_score == pytest.approx(1.0)


def test_concurrent_submission_limit_and_cancelled_submissions_free_their_slots(scoring_server) -> None:
    server, store, truth = scoring_server
    trials = truth_submission(truth, "main", "live")
    release = threading.Event()

    def stalled():  # a header and one trial, then the client goes quiet
        requests = submit_requests(trials, "main", "live", "slow-team")
        yield next(requests)
        yield next(requests)
        release.wait(30)

    with sync_channel(server.target) as channel:
        submit = channel.stream_unary(
            "/sensorium.v1.Scoring/Submit", lambda m: m.SerializeToString(), scoring_pb2.Submission.FromString
        )
        stalled_calls = [submit.future(stalled(), timeout=30) for _ in range(2)]
        time.sleep(0.5)  # both are open on the server
        with ScoringClient(server.target, timeout_s=30) as client:
            with pytest.raises(ResourceExhaustedError) as info:
                client.submit(trials, "main", "live", "third-team")
            assert "submissions are being scored" in info.value.details
            for call in stalled_calls:
                call.cancel()  # the clients vanish
            release.set()
            deadline = time.monotonic() + 10
            while True:
                try:
                    record = client.submit(trials, "main", "live", "third-team")
                    break
                except ResourceExhaustedError:
                    assert time.monotonic() < deadline, "cancelled submissions kept their slots"
                    time.sleep(0.1)
    assert record.scores.n_trials == len(trials)
    assert store.row_counts()["submissions"] == 1


def _carries_arrays(descriptor, seen: set[str]) -> list[str]:
    """Fields of a message (recursively) that could carry per-trial arrays: bytes, Tensor, repeated numbers."""
    if descriptor.full_name in seen:
        return []
    seen.add(descriptor.full_name)
    found = []
    for field in descriptor.fields:
        where = f"{descriptor.full_name}.{field.name}"
        if field.type == FieldDescriptor.TYPE_BYTES:
            found.append(where)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.full_name == "sensorium.v1.Tensor":
                found.append(where)
            elif not field.message_type.GetOptions().map_entry:
                found += _carries_arrays(field.message_type, seen)
        elif field.is_repeated:
            found.append(where)
    return found


def test_no_scoring_answer_or_page_can_carry_ground_truth(scoring_server) -> None:
    server, _, truth = scoring_server
    service = scoring_pb2.DESCRIPTOR.services_by_name["Scoring"]
    for method in service.methods:
        assert _carries_arrays(method.output_type, set()) == [], method.name
    # The metrics page has counters and histograms, no response values.
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{server.app.http_port}/metrics", timeout=10).read().decode()
    )
    mouse = truth.mice()[0]
    values = truth.responses(mouse, next(iter(truth.trials(mouse))))
    assert mouse not in text and f"{float(values[0, 60]):.6g}" not in text
