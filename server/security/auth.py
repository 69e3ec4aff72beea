"""Token authentication of the gRPC server.

Tokens: a file (``--auth-tokens FILE``, env ``SENSORIUM_SERVE_AUTH_TOKENS``) with one ``TOKEN ROLE[,ROLE...]``
per line (``#`` comments and blank lines allowed). Clients send ``authorization: Bearer TOKEN`` metadata.
`AuthInterceptor` checks every RPC except gRPC health: no/unknown token -> UNAUTHENTICATED, a known token
without the method's role -> PERMISSION_DENIED. Roles are independent (``admin`` does not imply ``predict``):

| methods | role |
|---|---|
| sensorium.v1.Predictor/*, inference.GRPCInferenceService/* (but the two below) | predict |
| sensorium.v1.ModelRepository/* (Rescan, Load, Unload), inference.GRPCInferenceService/RepositoryModelLoad and RepositoryModelUnload | admin |
| sensorium.v1.Scoring/Submit | submit |
| sensorium.v1.Scoring/GetLeaderboard, GetSubmission, server reflection | any valid token |
| grpc.health.v1.Health/* | none (load balancers and kubelets probe it) |

Only SHA-256 digests of the tokens are kept in memory; tokens never reach a log line or an error message (a
token is named by the line of the file it came from).
"""

from __future__ import annotations

import hashlib
import logging
import stat
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
import grpc.aio

log = logging.getLogger(__name__)

PREDICT: Final = "predict"
SUBMIT: Final = "submit"
ADMIN: Final = "admin"
ROLES: Final = (PREDICT, SUBMIT, ADMIN)
ANY_ROLE: Final = frozenset(ROLES)
MIN_TOKEN_LENGTH: Final = 16
METADATA_KEY: Final = "authorization"
SCHEME: Final = "bearer"

PUBLIC_PREFIXES: Final = ("/grpc.health.v1.Health/",)
# Method prefix -> the roles any one of which grants it. Longest prefix wins; unlisted methods need any token.
METHOD_ROLES: Final[dict[str, frozenset[str]]] = {
    "/sensorium.v1.Predictor/": frozenset({PREDICT}),
    "/inference.GRPCInferenceService/": frozenset({PREDICT}),
    "/inference.GRPCInferenceService/RepositoryModelLoad": frozenset({ADMIN}),
    "/inference.GRPCInferenceService/RepositoryModelUnload": frozenset({ADMIN}),
    "/sensorium.v1.ModelRepository/": frozenset({ADMIN}),
    "/sensorium.v1.Scoring/Submit": frozenset({SUBMIT}),
    "/sensorium.v1.Scoring/": ANY_ROLE,
    "/grpc.reflection.": ANY_ROLE,
}


class SecurityConfigError(ValueError):
    """A token file or TLS file the server cannot use; the message names the file (never a secret)."""


class TokenFileError(SecurityConfigError):
    """A malformed token file; the message names the file and line, never the token."""


@dataclass(frozen=True)
class Principal:
    """Who a valid token belongs to, as far as logs may say: the line of the token file, and its roles."""

    line: int
    roles: frozenset[str]

    def __str__(self) -> str:
        return f"token of line {self.line} ({','.join(sorted(self.roles))})"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    """SHA-256(token) -> Principal. Lookup by digest: the raw tokens are not kept."""

    def __init__(self, principals: dict[bytes, Principal], source: str = "") -> None:
        self._by_digest = principals
        self.source = source

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, token: str) -> Principal | None:
        return self._by_digest.get(_digest(token))

    @classmethod
    def parse(cls, text: str, source: str = "<tokens>") -> TokenTable:
        principals: dict[bytes, Principal] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source} line {number}"
            parts = line.split()
            if len(parts) != 2:
                raise TokenFileError(
                    f"{where}: expected 'TOKEN ROLE[,ROLE...]' (2 fields separated by whitespace), "
                    f"got {len(parts)} field(s)"
                )
            token, role_text = parts
            if len(token) < MIN_TOKEN_LENGTH:
                raise TokenFileError(f"{where}: token shorter than {MIN_TOKEN_LENGTH} characters")
            if not token.isascii() or not token.isprintable():
                raise TokenFileError(f"{where}: token must be printable ASCII (it travels as gRPC metadata)")
            roles = [r for r in role_text.split(",") if r]
            unknown = sorted(set(roles) - set(ROLES))
            if not roles or unknown:
                raise TokenFileError(
                    f"{where}: unknown role(s) {unknown or role_text!r}; roles are {', '.join(ROLES)}"
                )
            digest = _digest(token)
            if digest in principals:
                raise TokenFileError(f"{where}: the same token is already on line {principals[digest].line}")
            principals[digest] = Principal(number, frozenset(roles))
        if not principals:
            raise TokenFileError(f"{source}: no tokens (one 'TOKEN ROLE[,ROLE...]' per line)")
        return cls(principals, source)

    @classmethod
    def read(cls, path: Path) -> TokenTable:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except OSError as exc:
            raise TokenFileError(f"{path}: cannot read the token file ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise TokenFileError(f"{path}: not a UTF-8 text file") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("token file %s is readable by group/others; chmod 600 it", path)
        return cls.parse(text, str(path))


def required_roles(method: str) -> frozenset[str] | None:
    """The roles that grant `method` (any one suffices); None: a public method (health)."""
    if method.startswith(PUBLIC_PREFIXES):
        return None
    best = max((p for p in METHOD_ROLES if method.startswith(p)), key=len, default=None)
    return METHOD_ROLES[best] if best is not None else ANY_ROLE


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of an ``authorization: Bearer TOKEN`` entry; "" for a malformed one; None when absent."""
    for key, value in metadata or ():
        if key.lower() != METADATA_KEY:
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        return token.strip() if scheme.lower() == SCHEME and token.strip() else ""
    return None


def _denied(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that only aborts with (code, details)."""

    async def abort(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, details)

    kw = dict(request_deserializer=None, response_serializer=None)  # bytes stay unparsed: nothing to read
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kw)
    return grpc.unary_unary_rpc_method_handler(abort, **kw)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Token check on every RPC but health. ``on_denied(method, code)`` is called for each refusal (metrics)."""

    def __init__(
        self, tokens: TokenTable, on_denied: Callable[[str, grpc.StatusCode], None] = lambda m, c: None
    ) -> None:
        self.tokens = tokens
        self.on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        needed = required_roles(method)
        if needed is None:
            return await continuation(details)
        token = bearer_token(details.invocation_metadata)
        if not token:
            problem = (
                "missing 'authorization: Bearer TOKEN' metadata"
                if token is None
                else "malformed authorization metadata: expected 'Bearer TOKEN'"
            )
            return await self._deny(continuation, details, grpc.StatusCode.UNAUTHENTICATED, problem, "")
        principal = self.tokens.lookup(token)
        if principal is None:
            return await self._deny(
                continuation, details, grpc.StatusCode.UNAUTHENTICATED, "unknown token", ""
            )
        if not principal.roles & needed:
            problem = f"this token has role(s) {', '.join(sorted(principal.roles))}; {method} needs " + (
                " or ".join(sorted(needed))
            )
            return await self._deny(
                continuation, details, grpc.StatusCode.PERMISSION_DENIED, problem, f" by {principal}"
            )
        return await continuation(details)

    async def _deny(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
        code: grpc.StatusCode,
        problem: str,
        who: str,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        log.info("%s %s%s: %s", code.name, details.method, who, problem)
        self.on_denied(details.method, code)
        if handler is None:  # unknown method: refuse before saying it does not exist
            handler = grpc.unary_unary_rpc_method_handler(lambda request, context: None)
        return _denied(handler, code, problem)
