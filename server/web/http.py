"""The read-only HTTP server of the leaderboard pages (stdlib `http.server`, one thread per request).

Routes (GET and HEAD only):

| path | content |
|---|---|
| ``/`` | every leaderboard (tracks main, bonus x tiers live, final) |
| ``/submissions/<id>`` | one submission's report: scores, per-mouse / per-family bars, per-neuron plots |
| ``/models`` | mice of the public folder, with links to their released (train, oracle) trials |
| ``/models/<mouse>/trials/<i>`` | predicted vs recorded traces on a released trial; 403 for a test-tier trial |
| ``/api/leaderboard/<track>/<tier>`` | the leaderboard as JSON (rows as `LeaderboardRow.to_dict`) |
| ``/api/submissions/<id>`` | one submission as JSON (`SubmissionRecord.to_dict`) |
| ``/insilico`` | the models of an in-silico results folder (``--insilico DIR``, server/web/insilico.py) |
| ``/insilico/<label>`` | one model's in-silico report: tuning, receptive fields, MEIs, agreement with truth |
| ``/healthz`` | ``ok`` |

Pages read only the scores database (`ScoreStore` + `server.scoring.neuron_scores`), for traces the public
folder and the server's own PredictClip, and the in-silico results folder; never the truth folder. Without a
scores database (``web --insilico DIR`` alone) the leaderboard pages say so.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from models.benchmark import TEST_ROUNDS, TRACKS
from server.scoring import neuron_scores
from server.scoring.db import ScoreStore
from server.web import insilico, pages
from server.web.traces import HiddenTier, TraceSource

log = logging.getLogger(__name__)
# Pages are static HTML + inline SVG: no script may run, nothing is fetched from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_LEADERBOARD_ROWS = 200
NO_STORE = "No scoring database: these pages were started without --db."


class WebServer:
    """``start()`` binds (port 0 = any free port) and serves in a daemon thread; ``stop()`` shuts down."""

    def __init__(
        self,
        store: ScoreStore | None,
        host: str = "127.0.0.1",
        port: int = 8080,
        traces: TraceSource | None = None,
        insilico_results: insilico.InsilicoResults | None = None,
    ) -> None:
        self.store = store
        self.traces = traces
        self.insilico = insilico_results
        self.host, self.port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        handler = type(
            "Handler", (_Handler,), {"store": self.store, "traces": self.traces, "insilico": self.insilico}
        )
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="web", daemon=True)
        self._thread.start()
        log.info("leaderboard pages on http://%s:%d/", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _Handler(BaseHTTPRequestHandler):
    store: ScoreStore | None
    traces: TraceSource | None
    insilico: insilico.InsilicoResults | None
    server_version = "sensorium-serve-web"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def do_GET(self) -> None:
        self._respond(head=False)

    def _respond(self, head: bool) -> None:
        try:
            status, content_type, body = self._route(urlsplit(self.path).path)
        except Exception:  # a bug must not kill the thread silently; the client gets a 500
            log.exception("web page %s failed", self.path)
            status, content_type, body = (
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                b"internal error (logged on the server)\n",
            )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, path: str) -> tuple[HTTPStatus, str, bytes]:
        parts = [unquote(p) for p in path.split("/") if p]
        html = "text/html; charset=utf-8"
        if parts[:1] == ["insilico"]:
            return self._insilico(parts[1:])
        if parts == ["healthz"]:
            return HTTPStatus.OK, "text/plain; charset=utf-8", b"ok\n"
        if self.store is None and parts[:1] != ["models"]:
            return HTTPStatus.NOT_FOUND, html, pages.not_found_page(NO_STORE).encode()
        if not parts:
            boards = {
                (track, tier): self.store.leaderboard(track, tier, MAX_LEADERBOARD_ROWS)
                for track in TRACKS
                for tier in TEST_ROUNDS
            }
            return HTTPStatus.OK, html, pages.index_page(boards).encode()
        if len(parts) == 2 and parts[0] == "submissions":
            record = self.store.get(parts[1])
            if record is None:
                return HTTPStatus.NOT_FOUND, html, pages.not_found_page("No such submission.").encode()
            neurons = neuron_scores.load(self.store.engine, record.submission_id)
            return HTTPStatus.OK, html, pages.submission_page(record, neurons).encode()
        if parts == ["models"]:
            trials = None
            if self.traces is not None:
                trials = {m: self.traces.public_trials(m) for m in self.traces.mice()}
            return HTTPStatus.OK, html, pages.models_page(trials).encode()
        if len(parts) == 4 and parts[0] == "models" and parts[2] == "trials":
            if self.traces is None or not parts[3].isdigit():
                return HTTPStatus.NOT_FOUND, html, pages.not_found_page("No such trial.").encode()
            try:
                trace = self.traces.trace(parts[1], int(parts[3]))
            except HiddenTier as exc:
                return HTTPStatus.FORBIDDEN, html, pages.not_found_page(str(exc)).encode()
            except KeyError as exc:
                return HTTPStatus.NOT_FOUND, html, pages.not_found_page(str(exc.args[0])).encode()
            return HTTPStatus.OK, html, pages.trace_page(trace).encode()
        if len(parts) == 4 and parts[:2] == ["api", "leaderboard"]:
            track, tier = parts[2], parts[3]
            if track not in TRACKS or tier not in TEST_ROUNDS:
                return _json(
                    HTTPStatus.NOT_FOUND,
                    {"error": f"track must be one of {TRACKS}, tier one of {TEST_ROUNDS}"},
                )
            rows = self.store.leaderboard(track, tier, MAX_LEADERBOARD_ROWS)
            return _json(HTTPStatus.OK, {"track": track, "tier": tier, "rows": [r.to_dict() for r in rows]})
        if len(parts) == 3 and parts[:2] == ["api", "submissions"]:
            record = self.store.get(parts[2])
            if record is None:
                return _json(HTTPStatus.NOT_FOUND, {"error": "no such submission"})
            return _json(HTTPStatus.OK, record.to_dict())
        return HTTPStatus.NOT_FOUND, html, pages.not_found_page(f"Nothing at {path}.").encode()

    def _insilico(self, parts: list[str]) -> tuple[HTTPStatus, str, bytes]:
        html = "text/html; charset=utf-8"
        if not parts:
            return HTTPStatus.OK, html, insilico.index_page(self.insilico).encode()
        if len(parts) == 1 and self.insilico is not None:
            try:
                report = self.insilico.report(parts[0])
            except KeyError as exc:
                return HTTPStatus.NOT_FOUND, html, pages.not_found_page(str(exc.args[0])).encode()
            return HTTPStatus.OK, html, insilico.report_page(report).encode()
        return HTTPStatus.NOT_FOUND, html, pages.not_found_page("No such in-silico result.").encode()


def _json(status: HTTPStatus, payload: Any) -> tuple[HTTPStatus, str, bytes]:
    return status, "application/json", json.dumps(pages.json_ready(payload), indent=1).encode()
