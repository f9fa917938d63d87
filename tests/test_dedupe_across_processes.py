"""Copies of one delivery that reach different processes at the same moment run once: the
delivery id is claimed in the shared store before any step runs (SQLite file or Redis)."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import ROOT, start_hookline

PIPELINES = ROOT / "tests" / "pipelines" / "dedupe"


class _Slow(BaseHTTPRequestHandler):
    calls: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).calls.append(body)
        time.sleep(0.5)                       # the first copy is still running when the others arrive
        out = json.dumps({"reserved": len(type(self).calls)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def dest():
    _Slow.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _redis_url():
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not answering on 127.0.0.1:6379 (CI=true: it must)")
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    return f"redis://127.0.0.1:6379/0?prefix=test-dd-{uuid.uuid4().hex[:8]}:"


def _forget(url: str) -> None:
    """Delete the test's keys from the shared Redis."""
    import redis
    prefix = url.split("prefix=", 1)[1]
    client = redis.Redis(host="127.0.0.1", port=6379)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_simultaneous_copies_in_two_processes_call_once(dest, kind, tmp_path):
    store = f"sqlite:{tmp_path}/shared.db" if kind == "sqlite" else _redis_url()
    env = {"DEST_URL": dest}
    one = start_hookline([PIPELINES], env=env, extra=("--store", store))
    two = start_hookline([PIPELINES], env=env, extra=("--store", store))
    try:
        def send(server):
            return requests.post(server.url + "/dd/sync", json={"id": "order-7"}, timeout=20,
                                 headers={"webhook-id": "wh-race-1"})
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(send, [one, two] * 3))
        later = send(two)
    finally:
        one.stop()
        two.stop()
        if kind == "redis":
            _forget(store)
    assert len(_Slow.calls) == 1, f"the destination was called {len(_Slow.calls)} times"
    assert {(a.status_code, a.content) for a in answers + [later]} == {(200, answers[0].content)}
    assert answers[0].json() == {"erp": {"reserved": 1}, "id": "order-7"}
