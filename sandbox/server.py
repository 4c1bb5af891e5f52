"""HTTP plumbing: a threaded HTTP/1.1 server and the request pipeline.

Clients (``requests`` sessions, the official SDK's urllib3 pool) keep
connections alive, so the server speaks HTTP/1.1, always sends
``Content-Length`` (204 has no body and no length) and handles each
connection in its own thread. Request bodies may come with ``Content-Length``
or chunked, and may be gzip-encoded (Klaviyo's 5 MB cap counts the
decompressed size).

Each ``/api/`` request: the route is matched, a fault drawn
(:mod:`sandbox.faults`); a fault "before" is answered at once; otherwise the
checks of :func:`sandbox.pipeline.admit` run, then the operation's handler,
and a fault "after" replaces its answer. An unexpected exception in a handler
becomes a JSON:API 500, as a bug in Klaviyo would, and one ERROR line naming
the exception type and where it was raised (not its message, which might hold
an email).

``--latency-ms`` is slept before every ``/api/`` answer, outside any lock.
One DEBUG log line per request gives method, path without query string,
status and duration: never a key, never an email (filters with emails live in
query strings, which are not logged).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time
import traceback
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from sandbox.admin import AdminError, handle_admin, list_members, stats
from sandbox.clock import Clock
from sandbox.config import SandboxConfig
from sandbox.context import Answer, App, Context
from sandbox.errors import ApiError, payload_too_large, server_error
from sandbox.faults import GATEWAY_PAGE, Fault
from sandbox.jobs import MAX_PAYLOAD_BYTES, JobRunner
from sandbox.pipeline import HANDLERS, admit, build_app, match_route

log = logging.getLogger("sandbox")

JSON_API = "application/vnd.api+json"
_MAX_READ = 64 * 1024 * 1024


class _BodyTooLarge(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_open_connections(self) -> None:
        with self.sockets_lock:
            for sock in list(self.open_sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "klaviyo-sandbox"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    timeout = 120
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's
    # algorithm and the client's delayed ACK stall every keep-alive answer ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's own lines: they would include query strings."""

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _handle(self) -> None:
        started = time.perf_counter()
        split = urlsplit(self.path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        status = "dropped"
        try:
            body = self._read_body()
        except _BodyTooLarge:
            self.close_connection = True
            error = payload_too_large(MAX_PAYLOAD_BYTES)
            self._send_json(error.status, error.body(), JSON_API, error.headers)
            status = str(error.status)
        except (OSError, ValueError):
            self.close_connection = True
            return
        else:
            if path.startswith("/_sandbox/") or path == "/_sandbox":
                code, doc = handle_admin(self.server.app, self.command, path, query, body)
                self._send_json(code, doc, "application/json", {})
                status = str(code)
            else:
                status = self._api(path, split.query, query, body)
        log.debug(
            "%s %s %s %.1fms", self.command, path, status, (time.perf_counter() - started) * 1000
        )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > _MAX_READ:
                    raise _BodyTooLarge
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_READ:
                raise _BodyTooLarge
            body = self.rfile.read(length) if length > 0 else b""
        if body and self.headers.get("Content-Encoding", "").lower() == "gzip":
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = inflater.decompress(body, MAX_PAYLOAD_BYTES + 1)
        return body

    def _api(self, path: str, raw_query: str, query: dict[str, list[str]], body: bytes) -> str:
        """Run the pipeline; returns the status label for stats and logs."""
        app = self.server.app
        op_label = "unknown"
        fault: Fault | None = None
        headers: dict[str, str] = {}
        try:
            op, params = match_route(self.command, path)
        except ApiError as error:
            return self._answer(op_label, Answer(error.status, error.body()), headers)
        op_label = op.operation_id
        fault = app.faults.draw(op.method in ("POST", "DELETE"))
        if fault is not None and not fault.after_apply:
            return self._fault(op_label, fault)
        try:
            admission = admit(app, op, self.headers, query, body)
            headers.update(admission.headers)
            ctx = Context(
                app=app,
                op=op,
                account=admission.account,
                path_params=params,
                query=query,
                query_items=parse_qsl(raw_query, keep_blank_values=True),
                body=body,
                base_url=self._base_url(),
                path=path.rstrip("/"),
            )
            answer = HANDLERS[op.operation_id](ctx)
        except ApiError as error:
            answer = Answer(error.status, error.body(), error.headers)
        except Exception as exc:  # noqa: BLE001 - any bug must still answer, as a 500
            # Type and place only, not log.exception: the message of, say, a
            # KeyError could be an email.
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(  # noqa: TRY400
                "sandbox bug in %s: %s at %s:%s",
                op_label,
                type(exc).__name__,
                where.filename,
                where.lineno,
            )
            failure = server_error(500)
            answer = Answer(failure.status, failure.body(), {})
        if fault is not None:
            return self._fault(op_label, fault)
        return self._answer(op_label, answer, headers)

    def _answer(self, op_label: str, answer: Answer, headers: dict[str, str]) -> str:
        headers.update(answer.headers)
        self._delay()
        # Count before sending: a client that reads the stats right after its
        # answer must find that answer counted.
        self.server.app.stats.record_answer(op_label, str(answer.status))
        self._send_json(answer.status, answer.document, JSON_API, headers)
        return str(answer.status)

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        if host:
            return f"http://{host}"
        address, port = self.server.server_address[:2]
        return f"http://{address!s}:{port}"

    def _delay(self) -> None:
        latency = self.server.app.config.latency_ms
        if latency > 0:
            time.sleep(latency / 1000)

    def _fault(self, op_label: str, fault: Fault) -> str:
        stats_ = self.server.app.stats
        stats_.record_fault(fault.label)
        self._delay()
        if fault.status is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                # Linger 0: closing sends a TCP RST, "connection reset by peer".
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            stats_.record_answer(op_label, "dropped")
            return "dropped"
        stats_.record_answer(op_label, str(fault.status))
        if fault.status == 502:
            self._send_bytes(502, GATEWAY_PAGE, "text/html", {})
        else:
            error = server_error(fault.status)
            self._send_json(error.status, error.body(), JSON_API, {})
        return str(fault.status)

    def _send_json(
        self, status: int, document: dict[str, Any] | None, media: str, headers: dict[str, str]
    ) -> None:
        payload = None
        if document is not None:
            payload = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        self._send_bytes(status, payload, media, headers)

    def _send_bytes(
        self, status: int, payload: bytes | None, media: str, headers: dict[str, str]
    ) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if status != 204:
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(payload or b"")))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if payload and status != 204:
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class SandboxServer:
    """A running sandbox: ``with SandboxServer(config) as server: server.base_url``."""

    def __init__(
        self,
        config: SandboxConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.app = build_app(config, clock)
        self._httpd = _Server((host, port), self.app)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._runner = JobRunner(self.app.processor)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> SandboxServer:
        """Serve in background threads; returns self."""
        if self._thread is None:
            self._runner.start()
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="sandbox-http",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the job thread."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
            self._runner.stop()
        self._httpd.close_open_connections()
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def account_id(self, api_key: str) -> str:
        """The account id of a configured key (for tests; never sent over HTTP)."""
        account = self.app.store.account_for_key(api_key)
        if account is None:
            raise KeyError("unknown API key")
        return account.id

    def stats(self) -> dict[str, Any]:
        """What ``GET /_sandbox/stats`` answers."""
        return stats(self.app)

    def list_emails(self, list_id: str, account_id: str | None = None) -> list[str]:
        """Every member's email, in joining order (``account_id`` only if several)."""
        try:
            emails: list[str] = list_members(self.app, list_id, account_id)["emails"]
        except AdminError as exc:
            raise KeyError(exc.message) from None
        return emails
