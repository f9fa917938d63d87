"""``call`` steps against a real local destination (a Tornado app in a thread).

The destination records every request it gets (method, raw path, query,
headers, body) and counts the TCP connections it accepts; the pipelines in
tests/pipelines/runtime/call/ reach it through ``${env:DEST_URL}`` and a
closed port through ``${env:DOWN_URL}``.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import secrets
import threading
import time
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from conftest import ROOT, free_port, start_hookline

PIPELINES = ROOT / "tests" / "pipelines" / "runtime" / "call"
PROBLEM = "application/problem+json"
TOKEN = "tok-" + secrets.token_hex(16)


# -- the destination -----------------------------------------------------------------------------

class _Record(web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

    def initialize(self, dest):
        self.dest = dest

    def _record(self, *_):
        req = self.request
        self.dest.requests.append({
            "method": req.method, "path": req.path,
            "query": {k: [v.decode() for v in vs] for k, vs in req.query_arguments.items()},
            "headers": dict(req.headers.get_all()), "body": req.body,
        })
        self.write({"n": len(self.dest.requests)})

    get = post = put = patch = delete = _record


class _Slow(web.RequestHandler):
    async def get(self):
        ms = int(self.get_query_argument("ms"))
        await asyncio.sleep(ms / 1000)
        self.write({"slept_ms": ms})


class _Status(web.RequestHandler):
    def get(self, code):
        self.set_status(int(code))
        self.write({"code": int(code)})


class _Big(web.RequestHandler):
    async def get(self, mode):
        size = int(self.get_query_argument("size"))
        self.set_header("Content-Type", "text/plain")
        if mode == "chunked":        # no Content-Length: the cap must count while reading
            for _ in range(size // 500):
                self.write(b"b" * 500)
                await self.flush()
        else:
            self.write(b"a" * size)


class _Ping(web.RequestHandler):
    def get(self):
        self.write({"pong": True})


class _CountingServer(HTTPServer):
    def handle_stream(self, stream, address):
        self.accepted += 1
        return super().handle_stream(stream, address)


class Destination:
    """A Tornado app on a free loopback port, served from a background thread."""

    def __init__(self):
        self.requests: list[dict] = []
        self._sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{self._sockets[0].getsockname()[1]}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def connections(self) -> int:
        return self._server.accepted

    def _app(self):
        return web.Application([
            (r"/slow", _Slow), (r"/status/(\d+)", _Status), (r"/big/(length|chunked)", _Big),
            (r"/ping", _Ping), (r"/.*", _Record, {"dest": self}),
        ])

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = _CountingServer(self._app())
        self._server.accepted = 0
        self._server.add_sockets(self._sockets)
        self._ready.set()
        self._loop.run_forever()

    def stop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def find(self, marker: str) -> list[dict]:
        return [r for r in self.requests if marker in r["path"] or marker in unquote(r["path"])]


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dest():
    d = Destination()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def server(dest):
    env = {"DEST_URL": dest.url, "DOWN_URL": f"http://127.0.0.1:{free_port()}", "TOKEN": TOKEN}
    proc = start_hookline([PIPELINES], env=env, tail=True)
    yield proc
    proc.stop()


def assert_problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == PROBLEM
    assert "Traceback" not in resp.text and TOKEN not in resp.text
    doc = resp.json()
    assert doc["status"] == status and doc["title"] and doc["type"].startswith("https://")
    return doc


def get(server, path, **kw):
    return requests.get(server.url + path, timeout=10, **kw)


# -- what the destination receives ---------------------------------------------------------------

def test_call_passes_method_query_headers_and_body(server, dest):
    resp = requests.post(server.url + "/c/pass/item-1?single=one&tag=a&tag=b&ignored=x",
                         json={"id": 7, "lines": [{"sku": "A", "qty": 2}]},
                         headers={"X-Trace": "abc-123"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == 200 and resp.json()["destination"]["n"] >= 1
    [got] = dest.find("item-1")
    assert got["method"] == "PUT"
    assert got["path"] == "/record/item-1"
    assert got["query"] == {"single": ["one"], "tag": ["a", "b"]}
    assert got["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert got["headers"]["X-Trace"] == "trace-abc-123"
    assert got["headers"]["Content-Type"] == "application/json"
    assert json.loads(got["body"]) == {"order": 7, "lines": [{"sku": "A", "qty": 2}]}


@pytest.mark.parametrize("value", ["..", "."])
def test_a_dot_segment_value_is_refused_and_nothing_is_sent(server, dest, value):
    """URL parsers resolve '.'/'..' (even as %2E) as dot segments: such a value must not be sent."""
    before = len(dest.requests)
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", "/c/pass/" + quote(value, safe="").replace(".", "%2E"), body=b'{"id": 1}',
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 422, body
    assert resp.getheader("Content-Type") == PROBLEM
    assert dest.requests[before:] == []


@pytest.mark.parametrize("value", ["a/b", "../../admin", "x?y=1#frag", "user@evil.example", "p%2Fq",
                                   "a/../b?c#d@e"])
def test_url_expression_stays_one_encoded_path_segment(server, dest, value):
    marker = secrets.token_hex(4)
    item = marker + value
    before = len(dest.requests)
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", "/c/pass/" + quote(item, safe=""), body=b'{"id": 1}',
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    conn.close()
    [got] = dest.requests[before:]
    prefix, _, segment = got["path"].partition("/record/")
    assert prefix == "" and segment, f"{item!r} was sent to {got['path']!r}, not below /record/"
    assert "/" not in segment and segment not in ("..", "."), f"{item!r} became the path {got['path']!r}"
    assert unquote(segment) == item
    assert got["query"] == {}


def test_deeply_nested_body_forwarded_by_a_call_is_not_a_500(server, dest):
    """The request body (300 levels; orjson reads 1024) becomes the call body (orjson writes 255)."""
    body = b"[" * 300 + b"]" * 300
    resp = requests.post(server.url + "/c/forward", data=body, timeout=10)
    assert resp.status_code < 500, resp.text
    if resp.status_code == 200:
        assert json.loads(dest.find("forward")[-1]["body"]) == json.loads(body)
    else:
        assert resp.headers["Content-Type"] == PROBLEM


def test_token_never_reaches_responses_or_the_log(server, dest):
    texts = []
    for path in ("/c/down", "/c/slow", "/c/status500", "/c/conflict", "/c/big/length"):
        resp = get(server, path)
        texts.append(json.dumps(dict(resp.headers)) + resp.text)
    resp = requests.post(server.url + "/c/pass/leak", json={"id": 1}, timeout=10)
    texts.append(json.dumps(dict(resp.headers)) + resp.text)
    assert dest.find("leak")[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert not [t for t in texts if TOKEN in t]
    time.sleep(0.1)
    log = server.log.text()
    assert "step 'c'" in log          # the failures above were logged...
    assert TOKEN not in log           # ...without the secret


# -- failures ------------------------------------------------------------------------------------

def test_destination_down_is_502(server):
    doc = assert_problem(get(server, "/c/down"), 502)
    assert doc["run_id"] and "unreachable" in doc["detail"]


def test_slow_destination_is_504_within_timeout(server):
    started = time.monotonic()
    doc = assert_problem(get(server, "/c/slow"), 504)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.5, elapsed
    assert "0.5 s" in doc["detail"]


def test_destination_500_is_502(server):
    doc = assert_problem(get(server, "/c/status500"), 502)
    assert "500" in doc["detail"]


def test_destination_409_is_routed_to_409(server):
    resp = get(server, "/c/conflict")
    assert resp.status_code == 409
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"error": "conflict", "upstream": 409}


@pytest.mark.parametrize("path, error", [("/c/continue/down", "unreachable"), ("/c/continue/slow", "timeout")])
def test_on_error_continue_lets_a_route_answer_503(server, path, error):
    started = time.monotonic()
    resp = get(server, path)
    assert time.monotonic() - started < 1.5
    assert resp.status_code == 503, resp.text
    assert resp.json() == {"error": error, "status": 0, "body": None}


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_response_over_max_response_bytes_is_502(server, mode):
    doc = assert_problem(get(server, f"/c/big/{mode}"), 502)
    assert "1000 bytes" in doc["detail"]


def test_response_under_max_response_bytes_passes(server):
    resp = get(server, "/c/small")
    assert resp.status_code == 200 and resp.json() == {"size": 900}


def test_sequential_calls_reuse_connections(server, dest):
    get(server, "/c/ping")                       # warm the pool
    before = dest.connections
    with requests.Session() as s:
        for _ in range(50):
            resp = s.get(server.url + "/c/ping", timeout=10)
            assert resp.status_code == 200 and resp.json() == {"pong": True}
    opened = dest.connections - before
    assert opened <= 3, f"50 calls opened {opened} connections at the destination"
