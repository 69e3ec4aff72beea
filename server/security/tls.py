"""TLS server credentials: ``--tls-cert`` + ``--tls-key`` (PEM) serve TLS; ``--tls-client-ca`` additionally
requires client certificates signed by that CA (mutual TLS)."""

from __future__ import annotations

from pathlib import Path

import grpc

from server.security.auth import SecurityConfigError


def _read_pem(path: Path, what: str, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"{flag} {path}: cannot read the {what} ({exc.strerror})") from None
    if b"-----BEGIN " not in data:
        raise SecurityConfigError(
            f"{flag} {path}: not a PEM file (no '-----BEGIN' line); expected the {what}"
        )
    return data


def server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """TLS server credentials; with `client_ca`, clients must present a certificate signed by it (mTLS)."""
    pair = (_read_pem(key, "private key", "--tls-key"), _read_pem(cert, "certificate chain", "--tls-cert"))
    ca = _read_pem(client_ca, "client CA certificate", "--tls-client-ca") if client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)
