"""Run history: what each request did, recorded in the store, off the request path.

    hookline runs list --pipeline orders        GET <admin prefix>/runs?pipeline=orders
    hookline runs show RUN_ID                   GET <admin prefix>/runs/RUN_ID

A pipeline records unless ``receive.history: false`` (dsl/spec.py). Once a request is
answered, :meth:`Recorder.add` builds its row — headers redacted, body cut, step
outputs serialised, secrets masked — adds it to its pipeline's ring of the last
``keep`` rows, and counts the request in the current minute's aggregate.
:meth:`Recorder.run`, a background task of each process, writes what waits every
``FLUSH_S`` seconds in one batch (``store.record_runs``), with the bounds (``keep`` runs
per pipeline, ``max_age``). A run pushed out of its ring before a flush was past the
bound already: the store would have deleted it at once, and no reader could have seen
it (so a pipeline answering more than ``keep`` requests a second writes only the last
``keep`` of them each second). A store that fails loses that batch (logged), never a request.

Never recorded: the values of Authorization, Cookie, Proxy-Authorization, every
verify preset's signature header, the pipeline's API key header and the headers it
lists (``redact_headers``) — shown as ``[redacted]`` — and, anywhere in a record, those
values and the ``${env:}``/``${file:}`` values the pipeline was compiled with.

Reading (the CLI, the admin endpoints and the admin UI): :func:`list_runs`,
:func:`get_run`, :func:`stats`.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from bisect import bisect_left
from dataclasses import replace

import orjson

from dsl import strict_json
from dsl.runtime import CallError, dumps_json

from .queue import StoreUnavailable
from .queue.runs import RunBatch, add_counts

log = logging.getLogger("hookline")
REDACTED = "[redacted]"
FLUSH_S = 1.0             # each process writes what it recorded this often ...
MINUTES_S = 1.0           # the per-minute aggregates are written at most this often (and at the end)
MAX_BUFFER = 5000         # runs waiting for a flush, all pipelines: ... or once half as many wait; when
                          # all wait (the store is slow or down), a new run drops its pipeline's oldest
FLUSH_AT = 128            # ... or once this many wait of a pipeline whose keep is MAX_BUFFER // 2 or more
DROP_LOG_S = 10.0         # a line about dropped runs at most this often
BUCKETS_MS = (0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)   # then +Inf
SUMMARY = ("run_id", "pipeline", "version", "at", "method", "path", "status", "duration_ms", "delivery", "error")
MIN_MASKED = 6            # a redacted value shorter than this is not searched for elsewhere in a record


# --- on the request path -----------------------------------------------------------------------

def instrument(pipelines) -> list:
    """The pipelines whose runs are recorded get each step timed into ``ctx.trace`` (and each
    outbound call of a step recorded); the others are returned as they are."""
    return [replace(p, steps=tuple(_Traced(s) for s in p.steps)) if p.history is not None else p
            for p in pipelines]


class _Traced:
    """A step that appends ``(id, kind, seconds)`` to ``ctx.trace`` when the request is recorded."""

    __slots__ = ("step", "id", "is_async", "kind")

    def __init__(self, step):
        self.step, self.id, self.is_async = step, step.id, step.is_async
        self.kind = _kind(step)

    def run(self, ctx):
        if ctx.trace is None:
            return self.step.run(ctx)
        start = time.perf_counter()
        try:
            self.step.run(ctx)
        finally:
            ctx.trace.append((self.id, self.kind, time.perf_counter() - start))

    async def arun(self, ctx):
        trace = ctx.trace
        if trace is None:
            return await self.step.arun(ctx)
        start, http = time.perf_counter(), ctx.http
        ctx.http = Watched(http, trace, self.id) if http is not None else None
        try:
            await self.step.arun(ctx)
        finally:
            ctx.http = http
            trace.append((self.id, self.kind, time.perf_counter() - start))

    def __getattr__(self, name):
        return getattr(self.step, name)


def _kind(step) -> str:
    """The step's kind (transform, route, call) under the metrics' and tracing's wrappers."""
    while hasattr(type(step), "__getattr__") and "step" in getattr(type(step), "__slots__", ()):
        step = step.step
    return type(step).__name__.lower()


class Watched:
    """The outbound client as one recorded step sees it: each call is appended to ``trace``
    as ``("call", step, method, url, status or None, seconds, error or None)``."""

    __slots__ = ("http", "trace", "step")

    def __init__(self, http, trace, step):
        self.http, self.trace, self.step = http, trace, step

    async def request(self, method, url, *args, **kwargs):
        start = time.perf_counter()
        try:
            answer = await self.http.request(method, url, *args, **kwargs)
        except CallError as exc:
            self.trace.append(("call", self.step, method, url, None, time.perf_counter() - start, exc.detail))
            raise
        self.trace.append(("call", self.step, method, url, answer[0], time.perf_counter() - start, None))
        return answer

    def __getattr__(self, name):
        return getattr(self.http, name)


class Recorder:
    """One per process: the buffer, the minute aggregates and their flusher."""

    def __init__(self, store, max_buffer: int = MAX_BUFFER, flush_s: float = FLUSH_S, clock=time.time,
                 outage=None, metrics=None):
        self.store, self.flush_s, self.clock, self.outage = store, flush_s, clock, outage
        self.metrics = metrics          # engine.metrics: hookline_history_dropped_total
        self.max_buffer = max_buffer
        self.rings: dict = {}           # pipeline name -> _Ring: its rows waiting for the next flush
        self.waiting = 0                # rows in all the rings
        self.attempts: collections.deque = collections.deque(maxlen=max_buffer)
        self.minutes: dict = {}
        self.dropped = 0                # runs and attempts dropped from a full buffer, since start
        self.wake = asyncio.Event()     # set when max_buffer // 2 runs wait, or FLUSH_AT of an early ring (_Ring)
        self._logged_drops, self._drop_logged_at = 0, 0.0
        self._minutes_at = 0.0          # when the per-minute aggregates were last handed to the store

    def add(self, exchange, status: int, seconds: float) -> None:
        """One answered request of a recorded pipeline (``App.served``, after the answer was
        written): counted in its minute, and its record built while its data is still in the
        CPU's caches — one compact row waits for the flush, not the request's objects. The row
        is stored under the time the request finished (``now``): the stores keep and list the
        last ``keep`` runs to finish, the ones the ring holds (its record says when it began)."""
        pipeline, now = exchange.pipeline, self.clock()
        key = (pipeline.name, int(now // 60))
        counts = self.minutes.get(key)
        if counts is None:
            counts = self.minutes[key] = [0] * (3 + len(BUCKETS_MS))
        counts[0] += 1
        if status >= 500 or exchange.error is not None:
            counts[1] += 1
        counts[2 + bisect_left(BUCKETS_MS, seconds * 1000)] += 1
        try:
            row = (_plain_row(pipeline, exchange, now, status, seconds)
                   or _run_row(pipeline, exchange, now, status, seconds))
        except Exception:            # a bug: the run is not recorded, the request is not affected
            log.exception("run history: run %s not recorded", exchange.run_id)
            return
        ring = self.rings.get(pipeline.name)
        if ring is None or ring.history is not pipeline.history:
            ring = self._ring(pipeline)
        rows = ring.rows
        if len(rows) == rows.maxlen:           # its oldest is pushed out: past the bound (or, when
            if ring.capped:                    # keep is more than max_buffer, dropped: counted)
                self._dropped()
        elif self.waiting >= self.max_buffer:  # the store is slow: the pipeline's oldest is dropped
            if rows:
                rows.popleft()
                self._dropped()
            else:
                self._dropped()
                return
        else:
            self.waiting += 1
            if self.waiting == self.max_buffer // 2 or (ring.early and len(rows) == FLUSH_AT - 1):
                self.wake.set()
        rows.append(row)

    def _ring(self, pipeline):
        """The pipeline's ring, made or, its ``receive.history`` changed by a reload, remade.
        Until the next flush it holds at least as many rows as before: a request begun before
        a reload ends with the old version, and neither version's bound may cost the other's
        runs (the store applies the last one written)."""
        old = self.rings.get(pipeline.name)
        held = old.rows.maxlen if old is not None and old.rows else 0
        ring = self.rings[pipeline.name] = _Ring(pipeline.history, self.max_buffer, held)
        if old is not None:
            ring.rows.extend(old.rows)
        return ring

    def attempt(self, job, history, outcome: str, status, seconds: float, error: str | None) -> None:
        """One delivery attempt of ``job`` (engine/delivery.py): done, retry or dead."""
        if len(self.attempts) == self.attempts.maxlen:
            self._dropped()
        self.attempts.append((job.id, job.delivery, job.pipeline, job.branch, job.attempt + 1, self.clock(),
                              outcome, status, seconds, error, history))

    def _dropped(self) -> None:
        self.dropped += 1
        if self.metrics is not None:
            self.metrics.dropped_run()

    async def run(self) -> None:
        """Flush every ``flush_s`` seconds, or when woken, until cancelled; then once more."""
        try:
            while True:
                try:
                    await asyncio.wait_for(self.wake.wait(), self.flush_s)
                except asyncio.TimeoutError:
                    pass
                self.wake.clear()
                try:
                    await self.flush()
                except Exception:        # a bug: this batch is lost, the next flush comes all the same
                    log.exception("run history: a flush failed")
        finally:
            if self.waiting or self.minutes or self.attempts:
                await asyncio.shield(self.flush(final=True))

    async def flush(self, final: bool = False) -> None:
        """Write the records waiting in one batch; a failed write is logged. The per-minute
        aggregates go with it at most every MINUTES_S (each write of them is a commit of
        their own in SQLite: ~2 % of a core-benchmark request's CPU at every flush), with
        the attempts, and at the last flush."""
        self._log_drops()
        batch = RunBatch()
        if final or self.attempts or self.clock() - self._minutes_at >= MINUTES_S:
            batch.minutes, self.minutes, self._minutes_at = self.minutes, {}, self.clock()
        bounds = {}
        for name, ring in list(self.rings.items()):
            if ring.rows:
                batch.runs += ring.rows
                bounds[name] = ring.history
                if ring.rows.maxlen == ring.size:
                    ring.rows.clear()
                else:                    # grown across a reload: its own keep again
                    self.rings[name] = _Ring(ring.history, self.max_buffer)
        self.waiting = 0
        while self.attempts:
            entry = self.attempts.popleft()
            batch.attempts.append(_attempt_row(entry))
            bounds[entry[2]] = entry[10]
        now = self.clock()
        batch.bounds = [(name, h.keep, now - h.max_age_s) for name, h in bounds.items()]
        if not (batch.runs or batch.attempts or batch.minutes):
            return
        try:
            await self.store.record_runs(batch)
        except StoreUnavailable as exc:
            if self.outage is not None:
                self.outage.note(exc, "run history batch(es) not recorded")
            else:
                log.warning("run history: a batch was not recorded: %s", exc)
        except Exception:            # a bug: the history loses this batch, nothing else
            log.exception("run history: %d run(s) and %d attempt(s) not recorded", len(batch.runs),
                          len(batch.attempts))

    def _log_drops(self) -> None:
        now = time.monotonic()
        if self.dropped > self._logged_drops and now - self._drop_logged_at >= DROP_LOG_S:
            log.warning("run history: %d run(s) dropped so far, the buffer (%d) was full; the store is "
                        "slow or unavailable", self.dropped, self.max_buffer)
            self._logged_drops, self._drop_logged_at = self.dropped, now


class _Ring:
    """A pipeline's rows waiting for the next flush: its last ``keep`` runs, or ``max_buffer``
    when keep is more (``capped``: then a run pushed out is a run lost, and counted). A ring
    whose keep is half of max_buffer or more could never push a run out before the flush that
    half of max_buffer waiting brings: it wakes the flush as soon as FLUSH_AT of its rows wait
    (``early``) — fewer rows held, each written while still in the CPU's caches (with keep
    10,000, flushes of ~2,500 rows cost the core benchmark ~4 % of its req/s more than
    flushes of 128: docs/performance.md, "Run history")."""

    __slots__ = ("history", "rows", "size", "capped", "early")

    def __init__(self, history, max_buffer: int, held: int = 0):
        self.history, self.capped = history, history.keep > max_buffer
        self.early = history.keep >= max_buffer // 2
        self.size = min(history.keep, max_buffer)
        self.rows: collections.deque = collections.deque(maxlen=max(self.size, min(held, max_buffer)))


# --- building a record (Recorder.add, once the answer is written) -----------------------------------

PLAIN = "hookline-run/plain-1"     # the first item of a record stored as a JSON array: see _plain_row


def _plain_row(pipeline, exchange, now: float, status: int, seconds: float) -> tuple | None:
    """The row of a run with nothing to redact, mask or cut out — no secret in the pipeline, no
    redacted header sent, no step or call, no Set-Cookie answered, no 5xx without an error, no
    query-string key — or None. Its record is the request's parts as they are, one JSON array
    written by one orjson call; :func:`_expanded` turns it into the record :func:`_run_row`
    writes when the run is read. Building that record here cost ~4 % of a core-benchmark
    request's CPU (docs/performance.md, "Run history")."""
    history, answer, ctx, headers = pipeline.history, exchange.answer, exchange.ctx, exchange.lower
    if (not history.plain or headers is None or (ctx is not None and ctx.trace)
            or (status >= 500 and exchange.error is None) or not history.redact.isdisjoint(headers)):
        return None
    cut, raw, start = history.body_bytes, exchange.raw, exchange.start
    if answer is None:
        answered, response = None, b""
    else:
        _, response, ctype, answer_headers = answer
        for name, _value in answer_headers:
            if name.lower() == "set-cookie":
                return None
        answered = (ctype, answer_headers, len(response) > cut)
        if len(response) > cut:
            response = response[:cut]
    record = dumps_json((PLAIN, exchange.run_id, pipeline.name, pipeline.version, now - seconds, start.method, start.path,
                         status, seconds, exchange.delivery, exchange.error, headers, len(raw) > cut, answered))
    return exchange.run_id, pipeline.name, now, exchange.delivery, record, raw if len(raw) <= cut else raw[:cut], response


def _expanded(packed: list) -> dict:
    """The record of a plain row (:func:`_plain_row`), as :func:`_run_row` writes it."""
    (_, run_id, pipeline, version, at, method, path, status, seconds, delivery, error, headers, body_truncated,
     answered) = packed
    if answered is None:
        response = {"status": status, "headers": {}, "body_truncated": False}
    else:
        ctype, answer_headers, truncated = answered
        recorded = {"content-type": ctype} if ctype else {}
        for name, value in answer_headers:
            recorded[name.lower()] = value
        response = {"status": status, "headers": recorded, "body_truncated": truncated}
    return {"run_id": run_id, "pipeline": pipeline, "version": version, "at": at, "method": method, "path": path,
            "status": status, "duration_ms": _ms(seconds), "delivery": delivery, "error": error,
            "headers": headers, "body_truncated": body_truncated, "steps": [], "calls": [], "response": response}


def _run_row(pipeline, exchange, now: float, status: int, seconds: float) -> tuple:
    """``(run id, pipeline, finished at, delivery id, record JSON, request body, response body)``,
    the bodies cut and stored beside the record rather than escaped into it (cheaper to write)."""
    history, start, answer, error = pipeline.history, exchange.start, exchange.answer, exchange.error
    cut, path = history.body_bytes, start.path
    headers, hidden = _headers(exchange, history.redact)
    if pipeline.auth is not None and pipeline.auth.scheme == "query":
        hidden += _query_secret(path, pipeline.auth.name)
    if error is None and status >= 500:
        error = _problem_detail(answer)
    ctx = exchange.ctx
    trace = ctx.trace if ctx is not None else None
    raw = exchange.raw
    body = raw if len(raw) <= cut else raw[:cut]
    response, response_body = _response(answer, status, cut)
    record = {"run_id": exchange.run_id, "pipeline": pipeline.name, "version": pipeline.version, "at": now - seconds,
              "method": start.method, "path": path, "status": status, "duration_ms": round(seconds * 1000, 3),
              "delivery": exchange.delivery, "error": error, "headers": headers,
              "body_truncated": len(raw) > cut, "steps": _steps(ctx.steps, trace, cut) if trace else [],
              "calls": _calls(trace) if trace else [], "response": response}
    secrets = hidden + history.secrets if hidden else history.secrets
    blob = dumps_json(record)         # orjson, or the standard library for integers past 64 bits
    if secrets:
        blob, body, response_body = (_masked(record, blob, secrets), _masked_bytes(body, secrets),
                                     _masked_bytes(response_body, secrets))
    return exchange.run_id, pipeline.name, now, exchange.delivery, blob, body, response_body


def _headers(exchange, redact) -> tuple[dict, tuple]:
    """The request headers as recorded (lower-case names, a repeated one as a list: as
    expressions see them) and the values redacted (to be masked wherever else they appear)."""
    headers = exchange.lower
    if headers is None:               # refused before the pipeline read them
        from .server import _headers as request_headers
        headers = exchange.lower = request_headers(exchange.headers)
    named = redact & headers.keys()
    if not named:
        return headers, ()
    headers, hidden = dict(headers), []
    for name in named:
        values = headers[name]
        for value in values if isinstance(values, list) else (values,):
            hidden += _secret_parts(value)
        headers[name] = REDACTED if isinstance(values, str) else [REDACTED] * len(values)
    return headers, tuple(hidden)


def _secret_parts(value: str) -> list:
    """A credential and, for ``Scheme token``, the token alone (a step may have copied it)."""
    parts = [value.strip(), value.strip().partition(" ")[2].strip()]
    return [p for p in parts if len(p) >= MIN_MASKED]


def _query_secret(path: str, name: str) -> tuple:
    from urllib.parse import parse_qsl
    return tuple(v for k, v in parse_qsl(path.partition("?")[2], keep_blank_values=True)
                 if k == name and len(v) >= MIN_MASKED)


def _steps(steps, trace, cut: int) -> list:
    if not trace:
        return []
    out = []
    for entry in trace:
        if entry[0] == "call":
            continue
        step_id, kind, seconds = entry
        output, truncated = _cut_value(steps.get(step_id) if steps is not None else None, cut)
        out.append({"id": step_id, "kind": kind, "duration_ms": _ms(seconds), "output": output,
                    "output_truncated": truncated})
    return out


def _cut_value(value, cut: int):
    """The value itself when its JSON fits in ``cut`` bytes, else its JSON text cut there."""
    try:
        text = dumps_json(value)
    except Exception:          # StepFailed: too deep to write; the record says so
        return "(not recordable)", True
    if len(text) <= cut:
        return value, False
    return text[:cut].decode("utf-8", "replace"), True


def _calls(trace) -> list:
    return [{"step": step, "method": method, "url": _without_userinfo(url), "status": status,
             "duration_ms": _ms(seconds), "error": error}
            for _, step, method, url, status, seconds, error in (e for e in trace or () if e[0] == "call")]


def _without_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    return scheme + sep + authority.rpartition("@")[2] + slash + tail


def _response(answer, status: int, cut: int) -> tuple[dict, bytes]:
    """The response as recorded, and its body cut."""
    if answer is None:
        return {"status": status, "headers": {}, "body_truncated": False}, b""
    _, body, ctype, headers = answer
    recorded = {"content-type": ctype} if ctype else {}
    for name, value in headers:
        name = name.lower()
        recorded[name] = REDACTED if name == "set-cookie" else value
    return ({"status": status, "headers": recorded, "body_truncated": len(body) > cut},
            body if len(body) <= cut else body[:cut])


def _problem_detail(answer):
    if answer is None:
        return None
    try:
        return orjson.loads(answer[1]).get("detail")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None


def _masked(record: dict, blob: bytes, secrets) -> bytes:
    """The record's JSON with every secret replaced by ``[redacted]`` wherever it occurs:
    walked (every string and key) only when a secret is in the text."""
    found = [s for s in secrets if orjson.dumps(s)[1:-1] in blob]
    if not found:
        return blob
    return dumps_json(_mask(record, found))


def _masked_bytes(body: bytes, secrets) -> bytes:
    body = bytes(body)
    for secret in secrets:
        raw = secret.encode()
        if raw in body:
            body = body.replace(raw, REDACTED.encode())
    return body


def _mask(value, secrets):
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_mask(k, secrets): _mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, secrets) for v in value]
    return value


def _attempt_row(entry) -> tuple:
    job, delivery, pipeline, branch, attempt, at, outcome, status, seconds, error, history = entry
    record = {"job": job, "branch": branch, "attempt": attempt, "at": at, "outcome": outcome,
              "status": status, "duration_ms": _ms(seconds), "error": error}
    return job, delivery, pipeline, at, _masked(record, dumps_json(record), history.secrets)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- reading ---------------------------------------------------------------------------------

async def list_runs(store, pipeline: str | None = None, limit: int = 50, q: str | None = None) -> list[dict]:
    """Summaries of the newest runs (of ``pipeline``); ``q`` matches a run id, a delivery id
    or any recorded (not redacted) header value exactly."""
    records = [_unpacked(r, bodies=False) for r in await store.runs(pipeline, limit, q or None)]
    if q:
        records = [r for r in records if _matches(r, q)][:limit]
    return [{k: r.get(k) for k in SUMMARY} for r in records]


def _matches(record: dict, q: str) -> bool:
    if q in (record["run_id"], record["delivery"]):
        return True
    values = record["headers"].values()
    return any(q == v or (isinstance(v, list) and q in v) for v in values) and q != REDACTED


async def get_run(store, run_id: str) -> dict | None:
    """The whole record of one run, with the jobs of its delivery and their attempts."""
    from .admin import job_view
    raw = await store.run(run_id)
    if raw is None:
        return None
    record = _unpacked(raw)
    record["jobs"] = []
    if record["delivery"]:
        attempts: dict = {}
        for row in await store.run_attempts(record["delivery"]):
            attempt = orjson.loads(row)
            attempts.setdefault(attempt.pop("job"), []).append(attempt)
        for job in await store.find(record["delivery"]):
            view = job_view(job)
            view["attempts"] = [{k: a[k] for k in ("attempt", "at", "outcome", "status", "duration_ms", "error")}
                                for a in attempts.get(job.id, [])]
            record["jobs"].append(view)
    return record


def _unpacked(stored: tuple, bodies=True) -> dict:
    """A record from the store's ``(record JSON, request body, response body)``."""
    record, body, response = stored
    if record[:1] == b"[":            # a plain row: no integer past 64 bits in it
        return _with_bodies(_expanded(orjson.loads(record)), body, response, bodies)
    if not bodies:                    # a summary: orjson alone (an integer past 64 bits becomes a float)
        return orjson.loads(record)
    try:
        record = strict_json.loads(record, "the stored run", strict_json.MAX_STORED_DEPTH)
    except strict_json.JSONRefused:   # too deep for exact integers: read as orjson reads it
        record = orjson.loads(record)
    return _with_bodies(record, body, response, True)


def _with_bodies(record: dict, body: bytes, response: bytes, bodies: bool) -> dict:
    if not bodies:
        return record
    record["body"] = body.decode("utf-8", "replace")
    record["response"]["body"] = response.decode("utf-8", "replace")
    return record


async def stats(store, since_s: float = 3600) -> dict[str, dict]:
    """Per pipeline over the last ``since_s`` seconds (whole minutes): requests, errors (status
    >= 500 or an error), p50 and p99 in ms (from the fixed buckets: ``None`` without requests)."""
    since = int((time.time() - since_s) // 60) + 1
    totals: dict = {}
    for pipeline, _minute, counts in await store.run_minutes(since):
        totals[pipeline] = add_counts(totals.get(pipeline, []), counts)
    return {name: {"requests": c[0], "errors": c[1], "p50_ms": quantile(c[2:], 0.5),
                   "p99_ms": quantile(c[2:], 0.99)} for name, c in sorted(totals.items())}


def quantile(buckets, q: float) -> float | None:
    """The ``q`` quantile of a bucketed histogram (:data:`BUCKETS_MS`, then +Inf), interpolated
    linearly inside its bucket, as Prometheus' ``histogram_quantile`` does.

    >>> quantile([0, 4] + [0] * 15, 0.5)
    0.375
    >>> quantile([0] * 17, 0.5) is None
    True
    """
    total = sum(buckets)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            if i >= len(BUCKETS_MS):
                return float(BUCKETS_MS[-1])
            low = BUCKETS_MS[i - 1] if i else 0.0
            return round(low + (BUCKETS_MS[i] - low) * (rank - seen) / n, 3)
        seen += n
    return float(BUCKETS_MS[-1])


def line(run: dict) -> str:
    """One greppable line per run for ``hookline runs list``."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run["at"]))
    return (f"{run['run_id']}\t{at}\t{run['pipeline']}\t{run['method']}\t{run['path']}\t{run['status']}\t"
            f"{run['duration_ms']:.1f}ms\tdelivery={run['delivery'] or '-'}")
