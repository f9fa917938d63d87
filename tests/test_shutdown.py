"""``hookline serve`` as a process: graceful SIGTERM, ``--workers 2``, the 500 path.

Each test starts its own server (tests/pipelines/runtime/shutdown) because
each one ends it. The slow destination is a Tornado app in a thread that
answers ``/slow?ms=N`` after N ms and tells the test when a call arrived.
"""
from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from conftest import ROOT, refused, start_hookline

PIPELINES = ROOT / "tests" / "pipelines" / "runtime" / "shutdown"
SHUTDOWN_TIMEOUT = 5.0


class _Slow(web.RequestHandler):
    def initialize(self, dest):
        self.dest = dest

    async def get(self):
        self.dest.calls += 1
        self.dest.arrived.set()
        ms = int(self.get_query_argument("ms"))
        await asyncio.sleep(ms / 1000)
        self.write({"slept_ms": ms})


class SlowDestination:
    """``/slow?ms=N`` on a free loopback port; ``arrived`` is set when a call comes in,
    ``calls`` counts them."""

    def __init__(self):
        self.arrived = threading.Event()
        self.calls = 0
        self._sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{self._sockets[0].getsockname()[1]}"
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)

    def _run(self, ready):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        HTTPServer(web.Application([(r"/slow", _Slow, {"dest": self})])).add_sockets(self._sockets)
        ready.set()
        self._loop.run_forever()

    def stop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def dest():
    d = SlowDestination()
    yield d
    d.stop()


@pytest.fixture
def serve(dest):
    """``serve(workers=1)`` → a started hookline with ``.log``; stopped at teardown."""
    started = []

    def start(workers=1):
        proc = start_hookline([PIPELINES], env={"DEST_URL": dest.url}, workers=workers,
                              extra=("--shutdown-timeout", str(SHUTDOWN_TIMEOUT)), tail=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def wait_refused(url: str, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if refused(url):
            return True
        time.sleep(0.02)
    return False


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid``, from /proc (no psutil)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def slow_request_in_background(proc, session=requests):
    result = {}

    def run():
        try:
            result["resp"] = session.get(proc.url + "/s/slow", timeout=15)
        except requests.RequestException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def sigterm_during_slow_request(proc, dest) -> bool:
    """SIGTERM while /s/slow waits on the destination (~1 s): the request completes with 200 and
    the process exits 0 in time. Returns whether new connections were refused while it ran
    (asserted last by the callers, so that a failure there does not hide the rest)."""
    thread, result = slow_request_in_background(proc)
    assert dest.arrived.wait(5), "the slow call never reached the destination"
    sent = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    refused_meanwhile = wait_refused(proc.url, timeout=0.8) and thread.is_alive()
    thread.join(10)
    assert "error" not in result, f"in-flight request failed: {result.get('error')!r}"
    assert result["resp"].status_code == 200 and result["resp"].json() == {"done": 1000}
    code = proc.proc.wait(SHUTDOWN_TIMEOUT + 2)
    took = time.monotonic() - sent
    assert code == 0, proc.log.text(1)
    assert took < SHUTDOWN_TIMEOUT, f"exit took {took:.1f} s"
    assert refused(proc.url)
    return refused_meanwhile


def test_sigterm_finishes_inflight_request_then_exits_0(serve, dest):
    proc = serve()
    assert requests.get(proc.url + "/s/ok", timeout=5).status_code == 200
    refused_meanwhile = sigterm_during_slow_request(proc, dest)
    assert "Traceback" not in proc.log.text(1)
    assert refused_meanwhile, "new connections were not refused while the in-flight request finished"


def test_two_workers_serve_and_stop_together(serve, dest):
    proc = serve(workers=2)
    deadline = time.monotonic() + 5
    while len(children(proc.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = children(proc.proc.pid)
    assert len(workers) == 2 and proc.proc.pid not in workers, workers
    with requests.Session() as s:
        for _ in range(10):
            assert s.get(proc.url + "/s/ok", timeout=5).json() == {"ok": True}
    for _ in range(10):                 # fresh connections, spread over both workers
        assert requests.get(proc.url + "/s/ok", timeout=5).status_code == 200
    refused_meanwhile = sigterm_during_slow_request(proc, dest)
    deadline = time.monotonic() + 3
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)], "workers outlived the parent"
    assert refused_meanwhile, ("new connections were not refused while the in-flight request finished "
                               "(the parent still holds the listening socket)")


def test_unexpected_failure_is_500_with_a_logged_run_id(caplog):
    """An exception the engine does not expect → a 500 problem whose run_id is in the log.

    No shipped step kind raises unexpectedly any more, so this serves (in
    process, over real HTTP) a compiled pipeline whose step is replaced by
    one that raises — the failure the catch-all exists for."""
    import asyncio
    import dataclasses
    import logging
    import threading

    from tornado.httpserver import HTTPServer

    import dsl
    from conftest import free_port
    from engine.server import App

    class Broken:
        id, is_async = "boom", False

        def run(self, ctx):
            raise RuntimeError("secret-internal-detail")

    text = "pipeline: rt-broken\nreceive: {path: /boom}\nrespond: {status: 200}\n"
    pipeline, problems = dsl.compile_text(text, "broken.yaml", env={})
    assert problems == []
    pipeline = dataclasses.replace(pipeline, steps=(Broken(),))
    port, started, loop_box = free_port(), threading.Event(), {}

    def run():
        async def main():
            server = HTTPServer(App([pipeline]))
            server.listen(port, "127.0.0.1")
            loop_box["stop"] = asyncio.Event()
            loop_box["loop"] = asyncio.get_running_loop()
            started.set()
            await loop_box["stop"].wait()
            server.stop()
        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    with caplog.at_level(logging.ERROR, logger="hookline"):
        thread.start()
        assert started.wait(10)
        resp = requests.post(f"http://127.0.0.1:{port}/boom", json={}, timeout=5)
        loop_box["loop"].call_soon_threadsafe(loop_box["stop"].set)
        thread.join(5)
    assert resp.status_code == 500
    assert resp.headers["Content-Type"] == "application/problem+json"
    doc = resp.json()
    assert doc["type"].endswith("/internal") and doc["title"] and len(doc["run_id"]) >= 8
    assert "Traceback" not in resp.text and "secret-internal-detail" not in resp.text
    [record] = [r for r in caplog.records if doc["run_id"] in r.getMessage()]
    assert record.levelname == "ERROR" and record.exc_info is not None
