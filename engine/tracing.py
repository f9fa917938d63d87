"""OpenTelemetry traces, the optional extra ``hookline[otel]``.

Off unless the extra is installed *and* the standard ``OTEL_*`` variables ask for
traces (``OTEL_TRACES_EXPORTER`` other than ``none``, or an OTLP endpoint), and
``OTEL_SDK_DISABLED`` is not ``true``. Off, nothing of OpenTelemetry is imported
and the request path pays one test of a module global (``TRACER is None``).

:func:`start` is called once in every process that serves or delivers (after the
fork: the exporter's thread does not survive one), and :func:`finish` when it stops
(a forked worker leaves with ``os._exit``, which runs no ``atexit``: the spans of
its last seconds would be lost). Spans (HTTP semantic conventions):

- a server span per request to a pipeline (``http.request.method``, ``url.path``,
  ``http.route`` = the pipeline's path template, ``http.response.status_code``,
  ``hookline.pipeline``), continuing an incoming W3C ``traceparent``;
- an internal span per step (``hookline.step``, ``hookline.step.kind``);
- a client span per outbound call (``http.request.method``, ``url.full`` without
  its query, ``server.address``, ``server.port``, ``http.response.status_code``),
  whose ``traceparent`` goes to the destination;
- an async job keeps the ``traceparent`` of its request (:data:`KEY` in the stored
  document) and its delivery's span (``hookline.delivery``) joins that trace.

>>> enabled({})
False
>>> enabled({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
False
>>> enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"})
False
"""
from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("hookline")

TRACER = None           # an opentelemetry Tracer once start() turned tracing on, else None
_OWNED = None           # the TracerProvider start() made (finish() shuts it down), else None
KEY = "_trace"          # the stored job document's traceparent; removed before the branch runs
_api = None             # the opentelemetry modules used per span, imported by start()

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def enabled(env=os.environ) -> bool:
    """Do the ``OTEL_*`` variables ask for traces? (Whether the extra is installed is
    :func:`start`'s business.)"""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or any(env.get(name) for name in _ENDPOINTS)


def start(provider=None) -> bool:
    """Turn tracing on in this process when :func:`enabled` (or with ``provider``, a
    TracerProvider the tests give); False, and nothing imported, otherwise."""
    global TRACER, _api
    if provider is None and not enabled():
        return False
    try:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode
    except ImportError:
        log.warning("OTEL_* variables are set but hookline[otel] is not installed: no traces")
        return False
    if provider is None:
        provider = _provider()
        if provider is None:
            return False
    _api = _Api(context, propagate, trace, SpanKind, Status, StatusCode)
    TRACER = provider.get_tracer("hookline")
    return True


def finish() -> None:
    """Export the spans this process still holds and stop exporting (at most the exporter's
    timeout, ``OTEL_EXPORTER_OTLP_TIMEOUT``, when the collector does not answer). Called by
    each worker as it stops, and at exit; a second call does nothing."""
    global _OWNED
    provider, _OWNED = _OWNED, None
    if provider is not None:
        stop()
        provider.shutdown()


def stop() -> None:
    """Turn tracing off in this process (the tests; a provider is shut down by its owner)."""
    global TRACER, _api
    TRACER = _api = None


def _provider():
    """A TracerProvider exporting as the ``OTEL_*`` variables say (the SDK reads them:
    endpoint, headers, service name, resource attributes, sampler, batch delays)."""
    global _OWNED
    import atexit

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: no traces")
            return None
        exporter = OTLPSpanExporter()
    else:
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none): no traces", exporter_name)
        return None
    resource = Resource.create({"service.name": "hookline"}).merge(Resource.create())   # OTEL_SERVICE_NAME wins
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _OWNED = provider
    atexit.register(finish)
    return provider


class _Api:
    __slots__ = ("context", "propagate", "trace", "SpanKind", "Status", "StatusCode")

    def __init__(self, *modules):
        (self.context, self.propagate, self.trace, self.SpanKind, self.Status, self.StatusCode) = modules


# ---- the request ----------------------------------------------------------------------------

def server_span(pipeline, method: str, path: str, headers: dict):
    """The request's server span, continuing ``headers``' ``traceparent`` (lower-case
    keys); the caller makes it current with :func:`entered` and ends it with :func:`served`."""
    parent = _api.propagate.extract(headers)
    return TRACER.start_span(f"{method} {pipeline.path}", context=parent, kind=_api.SpanKind.SERVER,
                             attributes={"http.request.method": method, "url.path": path,
                                         "http.route": pipeline.path, "hookline.pipeline": pipeline.name})


def served(span, status: int) -> str:
    """End the request's span with its status; its trace id (32 hex digits) for the access line."""
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(_api.Status(_api.StatusCode.ERROR))
    span.end()
    return format(span.get_span_context().trace_id, "032x")


@contextlib.contextmanager
def entered(span):
    """``span`` is the current one inside the block (and in the tasks started there)."""
    token = _api.context.attach(_api.trace.set_span_in_context(span))
    try:
        yield
    finally:
        _api.context.detach(token)


# ---- steps ----------------------------------------------------------------------------------

def instrument(pipelines) -> list:
    """The pipelines with a span around every step (sync and async branches'); the same
    pipelines when tracing is off."""
    if TRACER is None:
        return list(pipelines)
    from dataclasses import replace
    return [replace(p, steps=_spanned(p.steps), branches=tuple(replace(b, steps=_spanned(b.steps))
                                                               for b in p.branches))
            for p in pipelines]


def _spanned(steps) -> tuple:
    return tuple(_Spanned(s) for s in steps)


class _Spanned:
    """A step run inside its own span (``hookline.step``, ``hookline.step.kind``)."""

    __slots__ = ("step", "id", "is_async", "attributes")

    def __init__(self, step):
        self.step, self.id, self.is_async = step, step.id, step.is_async
        inner = getattr(step, "step", step)         # under engine.metrics' timing wrapper
        self.attributes = {"hookline.step": step.id, "hookline.step.kind": type(inner).__name__.lower()}

    def __getattr__(self, name):
        return getattr(self.step, name)

    def run(self, ctx):
        with TRACER.start_as_current_span(f"step {self.id}", attributes=self.attributes):
            self.step.run(ctx)

    async def arun(self, ctx):
        with TRACER.start_as_current_span(f"step {self.id}", attributes=self.attributes):
            await self.step.arun(ctx)


# ---- outbound calls -------------------------------------------------------------------------

@contextlib.contextmanager
def client_span(method: str, target, headers: dict):
    """A client span around one outbound call to ``target`` (a yarl URL); yields the
    headers to send (``headers`` and the span's ``traceparent``) and a function to
    record the answer's status."""
    url = str(target.with_query(None).with_fragment(None).with_user(None))
    attributes = {"http.request.method": method, "url.full": url, "server.address": target.host or ""}
    if target.port is not None:
        attributes["server.port"] = target.port
    with TRACER.start_as_current_span(f"{method}", kind=_api.SpanKind.CLIENT, attributes=attributes) as span:
        sent = dict(headers)
        _api.propagate.inject(sent)
        yield sent, lambda status: _answered(span, status)


def _answered(span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        span.set_status(_api.Status(_api.StatusCode.ERROR))


# ---- async jobs -----------------------------------------------------------------------------

def stamp(document: dict) -> dict:
    """``document`` with the current trace's ``traceparent`` under :data:`KEY` (when a span
    is current), so that the job's delivery joins the trace."""
    if TRACER is None:
        return document
    carrier: dict = {}
    _api.propagate.inject(carrier)
    if "traceparent" in carrier:
        return {**document, KEY: carrier["traceparent"]}
    return document


@contextlib.contextmanager
def delivery(job, traceparent):
    """The span of one delivery attempt of ``job``, a child of the request's span when
    the job kept its ``traceparent``; a no-op when tracing is off."""
    if TRACER is None:
        yield
        return
    parent = _api.propagate.extract({"traceparent": traceparent}) if traceparent else None
    with TRACER.start_as_current_span(f"deliver {job.pipeline}/{job.branch}", context=parent,
                                      kind=_api.SpanKind.CONSUMER,
                                      attributes={"hookline.pipeline": job.pipeline, "hookline.branch": job.branch,
                                                  "hookline.delivery": job.delivery, "hookline.job": job.id,
                                                  "hookline.attempt": job.attempt + 1}):
        yield
