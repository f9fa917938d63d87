"""OpenTelemetry traces (engine/tracing.py, the extra ``hookline[otel]``).

End to end: ``hookline serve`` exports over OTLP/HTTP to a receiver this test runs
(POST /v1/traces, protobuf, decoded with opentelemetry-proto), and calls a local
destination that records the ``traceparent`` it is sent. The span-building helpers
are checked in process with the SDK's in-memory exporter.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import yarl
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import ROOT, start_hookline, wait_http
from engine import tracing
from test_async_delivery import _children, redis_store, sqlite_store, store  # noqa: F401 (fixtures)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

PIPELINE = """\
pipeline: traced
receive:
  path: /t/{shop}/orders
  methods: [POST]
steps:
  - id: shape
    transform: "{id: request.body.id}"
  - id: forward
    call:
      method: POST
      url: "${env:DEST_URL}/sync?token=secret-in-query"
      body: steps.shape
      timeout_s: 5
respond:
  status: 200
  body: "{forwarded: steps.forward.status}"
async:
  - id: later
    steps:
      - id: send
        call:
          url: "${env:DEST_URL}/async"
          body: request.body
          timeout_s: 5
    retry: {max_attempts: 3, initial_s: 0.1, max_s: 1, max_age_s: 60}
"""


class _Recorder(ThreadingHTTPServer):
    """A local HTTP server recording what each POST brought: (path, headers, body)."""

    daemon_threads = True

    def __init__(self):
        self.posts, self.lock = [], threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def taken(self) -> list:
        with self.lock:
            return list(self.posts)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        answer = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def _spans(receiver) -> list:
    """Every span the receiver got: dicts of name, kind, trace/span/parent ids, attributes,
    and the attributes of the resource (the process) that sent it."""
    spans = []
    for path, _, body in receiver.taken():
        if path != "/v1/traces":
            continue
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            sender = {a.key: _value(a.value) for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for s in scope.spans:
                    attributes = {a.key: _value(a.value) for a in s.attributes}
                    spans.append({"name": s.name, "kind": s.kind, "trace": s.trace_id.hex(),
                                  "id": s.span_id.hex(), "parent": s.parent_span_id.hex(),
                                  "attributes": attributes, "resource": sender})
    return spans


def _value(v):
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


def _wait(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def pipeline_dir(tmp_path):
    (tmp_path / "traced.yaml").write_text(PIPELINE)
    return tmp_path


def test_a_request_is_traced_end_to_end(pipeline_dir):
    receiver, destination = _Recorder(), _Recorder()
    env = {"DEST_URL": destination.url, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
           "OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_SERVICE_NAME": "hookline-test"}
    proc = start_hookline([pipeline_dir], env=env)
    try:
        wait_http(proc.url, proc.proc)
        r = requests.post(f"{proc.url}/t/acme/orders", json={"id": 7}, headers={"traceparent": INCOMING},
                          timeout=10)
        assert r.status_code == 200, r.text
        spans = _wait(lambda: (lambda s: s if {"later", "send"} <= {x["attributes"].get("hookline.branch")
                                                                   or x["attributes"].get("hookline.step")
                                                                   for x in s} else None)(_spans(receiver)))
        sent = _wait(lambda: {p: h for p, h, _ in destination.taken()} if len(destination.taken()) >= 2 else None)
    finally:
        proc.stop()
        receiver.shutdown()
        destination.shutdown()

    server = [s for s in spans if s["attributes"].get("http.route") == "/t/{shop}/orders"]
    assert len(server) == 1
    server = server[0]
    assert server["trace"] == TRACE_ID and server["parent"] == "00f067aa0ba902b7"    # the incoming trace continued
    assert server["name"] == "POST /t/{shop}/orders"
    assert server["attributes"]["http.request.method"] == "POST"
    assert server["attributes"]["url.path"] == "/t/acme/orders"
    assert server["attributes"]["http.response.status_code"] == 200
    assert server["attributes"]["hookline.pipeline"] == "traced"

    steps = {s["attributes"]["hookline.step"]: s for s in spans if "hookline.step" in s["attributes"]}
    assert steps["shape"]["parent"] == server["id"] and steps["shape"]["attributes"]["hookline.step.kind"] == "transform"
    assert steps["forward"]["attributes"]["hookline.step.kind"] == "call"

    clients = [s for s in spans if "url.full" in s["attributes"]]
    sync = next(s for s in clients if s["attributes"]["url.full"].endswith("/sync"))
    assert sync["parent"] == steps["forward"]["id"] and sync["trace"] == TRACE_ID
    assert "secret-in-query" not in sync["attributes"]["url.full"]
    assert sync["attributes"]["server.address"] == "127.0.0.1"
    assert sync["attributes"]["http.response.status_code"] == 200
    # the destination got the client span's traceparent
    assert sent["/sync?token=secret-in-query"]["traceparent"] == f"00-{TRACE_ID}-{sync['id']}-01"

    delivery = next(s for s in spans if s["attributes"].get("hookline.branch") == "later")
    assert delivery["trace"] == TRACE_ID        # the async job joined the request's trace
    assert delivery["attributes"]["hookline.pipeline"] == "traced"
    late = next(s for s in clients if s["attributes"]["url.full"].endswith("/async"))
    assert late["trace"] == TRACE_ID
    assert sent["/async"]["traceparent"] == f"00-{TRACE_ID}-{late['id']}-01"
    # the access line carries the trace id
    assert f"trace={TRACE_ID}" in proc.log.text()


def test_with_two_workers_a_job_accepted_in_one_process_is_delivered_in_another_in_the_same_trace(
        pipeline_dir, store):
    """``serve --workers 2`` on SQLite and on Redis: the request's spans come from an HTTP
    worker, the delivery's from the delivery worker (each process exports its own, the
    resource's ``process.pid`` says which), and both are one trace."""
    receiver, destination = _Recorder(), _Recorder()
    env = {"DEST_URL": destination.url, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
           "OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "50",
           "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "process"}
    proc = start_hookline([pipeline_dir], env=env, workers=2, extra=("--store", store))
    try:
        workers = _wait(lambda: (lambda c: c if len(c) == 3 else None)(_children(proc.proc.pid)))
        traces = [f"{n:032x}" for n in range(0xa1, 0xa5)]
        for trace in traces:            # each on a new connection: the kernel spreads them over both workers
            r = requests.post(f"{proc.url}/t/acme/orders", json={"id": trace},
                              headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}, timeout=10)
            assert r.status_code == 200, r.text

        def delivered():
            spans = _spans(receiver)
            later = {x["trace"] for x in spans if x["attributes"].get("hookline.branch") == "later"}
            return spans if later >= set(traces) else None
        spans = _wait(delivered)
    finally:
        proc.stop()
        receiver.shutdown()
        destination.shutdown()
    http = {pid for pid, name in workers.items() if name == "hookline-http"}
    delivering = {pid for pid, name in workers.items() if name == "hookline-delive"}
    assert len(http) == 2 and len(delivering) == 1, workers
    for trace in traces:
        mine = [s for s in spans if s["trace"] == trace]
        [server] = [s for s in mine if s["attributes"].get("http.route") == "/t/{shop}/orders"]
        [delivery] = [s for s in mine if s["attributes"].get("hookline.branch") == "later"]
        [send] = [s for s in mine if s["attributes"].get("hookline.step") == "send"]
        [late] = [s for s in mine if s["attributes"].get("url.full", "").endswith("/async")]
        assert server["resource"]["process.pid"] in http, (server["resource"], workers)
        assert delivery["resource"]["process.pid"] in delivering, (delivery["resource"], workers)
        assert delivery["parent"] == server["id"]
        assert send["parent"] == delivery["id"] and late["parent"] == send["id"]
        assert {send["resource"]["process.pid"], late["resource"]["process.pid"]} <= delivering
        assert server["parent"] == "00f067aa0ba902b7"
    sent = {h["traceparent"].split("-")[1] for p, h, _ in destination.taken() if p == "/async"}
    assert sent >= set(traces)          # the destination got each delivery's trace


def test_a_worker_exports_the_spans_it_still_holds_when_it_stops(pipeline_dir, sqlite_store):
    """Spans are exported in batches (every 5 s by default, 60 s here): on SIGTERM every
    worker of ``--workers 2`` and the delivery worker export what they still hold before
    they exit, so the last requests before a restart are traced too."""
    receiver, destination = _Recorder(), _Recorder()
    env = {"DEST_URL": destination.url, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
           "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    proc = start_hookline([pipeline_dir], env=env, workers=2, extra=("--store", sqlite_store))
    traces = [f"{n:032x}" for n in range(0xb1, 0xb5)]
    try:
        for trace in traces:
            r = requests.post(f"{proc.url}/t/acme/orders", json={"id": trace},
                              headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}, timeout=10)
            assert r.status_code == 200, r.text
        _wait(lambda: sum(p == "/async" for p, _, _ in destination.taken()) >= len(traces))
        assert _spans(receiver) == []           # still held: the batch is not due for a minute
        assert proc.stop(20) == 0
        spans = _spans(receiver)
    finally:
        proc.stop()
        receiver.shutdown()
        destination.shutdown()
    served = {s["trace"] for s in spans if s["attributes"].get("http.route") == "/t/{shop}/orders"}
    delivered = {s["trace"] for s in spans if s["attributes"].get("hookline.branch") == "later"}
    assert served == delivered == set(traces), (served, delivered)


def test_no_otel_variables_no_spans_and_no_import(pipeline_dir):
    receiver, destination = _Recorder(), _Recorder()
    proc = start_hookline([pipeline_dir], env={"DEST_URL": destination.url})
    try:
        wait_http(proc.url, proc.proc)
        r = requests.post(f"{proc.url}/t/acme/orders", json={"id": 1}, headers={"traceparent": INCOMING},
                          timeout=10)
        assert r.status_code == 200
        sent = _wait(lambda: {p: h for p, h, _ in destination.taken()} if len(destination.taken()) >= 2 else None)
    finally:
        proc.stop()
        receiver.shutdown()
        destination.shutdown()
    assert receiver.taken() == []
    assert all("traceparent" not in headers for headers in sent.values())   # nothing added, nothing passed on
    # the modules the server loads do not import OpenTelemetry
    code = ("import sys, engine.serve, engine.server, engine.delivery, engine.tracing;"
            "assert engine.tracing.start() is False;"
            "print([m for m in sys.modules if m.startswith('opentelemetry')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin"}, check=True).stdout
    assert out.strip() == "[]"


# --- the helpers, in process, with the in-memory exporter ---------------------------------------

@pytest.fixture
def memory():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.start(provider)
    yield exporter
    tracing.stop()
    provider.shutdown()


class _Pipeline:
    name, path = "orders", "/hooks/{shop}/orders"


class _Job:
    id, delivery, pipeline, branch, attempt = "j1", "d1", "orders", "erp", 0


def test_server_span_continues_traceparent_and_stamps_jobs(memory):
    span = tracing.server_span(_Pipeline(), "POST", "/hooks/acme/orders", {"traceparent": INCOMING})
    with tracing.entered(span):
        document = tracing.stamp({"request": {}})
    assert tracing.served(span, 202) == TRACE_ID
    with tracing.delivery(_Job(), document[tracing.KEY]):
        pass
    server, delivery = memory.get_finished_spans()
    assert server.attributes["http.route"] == "/hooks/{shop}/orders"
    assert server.attributes["http.response.status_code"] == 202
    assert server.parent.span_id == 0x00f067aa0ba902b7
    assert document[tracing.KEY] == f"00-{TRACE_ID}-{server.context.span_id:016x}-01"
    assert delivery.context.trace_id == int(TRACE_ID, 16) and delivery.parent.span_id == server.context.span_id
    assert delivery.attributes["hookline.attempt"] == 1


def test_client_span_drops_query_and_user_and_passes_traceparent(memory):
    target = yarl.URL("https://user:pw@erp.example:8443/v1/orders?api_key=s3cret#x")
    with tracing.client_span("POST", target, {"Authorization": "Bearer t"}) as (headers, answered):
        answered(503)
    (span,) = memory.get_finished_spans()
    assert span.attributes["url.full"] == "https://erp.example:8443/v1/orders"
    assert span.attributes["server.address"] == "erp.example" and span.attributes["server.port"] == 8443
    assert span.attributes["http.response.status_code"] == 503 and not span.status.is_ok
    assert headers["Authorization"] == "Bearer t"
    assert headers["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"


def test_without_tracing_stamp_and_delivery_do_nothing():
    assert tracing.TRACER is None
    document = {"request": {}}
    assert tracing.stamp(document) is document
    with tracing.delivery(_Job(), None):
        pass
    assert tracing.instrument([]) == []
