"""Prometheus metrics, summed over every process of one ``hookline serve``.

Metrics are on when the admin endpoints are (``--admin-prefix``: read at
``<prefix>/metrics`` with the admin token) or ``--metrics-port`` is given;
otherwise :data:`OFF` stands in and nothing is counted.

How the processes add up: prometheus-client's multiprocess mode. ``serve``
makes a private directory (:func:`private_dir`, removed when it exits) and
every worker — HTTP and delivery — writes its counters and histograms to
memory-mapped files there (one per process and metric type). Whichever HTTP
worker answers a scrape reads all the files and sums them; a worker that was
restarted leaves its file behind, so counters never go backwards. Gauges that
describe the store or the configuration (``hookline_jobs``,
``hookline_oldest_pending_job_age_seconds``, ``hookline_pipelines_loaded``)
are not per process: the scraping worker reads them fresh (:func:`exposition`).

Per request the cost is a few dictionary lookups and additions to plain
numbers: every label set known at load time (a pipeline's duration
histogram, each step's) is bound once by :meth:`Metrics.instrument`, the rest
(status codes, hosts, refusal reasons) on first use, and kept. Each process
writes its numbers to its files once a second (:meth:`Metrics.run`), so a
scrape may miss the last second of the other processes (never its own).

    >>> unrouted = method_label("BREW")
    >>> unrouted, method_label("POST")
    ('other', 'POST')
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from bisect import bisect_left
from dataclasses import replace
from pathlib import Path

from dsl.runtime import CallError

UNROUTED = "_unrouted"   # the pipeline label of a request no pipeline serves (404, a bad header block)
ADMIN = "_admin"         # ... of the admin endpoints (metrics, health, deliveries)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STEP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_S = 1.0            # each process writes its counts to the shared files this often
ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "hookline-metrics-"   # + the serving process's pid + a random part, in the temporary directory


def method_label(method: str) -> str:
    """The method as a label: one of :data:`METHODS`, else ``other`` (a client cannot make
    new series by inventing methods)."""
    return method if method in METHODS else "other"


def private_dir() -> str:
    """A new, empty directory for the processes' metric files (see the module docstring),
    named after this process; first, the directories of servers that were killed before
    they could remove theirs (their process is gone) are removed."""
    for path in Path(tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        pid = path.name[len(DIR_PREFIX):].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # another user's process
        return True
    return True


def remove_dir(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def enable(directory: str) -> None:
    """Write every metric made from now on (in this process and the ones it forks) to
    ``directory``. prometheus-client picks its value class when imported, from the
    environment; setting it here as well makes the order of imports irrelevant."""
    os.environ[ENV] = directory
    from prometheus_client import values
    values.ValueClass = values.MultiProcessValue()


class Metrics:
    """The metric families of one process (made after :func:`enable`).

    The request path adds to plain numbers in this process (:class:`_Count`,
    :class:`_Timing`: ~0.1 µs where prometheus-client's memory-mapped values take
    ~1–2 µs an update); :meth:`flush` writes them to this process's files, once a second
    from :meth:`run`, and in the worker answering a scrape just before it reads the files."""

    def __init__(self):
        from prometheus_client import Counter, Histogram
        c = lambda name, text, labels=(): Counter(name, text, labels, registry=None)  # noqa: E731
        h = lambda name, text, labels, buckets: Histogram(name, text, labels, registry=None,  # noqa: E731
                                                          buckets=buckets)
        self.requests = c("hookline_requests", "HTTP requests answered", ("pipeline", "method", "status"))
        self.request_seconds = h("hookline_request_duration_seconds", "Time from the request's headers to its "
                                 "response", ("pipeline",), REQUEST_BUCKETS)
        self.step_seconds = h("hookline_step_duration_seconds", "Time one step took", ("pipeline", "step"),
                              STEP_BUCKETS)
        self.calls = c("hookline_calls", "Outbound calls of call steps, by destination host:port and outcome "
                       "(2xx..5xx, or timeout, unreachable, too-large, forbidden)",
                       ("pipeline", "step", "host", "outcome"))
        self.deliveries = c("hookline_deliveries", "Async branch delivery attempts by outcome (done, retry, "
                            "dead)", ("pipeline", "branch", "outcome"))
        self.attempt_seconds = h("hookline_delivery_attempt_seconds", "Time one delivery attempt took",
                                 ("pipeline", "branch"), REQUEST_BUCKETS)
        self.refusals = c("hookline_refusals", "Requests refused before any step ran, by reason",
                          ("pipeline", "reason"))
        self.dedupe_hits = c("hookline_dedupe_hits", "Repeated deliveries answered from the store",
                             ("pipeline",))
        self.store_errors = c("hookline_store_errors", "Store operations that failed (store unreachable, "
                              "disk full)")
        self.history_dropped = c("hookline_history_dropped", "Runs and delivery attempts the run history "
                                 "dropped because its buffer was full (the store was slow or unavailable)")
        self._kept: dict = {}       # (family, label values) -> _Count or _Timing
        self._requests: dict = {}   # (pipeline, method, status) -> _Count: the hottest lookup, flat
        self._store_errors = self._count(self.store_errors)
        self._history_dropped = self._count(self.history_dropped)

    def _count(self, family, *labels) -> _Count:
        key = (family, labels)
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = _Count(family.labels(*labels) if labels else family)
        return kept

    def _timing(self, family, *labels) -> _Timing:
        key = (family, labels)
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = _Timing(family.labels(*labels))
        return kept

    def request(self, pipeline: str, method: str, status: int, seconds: float) -> None:
        """One answered request (``pipeline`` may be :data:`UNROUTED` or :data:`ADMIN`)."""
        key = (pipeline, method_label(method), status)     # bounded, whatever methods clients invent
        count = self._requests.get(key)
        if count is None:
            count = self._requests[key] = self._count(self.requests, pipeline, key[1], str(status))
        count.n += 1
        self._timing(self.request_seconds, pipeline).observe(seconds)

    def refused(self, pipeline: str, reason: str) -> None:
        self._count(self.refusals, pipeline, reason).n += 1

    def dedupe_hit(self, pipeline: str) -> None:
        self._count(self.dedupe_hits, pipeline).n += 1

    def store_error(self) -> None:
        self._store_errors.n += 1

    def dropped_run(self) -> None:
        self._history_dropped.n += 1

    def delivered(self, pipeline: str, branch: str, outcome: str, seconds: float) -> None:
        """One delivery attempt: ``outcome`` is done, retry or dead."""
        self._count(self.deliveries, pipeline, branch, outcome).n += 1
        self._timing(self.attempt_seconds, pipeline, branch).observe(seconds)

    def flush(self) -> None:
        """Write what this process counted since the last flush to its files."""
        for kept in list(self._kept.values()):
            kept.flush()

    async def run(self, every_s: float = FLUSH_S) -> None:
        """Flush every ``every_s`` seconds, until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(every_s)
                self.flush()
        finally:
            self.flush()

    def instrument(self, pipelines) -> list:
        """The pipelines with every step (sync and async branches') timed, and calls counted."""
        return [self._instrumented(p) for p in pipelines]

    def _instrumented(self, p):
        """Also makes the series each pipeline will have (at 0), so that they exist before the
        first event: a rate over a series that appears late misses its first increase."""
        self._timing(self.request_seconds, p.name)
        if p.dedupe is not None:
            self._count(self.dedupe_hits, p.name)
        for b in p.branches:
            self._timing(self.attempt_seconds, p.name, b.id)
            for outcome in ("done", "retry", "dead"):
                self._count(self.deliveries, p.name, b.id, outcome)
        branches = tuple(replace(b, steps=self._timed(p.name, b.steps)) for b in p.branches)
        return replace(p, steps=self._timed(p.name, p.steps), branches=branches)

    def _timed(self, pipeline: str, steps) -> tuple:
        return tuple(_Timed(s, self._timing(self.step_seconds, pipeline, s.id), _Calls(self, pipeline, s.id))
                     for s in steps)


class _Count:
    """A counter's increments in this process (``n += 1``), until :meth:`flush`."""

    __slots__ = ("child", "n")

    def __init__(self, child):
        self.child, self.n = child, 0       # labels() made the series, at 0, in this process's file

    def flush(self) -> None:
        if self.n:
            n, self.n = self.n, 0
            self.child.inc(n)


class _Timing:
    """A histogram's observations in this process: their sum and a count per bucket, until
    :meth:`flush` adds them to the child's own values (``_sum``, ``_buckets``: attributes
    prometheus-client has kept since its first releases; tests/test_metrics.py checks the
    counts come out exact)."""

    __slots__ = ("child", "bounds", "sum", "counts")

    def __init__(self, child):
        self.child, self.bounds = child, tuple(child._upper_bounds)      # ends with +Inf
        self.sum, self.counts = 0.0, [0] * len(self.bounds)

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        self.counts[bisect_left(self.bounds, seconds)] += 1     # the first bucket with le >= seconds

    def flush(self) -> None:
        if any(self.counts):
            total, counts = self.sum, self.counts
            self.sum, self.counts = 0.0, [0] * len(self.bounds)
            self.child._sum.inc(total)
            for bucket, n in zip(self.child._buckets, counts):
                if n:
                    bucket.inc(n)


class _Off:
    """Stands in for :class:`Metrics` when metrics are off: every method does nothing."""

    def request(self, pipeline, method, status, seconds):
        pass

    def refused(self, pipeline, reason):
        pass

    def dedupe_hit(self, pipeline):
        pass

    def store_error(self):
        pass

    def dropped_run(self):
        pass

    def delivered(self, pipeline, branch, outcome, seconds):
        pass

    def flush(self):
        pass

    def instrument(self, pipelines) -> list:
        return list(pipelines)


OFF = _Off()


class _Timed:
    """A step that observes its duration; an asynchronous one also sees its outbound calls
    counted (``ctx.http`` is wrapped for the step's duration)."""

    __slots__ = ("step", "id", "is_async", "timer", "calls")

    def __init__(self, step, timer, calls):
        self.step, self.id, self.is_async, self.timer, self.calls = step, step.id, step.is_async, timer, calls

    def run(self, ctx):
        start = time.perf_counter()
        try:
            self.step.run(ctx)
        finally:
            self.timer.observe(time.perf_counter() - start)

    async def arun(self, ctx):
        start, http = time.perf_counter(), ctx.http
        ctx.http = _Counted(http, self.calls) if http is not None else None
        try:
            await self.step.arun(ctx)
        finally:
            ctx.http = http
            self.timer.observe(time.perf_counter() - start)

    def __getattr__(self, name):     # anything else a caller reads from the step (e.g. `where`)
        return getattr(self.step, name)


class _Calls:
    """``hookline_calls_total`` of one step, by (host, outcome), bound on first use."""

    __slots__ = ("metrics", "pipeline", "step", "kept")

    def __init__(self, metrics, pipeline, step):
        self.metrics, self.pipeline, self.step, self.kept = metrics, pipeline, step, {}

    def count(self, url: str, outcome: str) -> None:
        key = (_host(url), outcome)
        kept = self.kept.get(key)
        if kept is None:
            kept = self.kept[key] = self.metrics._count(self.metrics.calls, self.pipeline, self.step, *key)
        kept.n += 1


class _Counted:
    """The outbound client as one step sees it: each request's outcome is counted."""

    __slots__ = ("http", "calls")

    def __init__(self, http, calls):
        self.http, self.calls = http, calls

    async def request(self, method, url, *args, **kwargs):
        try:
            answer = await self.http.request(method, url, *args, **kwargs)
        except CallError as exc:
            self.calls.count(url, exc.kind)
            raise
        self.calls.count(url, f"{answer[0] // 100}xx")
        return answer

    def __getattr__(self, name):
        return getattr(self.http, name)


def _host(url: str) -> str:
    """``host:port`` of a URL, without user information (never a password in a label).
    Scheme, host and port of a call never come from the request, so the set is bounded.

    >>> _host("https://user:pw@api.example.com:8443/v1/orders?x=1")
    'api.example.com:8443'
    """
    rest = url.partition("://")[2]
    for stop in "/?#":
        rest = rest.partition(stop)[0]
    return rest.rpartition("@")[2].lower()


def exposition(gauges: dict) -> bytes:
    """The text exposition of every process's metrics (see the module docstring) plus
    ``gauges``: ``{name: (help, [(labels dict, value), ...])}``, measured by the caller now."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.multiprocess import MultiProcessCollector

    class Now:
        def collect(self):
            for name, (text, samples) in gauges.items():
                family = GaugeMetricFamily(name, text, labels=sorted(samples[0][0]) if samples else ())
                for labels, value in samples:
                    family.add_metric([labels[k] for k in sorted(labels)], value)
                yield family

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(Now())
    return generate_latest(registry)
