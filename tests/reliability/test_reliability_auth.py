"""Token authentication: the token file format, the role matrix of every service (UNAUTHENTICATED vs
PERMISSION_DENIED), health without a token, secrets never in logs or messages, and the clients' --token /
$SENSORIUM_SERVE_TOKEN."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from reliability_support import ADMIN_TOKEN, ALL_TOKEN, PREDICT_TOKEN, SUBMIT_TOKEN, TOKENS

from protos.inference import grpc_predict_v2_pb2 as kserve_pb2
from protos.sensorium.v1 import predictor_pb2, scoring_pb2
from server.security.auth import TokenFileError, TokenTable, bearer_token, required_roles
from server.testing import OTHER_MOUSE

UNKNOWN_TOKEN = "not-a-known-token-0123456789abcdef"
SECRETS = [*TOKENS.values(), UNKNOWN_TOKEN]


# ---- token file -------------------------------------------------------------------------------------------


def test_token_file_parses_comments_blank_lines_and_role_lists(token_file: Path) -> None:
    table = TokenTable.read(token_file)
    assert len(table) == 4
    assert table.lookup(PREDICT_TOKEN).roles == {"predict"}
    assert table.lookup(SUBMIT_TOKEN).roles == {"submit"} and table.lookup(SUBMIT_TOKEN).line == 4
    assert table.lookup(ADMIN_TOKEN).roles == {"admin"}
    assert table.lookup(ALL_TOKEN).roles == {"predict", "submit", "admin"}
    assert table.lookup(UNKNOWN_TOKEN) is None
    assert PREDICT_TOKEN not in repr(vars(table))  # only digests are kept


SECRET = "very-secret-token-0123456789"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (f"# ok\n{SECRET}\n", "line 2: expected 'TOKEN ROLE[,ROLE...]'"),
        (f"{SECRET} predict extra\n", "line 1: expected 'TOKEN ROLE[,ROLE...]' (2 fields"),
        (f"\n\n{SECRET} predikt\n", "line 3: unknown role(s) ['predikt']; roles are predict, submit, admin"),
        (f"{SECRET} predict,,root\n", "line 1: unknown role(s) ['root']"),
        ("short predict\n", "line 1: token shorter than 16 characters"),
        (f"{SECRET} predict\n{SECRET} admin\n", "line 2: the same token is already on line 1"),
        ("# nothing but comments\n\n", "no tokens"),
    ],
)
def test_malformed_token_file_names_the_line_never_the_token(text: str, words: str) -> None:
    with pytest.raises(TokenFileError) as info:
        TokenTable.parse(text, "tokens.txt")
    assert words in str(info.value) and str(info.value).startswith("tokens.txt")
    assert SECRET not in str(info.value)


def test_serve_refuses_a_bad_token_file_or_half_tls_config(tmp_path: Path, model_repo: Path) -> None:
    from server import serve_cli

    parser = argparse.ArgumentParser()
    serve_cli.add_commands(parser.add_subparsers())
    bad = tmp_path / "tokens.txt"
    bad.write_text(f"{SECRET} predict\n{SECRET}x predict admin\n")
    base = ["serve", "--repo", str(model_repo), "--port", "0", "--http-port", "-1", "--providers", "cpu"]
    with pytest.raises(SystemExit) as info:
        serve_cli.run(parser.parse_args([*base, "--auth-tokens", str(bad)]))
    assert "line 2" in str(info.value.code) and SECRET not in str(info.value.code)
    with pytest.raises(SystemExit) as info:
        serve_cli.run(parser.parse_args([*base, "--auth-tokens", str(tmp_path / "missing.txt")]))
    assert "missing.txt: cannot read the token file" in str(info.value.code)
    with pytest.raises(SystemExit) as info:
        serve_cli.run(parser.parse_args([*base, "--tls-cert", str(bad)]))
    assert "tls_cert and tls_key go together" in str(info.value.code)


def test_settings_take_security_options_from_the_environment(tmp_path: Path) -> None:
    from server.config import Settings

    env = {
        "SENSORIUM_SERVE_AUTH_TOKENS": str(tmp_path / "t.txt"),
        "SENSORIUM_SERVE_TLS_CERT": "c.pem",
        "SENSORIUM_SERVE_TLS_KEY": "k.pem",
        "SENSORIUM_SERVE_TLS_CLIENT_CA": "ca.pem",
    }
    s = Settings.from_env(env)
    assert s.auth_tokens == tmp_path / "t.txt" and s.tls_client_ca == Path("ca.pem")
    assert (s.tls_cert, s.tls_key) == (Path("c.pem"), Path("k.pem"))


def test_role_table_and_bearer_parsing() -> None:
    assert required_roles("/grpc.health.v1.Health/Check") is None
    assert required_roles("/sensorium.v1.ModelRepository/Load") == {"admin"}
    assert required_roles("/sensorium.v1.Scoring/Submit") == {"submit"}
    assert required_roles("/sensorium.v1.Scoring/GetLeaderboard") == {"predict", "submit", "admin"}
    assert required_roles("/inference.GRPCInferenceService/ModelInfer") == {"predict"}
    assert required_roles("/inference.GRPCInferenceService/ModelStreamInfer") == {"predict"}
    assert required_roles("/inference.GRPCInferenceService/RepositoryIndex") == {"predict"}
    assert required_roles("/inference.GRPCInferenceService/RepositoryModelLoad") == {"admin"}
    assert required_roles("/inference.GRPCInferenceService/RepositoryModelUnload") == {"admin"}
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("Authorization", "bearer  abc ")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) == ""
    assert bearer_token([("x-other", "1")]) is None


# ---- the role matrix on a live server ------------------------------------------------------------------

UNARY = {  # method -> (request, response class)
    "/sensorium.v1.Predictor/ListModels": (
        predictor_pb2.ListModelsRequest(),
        predictor_pb2.ListModelsResponse,
    ),
    "/inference.GRPCInferenceService/ServerLive": (
        kserve_pb2.ServerLiveRequest(),
        kserve_pb2.ServerLiveResponse,
    ),
    "/sensorium.v1.ModelRepository/Rescan": (predictor_pb2.RescanRequest(), predictor_pb2.RescanResponse),
    "/inference.GRPCInferenceService/RepositoryIndex": (
        kserve_pb2.RepositoryIndexRequest(),
        kserve_pb2.RepositoryIndexResponse,
    ),
    "/inference.GRPCInferenceService/RepositoryModelLoad": (  # reloads a model of the test repository
        kserve_pb2.RepositoryModelLoadRequest(model_name=f"{OTHER_MOUSE}-clip"),
        kserve_pb2.RepositoryModelLoadResponse,
    ),
    "/sensorium.v1.Scoring/GetLeaderboard": (
        scoring_pb2.GetLeaderboardRequest(track="main", tier="live"),
        scoring_pb2.Leaderboard,
    ),
    "/grpc.health.v1.Health/Check": (health_pb2.HealthCheckRequest(), health_pb2.HealthCheckResponse),
}
NEEDS = {
    "/sensorium.v1.Predictor/ListModels": {"predict", "all"},
    "/inference.GRPCInferenceService/ServerLive": {"predict", "all"},
    "/sensorium.v1.ModelRepository/Rescan": {"admin", "all"},
    "/inference.GRPCInferenceService/RepositoryIndex": {"predict", "all"},
    "/inference.GRPCInferenceService/RepositoryModelLoad": {"admin", "all"},
    "/sensorium.v1.Scoring/GetLeaderboard": {"predict", "submit", "admin", "all"},
    "/sensorium.v1.Predictor/StreamPredict": {"predict", "all"},
    "/sensorium.v1.Scoring/Submit": {"submit", "all"},
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {"predict", "submit", "admin", "all"},
}
CREDENTIALS = {
    "none": None,
    "malformed": "Basic " + PREDICT_TOKEN,
    "unknown": "Bearer " + UNKNOWN_TOKEN,
    **{name: "Bearer " + token for name, token in TOKENS.items()},
}


async def _code(channel: grpc.aio.Channel, method: str, header: str | None, kit) -> grpc.StatusCode:
    metadata = (("authorization", header),) if header else None
    call = None
    try:
        if method in UNARY:
            request, response = UNARY[method]
            call = channel.unary_unary(method, request.SerializeToString, response.FromString)
            await call(request, metadata=metadata, timeout=30)
        elif method.endswith("StreamPredict"):
            call = channel.stream_stream(
                method, lambda m: m.SerializeToString(), predictor_pb2.StreamPredictResponse.FromString
            )(metadata=metadata, timeout=30)
            await call.write(kit.open_request())
            await call.read()
            await call.done_writing()
            await call.read()
        elif method.endswith("Submit"):
            header_msg = scoring_pb2.SubmitRequest(
                header=scoring_pb2.SubmissionHeader(track="main", tier="live", submitter="auth-test")
            )
            call = channel.stream_unary(
                method, lambda m: m.SerializeToString(), scoring_pb2.Submission.FromString
            )
            await call(iter([header_msg]), metadata=metadata, timeout=30)  # incomplete: INVALID_ARGUMENT
        else:  # reflection
            call = channel.stream_stream(
                method,
                lambda m: m.SerializeToString(),
                reflection_pb2.ServerReflectionResponse.FromString,
            )(metadata=metadata, timeout=30)
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await call.read()
            await call.done_writing()
            await call.read()
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        assert all(secret not in (exc.details() or "") for secret in SECRETS)
        if isinstance(call, grpc.aio.StreamStreamCall) and exc.code() == grpc.StatusCode.INTERNAL:
            # A write racing the server's refusal fails locally ("Failed execute_batch") with INTERNAL; the
            # status the server sent is the call's own.
            return await call.code()
        return exc.code()


def test_every_service_enforces_its_role(serving, kit, token_file, scoring_dataset, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    methods = [*UNARY, *NEEDS]

    async def scenario():
        async with serving(
            auth_tokens=token_file,
            truth_dir=scoring_dataset / "truth",
            db_url=f"sqlite:///{tmp_path / 'scores.sqlite'}",
        ) as srv:
            got = {}
            for method in dict.fromkeys(methods):
                for who, header in CREDENTIALS.items():
                    got[(method, who)] = await _code(srv.channel, method, header, kit)
            unknown_method = await _code_unknown(srv.channel)
            return got, unknown_method, srv.app.metrics

    got, unknown_method, metrics = asyncio.run(scenario())
    for (method, who), code in got.items():
        if method.startswith("/grpc.health"):
            assert code == grpc.StatusCode.OK, (method, who)
        elif who in ("none", "malformed", "unknown"):
            assert code == grpc.StatusCode.UNAUTHENTICATED, (method, who, code)
        elif who in NEEDS[method]:
            passed = grpc.StatusCode.INVALID_ARGUMENT if method.endswith("Submit") else grpc.StatusCode.OK
            assert code == passed, (method, who, code)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (method, who, code)
    assert unknown_method == (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED)
    # Denials are logged (with the token's line) and counted; no secret reaches a log line.
    assert (
        "PERMISSION_DENIED /sensorium.v1.ModelRepository/Rescan by token of line 3 (predict)" in caplog.text
    )
    assert "UNAUTHENTICATED /sensorium.v1.Predictor/ListModels: unknown token" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text
    denied = metrics.errors.labels("Rescan", "PERMISSION_DENIED")._value.get()
    assert denied == sum(
        1 for (m, w), c in got.items() if m.endswith("Rescan") and c.name == "PERMISSION_DENIED"
    )


async def _code_unknown(channel: grpc.aio.Channel) -> tuple[grpc.StatusCode, grpc.StatusCode]:
    codes = []
    for metadata in (None, (("authorization", f"Bearer {ALL_TOKEN}"),)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary("/nope.v1.Nothing/Call")(b"", metadata=metadata, timeout=5)
        codes.append(info.value.code())
    return tuple(codes)


# ---- clients ----------------------------------------------------------------------------------------------


def test_clients_send_the_token_from_argument_or_environment(
    threaded_server, token_file, scoring_dataset, tmp_path, monkeypatch
) -> None:
    from client.errors import AuthError
    from client.predictor import TOKEN_ENV, PredictorClient
    from client.scoring import ScoringClient

    server = threaded_server(
        auth_tokens=token_file,
        truth_dir=scoring_dataset / "truth",
        db_url=f"sqlite:///{tmp_path / 'scores.sqlite'}",
    )
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with PredictorClient(server.target) as anonymous, pytest.raises(AuthError) as info:
        anonymous.list_models()
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    with PredictorClient(server.target, token=PREDICT_TOKEN) as client:
        assert client.list_models()
    with ScoringClient(server.target, token=PREDICT_TOKEN) as client:
        assert client.leaderboard("main", "live").rows == []
    monkeypatch.setenv(TOKEN_ENV, SUBMIT_TOKEN)
    with PredictorClient(server.target) as client, pytest.raises(AuthError) as info:
        client.list_models()  # the submit role may not predict
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED and "needs predict" in info.value.details
    with ScoringClient(server.target) as client:
        assert client.leaderboard("bonus", "final").rows == []
    with PredictorClient(server.target, token=PREDICT_TOKEN) as client:  # the argument wins
        assert client.list_models()
