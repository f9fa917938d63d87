"""The request path of a durable pipeline (async branches or dedupe):
answer a repeated delivery from its first response, refuse work under
backpressure, run the sync steps, persist the branch jobs (and the response,
for dedupe) in one commit, and only then answer.

    202 {"id": "<delivery id>"} + Location: /_hookline/deliveries/<id>
    when the pipeline has no respond of its own.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time

import orjson

from dsl.runtime import arun_steps, dumps_json, evaluate, run_steps, truthy
from dsl.templates import to_text

from . import tracing
from .problems import CONTENT_TYPE, problem
from .queue import Job, StoreUnavailable

RETRY_AFTER_S = "5"
OUTAGE_LOG_S = 10.0   # while the store fails, a WARNING at most this often
REOPEN_S = 1.0        # a store that could not be opened at start-up is tried again this often
log = logging.getLogger("hookline")
_PRIVATE_HEADERS = ("authorization", "cookie", "proxy-authorization")


def start_plain(exchange, ctx) -> bool:
    """The common case — async branches, no dedupe, synchronous steps — without a task:
    run the steps, hand the jobs to the store, answer from the commit's callback.
    True when the answer now comes from that callback."""
    if _backlog_full(exchange):
        _send(exchange, unavailable("the delivery backlog is full; retry later"))
        return False
    run_steps(exchange.pipeline.steps, ctx)
    jobs, answer = _jobs_and_answer(exchange, ctx)
    if not jobs:                 # no branch chosen: nothing to persist
        _send(exchange, answer)
        return False
    try:
        committed = exchange.app.store.enqueue_soon(jobs, source=exchange.pipeline.source)
    except StoreUnavailable as exc:
        exchange.app.outage.note(exc, REFUSED)
        _send(exchange, unavailable("the request could not be stored; retry later"))
        return False
    committed.add_done_callback(lambda future: _committed(exchange, answer, future))
    return True


def _committed(exchange, answer, future) -> None:
    app = exchange.app
    app.inflight -= 1
    try:
        future.result()
    except StoreUnavailable as exc:
        app.outage.note(exc, REFUSED)
        _send(exchange, unavailable("the request could not be stored; retry later"))
        return
    except asyncio.CancelledError:     # the store is closing
        _send(exchange, unavailable("the request could not be stored; retry later"))
        return
    except Exception as exc:
        exchange._fail(exc)
        return
    exchange.stored = True          # from here on, whatever fails, the answer is not an error
    _send(exchange, answer)
    if app.outage.down:
        app.outage.recovered()
    _nudged(app, jobs=True)


class Outage:
    """Store failures in the log without flooding it: the first at once, then a line at
    most every ``OUTAGE_LOG_S`` seconds counting, by kind, those in between; once a
    write succeeds again, one line saying so. One per process (``App.outage``, shared
    with its backlog check and delivery). The text is the store's error
    (``StoreUnavailable``: never a password or a payload); clients get only a 503.

    >>> class Log(list):
    ...     def warning(self, text, *args): self.append(text % args)
    ...     info = warning
    >>> outage = Outage(Log())
    >>> for what in ("request(s) answered 503", "backlog check(s)", "request(s) answered 503"):
    ...     outage.note(StoreUnavailable("sqlite: database or disk is full"), what)
    >>> outage.down, outage.recovered(), outage.down
    (True, None, False)
    >>> outage.log
    ['store unavailable: sqlite: database or disk is full (since the last such line: 1 request(s) answered 503)', 'store available again (since the last such line: 1 backlog check(s), 1 request(s) answered 503)']
    """

    def __init__(self, logger=None, metrics=None):
        self.log = log if logger is None else logger
        self.metrics = metrics      # engine.metrics: each failure counts in hookline_store_errors_total
        self.down, self.last, self.counts = False, -math.inf, {}

    def note(self, exc, what: str) -> None:
        self.down = True
        if self.metrics is not None:
            self.metrics.store_error()
        self.counts[what] = self.counts.get(what, 0) + 1
        now = time.monotonic()
        if now - self.last >= OUTAGE_LOG_S:
            self.log.warning("store unavailable: %s (since the last such line: %s)", exc, self._counted())
            self.last, self.counts = now, {}

    def starting(self, exc, then: str) -> None:
        """The store could not be opened at start-up: one line, and the process runs on
        (``then``: what happens meanwhile); the next failures are counted as usual."""
        self.log.warning("store unavailable at start-up: %s; %s until it answers (trying again every %g s)",
                         exc, then, REOPEN_S)
        self.down, self.last = True, time.monotonic()

    def recovered(self) -> None:
        """A write went through: after an outage, say so (callers check ``down`` first, so
        this costs one attribute read per request)."""
        self.log.info("store available again (since the last such line: %s)", self._counted() or "nothing failed")
        self.down, self.last, self.counts = False, -math.inf, {}

    def _counted(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in self.counts.items())


REFUSED = "request(s) answered 503"


def new_id() -> str:
    """32 hex digits: milliseconds since 1970 (12), then 80 random bits (20), as in a
    UUIDv7. Ids sort by creation time, so a store's index grows at one end instead of
    touching a random page per insert. The random bits come from ``os.urandom``, read
    4,000 bytes at a time (a system call per id showed as 5 % of a busy HTTP worker's
    samples); a forked worker starts with none of its parent's. Not thread-safe: call it
    from the event loop's thread, as the request path does.

    >>> a, b = new_id(), new_id()
    >>> len(a), a[:12] <= b[:12], a != b
    (32, True, True)
    """
    return f"{time.time_ns() // 1_000_000:012x}{_random_hex(10)}"


def new_run_id() -> str:
    """16 random hex digits naming one request in the log and in its problem document,
    from the same buffer as :func:`new_id`.

    >>> len(new_run_id()), new_run_id() != new_run_id()
    (16, True)
    """
    return _random_hex(8)


def _random_hex(n: int) -> str:
    global _random, _taken
    if _taken + n > len(_random):
        _random, _taken = os.urandom(4000), 0
    start = _taken
    _taken += n
    return _random[start:_taken].hex()


def _forget_random() -> None:
    global _random, _taken
    _random, _taken = b"", 0


_random, _taken = b"", 0
os.register_at_fork(after_in_child=_forget_random)


async def handle_durable(exchange, ctx) -> None:
    """A delivery id (``receive.dedupe`` or a verify preset's) is claimed in the store
    before any step runs, so copies of one delivery run once wherever they arrive:
    a repeat gets the stored first response, a copy arriving while the first still
    runs waits for it (in this process without asking the store again)."""
    key = _dedupe_key(exchange.pipeline, ctx, exchange.raw)
    if key is None:
        await _handle(exchange, ctx, None)
        return
    running = _RUNNING.get(key)
    if running is not None:
        exchange.app.metrics.dedupe_hit(exchange.pipeline.name)
        exchange.send(*await asyncio.shield(running))
        return
    future = _RUNNING[key] = asyncio.get_running_loop().create_future()
    try:
        future.set_result(await _claimed(exchange, ctx, key))
    except BaseException:
        future.set_result(unavailable("the first copy of this delivery failed; retry later"))
        raise
    finally:
        _RUNNING.pop(key, None)


_RUNNING: dict = {}   # dedupe key -> future answer of the copy being handled in this process
CLAIM_TTL_S = 60.0    # a claim outlives a crashed first copy by at most this long
WAIT_S = 10.0         # a copy waits this long for the first copy's answer, then 503
POLL_S = 0.05


async def _claimed(exchange, ctx, key):
    """Claim the delivery id, then run; or answer as the copy holding the claim does."""
    store = exchange.app.store
    try:
        stored = await store.claim(key, CLAIM_TTL_S)
    except StoreUnavailable as exc:
        exchange.app.outage.note(exc, REFUSED)
        return _send(exchange, unavailable("the request could not be checked for duplicates; retry later"))
    if stored is not None:
        exchange.app.metrics.dedupe_hit(exchange.pipeline.name)
        return _send(exchange, _decode(stored) if stored else await _first_answer(exchange.app, key))
    committed = False
    try:
        answer, committed = await _handle(exchange, ctx, key)
        return answer
    finally:
        if not committed:
            await _unclaim(store, key)


async def _first_answer(app, key):
    """Wait for the copy that holds the claim (another process) to store its answer."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        try:
            stored = await app.store.dedupe_get(key)
        except StoreUnavailable as exc:
            app.outage.note(exc, REFUSED)
            break
        if stored:
            return _decode(stored)
        if stored is None:          # the first copy failed and let go: the sender may retry
            break
    return unavailable("another copy of this delivery is still being handled; retry later")


async def _unclaim(store, key):
    try:
        await store.unclaim(key)
    except StoreUnavailable:
        pass                        # the claim expires after CLAIM_TTL_S


async def _handle(exchange, ctx, key):
    """Run the steps, store jobs (and the answer, for ``key``), answer; returns
    ``(answer, committed)`` — the answer sent, and whether the store kept it."""
    app, pipeline = exchange.app, exchange.pipeline
    if pipeline.branches and _backlog_full(exchange):
        return _send(exchange, unavailable("the delivery backlog is full; retry later")), False
    if pipeline.is_async:
        ctx.http = app.outbound
        await arun_steps(pipeline.steps, ctx)
    else:
        run_steps(pipeline.steps, ctx)
    jobs, answer = _jobs_and_answer(exchange, ctx)
    dedupe = (key, _encode(answer), pipeline.dedupe.ttl_s) if key is not None else None
    try:
        stored = await app.store.enqueue(jobs, dedupe=dedupe, source=pipeline.source)
    except StoreUnavailable as exc:
        exchange.app.outage.note(exc, REFUSED)
        return _send(exchange, unavailable("the request could not be stored; retry later")), False
    exchange.stored = True
    if app.outage.down:
        app.outage.recovered()
    if stored is False:          # the claim had expired and another copy committed: answer as it did
        app.metrics.dedupe_hit(pipeline.name)
        return _send(exchange, await _stored(app, key) or answer), True
    _nudged(app, jobs)
    return _send(exchange, answer), True


def _backlog_full(exchange) -> bool:
    backlog = exchange.app.backlog
    return backlog is not None and backlog.full


def _jobs_and_answer(exchange, ctx):
    """The branch jobs of this request and the answer to send once they are stored: the
    pipeline's own response, else ``202 {"id"}`` when it has branches — with
    ``"id": null`` and no ``Location`` when no branch's ``when`` held (nothing is stored,
    so there is no delivery to look up)."""
    delivery = new_id()
    jobs = _jobs(exchange.pipeline, ctx, delivery)
    if jobs:
        exchange.delivery = delivery         # for the access line
    default = None
    if exchange.pipeline.branches:
        default = _accepted(delivery if jobs else None, exchange.app.admin)
    return jobs, exchange.response(ctx, default=default)


def _nudged(app, jobs) -> None:
    """Wake the delivery after a commit that stored jobs."""
    if jobs and app.nudge is not None:
        app.nudge()


def _send(exchange, answer):
    exchange.send(*answer)
    return answer


def _dedupe_key(pipeline, ctx, raw):
    if pipeline.dedupe is None:
        return None
    if pipeline.dedupe.key is None:
        value = pipeline.verifier.delivery_id(ctx.data["request"]["headers"], raw)
    else:
        value = evaluate(pipeline.dedupe.key, ctx, "receive.dedupe")
    return None if value is None else f"{pipeline.name}:{to_text(value)}"


async def _stored(app, key):
    try:
        raw = await app.store.dedupe_get(key)
    except StoreUnavailable as exc:
        app.outage.note(exc, REFUSED)
        return unavailable("the request could not be checked for duplicates; retry later")
    return _decode(raw) if raw else None


def _decode(raw: bytes):
    status, body, ctype, headers = orjson.loads(raw)
    return status, body.encode(), ctype, [tuple(h) for h in headers]


def _encode(answer) -> bytes:
    status, body, ctype, headers = answer
    return orjson.dumps([status, body.decode(), ctype, list(headers)])


def _jobs(pipeline, ctx, delivery):
    """One job per branch whose ``when`` holds, all sharing one persisted context."""
    chosen = [b for b in pipeline.branches if b.when is None or truthy(evaluate(b.when, ctx, f"async '{b.id}'"))]
    if not chosen:
        return []
    now = time.time()
    payload = dumps_json(tracing.stamp(_persisted(ctx.data, pipeline)))   # exact beyond 64 bits, like the sync path
    return [Job(id=new_id(), delivery=delivery, pipeline=pipeline.name, branch=b.id,
                payload=payload, attempt=0, created_at=now, due_at=now, state="pending", version=pipeline.version)
            for b in chosen]


def _persisted(data, pipeline):
    """The context as stored: only what the branches read (``Pipeline.persist``), and
    never the credentials the sender used (the usual headers, and the pipeline's API
    key header or query parameter)."""
    kept = pipeline.persist.select(data) if pipeline.persist is not None else data
    auth, request = pipeline.auth, kept.get("request")
    if request is not None:
        request = dict(request)
        if "headers" in request:
            private = _private_headers(auth)
            request["headers"] = {k: v for k, v in request["headers"].items() if k not in private}
        if auth is not None and auth.scheme == "query" and "query" in request:
            request["query"] = {k: v for k, v in request["query"].items() if k != auth.name}
        kept = {**kept, "request": request}
    return _with_paths({**kept, "steps": kept.get("steps", {})}, pipeline.persist)


@functools.lru_cache(maxsize=None)
def _private_headers(auth) -> frozenset:
    """The request headers a job never keeps, worked out once per pipeline's ``auth``."""
    return frozenset(_PRIVATE_HEADERS + ((auth.name,) if auth is not None and auth.scheme == "header" else ()))


def _with_paths(document: dict, persist) -> dict:
    """Record what was kept (``_kept``), so that a later version of the pipeline whose
    branch reads more can tell (engine/delivery.py) instead of reading null."""
    if persist is not None and not persist.everything:
        document[KEPT] = persist.paths
    return document


KEPT = "_kept"   # the stored document's list of kept paths; removed before the branch runs


def _accepted(delivery, admin):
    """202 with the delivery id; Location points at the admin endpoint when it is on
    (otherwise: ``hookline deliveries show ID``)."""
    body = orjson.dumps({"id": delivery})
    location = [("Location", f"{admin[0]}/deliveries/{delivery}")] if admin and delivery else []
    return 202, body, "application/json", location


def unavailable(detail):
    """503 + Retry-After: a state the sender should retry through (store down, backlog full)."""
    status, body = problem(503, "unavailable", "Service Unavailable", detail)
    return status, body, CONTENT_TYPE, [("Retry-After", RETRY_AFTER_S)]
