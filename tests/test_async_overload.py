"""Async requests the server cannot take on: a full backlog and a failed store commit both
answer 503 with Retry-After, so the sender retries and nothing is half-accepted."""
from __future__ import annotations

import asyncio
import threading
import time

import requests
from tornado.httpserver import HTTPServer

import dsl
from conftest import ROOT, free_port, start_hookline
from engine.queue import StoreUnavailable
from engine.queue.memory import MemoryStore
from engine.server import App

ASYNC = ROOT / "tests" / "pipelines" / "async" / "deliver.yaml"


def test_a_full_backlog_answers_503_with_retry_after():
    down = f"http://127.0.0.1:{free_port()}"       # nothing listens: every job stays pending
    proc = start_hookline([ASYNC], env={"DEST_URL": down}, extra=("--max-backlog", "3"))
    try:
        answers = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and 503 not in answers:
            answers.append(requests.post(proc.url + "/a/deliver", json={"rid": f"r{len(answers)}"},
                                         timeout=10).status_code)
            time.sleep(0.2)                          # the backlog is re-counted every second
        assert answers[:3] == [202, 202, 202]
        assert 503 in answers, answers
        resp = requests.post(proc.url + "/a/deliver", json={"rid": "late"}, timeout=10)
        assert resp.status_code == 503
        assert resp.headers["Retry-After"].isdigit()
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert resp.json()["type"].endswith("/unavailable")
    finally:
        proc.stop()


class _FailingStore(MemoryStore):
    """A store whose commit fails, as a full disk or a lost Redis connection would."""

    async def enqueue(self, jobs, dedupe=None, source=None):
        raise StoreUnavailable("disk full")


def test_a_failed_commit_answers_503_and_stores_nothing():
    pipelines, problems = dsl.compile_paths([ASYNC], env={"DEST_URL": "http://127.0.0.1:9"})
    assert [p for p in problems if p.severity == "error"] == []
    store, port, ready, box = _FailingStore(), free_port(), threading.Event(), {}

    def run():
        async def main():
            await store.open()
            server = HTTPServer(App(pipelines, store=store))
            server.listen(port, "127.0.0.1")
            box["stop"], box["loop"] = asyncio.Event(), asyncio.get_running_loop()
            ready.set()
            await box["stop"].wait()
            server.stop()
        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        resp = requests.post(f"http://127.0.0.1:{port}/a/deliver", json={"rid": "x"}, timeout=10)
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(5)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"].isdigit()
    assert "disk full" not in resp.text                 # the store's own words stay in the log
    assert resp.json()["detail"] == "the request could not be stored; retry later"
