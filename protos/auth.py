"""The bearer-token part of the wire contract, shared by clients and the server's own command-line tools:
``authorization: Bearer TOKEN`` metadata (checked by server/security/auth.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

TOKEN_ENV: Final = "SENSORIUM_SERVE_TOKEN"


def auth_metadata(
    token: str | None = None, metadata: Sequence[tuple[str, str]] = ()
) -> tuple[tuple[str, str], ...]:
    """`metadata` plus ``authorization: Bearer TOKEN`` for `token` (else $SENSORIUM_SERVE_TOKEN, if set),
    unless `metadata` already carries an authorization entry."""
    token = token or os.environ.get(TOKEN_ENV, "").strip()
    if not token or any(key.lower() == "authorization" for key, _ in metadata):
        return tuple(metadata)
    return (*metadata, ("authorization", f"Bearer {token}"))
