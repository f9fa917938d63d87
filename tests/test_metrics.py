"""Prometheus metrics of a real ``hookline serve --workers 2`` (docs/operations.md).

The server runs tests/pipelines/ops with the admin endpoints and ``--metrics-port``
on, against the recording destination of test_async_delivery.py, on SQLite and on
Redis. The tests send requests whose outcomes are known (answers, refusals,
deliveries that succeed, are retried and die, a repeated delivery), then read the
exposition: the counts must be exact summed over both HTTP workers and the delivery
worker, ``promtool check metrics`` must accept it, and a real Prometheus server,
configured with the scrape config printed in docs/operations.md, must scrape it.

``promtool`` and ``prometheus`` (Debian: ``apt-get install -y prometheus``) are
needed; without them these tests skip, except with CI=true, where they fail.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, free_port, start_hookline
from test_async_delivery import dest, redis_store, sqlite_store, store, wait_until  # noqa: F401 (fixtures)

PIPELINES = ROOT / "tests" / "pipelines" / "ops"
DOC = ROOT / "docs" / "operations.md"
PREFIX, TOKEN = "/_hookline", "ops-admin-token-0123456789"
GONE = f"127.0.0.1:{free_port()}"       # nothing listens there (ops-fails calls it)
ENV = {"OPS_BEARER": "ops-bearer-" + uuid.uuid4().hex, "OPS_GITHUB_SECRET": "ops-gh-" + uuid.uuid4().hex,
       "HOOKLINE_ADMIN_TOKEN": TOKEN, "GONE_URL": f"http://{GONE}"}


def tool(name: str) -> str:
    """The path of a Prometheus tool, or skip (fail under CI=true) saying how to get it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH: apt-get install -y prometheus (Debian's package has both tools)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class Ops:
    """A started server: ``url``, ``metrics_url`` (the --metrics-port), the process."""

    def __init__(self, dest, store, workers=2, extra=()):
        self.metrics_port = free_port()
        self.proc = start_hookline([PIPELINES], env={**ENV, "DEST_URL": dest.url}, workers=workers,
                                   extra=("--store", store, "--admin-prefix", PREFIX,
                                          "--metrics-port", str(self.metrics_port), *extra))
        self.url, self.metrics_url = self.proc.url, f"http://127.0.0.1:{self.metrics_port}"

    def log(self) -> str:
        return self.proc.log.text()

    def scrape(self) -> str:
        resp = requests.get(self.url + PREFIX + "/metrics", headers={"Authorization": "Bearer " + TOKEN}, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4"), resp.headers
        return resp.text


@pytest.fixture
def ops(dest, store):
    server = Ops(dest, store)
    yield server
    server.proc.stop()


def samples(text: str) -> dict:
    """``{(sample name, frozenset of label pairs): value}`` of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, have), v in found.items() if n == name and want <= have)


def github(body: bytes) -> str:
    return "sha256=" + hmac.new(ENV["OPS_GITHUB_SECRET"].encode(), body, hashlib.sha256).hexdigest()


def served_by(log: str, pipeline: str) -> set[str]:
    """The pids of the access lines of ``pipeline``."""
    return set(re.findall(rf"hookline\.access\[(\d+)\]: \S+ \S+ \d+ \S+ pipeline={re.escape(pipeline)} ", log))


def spread_over_workers(server, limit=400) -> int:
    """POST good orders, each on a new connection, until both HTTP workers answered some;
    returns how many were sent (all answered 200)."""
    sent = 0
    while sent < limit:
        resp = requests.post(server.url + "/o/sync", json={"id": sent}, timeout=10)
        assert resp.status_code == 200 and resp.json() == {"id": sent}, resp.text
        sent += 1
        if sent >= 10 and len(served_by(server.log(), "ops-sync")) >= 2:
            return sent
    raise AssertionError(f"{limit} requests on new connections all went to one worker:\n{server.log()[-2000:]}")


def refuse_each_way(server) -> None:
    """One request refused for each reason the ops pipelines have."""
    post = lambda path, **kw: requests.post(server.url + path, timeout=10, **kw)  # noqa: E731
    assert post("/o/sync", json={"no": "id"}).status_code == 422                        # validation
    assert post("/o/sync", json={"id": 1, "pad": "x" * 5000}).status_code == 413         # body-too-large
    with requests.Session() as one_worker:      # rate limits are per worker on SQLite: one connection
        guarded = lambda **kw: one_worker.post(server.url + "/o/guarded", json={}, timeout=10, **kw)  # noqa: E731
        assert guarded().status_code == 401                                             # unauthorized
        bearer = {"Authorization": "Bearer " + ENV["OPS_BEARER"]}
        # burst 3: the 401 took a token with local buckets, not with Redis's (checked after auth)
        answers = []
        while len(answers) < 4 and 429 not in answers:
            answers.append(guarded(headers=bearer).status_code)
        assert answers[-1] == 429 and set(answers[:-1]) == {200} and len(answers) in (3, 4), answers
    body = b'{"n": 1}'
    signed = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "d1"}
    assert post("/o/signed", data=body, headers={**signed, "X-Hub-Signature-256": github(b"other")}).status_code == 401
    assert post("/o/signed", data=body, headers=signed).status_code == 401               # no signature header
    assert post("/o/signed", data=body, headers={**signed, "X-Hub-Signature-256": github(body)}).status_code == 200


def deliver_each_way(server, dest) -> None:
    """Async deliveries: one done at once, one retried then done, one dead after its two
    attempts, and a repeated delivery answered from the store."""
    ok, retried, dead = (f"{what}-{uuid.uuid4().hex[:8]}" for what in ("ok", "retried", "dead"))
    dest.plan(retried, 503)
    dest.plan(dead, 503, 503)
    first = {}
    for rid in (ok, retried, dead):
        first[rid] = requests.post(server.url + "/o/deliver", json={"id": rid}, headers={"webhook-id": rid},
                                   timeout=10)
        assert first[rid].status_code == 202, first[rid].text
    again = requests.post(server.url + "/o/deliver", json={"id": ok}, headers={"webhook-id": ok}, timeout=10)
    assert again.status_code == 202 and again.json() == first[ok].json(), again.text
    wait_until(lambda: dest.delivered() >= {ok, retried} and len(dest.of(dead)) == 2, 30, "the deliveries")


def test_metrics_count_exactly_over_workers_and_the_delivery_worker(ops, dest):
    """Every count as sent, summed over the processes; the exposition passes promtool."""
    promtool = tool("promtool")
    good = spread_over_workers(ops)
    refuse_each_way(ops)
    deliver_each_way(ops, dest)
    assert requests.post(ops.url + "/o/fails", json={}, timeout=10).status_code == 502
    for path in [f"/nothing/{uuid.uuid4().hex}" for _ in range(20)]:      # 20 paths: still one series
        assert requests.delete(ops.url + path, timeout=10).status_code == 404
    assert requests.request("BREW", ops.url + "/nothing/coffee", timeout=10).status_code == 404
    text = eventually(ops.scrape, lambda text: exact(samples(text), good, dest), 30)
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def eventually(scrape, check, timeout: float) -> str:
    """Scrape until ``check(text)`` passes (each process writes its counts once a second);
    after ``timeout`` its AssertionError is the test's failure. Returns the text that passed."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape()
        try:
            check(text)
            return text
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def exact(found: dict, good: int, dest) -> None:
    """What test_metrics_count_exactly_... sent, as the exposition must count it."""
    sync = {"pipeline": "ops-sync"}
    assert value(found, "hookline_requests_total", **sync, method="POST", status="200") == good
    assert value(found, "hookline_request_duration_seconds_count", **sync) == good + 2     # + the 422 and 413
    assert value(found, "hookline_step_duration_seconds_count", **sync, step="shape") == good
    refusals = {(dict(labels)["pipeline"], dict(labels)["reason"]): v for (name, labels), v in found.items()
                if name == "hookline_refusals_total"}
    assert refusals == {("ops-sync", "validation"): 1, ("ops-sync", "body-too-large"): 1,
                        ("ops-guarded", "unauthorized"): 1, ("ops-guarded", "rate-limited"): 1,
                        ("ops-signed", "signature-no-match"): 1, ("ops-signed", "signature-missing-header"): 1}
    deliver = {"pipeline": "ops-deliver", "branch": "dest"}
    assert [value(found, "hookline_deliveries_total", **deliver, outcome=o) for o in ("done", "retry", "dead")] \
        == [2, 2, 1]
    assert value(found, "hookline_delivery_attempt_seconds_count", **deliver) == 5
    calls = {"pipeline": "ops-deliver", "step": "send", "host": dest.url.removeprefix("http://")}
    assert value(found, "hookline_calls_total", **calls, outcome="2xx") == 2
    assert value(found, "hookline_calls_total", **calls, outcome="5xx") == 3
    assert value(found, "hookline_dedupe_hits_total", pipeline="ops-deliver") == 1
    assert [value(found, "hookline_jobs", state=s) for s in ("pending", "leased", "dead")] == [0, 0, 1]
    assert value(found, "hookline_oldest_pending_job_age_seconds") == 0
    assert value(found, "hookline_calls_total", pipeline="ops-fails", step="gone", host=GONE, outcome="unreachable") \
        == 1
    assert value(found, "hookline_requests_total", pipeline="ops-fails", status="502") == 1
    assert value(found, "hookline_pipelines_loaded") == 5
    assert value(found, "hookline_store_errors_total") == 0
    unrouted = {dict(labels)["method"]: v for (name, labels), v in found.items()
                if name == "hookline_requests_total" and ("pipeline", "_unrouted") in labels}
    assert unrouted.pop("GET", 0) >= 1           # the test's probes while the server started
    assert unrouted == {"DELETE": 20, "other": 1}


def test_metrics_need_the_admin_token_except_on_the_metrics_port(ops):
    for auth in (None, "Bearer wrong-token-0123456789", "Basic " + TOKEN):
        resp = requests.get(ops.url + PREFIX + "/metrics", headers={"Authorization": auth} if auth else {},
                            timeout=10)
        assert resp.status_code == 401 and "hookline_" not in resp.text, resp.text
    requests.post(ops.url + "/o/sync", json={"id": 1}, timeout=10)

    def open_port():
        resp = requests.get(ops.metrics_url + "/metrics", timeout=10)
        assert resp.status_code == 200
        return resp.text

    def counted(text):
        assert value(samples(text), "hookline_requests_total", pipeline="ops-sync") == 1
    eventually(open_port, counted, 10)
    assert requests.get(ops.metrics_url + "/elsewhere", timeout=10).status_code == 404


def doc_scrape_configs() -> list[dict]:
    """The scrape jobs of docs/operations.md's Prometheus configuration blocks."""
    blocks = re.findall(r"<!-- prometheus-config -->\s*<!-- fragment -->\s*```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2, "docs/operations.md should show two scrape configs (admin prefix, --metrics-port)"
    return [job for block in blocks for job in yaml.safe_load(block)["scrape_configs"]]


class Prometheus:
    """``prometheus`` on a free loopback port with ``config``; its data in a temporary directory."""

    def __init__(self, config: dict, workdir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        checked = subprocess.run([tool("promtool"), "check", "config", str(path)], capture_output=True, text=True,
                                 timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        self.out = open(workdir / "prometheus.log", "w")
        self.proc = subprocess.Popen([tool("prometheus"), f"--config.file={path}",
                                      f"--storage.tsdb.path={workdir / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.out, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list:
        try:
            resp = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5)
        except requests.RequestException:
            assert self.proc.poll() is None, "prometheus exited"
            return []
        return resp.json()["data"]["result"] if resp.status_code == 200 else []

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def test_a_real_prometheus_scrapes_both_ways_with_the_documented_config(dest, sqlite_store, tmp_path):
    tool("prometheus")
    server = Ops(dest, sqlite_store)
    jobs = doc_scrape_configs()
    try:
        target = f"127.0.0.1:{server.proc.url.rpartition(':')[2]}"
        for job in jobs:
            job["scrape_interval"] = job["scrape_timeout"] = "1s"
            port_job = "authorization" not in job
            job["static_configs"] = [{"targets": [f"127.0.0.1:{server.metrics_port}" if port_job else target]}]
            if not port_job:
                assert job["metrics_path"] == PREFIX + "/metrics"
                job["authorization"].pop("credentials_file")
                job["authorization"]["credentials"] = TOKEN
        for i in range(3):
            assert requests.post(server.url + "/o/sync", json={"id": i}, timeout=10).status_code == 200
        prometheus = Prometheus({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}, tmp_path)
        try:
            for job in jobs:
                wait_until(lambda: prometheus.query(f'up{{job="{job["job_name"]}"}} == 1'), 90,
                           f"prometheus scraping job {job['job_name']}", poll=0.5)
                expr = f'hookline_requests_total{{job="{job["job_name"]}",pipeline="ops-sync",status="200"}}'
                wait_until(lambda: [float(r["value"][1]) for r in prometheus.query(expr)] == [3.0], 30,
                           f"{expr} = 3 in prometheus", poll=0.5)
        finally:
            prometheus.stop()
    finally:
        server.proc.stop()


def test_observations_land_in_the_bucket_prometheus_would_put_them_in(tmp_path, monkeypatch):
    """The request path keeps its own bucket counts (engine/metrics.py, _Timing) and adds them to
    prometheus-client's values when it flushes: ``le`` is inclusive, and +Inf takes the rest."""
    from prometheus_client import values

    from engine import metrics
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)        # restored afterwards
    monkeypatch.setenv(metrics.ENV, str(tmp_path))
    metrics.enable(str(tmp_path))
    counters = metrics.Metrics()
    for seconds in (0.0, 0.0005, 0.00050001, 0.001, 29.9, 30.0, 31.0, 1e9):
        counters.request("p", "POST", 200, seconds)
    assert value(samples(metrics.exposition({}).decode()), "hookline_requests_total") == 0    # not flushed yet
    counters.flush()
    counters.request("p", "GET", 404, 0.002)
    counters.flush()
    found = samples(metrics.exposition({}).decode())
    bucket = lambda le: value(found, "hookline_request_duration_seconds_bucket", pipeline="p", le=le)  # noqa: E731
    assert [bucket(le) for le in ("0.0005", "0.001", "0.0025", "10.0", "30.0", "+Inf")] == [2, 4, 5, 5, 7, 9]
    assert value(found, "hookline_request_duration_seconds_count", pipeline="p") == 9
    assert value(found, "hookline_request_duration_seconds_sum", pipeline="p") == pytest.approx(
        0.0005 + 0.00050001 + 0.001 + 29.9 + 30.0 + 31.0 + 1e9 + 0.002)
    assert value(found, "hookline_requests_total", method="POST", status="200") == 8
    assert value(found, "hookline_requests_total", method="GET", status="404") == 1


def test_the_metrics_directory_is_private_removed_at_exit_and_a_killed_servers_is_removed_at_start(
        dest, sqlite_store):
    """serve makes hookline-metrics-<its pid>-* in the temporary directory and removes it when it
    exits; one left by a server that was killed (its pid gone) is removed by the next start."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = Path(tempfile.mkdtemp(prefix=f"hookline-metrics-{gone.pid}-"))
    (orphan / "counter_1.db").write_bytes(b"\0" * 16)
    server = Ops(dest, sqlite_store, workers=1)
    try:
        mine = list(Path(tempfile.gettempdir()).glob(f"hookline-metrics-{server.proc.proc.pid}-*"))
        assert len(mine) == 1 and any(mine[0].iterdir()), mine
        assert not orphan.exists()
    finally:
        server.proc.stop()
    assert server.proc.proc.returncode == 0 and not mine[0].exists()


WAITING = """\
pipeline: ops-wait
description: One async branch whose failed attempt waits five minutes when the destination says Retry-After 300 (pending jobs for the gauges).
receive:
  path: /w
  methods: [POST]
async:
  - id: later
    steps:
      - id: send
        call:
          url: "${env:DEST_URL}/recv"
          body: request.body
          timeout_s: 60
    retry: {max_attempts: 2, initial_s: 300, max_s: 300}
"""


def test_job_gauges_and_deliveries_counted_once_with_two_delivery_workers(dest, store, tmp_path):
    """``--workers 2 --delivery-workers 2`` on SQLite and on Redis: jobs waiting for their next
    try are ``pending`` and the oldest one's age is its age; a job held at the destination is
    ``leased``; each attempt is counted once though four processes count."""
    (tmp_path / "wait.yaml").write_text(WAITING)
    port = free_port()
    proc = start_hookline([tmp_path], env={"DEST_URL": dest.url}, workers=2,
                          extra=("--store", store, "--delivery-workers", "2", "--metrics-port", str(port)))
    scrape = lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text  # noqa: E731
    jobs = lambda found: [value(found, "hookline_jobs", state=s) for s in ("pending", "leased", "dead")]  # noqa: E731
    branch = {"pipeline": "ops-wait", "branch": "later"}
    tried = lambda found, outcome: value(found, "hookline_deliveries_total", **branch, outcome=outcome)  # noqa: E731
    try:
        waiting = [f"wait-{i}-{uuid.uuid4().hex[:8]}" for i in range(6)]
        first_sent = time.time()
        for i, rid in enumerate(waiting):
            dest.plan(rid, (503, "300"))      # Retry-After: the next try in max_s, not jittered below it
            resp = requests.post(proc.url + "/w", json={"id": rid}, timeout=10)
            assert resp.status_code == 202, resp.text
            if i == 0:
                first_acked = time.time()

        def all_waiting(text):
            found = samples(text)
            seen = (jobs(found), [tried(found, o) for o in ("retry", "done", "dead")],
                    [(c.rid, c.status) for c in dest.calls])
            assert seen[:2] == ([6, 0, 0], [6, 0, 0]), (seen, proc.log.text()[-3000:])
        eventually(scrape, all_waiting, 30)
        before = time.time()
        found = samples(scrape())
        after = time.time()
        age = value(found, "hookline_oldest_pending_job_age_seconds")
        assert before - first_acked <= age <= after - first_sent, (first_sent, first_acked, before, age, after)
        assert [len(dest.of(rid)) for rid in waiting] == [1] * 6      # each tried once, by one worker
        assert proc.log.text().count("(in 300.0 s)") == 6, proc.log.text()    # each next try 5 minutes away

        dest.hold()
        held = f"held-{uuid.uuid4().hex[:8]}"
        assert requests.post(proc.url + "/w", json={"id": held}, timeout=10).status_code == 202
        wait_until(lambda: dest.held() == 1, 30, "the new job to reach the held destination")

        def one_leased(text):
            assert jobs(samples(text)) == [6, 1, 0]
        eventually(scrape, one_leased, 10)
        assert value(samples(scrape()), "hookline_oldest_pending_job_age_seconds") >= age   # still the first job
        dest.release()
        wait_until(lambda: held in dest.delivered(), 30, "the held job delivered")

        def counted_once(text):
            found = samples(text)
            seen = (jobs(found), [tried(found, o) for o in ("retry", "done", "dead")])
            assert seen == ([6, 0, 0], [6, 1, 0]), (seen, [(c.rid, c.status) for c in dest.calls])
            assert value(found, "hookline_delivery_attempt_seconds_count", **branch) == 7
            assert value(found, "hookline_requests_total", pipeline="ops-wait", status="202") == 7
        eventually(scrape, counted_once, 30)
    finally:
        proc.stop()


def doc_metrics_table() -> dict:
    """docs/operations.md's metrics table: ``{name: (type, frozenset of labels)}``."""
    section = DOC.read_text().partition("\n## Metrics\n")[2].partition("\n## ")[0]
    rows = re.findall(r"^\| `(hookline_\w+)` \| (\w+) \|([^|]*)\|", section, re.M)
    assert len(rows) >= 13, rows
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def test_the_metrics_table_documents_exactly_what_is_exposed(dest, sqlite_store):
    """Every name in docs/operations.md's table is exposed with the type and labels written
    there, and every hookline_ metric exposed is in the table."""
    server = Ops(dest, sqlite_store, workers=1)
    try:
        assert requests.post(server.url + "/o/sync", json={"id": 1}, timeout=10).status_code == 200
        assert requests.post(server.url + "/o/sync", json={}, timeout=10).status_code == 422    # a refusal
        assert requests.post(server.url + "/o/fails", json={}, timeout=10).status_code == 502   # a call
        exposed = {}
        for family in text_string_to_metric_families(server.scrape()):
            name = family.name + ("_total" if family.type == "counter" else "")
            exposed[name] = (family.type, frozenset(k for s in family.samples for k in s.labels) - {"le"})
    finally:
        server.proc.stop()
    assert all(name.startswith("hookline_") for name in exposed), exposed
    assert doc_metrics_table() == exposed


def doc_queries() -> list[str]:
    """The PromQL of docs/operations.md's "Useful queries" table (``\\|`` read as ``|``)."""
    section = DOC.read_text().partition("### Useful queries")[2].partition("\n## ")[0]
    queries = [q.replace("\\|", "|") for q in re.findall(r"^\| [^|`]+ \| `(.+)` \|$", section, re.M)]
    assert len(queries) >= 10, queries
    return queries


def test_the_documented_queries_and_alerting_rules_pass_promtool_and_use_documented_metrics(tmp_path):
    blocks = re.findall(r"<!-- prometheus-rules -->\s*<!-- fragment -->\s*```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/operations.md should show one rules file"
    queries = {"groups": [{"name": "queries", "rules": [{"record": f"hookline:query_{i}", "expr": q}
                                                        for i, q in enumerate(doc_queries())]}]}
    (tmp_path / "alerts.yml").write_text(blocks[0])
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(queries))
    checked = subprocess.run([tool("promtool"), "check", "rules", str(tmp_path / "alerts.yml"),
                              str(tmp_path / "queries.yml")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    used = set(re.findall(r"\bhookline_\w+", blocks[0] + " ".join(doc_queries())))
    documented = {name + suffix for name, (kind, _) in doc_metrics_table().items()
                  for suffix in (("_bucket", "_sum", "_count") if kind == "histogram" else ("",))}
    assert used and used <= documented, used - documented
