"""TLS and mutual TLS: certificates made by the test (openssl CLI); plaintext or untrusted peers are refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from reliability_support import PREDICT_TOKEN

from client.errors import AuthError, UnavailableError
from client.predictor import CLIENT_CERT_ENV, CLIENT_KEY_ENV, TLS_CA_ENV, PredictorClient, tls_credentials
from server.security.auth import SecurityConfigError
from server.security.tls import server_credentials


def _models(target: str, **kwargs) -> int:
    with PredictorClient(target, timeout=5, **kwargs) as client:
        return len(client.list_models())


def test_tls_serves_trusting_clients_and_refuses_plaintext(threaded_server, certs) -> None:
    server = threaded_server(tls_cert=certs.server_cert, tls_key=certs.server_key)
    assert _models(server.target, credentials=tls_credentials(certs.ca)) == 2
    with pytest.raises(UnavailableError):
        _models(server.target, credentials=grpc.local_channel_credentials())  # not TLS
    with pytest.raises(UnavailableError), PredictorClient(server.target, timeout=3) as client:
        client.list_models()  # plaintext HTTP/2 against a TLS port
    with pytest.raises(UnavailableError):  # a client that does not trust the server's CA
        _models(server.target, credentials=tls_credentials(certs.rogue_cert))


def test_mutual_tls_needs_a_client_certificate_from_the_ca(threaded_server, certs, monkeypatch) -> None:
    server = threaded_server(tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca)
    assert (
        _models(server.target, credentials=tls_credentials(certs.ca, certs.client_cert, certs.client_key))
        == 2
    )
    with pytest.raises(UnavailableError):  # no client certificate
        _models(server.target, credentials=tls_credentials(certs.ca))
    with pytest.raises(UnavailableError):  # a certificate of another CA
        _models(server.target, credentials=tls_credentials(certs.ca, certs.rogue_cert, certs.rogue_key))
    # The same from the environment (what the CLIs use when no --tls-* flag is given).
    monkeypatch.setenv(TLS_CA_ENV, str(certs.ca))
    monkeypatch.setenv(CLIENT_CERT_ENV, str(certs.client_cert))
    monkeypatch.setenv(CLIENT_KEY_ENV, str(certs.client_key))
    assert _models(server.target) == 2


def test_tls_and_tokens_together(threaded_server, certs, token_file) -> None:
    server = threaded_server(tls_cert=certs.server_cert, tls_key=certs.server_key, auth_tokens=token_file)
    credentials = tls_credentials(certs.ca)
    assert _models(server.target, credentials=credentials, token=PREDICT_TOKEN) == 2
    with pytest.raises(AuthError):
        _models(server.target, credentials=credentials)


def test_unusable_tls_files_are_named(tmp_path: Path, certs) -> None:
    not_pem = tmp_path / "cert.txt"
    not_pem.write_text("hello")
    with pytest.raises(SecurityConfigError, match=r"--tls-cert .*cert.txt: not a PEM file"):
        server_credentials(not_pem, certs.server_key)
    with pytest.raises(SecurityConfigError, match=r"--tls-client-ca .*nope.pem: cannot read"):
        server_credentials(certs.server_cert, certs.server_key, tmp_path / "nope.pem")
    with pytest.raises(ValueError, match="certificate and key go together"):
        tls_credentials(certs.ca, cert=certs.client_cert)
