"""Health probes of a real ``hookline serve`` (docs/operations.md, Health probes):
``<prefix>/health/live`` and ``<prefix>/health/ready`` without a token, on the admin
prefix and on ``--metrics-port``; ready is 503 while the store is down and while the
server drains after SIGTERM."""
from __future__ import annotations

import re
import signal
import time

import pytest
import requests
import yaml

from conftest import HOOKLINE, ROOT, Proc, free_port
from test_async_delivery import _children, dest, redis_store, sqlite_store, store, wait_until  # noqa: F401
from test_logs import access_lines
from test_metrics import ENV, PIPELINES, PREFIX, Ops, eventually, samples, value
from test_shutdown import SlowDestination, slow_request_in_background
from test_store_down import redis_server  # noqa: F401 (a fixture)
from conftest import start_hookline

SHUTDOWN = ROOT / "tests" / "pipelines" / "runtime" / "shutdown"


@pytest.fixture
def ops(dest, store):
    server = Ops(dest, store)
    yield server
    server.proc.stop()


def test_live_and_ready_answer_without_a_token_on_both_ports(ops):
    for base in (ops.url + PREFIX, ops.metrics_url):
        live = requests.get(base + "/health/live", timeout=10)
        assert live.status_code == 200 and live.json() == {"status": "live"}
        assert live.headers["Content-Type"] == "application/json"
        assert live.headers["Cache-Control"] == "no-store"
        ready = requests.get(base + "/health/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"pipelines": "ok", "draining": "ok", "store": "ok"}}
    # the token still guards everything else under the prefix
    assert requests.get(ops.url + PREFIX + "/deliveries", timeout=10).status_code == 401
    assert requests.post(ops.url + PREFIX + "/health/ready", timeout=10).status_code == 401


def test_ready_is_503_while_the_store_is_down_and_live_stays_200(redis_server, tmp_path):
    """``--workers 2`` on a Redis that is killed and started again: each HTTP worker (told apart
    by the pid of its access lines) says 503 while Redis is down and 200 once it is back; a
    scrape meanwhile counts the store's errors and leaves its gauges out rather than showing
    wrong zeros; an async request is 503 during the outage and 202 after it."""
    dest = SlowDestination()
    try:
        server = Ops(dest, redis_server.url)
    except BaseException:
        dest.stop()
        raise
    ready = lambda: requests.get(server.url + PREFIX + "/health/ready", timeout=10)  # noqa: E731
    http = {pid for pid, name in _children(server.proc.proc.pid).items() if name == "hookline-http"}
    try:
        assert len(http) == 2 and ready().status_code == 200
        assert value(samples(server.scrape()), "hookline_jobs", state="pending") == 0
        redis_server.kill()
        answers = each_worker_answers(server, ready, 503, http, "both workers to say 503")
        assert answers[0].json() == {"status": "not ready",
                                     "checks": {"pipelines": "ok", "draining": "ok", "store": "unreachable"}}
        assert all(redis_server.password not in a.text for a in answers)
        assert requests.get(server.url + PREFIX + "/health/live", timeout=10).status_code == 200
        deliver = lambda: requests.post(server.url + "/o/deliver", json={"id": 1}, timeout=10)  # noqa: E731
        assert deliver().status_code == 503                     # it needs the store
        found = samples(eventually(server.scrape, _store_errors, 10))
        assert value(found, "hookline_pipelines_loaded") == 5
        assert not {name for name, _ in found} & {"hookline_jobs", "hookline_oldest_pending_job_age_seconds"}
        redis_server.start()
        each_worker_answers(server, ready, 200, http, "both workers ready again once Redis is back", timeout=30)
        assert deliver().status_code == 202
        found = samples(server.scrape())
        assert {dict(labels)["state"] for name, labels in found if name == "hookline_jobs"} == {"pending", "leased",
                                                                                                 "dead"}
    finally:
        server.proc.stop()
        dest.stop()


def _store_errors(text: str) -> None:
    assert value(samples(text), "hookline_store_errors_total") >= 1


def each_worker_answers(server, probe, status: int, workers: set, what: str, timeout: float = 20) -> list:
    """Probe on new connections until every one of ``workers`` has answered ``status`` (their
    access lines written from now on say which answered); returns those answers."""
    start = len(server.log())
    answers, deadline = [], time.monotonic() + timeout
    while True:
        answer = probe()
        if answer.status_code == status:
            answers.append(answer)
        said = {a["pid"] for a in access_lines(server.log()[start:], "text")
                if a["path"] == PREFIX + "/health/ready" and a["status"] == status}
        if said >= workers:
            return answers
        assert time.monotonic() < deadline, f"timed out waiting for {what}: only {said} of {workers}"
        time.sleep(0.05)


def test_ready_is_503_during_the_drain_after_sigterm(tmp_path):
    """A connection opened before SIGTERM asks while a slow request is still running."""
    slow = SlowDestination()
    proc = start_hookline([SHUTDOWN], env={"DEST_URL": slow.url, "HOOKLINE_ADMIN_TOKEN": ENV["HOOKLINE_ADMIN_TOKEN"]},
                          extra=("--admin-prefix", PREFIX, "--shutdown-timeout", "8"))
    probe = requests.Session()
    try:
        assert probe.get(proc.url + PREFIX + "/health/ready", timeout=10).status_code == 200   # opens the connection
        thread, result = slow_request_in_background(proc)
        assert slow.arrived.wait(10), "the slow call never reached the destination"
        proc.proc.send_signal(signal.SIGTERM)
        answer = _until_503(probe, proc)
        assert answer.json()["checks"]["draining"] == "draining after SIGTERM"
        assert thread.is_alive(), "the slow request ended before the probe: the drain was not observed"
        thread.join(15)
        assert result["resp"].status_code == 200, result
        assert proc.proc.wait(15) == 0, proc.log.text(1)
    finally:
        probe.close()
        proc.stop()
        slow.stop()


def test_without_an_admin_prefix_or_a_metrics_port_there_are_no_probes(dest, sqlite_store):
    proc = start_hookline([PIPELINES], env={**ENV, "DEST_URL": dest.url}, extra=("--store", sqlite_store))
    try:
        assert requests.get(proc.url + PREFIX + "/health/live", timeout=10).status_code == 404
        assert requests.get(proc.url + PREFIX + "/metrics", timeout=10).status_code == 404
    finally:
        proc.stop()


# Kubernetes' Container fields (core/v1), to catch a pod field (terminationGracePeriodSeconds)
# written into a container, where Kubernetes would refuse it
CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "workingDir", "ports", "env", "envFrom",
                    "resources", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe",
                    "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "securityContext", "stdin",
                    "stdinOnce", "tty", "resizePolicy", "restartPolicy"}


def doc_pod_specs() -> list[dict]:
    text = (ROOT / "docs" / "operations.md").read_text()
    blocks = re.findall(r"<!-- kubernetes-probes -->\s*<!-- fragment -->\s*```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 2, "docs/operations.md should show two probe set-ups (admin prefix, --metrics-port)"
    return [yaml.safe_load(block)["spec"] for block in blocks]


@pytest.mark.parametrize("which", [0, 1], ids=["admin-prefix", "metrics-port"])
def test_the_documented_kubernetes_probes_answer_200_on_a_server_started_as_documented(which, dest, sqlite_store):
    spec = doc_pod_specs()[which]
    [container] = spec["containers"]
    assert {"name", "image"} <= set(container) <= CONTAINER_FIELDS, set(container) ^ CONTAINER_FIELDS
    assert spec["terminationGracePeriodSeconds"] > 10      # longer than --shutdown-timeout's default
    ports = {p["containerPort"]: free_port() for p in container["ports"]}
    args = [str(PIPELINES) if a == "/pipelines" else "127.0.0.1" if a == "0.0.0.0" else a for a in container["args"]]
    args = [str(ports.get(int(a), a)) if a.isdigit() and int(a) in ports else a for a in args]
    url = f"http://127.0.0.1:{ports[8080]}"
    proc = Proc([*HOOKLINE, *args, "--store", sqlite_store], {**ENV, "DEST_URL": dest.url}, url)
    try:
        for probe in ("livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            answer = requests.get(f"http://127.0.0.1:{ports[get['port']]}{get['path']}", timeout=10)
            assert answer.status_code == 200, (probe, answer.text)
            assert answer.json()["status"] == ("live" if probe == "livenessProbe" else "ready")
    finally:
        proc.stop()


SLOW = """\
pipeline: slow-3s
receive: {path: /s/slow, methods: [GET]}
steps:
  - id: c
    call: {url: "${env:DEST_URL}/slow?ms=3000", timeout_s: 8}
respond: {status: 200, body: "{done: steps.c.body.slept_ms}"}
"""


def test_with_two_workers_each_says_503_while_it_drains_after_sigterm(tmp_path):
    """``--workers 2``: SIGTERM reaches both HTTP workers; each, while its own slow request
    (3 s) runs, answers 503 (draining) on a connection opened before, then finishes the request."""
    (tmp_path / "slow.yaml").write_text(SLOW)
    slow = SlowDestination()
    proc = start_hookline([tmp_path], env={"DEST_URL": slow.url, "HOOKLINE_ADMIN_TOKEN": ENV["HOOKLINE_ADMIN_TOKEN"]},
                          workers=2, extra=("--admin-prefix", PREFIX, "--shutdown-timeout", "8"))
    http = {pid for pid, name in _children(proc.proc.pid).items() if name == "hookline-http"}
    sessions: dict[int, list] = {pid: [] for pid in http}
    try:
        for _ in range(200):                  # two kept-alive connections to each worker
            if all(len(s) >= 2 for s in sessions.values()):
                break
            session = requests.Session()
            sessions[worker_of(proc, session)].append(session)
        assert all(len(s) >= 2 for s in sessions.values()), {pid: len(s) for pid, s in sessions.items()}
        slow_ones = {pid: slow_request_in_background(proc, group[1]) for pid, group in sessions.items()}
        wait_until(lambda: slow.calls >= 2, 10, "both slow calls at the destination")
        proc.proc.send_signal(signal.SIGTERM)
        for pid, group in sessions.items():
            answer = _until_503(group[0], proc)
            assert answer.json()["checks"]["draining"] == "draining after SIGTERM", (pid, answer.text)
            assert slow_ones[pid][0].is_alive(), f"worker {pid}'s slow request ended before its probe said 503"
        for pid, (thread, result) in slow_ones.items():
            thread.join(15)
            assert result["resp"].status_code == 200, (pid, result)
        assert proc.proc.wait(15) == 0, proc.log.text(1)
    finally:
        for session in (s for group in sessions.values() for s in group):
            session.close()
        proc.stop()
        slow.stop()


def worker_of(proc, session) -> int:
    """The pid of the HTTP worker that ``session``'s connection reached (its access line)."""
    said = lambda: [a for a in access_lines(proc.log.text(), "text") if a["path"] == PREFIX + "/health/ready"]  # noqa: E731
    before = len(said())
    assert session.get(proc.url + PREFIX + "/health/ready", timeout=10).status_code == 200
    wait_until(lambda: len(said()) > before, 10, "the probe's access line")
    return said()[-1]["pid"]


def _until_503(probe, proc, timeout: float = 5):
    deadline = time.monotonic() + timeout
    while True:
        answer = probe.get(proc.url + PREFIX + "/health/ready", timeout=10)
        if answer.status_code == 503 or time.monotonic() > deadline:
            assert answer.status_code == 503, answer.text
            return answer
        time.sleep(0.02)     # the signal may not have been handled yet
