"""Connections that wait: an idle keep-alive connection, headers or a body sent too slowly are
closed (``App.sweep``, engine/server.py; docs/security.md, "Flooding"), and a request's
duration — in the access line and the run history — starts when its headers arrived, not
when its connection began waiting for them."""
from __future__ import annotations

import asyncio
import http.client
import re
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import dsl
from conftest import HOOKLINE, ROOT, free_port, start_hookline, wait_http
from engine.server import App, server
from test_async_delivery import wait_until

PLAIN = ROOT / "tests" / "pipelines" / "history" / "plain.yaml"      # POST /h/plain answers its body
ACCESS_MS = re.compile(r"POST /h/plain 200 (\d+\.\d\d)ms")


def test_a_keep_alive_request_is_timed_from_its_headers_not_from_the_wait_before_it():
    store = f"sqlite:{tempfile.mkdtemp(prefix='hookline-test-')}/hookline.db"
    proc = start_hookline([PLAIN], extra=("--store", store))
    try:
        wait_http(proc.url + "/h/plain", proc.proc)
        conn = http.client.HTTPConnection(proc.url.removeprefix("http://"), timeout=10)
        for i in range(2):                       # one connection: the second request waited 1.5 s
            if i:
                time.sleep(1.5)
            conn.request("POST", "/h/plain", body=b'{"n": %d}' % i, headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            assert (answer.status, answer.read()) == (200, b'{"n":%d}' % i)
        conn.close()
        wait_until(lambda: len(ACCESS_MS.findall(proc.log.text())) >= 2, 20, "two access lines")
        timed = [float(ms) for ms in ACCESS_MS.findall(proc.log.text())]
        assert max(timed) < 1000, timed          # was ~1500 for the second: the idle wait counted

        def listed():
            out = subprocess.run([*HOOKLINE, "runs", "list", "--pipeline", "hist-plain", "--store", store],
                                 capture_output=True, text=True, timeout=60)
            return re.findall(r"\t(\d+\.\d)ms\t", out.stdout)
        wait_until(lambda: len(listed()) == 2, 20, "two runs listed")
        assert all(float(ms) < 1000 for ms in listed()), listed()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def quick():
    """The app in this process with short timeouts: 1 s for the headers, 1.5 s for a body."""
    pipelines, problems = dsl.compile_paths([PLAIN])
    assert [p for p in problems if p.severity == "error"] == []
    port, ready, box = free_port(), threading.Event(), {}

    def run():
        async def main():
            app = App(pipelines, idle_s=1.0, body_s=1.5)
            served = server(app)                 # as engine/serve.py
            served.listen(port, "127.0.0.1")
            sweeping = asyncio.get_running_loop().create_task(app.sweep())
            box["stop"], box["loop"], box["app"] = asyncio.Event(), asyncio.get_running_loop(), app
            ready.set()
            await box["stop"].wait()
            sweeping.cancel()
            served.stop()
        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield port, box["app"]
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(5)


REQUEST = b"POST /h/plain HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n"


def closed_after(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sent until it closed the connection, and how long that took."""
    start, got = time.monotonic(), b""
    sock.settimeout(20)                          # far past the timeouts: a connection left open fails
    while chunk := sock.recv(65536):
        got += chunk
    return got, time.monotonic() - start


def test_an_idle_keep_alive_connection_is_closed(quick):
    port, app = quick
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(REQUEST + b'{"a": 1}')
        got, waited = closed_after(sock)
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b'{"a":1}')
    assert waited >= 0.9
    wait_until(lambda: not app.waiting, 20, "nothing left waiting")


def test_headers_sent_too_slowly_are_not_waited_for(quick):
    port, _app = quick
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(REQUEST[:30])               # and nothing more
        got, waited = closed_after(sock)
    assert got == b"" and waited >= 0.9


def test_a_body_sent_too_slowly_is_not_waited_for(quick):
    port, _app = quick
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(REQUEST + b'{"a"')         # 4 of the 8 bytes announced
        got, waited = closed_after(sock)
    assert got == b"" and waited >= 1.4


def answered(sock: socket.socket, body: bytes) -> bytes:
    """One answer, read until it ends with ``body``; the connection closed first fails."""
    got = b""
    while not got.endswith(body):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {got!r}"
        got += chunk
    return got


def test_prompt_requests_on_one_connection_are_served_for_longer_than_either_timeout(quick):
    port, _app = quick
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        started = time.monotonic()
        for i in range(8):                       # 8 × 0.3 s: past both timeouts in all
            sock.sendall(REQUEST + b'{"a": %d}' % i)
            assert answered(sock, b'{"a":%d}' % i).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.3)
        sock.sendall(REQUEST + b'{"a"')         # a body in two parts, 0.3 s apart, within the 1.5 s
        time.sleep(0.3)
        sock.sendall(b': 9}')
        assert answered(sock, b'{"a":9}').startswith(b"HTTP/1.1 200 ")
        assert time.monotonic() - started > 2.0


def test_a_connection_closed_by_either_side_is_let_go_of_at_once(quick):
    """Tornado begins waiting for the next request after every answer, and does not tell that
    request's exchange when the connection then closes: the app hears it from the server."""
    port, app = quick
    with socket.create_connection(("127.0.0.1", port)) as sock:     # the server closes
        sock.sendall(REQUEST.replace(b"Host: t\r\n", b"Host: t\r\nConnection: close\r\n") + b'{"a": 1}')
        got, _ = closed_after(sock)
    assert got.startswith(b"HTTP/1.1 200 ")
    with socket.create_connection(("127.0.0.1", port)) as sock:     # the client closes
        sock.settimeout(10)
        sock.sendall(REQUEST + b'{"a": 2}')
        answered(sock, b'{"a":2}')
    # let go of when the connection closed, before the 1 s the sweep would take
    wait_until(lambda: not app.waiting, 0.8, "the closed connections let go of")
