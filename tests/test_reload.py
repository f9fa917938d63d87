"""Change without a restart: SIGHUP and ``serve --reload`` swap pipelines in every worker (issue 16).

A real ``hookline serve --workers 2`` over loopback; its pipeline directory is rewritten by the
tests. Nothing waits for fixed times: each test polls until the change is visible.
"""
from __future__ import annotations

import re
import signal
import threading
import time

import pytest
import requests

from conftest import free_port, start_hookline

STABLE = "pipeline: stable\nreceive: {{path: /stable, methods: [GET]}}\nrespond: {{body: \"'{tag}'\"}}\n"
EXTRA = "pipeline: extra-{n}\nreceive: {{path: /extra/{n}, methods: [GET]}}\nrespond: {{body: \"'extra {n}'\"}}\n"


def wait_until(check, timeout=20.0, what="condition"):
    """Poll ``check()`` until true; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{what} not seen within {timeout} s")


def answers(url, path, expected_status, expected_body=None, times=6) -> bool:
    """``times`` requests in a row (spread over the workers) all answer as expected."""
    for _ in range(times):
        resp = requests.get(url + path, timeout=10)
        if resp.status_code != expected_status or (expected_body is not None and resp.json() != expected_body):
            return False
    return True


@pytest.fixture
def pipeline_dir(tmp_path):
    (tmp_path / "stable.yaml").write_text(STABLE.format(tag="v0"))
    return tmp_path


def test_sighup_swaps_changed_added_and_removed_pipelines_in_every_worker(pipeline_dir):
    server = start_hookline([pipeline_dir], workers=2, tail=True)
    try:
        assert answers(server.url, "/stable", 200, "v0")
        (pipeline_dir / "stable.yaml").write_text(STABLE.format(tag="v1"))
        (pipeline_dir / "extra.yaml").write_text(EXTRA.format(n=1))
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: answers(server.url, "/stable", 200, "v1") and answers(server.url, "/extra/1", 200),
                   what="v1 and /extra/1")
        (pipeline_dir / "extra.yaml").unlink()
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: answers(server.url, "/extra/1", 404), what="/extra/1 removed")
        assert "reload: 2 pipeline(s): +extra-1@" in server.log.text()
    finally:
        server.stop()


def test_a_reload_with_errors_keeps_serving_and_logs_each_diagnostic(pipeline_dir):
    metrics_port = free_port()
    server = start_hookline([pipeline_dir], workers=2, tail=True, extra=("--metrics-port", str(metrics_port)))
    try:
        (pipeline_dir / "stable.yaml").write_text(STABLE.format(tag="v1").replace("respond:", "respnd:"))
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload failed" in server.log.text(), what="the failed reload's log line")
        log = server.log.text()
        assert "stable.yaml:3:1: unknown-key: unknown key 'respnd'" in log
        assert "still serving 1 pipeline(s)" in log
        assert answers(server.url, "/stable", 200, "v0")
        assert server.proc.poll() is None
        assert requests.get(f"http://127.0.0.1:{metrics_port}/health/ready", timeout=10).status_code == 200
        wait_until(lambda: re.search(r"^hookline_failed_reloads 1(\.0)?$", requests.get(
                   f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text, re.M),
                   what="the failed reload counted in the metrics")
        (pipeline_dir / "stable.yaml").write_text(STABLE.format(tag="v2"))     # fixed: taken
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: answers(server.url, "/stable", 200, "v2"), what="v2 after the fix")
    finally:
        server.stop()


class Load:
    """``connections`` keep-alive clients GETting /stable in a loop until stopped; every
    answer that is not a 200, and every connection error, is kept."""

    def __init__(self, url, connections=32):
        self.url, self.stop, self.problems, self.count = url, threading.Event(), [], 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(connections)]
        for t in self.threads:
            t.start()

    def run(self):
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    resp = session.get(self.url + "/stable", timeout=30)
                    self.count += 1
                    if resp.status_code != 200:
                        self.problems.append(f"{resp.status_code} {resp.text[:200]}")
                except requests.RequestException as exc:
                    self.problems.append(repr(exc))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def test_twenty_reloads_under_load_drop_nothing_and_show_within_two_seconds(pipeline_dir):
    server = start_hookline([pipeline_dir], workers=2, tail=True, extra=("--reload",))
    load = Load(server.url)
    seen = []
    try:
        for n in range(1, 21):
            (pipeline_dir / "stable.yaml").write_text(STABLE.format(tag=f"v{n}"))        # changed
            (pipeline_dir / f"extra-{n}.yaml").write_text(EXTRA.format(n=n))           # added
            if n > 1:
                (pipeline_dir / f"extra-{n - 1}.yaml").unlink()                        # removed
            seen.append(wait_until(
                lambda: answers(server.url, f"/extra/{n}", 200, f"extra {n}", times=2)
                and answers(server.url, "/stable", 200, f"v{n}", times=2)
                and (n == 1 or answers(server.url, f"/extra/{n - 1}", 404, times=2)),
                what=f"change {n}"))
    finally:
        load.finish()
        server.stop()
    print("seconds until each change was visible:", [round(s, 2) for s in seen], "requests:", load.count)
    assert load.problems == []
    assert load.count > 100
    assert max(seen) <= 2.0, f"seconds until each change was visible: {[round(s, 2) for s in seen]}"
