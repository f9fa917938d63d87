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

Per request the cost is a few dictionary lookups and memory-mapped adds: every
label set known at load time (a pipeline's duration histogram, each step's)
is bound once by :meth:`Metrics.instrument`; the rest (status codes, hosts,
refusal reasons) is bound on first use and kept.

    >>> unrouted = method_label("BREW")
    >>> unrouted, method_label("POST")
    ('other', 'POST')
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import replace

from dsl.runtime import CallError

UNROUTED = "_unrouted"   # the pipeline label of a request no pipeline serves (404, a bad header block)
ADMIN = "_admin"         # ... of the admin endpoints (metrics, health, deliveries)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STEP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ENV = "PROMETHEUS_MULTIPROC_DIR"


def method_label(method: str) -> str:
    """The method as a label: one of :data:`METHODS`, else ``other`` (a client cannot make
    new series by inventing methods)."""
    return method if method in METHODS else "other"


def private_dir() -> str:
    """A new, empty directory for the processes' metric files (see the module docstring)."""
    return tempfile.mkdtemp(prefix="hookline-metrics-")


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
    """The metric families of one process (made after :func:`enable`)."""

    def __init__(self):
        from prometheus_client import Counter, Histogram
        c = lambda name, text, labels=(): Counter(name, text, labels, registry=None)  # noqa: E731
        self.requests = c("hookline_requests", "HTTP requests answered", ("pipeline", "method", "status"))
        self.request_seconds = Histogram("hookline_request_duration_seconds", "Time from the request's "
                                         "headers to its response", ("pipeline",), registry=None,
                                         buckets=REQUEST_BUCKETS)
        self.step_seconds = Histogram("hookline_step_duration_seconds", "Time one step took",
                                      ("pipeline", "step"), registry=None, buckets=STEP_BUCKETS)
        self.calls = c("hookline_calls", "Outbound calls of call steps, by destination host:port and outcome "
                       "(2xx..5xx, or timeout, unreachable, too-large, forbidden)",
                       ("pipeline", "step", "host", "outcome"))
        self.deliveries = c("hookline_deliveries", "Async branch delivery attempts by outcome (done, retry, "
                            "dead)", ("pipeline", "branch", "outcome"))
        self.attempt_seconds = Histogram("hookline_delivery_attempt_seconds", "Time one delivery attempt "
                                         "took", ("pipeline", "branch"), registry=None, buckets=REQUEST_BUCKETS)
        self.refusals = c("hookline_refusals", "Requests refused before any step ran, by reason",
                          ("pipeline", "reason"))
        self.dedupe_hits = c("hookline_dedupe_hits", "Repeated deliveries answered from the store",
                             ("pipeline",))
        self.store_errors = c("hookline_store_errors", "Store operations that failed (store unreachable, "
                              "disk full)")
        self._requests: dict = {}
        self._durations: dict = {}

    def request(self, pipeline: str, method: str, status: int, seconds: float) -> None:
        """One answered request (``pipeline`` may be :data:`UNROUTED` or :data:`ADMIN`)."""
        key = (pipeline, method, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(pipeline, method_label(method), str(status))
        child.inc()
        timer = self._durations.get(pipeline)
        if timer is None:
            timer = self._durations[pipeline] = self.request_seconds.labels(pipeline)
        timer.observe(seconds)

    def refused(self, pipeline: str, reason: str) -> None:
        self.refusals.labels(pipeline, reason).inc()

    def dedupe_hit(self, pipeline: str) -> None:
        self.dedupe_hits.labels(pipeline).inc()

    def store_error(self) -> None:
        self.store_errors.inc()

    def delivered(self, pipeline: str, branch: str, outcome: str, seconds: float) -> None:
        """One delivery attempt: ``outcome`` is done, retry or dead."""
        self.deliveries.labels(pipeline, branch, outcome).inc()
        self.attempt_seconds.labels(pipeline, branch).observe(seconds)

    def instrument(self, pipelines) -> list:
        """The pipelines with every step (sync and async branches') timed, and calls counted."""
        return [self._instrumented(p) for p in pipelines]

    def _instrumented(self, p):
        """Also makes the series each pipeline will have (at 0), so that they exist before the
        first event: a rate over a series that appears late misses its first increase."""
        self._durations[p.name] = self.request_seconds.labels(p.name)
        if p.dedupe is not None:
            self.dedupe_hits.labels(p.name)
        for b in p.branches:
            self.attempt_seconds.labels(p.name, b.id)
            for outcome in ("done", "retry", "dead"):
                self.deliveries.labels(p.name, b.id, outcome)
        branches = tuple(replace(b, steps=self._timed(p.name, b.steps)) for b in p.branches)
        return replace(p, steps=self._timed(p.name, p.steps), branches=branches)

    def _timed(self, pipeline: str, steps) -> tuple:
        return tuple(_Timed(s, self.step_seconds.labels(pipeline, s.id), _Calls(self.calls, pipeline, s.id))
                     for s in steps)


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

    def delivered(self, pipeline, branch, outcome, seconds):
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
    """``hookline_calls_total`` children of one step, by (host, outcome), bound on first use."""

    __slots__ = ("family", "pipeline", "step", "children")

    def __init__(self, family, pipeline, step):
        self.family, self.pipeline, self.step, self.children = family, pipeline, step, {}

    def count(self, url: str, outcome: str) -> None:
        key = (_host(url), outcome)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = self.family.labels(self.pipeline, self.step, *key)
        child.inc()


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
