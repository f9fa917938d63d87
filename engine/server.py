"""The request path: a lean Tornado ``HTTPServerConnectionDelegate``.

Tornado's ``RequestHandler`` costs ~60 µs a request before any work is done;
this delegate routes, enforces the body limit while reading, runs the
compiled pipeline and writes the response itself. Every exception ends as a
problem document: 4xx for bad input, 500 (with a run id that is also logged)
for anything unexpected — never a stack trace to a client.
"""
from __future__ import annotations

import asyncio
import email.utils
import math
import logging
import socket
import time
from urllib.parse import parse_qs

import orjson
from jmespath.exceptions import JMESPathError
from tornado import httputil
from tornado.httpserver import HTTPServer

from dsl.graph import NO_BODY
from dsl.templates import to_text
from dsl.verify import VerifyError
from dsl.runtime import Context, StepFailed, arun_steps, dumps_json, run_steps

from .compression import MIN_COMPRESS_BYTES, Decoder, choose_encoding, compress
from .formats import BodyError, parse_body
from .admin import authorized, handle_http
from .openapi import document as openapi_document
from .clients import client_address, https
from .durable import Outage, handle_durable, new_run_id, start_plain, unavailable
from .metrics import ADMIN, OFF, UNROUTED
from .ops import OPEN, State, answer
from .negotiation import forced, header_value, negotiated, problem_as
from .outbound import Outbound
from .queue import StoreUnavailable
from .problems import CONTENT_TYPE, problem
from .router import Router, shape
from . import history as run_history, tracing, ui

log = logging.getLogger("hookline")
MAX_DISCARD = 64 * 1024 * 1024   # after a refusal, read and drop up to this much of the body, then close
MAX_ERRORS = 50
ADMIN_MAX_BODY = 64 * 1024       # an admin request's body (the UI's forms) up to this size; more → 413
MAX_HEADERS = 100                # header fields per request; more → 431
MAX_LOGGED_PATH = 512            # characters of a path in an access line
IDLE_S = 60.0                    # a connection waiting this long for a request's headers is closed ...
BODY_S = 60.0                    # ... and one whose request body took this long (docs/security.md)
_JSON = "application/json"


class App(httputil.HTTPServerConnectionDelegate):
    """All pipelines of one process; ``start_request`` is called per request."""

    def __init__(self, pipelines, outbound=None, store=None, backlog=None, nudge=None, admin=None, trusted=(),
                 outage=None, metrics=OFF, access=None, history=None, idle_s=IDLE_S, body_s=BODY_S):
        self.metrics = metrics      # engine.metrics.Metrics, or OFF
        self.history = history      # engine.history.Recorder, or None: no run is recorded
        self.access = access        # engine.logs.AccessLog, or None: no access lines
        self.admin = admin          # (prefix, token) or None: the admin endpoints are off
        self.ui = ui.Console(admin[0], admin[1], store, lambda: self.pipelines) if admin is not None else None
        self.state = State(0, store, metrics)   # health and /metrics
        self.swap(pipelines)
        self.outbound = outbound or Outbound()
        self.store = store
        self.backlog = backlog      # engine.delivery.Backlog: 503 while it is full
        self.nudge = nudge          # called after a commit with jobs: wakes the delivery
        self.trusted = trusted      # networks whose X-Forwarded-For is believed
        # rate limits are shared through the store when it can (Redis), else kept per process
        self.shared_limits = store if hasattr(store, "take_token") else None
        self.refused = Refusals(metrics)
        self.outage = outage or Outage(metrics=metrics)    # store failures, logged at most every 10 s
        self.inflight = 0
        self.tasks: set = set()
        self._date, self._date_at = "", 0
        # the connections waiting for a request's headers or body: Tornado's server connection ->
        # its exchange (whose ``deadline`` sweep() looks at); removed at the body's end and when
        # the connection closes (Server.on_close)
        self.waiting: dict = {}
        self.idle_s, self.body_s = idle_s, body_s

    def swap(self, pipelines) -> None:
        """Serve ``pipelines`` from now on (``serve --reload``, SIGHUP). One assignment each: a
        request already routed keeps the pipeline it started with and finishes on it."""
        pipelines = tuple(pipelines)
        self.openapi = openapi_document(pipelines) if self.admin is not None else None
        pipelines = tracing.instrument(self.metrics.instrument(pipelines))   # steps timed (and traced)
        if self.history is not None:
            pipelines = tuple(run_history.instrument(pipelines))             # ... and recorded
        by_path: dict = {}
        for p in pipelines:
            by_path.setdefault(shape(p.path), {}).update({m: p for m in p.methods})
        self.pipelines = pipelines
        self.state.pipelines = len(pipelines)
        self.router = Router((path, _Route(methods)) for path, methods in by_path.items())

    def client_address(self, conn, headers) -> str | None:
        return client_address(conn, headers, self.trusted)

    def start_request(self, server_conn, request_conn):
        exchange = _Exchange(self, request_conn, server_conn)
        if server_conn is not None:          # None: engine/testing/inprocess.py, no sweep
            self.waiting[server_conn] = exchange
        return exchange

    def connection_closed(self, server_conn) -> None:
        """Tornado let go of a connection (Server.on_close): closed by either side, possibly
        while waiting for the next request, which Tornado does not tell that request's exchange."""
        self.waiting.pop(server_conn, None)

    async def sweep(self) -> None:
        """Close the connections that waited ``idle_s`` for a request's headers (an idle
        keep-alive connection, or headers sent slowly) or ``body_s`` for its body, until
        cancelled; looked over every second (or a quarter of the shorter timeout). Tornado's
        own ``idle_connection_timeout`` and ``body_timeout`` do the same with a timer, a future
        and a task for each request: ~5 % of a core-benchmark request's CPU
        (docs/performance.md), where this costs a dict entry set and removed."""
        every = min(1.0, self.idle_s / 4, self.body_s / 4)
        while True:
            await asyncio.sleep(every)
            now = time.perf_counter()
            for server_conn, exchange in [w for w in self.waiting.items() if w[1].deadline <= now]:
                del self.waiting[server_conn]
                try:
                    exchange.timed_out()
                except Exception:        # a bug: this connection stays open, the sweep goes on
                    log.exception("closing a timed-out connection failed")

    def date(self) -> str:
        now = int(time.time())
        if now != self._date_at:
            self._date, self._date_at = email.utils.formatdate(now, usegmt=True), now
        return self._date

    def served(self, exchange, status: int) -> None:
        """One answered request: its metrics and its access line."""
        seconds = time.perf_counter() - exchange.began
        pipeline = exchange.pipeline
        name = pipeline.name if pipeline is not None else ADMIN if exchange.admin_path is not None else UNROUTED
        method = exchange.start.method
        self.metrics.request(name, method, status, seconds)
        if pipeline is not None and pipeline.history is not None and self.history is not None:
            self.history.add(exchange, status, seconds)
        trace = tracing.served(exchange.span, status) if exchange.span is not None else ""
        if self.access is not None:
            self.access.request(name, pipeline.version if pipeline is not None else "", method,
                                exchange.start.path.partition("?")[0][:MAX_LOGGED_PATH], status,
                                seconds, exchange.run_id if pipeline is not None else "", exchange.delivery, trace)


class Server(HTTPServer):
    """Tornado's HTTPServer for an :class:`App`: the idle and body timeouts are the app's
    (``App.sweep``; Tornado's own cost a timer, a future and a task a request, and it always
    times the headers), and the app hears when a connection closes."""

    def on_close(self, server_conn) -> None:
        super().on_close(server_conn)
        self.request_callback.connection_closed(server_conn)


def server(app: App, **kwargs) -> Server:
    """A :class:`Server` for ``app`` (HTTPServer's keyword arguments, without the timeouts);
    start ``app.sweep()`` beside it."""
    served = Server(app, **kwargs)
    served.conn_params.header_timeout = served.conn_params.body_timeout = None
    return served


class Refusals:
    """How many requests each pipeline refused, by reason (signature checks, auth,
    allow_ips, rate limits, size, validation), since the process started; a refusal's
    log line carries its count, and each is counted in ``hookline_refusals_total``."""

    def __init__(self, metrics=OFF):
        self.counts: dict = {}
        self.metrics = metrics

    def count(self, pipeline: str, reason: str) -> int:
        key = (pipeline, reason)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.metrics.refused(pipeline, reason)
        return self.counts[key]


class _Route:
    """The pipelines at one path, by method; HEAD runs the GET pipeline."""

    __slots__ = ("by_method", "allow")

    def __init__(self, by_method: dict):
        self.by_method = dict(by_method)
        if "GET" in by_method:
            self.by_method["HEAD"] = by_method["GET"]
        self.allow = ", ".join(sorted({*self.by_method, "OPTIONS"}))


class _Exchange(httputil.HTTPMessageDelegate):
    """One request and its response."""

    __slots__ = ("app", "conn", "start", "headers", "pipeline", "params", "chunks", "size", "early",
                 "decoder", "raw", "admin_path", "rate_key", "lower", "began", "run_id", "delivery", "stored", "span",
                 "discarded", "spare", "ctx", "answer", "error", "server_conn", "deadline")

    def __init__(self, app: App, conn, server_conn=None):
        self.app, self.conn, self.server_conn = app, conn, server_conn
        self.pipeline = self.early = self.decoder = self.admin_path = self.rate_key = self.lower = None
        self.discarded = self.spare = None
        self.ctx = self.answer = self.error = None     # for the run history: see engine/history.py
        self.chunks, self.size, self.raw = [], 0, b""
        self.began, self.run_id, self.delivery = time.perf_counter(), new_run_id(), ""
        self.deadline = self.began + app.idle_s     # for the headers; then for the body (App.sweep)
        self.stored = False         # True once a durable commit stored this request
        self.span = None            # the server span (engine/tracing.py), when tracing is on

    def headers_received(self, start_line, headers):
        """Route and check what the headers allow; a refusal is answered here, before the
        body (see _refuse). A rate limit shared through the store returns an awaitable:
        Tornado waits for it before it sends ``100 Continue`` or reads the body."""
        # the request starts now (its duration in the access line, the metrics and the run history),
        # not when the connection began waiting for it: a keep-alive connection may wait long
        self.began = now = time.perf_counter()
        self.deadline = now + self.app.body_s
        self._check_headers(start_line, headers)
        if self.early is not None:
            self._refuse(before_body=True)
        elif self.rate_key is not None:
            return self._shared_limit()
        return None

    def _check_headers(self, start_line, headers):
        self.start, self.headers = start_line, headers
        if sum(1 for _ in headers.get_all()) > MAX_HEADERS:
            self.early = problem(431, "too-many-headers", "Request Header Fields Too Large",
                                 f"more than {MAX_HEADERS} header fields")
            return
        path = start_line.path.partition("?")[0]
        route, self.params = self.app.router.match(path)
        method = start_line.method
        admin = self.app.admin
        if route is None and admin is not None and path.startswith(admin[0] + "/"):
            self.admin_path = path[len(admin[0]):]
            self._check_length(headers, ADMIN_MAX_BODY)   # over ADMIN_MAX_BODY → 413
        elif route is None:
            self.early = problem(404, "not-found", "Not Found", f"no pipeline serves {path[:200]}")
        elif method in route.by_method:
            self.pipeline = route.by_method[method]
            self.params = dict(zip(self.pipeline.param_names, self.params))
            if self.pipeline.auth or self.pipeline.allow_ips or self.pipeline.rate_limit:
                self._check_access(headers)
            if self.early is None:
                self._check_length(headers, self.pipeline.max_body_bytes)
            if self.early is None:
                self._check_encoding(headers)
        elif method == "OPTIONS":
            self.early = (204, b"", {"Allow": route.allow, **_preflight(route, headers)})
        else:
            self.early = problem(405, "method-not-allowed", "Method Not Allowed",
                                 f"{method[:20]} is not allowed here; use {route.allow}") + ({"Allow": route.allow},)

    def _check_length(self, headers, limit: int):
        """413 from ``Content-Length`` over ``limit``, whatever its size (Tornado's own limit,
        which would answer a bare 400, is raised out of the way)."""
        length = _declared_length(headers)
        if length is not None and length > limit:
            self._too_large(limit)
        else:
            self.conn.set_max_body_size(max(limit, MAX_DISCARD))

    def _check_access(self, headers):
        """allow_ips, then rate_limit, then auth: refused before the body is read."""
        p = self.pipeline
        client = self.app.client_address(self.conn, headers)
        denied = p.allow_ips.check(client) if p.allow_ips else None
        if denied is None and p.rate_limit and self.app.shared_limits is not None:
            self.rate_key = self._rate_key(client)    # checked against Redis in finish()
        elif denied is None and p.rate_limit:
            denied = p.rate_limit.take(self._rate_key(client))
        if denied is None and p.auth:
            denied = p.auth.check(self._lower(), _query(self.start.path.partition("?")[2]))
        if denied is not None:
            count = self.app.refused.count(p.name, denied.slug)
            if denied.status != 429:
                log.warning("pipeline %s: %s refused: %s (%d so far)", p.name, client, denied.slug, count)
            self.early = problem(denied.status, denied.slug, denied.title, denied.detail) + (dict(denied.headers),)
            self.chunks = None

    def _lower(self) -> dict:
        """The request headers as expressions see them, built once per request."""
        if self.lower is None:
            self.lower = _headers(self.headers)
        return self.lower

    def _rate_key(self, client) -> str:
        key = self.pipeline.rate_limit.key
        if key is None:
            return client or ""
        doc = {"request": {"headers": self._lower(), "client": client}, "steps": {}}
        try:
            return to_text(key.search(doc))
        except (JMESPathError, RecursionError):
            return client or ""

    def _check_encoding(self, headers):
        """415 for a Content-Type the pipeline does not take (a body without one is read as
        JSON, so it is checked as ``application/json``); a decoder for Content-Encoding."""
        ctype = headers.get("Content-Type")
        accepted = self.pipeline.content_types
        if accepted and "*/*" not in accepted and (ctype is not None or _has_body(headers)):
            media = _JSON if ctype is None else ctype.partition(";")[0].strip().lower()
            if media not in accepted:
                listed = ", ".join(sorted(accepted))
                said = "" if ctype is not None else "a body without Content-Type is read as JSON; "
                self.early = problem(415, "unsupported-media-type", "Unsupported Media Type",
                                     f"{said}this endpoint accepts {listed}", accepted=sorted(accepted)) + (
                                         {"Accept-Post": listed},)
                return
        coding = headers.get("Content-Encoding")
        if coding is not None:
            try:
                self.decoder = Decoder(coding, self.pipeline.max_body_bytes)
            except BodyError as exc:
                self.early = exc.problem() + (dict(exc.headers),)

    def _too_large(self, limit):
        if self.pipeline is not None:
            self.app.refused.count(self.pipeline.name, "body-too-large")
        self.early = problem(413, "body-too-large", "Content Too Large",
                             f"the request body is larger than {limit} bytes", max_body_bytes=limit)
        self.chunks = None

    def data_received(self, chunk):
        if self.discarded is not None:   # answered already: the rest of the body is dropped
            self.discarded += len(chunk)
            if self.discarded > MAX_DISCARD:
                self._end()              # Tornado closes the connection
            return
        self.size += len(chunk)
        limit = self.pipeline.max_body_bytes if self.pipeline is not None else ADMIN_MAX_BODY
        if self.size > limit:
            self._too_large(limit)
        elif self.decoder is not None:
            try:
                self.decoder.feed(chunk)      # the decoded size is capped too: no bomb in memory
            except BodyError as exc:
                self.early, self.decoder = exc.problem() + (dict(exc.headers),), None
        else:
            self.chunks.append(chunk)
        if self.early is not None:
            self._refuse(before_body=False)

    def _refuse(self, before_body: bool):
        """Answer ``self.early`` now, before the rest of the body arrives (docs/http.md,
        "Refusals before the body"). After ``Expect: 100-continue`` the refusal is sent
        instead of ``100 Continue`` and the connection closed (the client has sent no
        body). Otherwise the rest of the body is read and dropped, up to MAX_DISCARD
        bytes, keeping the connection for the next request; a body declared larger is
        answered with ``Connection: close``, and the connection is closed once
        MAX_DISCARD bytes were dropped."""
        status, body, *extra = self.early
        headers = list(extra[0].items()) if extra else []
        expect = before_body and self.headers.get("Expect", "").lower() == "100-continue"
        length = _declared_length(self.headers)
        close = expect or (length is not None and length - self.size > MAX_DISCARD)
        if close:
            headers.append(("Connection", "close"))
        self.answer = (status, body, CONTENT_TYPE if body else None, headers)
        try:
            written = self._write(status, body, CONTENT_TYPE if body else None, headers)
        except Exception as exc:
            self._served(self._unsent(exc))
            self._end()
            return
        self._served(status)
        if expect:
            self._end()
        elif self.conn is not None:
            self.discarded = 0
            self.conn.set_max_body_size(1 << 62)     # dropped bytes are counted here instead
            if close and written is not None:        # then FIN: the client stops sending, and closes
                written.add_done_callback(lambda _, sock=self.conn.stream.socket: _shutdown_writes(sock))

    def finish(self):
        self.app.waiting.pop(self.server_conn, None)
        if self.discarded is not None:   # answered before the body ended; the rest was dropped
            self._end()
            return
        if self.admin_path is not None:
            task = asyncio.get_running_loop().create_task(self._admin())
            self.app.tasks.add(task)
            task.add_done_callback(self.app.tasks.discard)
        else:
            self.app.inflight += 1
            if not self._start():
                self.app.inflight -= 1
        if self.conn is not None:        # the answer comes later
            self._keep_socket()

    def _keep_socket(self):
        """A second descriptor of the socket, so that an answer that comes later still reaches
        a client that half-closed its side after sending the request (``shutdown(SHUT_WR)``):
        Tornado reads that as a closed connection and closes its own descriptor."""
        try:
            self.spare = self.conn.stream.socket.dup()
        except (AttributeError, OSError):
            self.spare = None

    async def _shared_limit(self):
        """The rate limit shared by every process on the Redis store, asked before the body
        is read; 429 is answered from here."""
        rule = self.pipeline.rate_limit
        try:
            wait = await self.app.shared_limits.take_token(f"{self.pipeline.name}:{self.rate_key}",
                                                           rule.rate, rule.burst)
        except Exception as exc:
            if isinstance(exc, StoreUnavailable):
                self.app.outage.note(exc, "rate limit check(s) made by this process alone")
            else:
                log.exception("shared rate limit unavailable; using this process's buckets")
            denied = rule.take(self.rate_key)
            wait = 0.0 if denied is None else float(dict(denied.headers)["Retry-After"])
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            self.app.refused.count(self.pipeline.name, "rate-limited")
            self.early = problem(429, "rate-limited", "Too Many Requests",
                                 f"more than {rule.rate:g} requests per second; retry after {seconds} s"
                                 ) + ({"Retry-After": str(seconds)},)
            self._refuse(before_body=True)

    def _start(self) -> bool:
        """Handle the request; True when an async task now owns it."""
        if tracing.TRACER is None:
            return self._started()
        self.span = tracing.server_span(self.pipeline, self.start.method, self.start.path.partition("?")[0],
                                        self._lower())
        with tracing.entered(self.span):       # current in the steps and in the tasks started here
            return self._started()

    def _started(self) -> bool:
        try:
            ctx = self._context()
            if ctx is None:
                return False
            if self.pipeline.durable:
                if self.pipeline.dedupe is None and not self.pipeline.is_async:
                    return start_plain(self, ctx)
                task = asyncio.get_running_loop().create_task(self._run_durable(ctx))
                self.app.tasks.add(task)
                task.add_done_callback(self._done)
                return True
            if self.pipeline.is_async:
                task = asyncio.get_running_loop().create_task(self._run_async(ctx))
                self.app.tasks.add(task)
                task.add_done_callback(self._done)
                return True
            run_steps(self.pipeline.steps, ctx)
            self._respond(ctx)
        except Exception as exc:
            self._fail(exc)
        return False

    def _done(self, task):
        self.app.tasks.discard(task)
        self.app.inflight -= 1

    async def _run_async(self, ctx):
        try:
            ctx.http = self.app.outbound
            await arun_steps(self.pipeline.steps, ctx)
            self._respond(ctx)
        except Exception as exc:
            self._fail(exc)

    async def _run_durable(self, ctx):
        try:
            await handle_durable(self, ctx)
        except Exception as exc:
            self._fail(exc)

    def _verified(self, headers) -> bool:
        """Check the signature over the raw body; answer 401 when it fails."""
        verifier = self.pipeline.verifier
        try:
            verifier.check(self.start.method, self.start.path, headers, self.raw, time.time())
        except VerifyError as exc:
            count = self.app.refused.count(self.pipeline.name, "signature-" + exc.reason)
            log.warning("pipeline %s: signature refused: %s (%d so far)", self.pipeline.name, exc.reason, count)
            self.send(*problem(401, "bad-signature", "Signature check failed", exc.detail, reason=exc.reason),
                      CONTENT_TYPE)
            return False
        return True

    async def _admin(self):
        try:
            if ui.owns(self.admin_path):
                await self._ui()
                return
            if self.start.method in ("GET", "HEAD") and await self._operations():
                return
            query = _query(self.start.path.partition("?")[2])
            try:
                status, value = await handle_http(self.app.store, self.app.admin[1], self.start.method,
                                                  self.admin_path, query, self.headers.get("Authorization"),
                                                  self.app.openapi)
            except StoreUnavailable as exc:
                self.app.outage.note(exc, "admin request(s) answered 503")
                self.send(*unavailable("the store cannot be reached; retry later"))
                return
            if status < 400:
                self.send(status, dumps_json(value), _JSON)
                return
            extra = [("WWW-Authenticate", 'Bearer realm="hookline-admin"')] if status == 401 else []
            slug = {401: "unauthorized", 400: "bad-query"}.get(status, "not-found")
            self.send(*problem(status, slug, value["title"], value["detail"]), CONTENT_TYPE, extra)
        except Exception as exc:
            self._fail(exc)

    async def _ui(self):
        """The admin UI (engine/ui): HTML pages behind a session cookie."""
        raw = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        request = ui.Request(self.start.method, self.admin_path, _query(self.start.path.partition("?")[2]), raw,
                             self.headers.get("Cookie"), https(self.conn, self.headers, self.app.trusted),
                             self.app.client_address(self.conn, self.headers))
        answer = await self.app.ui.handle(request)
        self.send(answer.status, answer.body, answer.content_type, answer.headers)

    async def _operations(self) -> bool:
        """Health probes (no token) and the metrics (token); False for other admin paths."""
        path, admin = self.admin_path, self.app.admin
        if path not in OPEN and path != "/metrics":
            return False
        if path not in OPEN and not authorized(self.headers.get("Authorization"), admin[1]):
            return False            # handle_http answers the 401
        found = await answer(self.app.state, path)
        if found is None:
            return False
        status, body, ctype = found
        self.send(status, body, ctype, [("Cache-Control", "no-store")])
        return True

    def _context(self):
        if not self._read_raw():
            return None
        headers = self._lower()
        if self.pipeline.verifier is not None and not self._verified(headers):
            return None
        body = self._body()
        if body is NO_BODY:
            return None
        target = self.start.path
        path, _, query = target.partition("?")
        request = {
            "method": self.start.method, "path": path, "params": self.params,
            "query": _query(query) if query else {},
            "headers": headers,
            "body": body,
        }
        if self.pipeline.checks and not self._validate(request):
            return None
        ctx = self.ctx = Context({"request": request, "steps": {}})
        if self.pipeline.history is not None and self.app.history is not None:
            ctx.trace = []
        return ctx

    def _read_raw(self) -> bool:
        """The whole (decoded) body into ``self.raw``; False when decoding failed."""
        if self.decoder is not None:
            try:
                self.raw = self.decoder.finish()
            except BodyError as exc:
                self.send(*exc.problem(), CONTENT_TYPE, exc.headers)
                return False
        else:
            chunks = self.chunks
            self.raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return True

    def _body(self):
        try:
            return parse_body(self.headers.get("Content-Type"), self.raw, self.pipeline.accept_raw)
        except BodyError as exc:
            self.send(*exc.problem(), CONTENT_TYPE, exc.headers)
        return NO_BODY

    def _validate(self, request) -> bool:
        errors = []
        for check in self.pipeline.checks:
            errors += check.errors(check.prepare(request[check.part]))
        if not errors:
            return True
        self.app.refused.count(self.pipeline.name, "validation")
        self.send(*problem(422, "validation", "Validation failed",
                           f"the request does not match the pipeline's schema ({_count(len(errors), 'error')})",
                           errors=errors[:MAX_ERRORS]), CONTENT_TYPE)
        return False

    def _respond(self, ctx):
        self.send(*self.response(ctx))

    def response(self, ctx, default=None):
        """The chosen response as ``(status, body, content type, headers)``."""
        respond = ctx.response or self.pipeline.respond
        if respond is None:
            return default or (204, b"", None, [])
        status, headers, value = respond.render(ctx)
        headers = [(name, header_value(text)) for name, text in headers]    # 422 now, not unsendable later
        if value is NO_BODY:
            return status, b"", None, headers
        if respond.content_type:
            return status, forced(value, respond.content_type), respond.content_type, headers
        headers.append(("Vary", "Accept"))
        accept = self.headers.get("Accept")
        if accept is None and respond.offered[0] == _JSON:
            return status, dumps_json(value), _JSON, headers
        body, ctype = negotiated(value, accept, respond.offered)
        return status, body, ctype, headers

    def _fail(self, exc):
        if self.stored:             # committed: the failure is ours, the request is stored
            self._served(self._unsent(exc))
            return
        run_id = self.run_id
        self.error = exc.detail if isinstance(exc, StepFailed) else f"unexpected failure ({type(exc).__name__})"
        if isinstance(exc, StepFailed):
            log.warning("run %s pipeline %s: %s", run_id, self.pipeline.name, exc.log)
            self.send(*problem(exc.status, _slug(exc.status), exc.title, exc.detail, run_id=run_id), CONTENT_TYPE)
            return
        log.error("run %s pipeline %s: unexpected failure", run_id, getattr(self.pipeline, "name", "?"),
                  exc_info=exc)
        self.send(*problem(500, "internal", "Internal Server Error",
                           "the request failed unexpectedly; quote the run id to the operator",
                           run_id=run_id), CONTENT_TYPE)

    def send(self, status, body: bytes, content_type, headers=()):
        """Write the answer and end the exchange; should writing fail (a bug), an answer all
        the same (``_unsent``)."""
        self.answer = (status, body, content_type, headers)
        if self.conn is not None or self.spare is not None:
            try:
                self._write(status, body, content_type, headers)
            except Exception as exc:
                status = self._unsent(exc)
            self._end()
        self._served(status)

    def _served(self, status: int) -> None:
        if self.began is not None:
            self.app.served(self, status)
            self.began = None
            # the history has built its row: let go of the request's objects now. Kept until the
            # exchange is dropped (the client's next request), a parsed body outlived the young
            # GC generation and every collection walked it again: +25 µs a core-benchmark
            # request even with the history off (docs/performance.md)
            self.ctx = self.answer = None

    def _unsent(self, exc) -> int:
        """The chosen answer cannot be written: a plain one instead, never silence; returns its
        status. After a commit that is ``202 {"id", "run_id"}``: the request is stored and its
        jobs will run, so an error status would only make the sender deliver it again. Else 500."""
        run_id = self.run_id
        log.error("run %s pipeline %s: the answer could not be written%s", run_id,
                  getattr(self.pipeline, "name", "?"), " (the request is stored)" if self.stored else "",
                  exc_info=exc)
        if self.stored:
            status, body, ctype = 202, orjson.dumps({"id": self.delivery or None, "run_id": run_id}), _JSON
        else:
            ctype = CONTENT_TYPE
            status, body = problem(500, "internal", "Internal Server Error", "the request failed unexpectedly; "
                                   "quote the run id to the operator", run_id=run_id)
        if self.conn is None:
            return status
        try:
            out = httputil.HTTPHeaders({"Content-Type": ctype, "Content-Length": str(len(body)),
                                        "Date": self.app.date()})
            self.conn.write_headers(httputil.ResponseStartLine("HTTP/1.1", status, httputil.responses[status]),
                                    out, None if self.start.method == "HEAD" else body)
            self.conn.finish()
        except Exception:               # the first attempt already wrote part of an answer
            log.error("run %s: no answer could be written; the connection is closed", run_id)
            self.conn.close()
        self.conn = None
        return status

    def _write(self, status, body: bytes, content_type, headers):
        if self.spare is not None and self.conn is not None and self.conn.stream.closed():
            self.conn = None     # Tornado took a half-close for a close: answer through the spare
        if self.conn is None and self.spare is None:
            return None
        cors = self.pipeline.cors if self.pipeline is not None else None
        if cors is not None:     # the answer depends on Origin whether or not this one is allowed
            origin = cors.allow(self.headers.get("Origin"))
            allow = [("Access-Control-Allow-Origin", origin)] if origin is not None else []
            headers = [*headers, *allow, ("Vary", "Origin")]
        if content_type == CONTENT_TYPE:
            headers = [*headers, ("Vary", "Accept")]
            if "Accept" in self.headers:
                body, content_type = problem_as(body, self.headers["Accept"])
        out = httputil.HTTPHeaders()
        if len(body) >= MIN_COMPRESS_BYTES:
            body = self._compressed(body, out)
        if content_type:
            out["Content-Type"] = content_type
        if status != 204 and status != 304:
            out["Content-Length"] = str(len(body))
        out["Date"] = self.app.date()
        for name, value in headers:
            out.add(name, header_value(value))
        reason = httputil.responses.get(status, "Unknown")
        if self.start.method == "HEAD" or status == 204 or status == 304:
            body = None
        if self.conn is None:
            self._write_spare(status, reason, out, body)
            return None
        return self.conn.write_headers(httputil.ResponseStartLine("HTTP/1.1", status, reason), out, body)

    def _end(self):
        if self.conn is not None:
            self.conn.finish()
            self.conn = None
        if self.spare is not None:
            self.spare.close()
            self.spare = None

    def _write_spare(self, status, reason, out, body):
        """The answer through the kept descriptor (Tornado's is closed: see _keep_socket),
        then close it."""
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{n}: {v}" for n, v in out.get_all()), "Connection: close"]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        spare, self.spare = self.spare, None
        task = asyncio.get_running_loop().create_task(_send_and_close(spare, data))
        self.app.tasks.add(task)
        task.add_done_callback(self.app.tasks.discard)

    def _compressed(self, body: bytes, out) -> bytes:
        out.add("Vary", "Accept-Encoding")
        coding = choose_encoding(self.headers.get("Accept-Encoding"))
        if coding is None:
            return body
        out["Content-Encoding"] = coding
        return compress(body, coding)

    def on_connection_close(self):
        self.app.waiting.pop(self.server_conn, None)
        self.conn = None

    def timed_out(self) -> None:
        """No request headers within ``idle_s``, or no whole body within ``body_s`` of them
        (App.sweep): the connection is closed, without an answer, as Tornado's own timeouts do."""
        conn = self.conn
        if conn is None:
            return
        if getattr(self, "start", None) is not None:
            log.info("closed the connection from %s: the request body took more than %g s",
                     getattr(conn.context, "remote_ip", "?"), self.app.body_s)
        conn.close()


def _shutdown_writes(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass                       # already closed


async def _send_and_close(sock, data: bytes) -> None:
    try:
        await asyncio.get_running_loop().sock_sendall(sock, data)
    except OSError:
        pass                       # the client closed both sides: nobody to answer
    finally:
        sock.close()


def _declared_length(headers) -> int | None:
    """``Content-Length`` as a number, None when absent or not plain digits (Tornado refuses those)."""
    length = headers.get("Content-Length")
    if length is not None and length.isascii() and length.isdigit():
        return int(length)
    return None


def _preflight(route, headers) -> dict:
    """CORS preflight headers when the requested method's pipeline allows the origin."""
    pipeline = route.by_method.get(headers.get("Access-Control-Request-Method", ""))
    cors = pipeline.cors if pipeline is not None else None
    origin = cors.allow(headers.get("Origin")) if cors is not None else None
    if origin is None:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": cors.methods,
            "Access-Control-Allow-Headers": cors.headers, "Access-Control-Max-Age": cors.max_age,
            "Vary": "Origin"}


def _has_body(headers) -> bool:
    return headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in headers


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _slug(status: int) -> str:
    return {502: "bad-gateway", 504: "gateway-timeout", 422: "expression-failed",
            406: "not-acceptable"}.get(status, "error")


def _headers(headers) -> dict:
    """Lower-case names; a header sent more than once becomes a list of its values."""
    out = {}
    for name, value in headers.get_all():
        name = name.lower()
        if name in out:
            prev = out[name]
            out[name] = prev + [value] if isinstance(prev, list) else [prev, value]
        else:
            out[name] = value
    return out


def _query(query: str) -> dict:
    """``a=1&b=2&b=3`` → ``{"a": "1", "b": ["2", "3"]}``."""
    out = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        out[key] = values[0] if len(values) == 1 else values
    return out
