"""A catalogue of bad submissions: each is refused with INVALID_ARGUMENT and a message naming the trial and the
problem, and the database is unchanged afterwards."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest
from scoring_support import MOUSE_A, MOUSE_B, Scoring, truth_submission

from client.scoring import submit_requests
from protos.sensorium.v1 import scoring_pb2, scoring_pb2_grpc, tensor_pb2
from server.scoring.ground_truth import FolderGroundTruth

Requests = list[scoring_pb2.SubmitRequest]


def _trial_positions(requests: Requests, mouse: str | None = None) -> list[int]:
    return [
        i
        for i, r in enumerate(requests)
        if r.WhichOneof("kind") == "trial" and (mouse is None or r.trial.mouse == mouse)
    ]


def _first(requests: Requests, mouse: str = MOUSE_A) -> scoring_pb2.TrialPrediction:
    return requests[_trial_positions(requests, mouse)[0]].trial


def _array(trial: scoring_pb2.TrialPrediction) -> np.ndarray:
    return np.frombuffer(trial.prediction.data, dtype="<f4").reshape(tuple(trial.prediction.shape)).copy()


def _set_array(trial: scoring_pb2.TrialPrediction, array: np.ndarray) -> None:
    trial.prediction.shape[:] = list(array.shape)
    trial.prediction.data = np.ascontiguousarray(array, dtype="<f4").tobytes()


def _train_trial(truth: FolderGroundTruth, mouse: str = MOUSE_A) -> int:
    return min(i for i, info in truth.trials(mouse).items() if info.tier == "train")


def _other_test_trial(truth: FolderGroundTruth, mouse: str = MOUSE_A) -> int:
    return min(i for i, info in truth.trials(mouse).items() if info.tier == "live_test_main")


# Each case: mutate the request list of a valid final_test_main submission in place -> expected message parts.
def unknown_mouse(r: Requests, truth: FolderGroundTruth) -> list[str]:
    _first(r).mouse = "dynamic00000-0-0-Video-00000000000000000000000000000000"
    return [
        "mouse 'dynamic00000-0-0-Video-00000000000000000000000000000000' trial",
        "unknown mouse (not one of the 2 mice of tier 'final_test_main')",
    ]


def unknown_trial(r: Requests, truth: FolderGroundTruth) -> list[str]:
    _first(r).trial_index = 9999
    return [f"mouse {MOUSE_A!r} trial 9999", "unknown trial"]


def trial_of_another_tier(r: Requests, truth: FolderGroundTruth) -> list[str]:
    i = _train_trial(truth)
    _first(r).trial_index = i
    return [f"trial {i}", "is in tier 'train', not in the submitted tier 'final_test_main'"]


def trial_of_the_other_test_tier(r: Requests, truth: FolderGroundTruth) -> list[str]:
    i = _other_test_trial(truth)
    _first(r).trial_index = i
    return [f"trial {i}", "is in tier 'live_test_main'"]


def duplicate_trial(r: Requests, truth: FolderGroundTruth) -> list[str]:
    positions = _trial_positions(r, MOUSE_A)
    r[positions[1]].trial.trial_index = r[positions[0]].trial.trial_index
    return [f"trial {r[positions[0]].trial.trial_index}", "duplicate trial"]


def missing_trial(r: Requests, truth: FolderGroundTruth) -> list[str]:
    gone = r.pop(_trial_positions(r, MOUSE_B)[-1]).trial.trial_index
    return ["incomplete submission", f"mouse {MOUSE_B!r}: 1 of 6 trial(s) missing ({gone})"]


def missing_mouse(r: Requests, truth: FolderGroundTruth) -> list[str]:
    for i in reversed(_trial_positions(r, MOUSE_A)):
        r.pop(i)
    return ["incomplete submission", f"mouse {MOUSE_A!r}: 6 of 6 trial(s) missing"]


def header_only(r: Requests, truth: FolderGroundTruth) -> list[str]:
    del r[1:]
    return ["submission has no trials"]


def unknown_neuron_id(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = _first(r)
    old = trial.neuron_ids[3]
    trial.neuron_ids[3] = 7
    return [
        f"trial {trial.trial_index}",
        "neuron ids are not the mouse's 23 neuron ids",
        "1 unknown (e.g. 7)",
        f"missing (e.g. {old})",
    ]


def repeated_neuron_id(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = _first(r)
    trial.neuron_ids[1] = trial.neuron_ids[0]
    return ["neuron ids are not the mouse's 23 neuron ids", f"1 repeated (e.g. {trial.neuron_ids[0]})"]


def fewer_neurons(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = _first(r)
    del trial.neuron_ids[-1]
    _set_array(trial, _array(trial)[:-1])
    return ["neuron ids are not the mouse's 23 neuron ids", "1 of the mouse's ids missing"]


def rows_ids_mismatch(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = _first(r)
    del trial.neuron_ids[-1]
    return ["prediction has 23 neuron rows but 22 neuron ids were sent"]


def wrong_frame_count(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = _first(r)
    _set_array(trial, _array(trial)[:, 1:])  # 249 frames
    return [
        f"trial {trial.trial_index}",
        "prediction has 249 frames for a 300-frame trial",
        "accepted: 300",
        "250",
    ]


def nan_value(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = _first(r)
    a = _array(trial)
    a[4, 17] = np.nan
    _set_array(trial, a)
    return [
        f"trial {trial.trial_index}",
        "1 non-finite value(s)",
        f"nan at neuron id {trial.neuron_ids[4]}, frame 17",
    ]


def inf_value(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = r[_trial_positions(r, MOUSE_B)[2]].trial
    a = _array(trial)
    a[0, 0] = -np.inf
    _set_array(trial, a)
    return [
        f"mouse {MOUSE_B!r} trial {trial.trial_index}",
        f"-inf at neuron id {trial.neuron_ids[0]}, frame 0",
    ]


def float64_prediction(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = _first(r)
    a = _array(trial).astype(np.float64)
    trial.prediction.dtype = tensor_pb2.DTYPE_FLOAT64
    trial.prediction.data = a.tobytes()
    return ["prediction dtype must be DTYPE_FLOAT32, got DTYPE_FLOAT64"]


def byte_count_mismatch(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = _first(r)
    trial.prediction.data = trial.prediction.data[:-4]
    return [f"trial {trial.trial_index}", "bytes; shape [23, 250] float32 needs 23000"]


def three_dimensional(r: Requests, truth: FolderGroundTruth) -> list[str]:
    trial = _first(r)
    trial.prediction.shape[:] = [23, 10, 25]
    return ["prediction shape must be [n_neurons, n_frames], got [23, 10, 25]"]


def no_header(r: Requests, truth: FolderGroundTruth) -> list[str]:
    del r[0]
    return ["the first message of a submission must be its header"]


def two_headers(r: Requests, truth: FolderGroundTruth) -> list[str]:
    r.insert(3, r[0])
    return ["exactly one header"]


def empty_stream(r: Requests, truth: FolderGroundTruth) -> list[str]:
    del r[:]
    return ["empty submission"]


def bad_track(r: Requests, truth: FolderGroundTruth) -> list[str]:
    r[0].header.track = "side"
    return ["header: track must be one of ['main', 'bonus'], got 'side'"]


def bad_tier(r: Requests, truth: FolderGroundTruth) -> list[str]:
    r[0].header.tier = "final_test_main"
    return ["header: tier must be one of ['live', 'final', 'oracle'], got 'final_test_main'"]


def empty_submitter(r: Requests, truth: FolderGroundTruth) -> list[str]:
    r[0].header.submitter = "  "
    return ["header: submitter must not be empty"]


def wrong_track_for_trials(r: Requests, truth: FolderGroundTruth) -> list[str]:
    r[0].header.track = "bonus"
    return ["is in tier 'final_test_main', not in the submitted tier 'final_test_bonus'"]


CASES: list[Callable[[Requests, FolderGroundTruth], list[str]]] = [
    unknown_mouse,
    unknown_trial,
    trial_of_another_tier,
    trial_of_the_other_test_tier,
    duplicate_trial,
    missing_trial,
    missing_mouse,
    header_only,
    unknown_neuron_id,
    repeated_neuron_id,
    fewer_neurons,
    rows_ids_mismatch,
    wrong_frame_count,
    nan_value,
    inf_value,
    float64_prediction,
    byte_count_mismatch,
    three_dimensional,
    no_header,
    two_headers,
    empty_stream,
    bad_track,
    bad_tier,
    empty_submitter,
    wrong_track_for_trials,
]


@pytest.fixture(scope="module")
def valid_requests(truth: FolderGroundTruth) -> Requests:
    return list(submit_requests(truth_submission(truth, "main", "final"), "main", "final", "mallory", "bad"))


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_submission_is_refused_and_changes_nothing(
    scoring: Scoring, truth: FolderGroundTruth, valid_requests: Requests, case
) -> None:
    good = scoring.client.submit(truth_submission(truth, "main", "live"), "main", "live", "mallory")
    before = scoring.rows()
    requests = [scoring_pb2.SubmitRequest.FromString(r.SerializeToString()) for r in valid_requests]
    expected = case(requests, truth)
    stub = scoring_pb2_grpc.ScoringStub(scoring.client._channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Submit(iter(requests), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    for part in expected:
        assert part in info.value.details(), (part, info.value.details())
    assert scoring.rows() == before
    assert [r.record.submission_id for r in scoring.client.leaderboard("main", "live").rows] == [
        good.submission_id
    ]
    assert scoring.client.leaderboard("main", "final").rows == []


def test_the_unchanged_submission_is_valid(scoring: Scoring, valid_requests: Requests) -> None:
    """The catalogue's base submission itself is accepted (so each case fails for its own reason)."""
    stub = scoring_pb2_grpc.ScoringStub(scoring.client._channel)
    reply = stub.Submit(iter(valid_requests), timeout=60)
    assert reply.single_trial_correlation.overall == pytest.approx(1.0, abs=1e-6)
    assert scoring.rows()["submissions"] == 1
