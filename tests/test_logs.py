"""The log of a real ``hookline serve --workers 2`` (docs/operations.md, Logs), as text and
as JSON, on SQLite and Redis: one access line per request with its facts, a line per
failed delivery attempt and per dead letter — and never a secret, a signature, an
Authorization value, a query string or a body, however the request ends."""
from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid

import pytest
import requests

from test_async_delivery import _children, dest, redis_store, sqlite_store, store, wait_until  # noqa: F401 (fixtures)
from conftest import start_hookline
from test_metrics import ENV, PIPELINES, PREFIX, TOKEN, Ops, github

import dsl

MARK = "leak-" + uuid.uuid4().hex       # in every credential, signature, query and body sent
TEXT_ACCESS = re.compile(r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) INFO hookline\.access\[(?P<pid>\d+)\]: "
                         r"(?P<method>\S+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>\d+\.\d\d)ms "
                         r"pipeline=(?P<pipeline>\S+) version=(?P<version>\S+) run=(?P<run>\S+) delivery=(?P<delivery>\S+) "
                         r"trace=(?P<trace>\S+)$")


@pytest.fixture(params=["text", "json"])
def fmt(request):
    return request.param


@pytest.fixture
def ops(dest, store, fmt):
    server = Ops(dest, store, extra=("--log-format", fmt))
    yield server
    server.proc.stop()


def access_lines(log: str, fmt: str) -> list[dict]:
    """The access lines as dicts with the JSON keys (text: ``-`` read as empty)."""
    out = []
    for line in log.splitlines():
        if fmt == "json" and line.startswith("{"):
            doc = json.loads(line)
            if doc["logger"] == "hookline.access":
                out.append(doc)
        elif fmt == "text" and (m := TEXT_ACCESS.match(line)):
            out.append({"pipeline": m["pipeline"], "method": m["method"], "path": m["path"],
                        "status": int(m["status"]), "duration_ms": float(m["ms"]), "pid": int(m["pid"]),
                        **{key: "" if m[name] == "-" else m[name] for key, name in
                           (("version", "version"), ("run_id", "run"), ("delivery_id", "delivery"),
                            ("trace_id", "trace"))}})
    return out


def send_everything(ops, dest) -> dict:
    """Requests that end every way, each carrying MARK; returns their answers by name."""
    url, sent = ops.url, {}
    creds = {"Authorization": f"Bearer {MARK}", "Cookie": f"session={MARK}", "X-Hub-Signature-256": MARK,
             "X-Api-Key": MARK}
    sent["ok"] = requests.post(f"{url}/o/sync?api_key={MARK}", json={"id": MARK}, headers=creds, timeout=10)
    sent["invalid"] = requests.post(f"{url}/o/sync?token={MARK}", json={"secret": MARK}, headers=creds, timeout=10)
    sent["unauthorized"] = requests.post(f"{url}/o/guarded", json={"x": MARK}, headers=creds, timeout=10)
    body = json.dumps({"x": MARK}).encode()
    signed = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": MARK}
    sent["bad-signature"] = requests.post(f"{url}/o/signed", data=body, timeout=10,
                                          headers={**signed, "X-Hub-Signature-256": github(b"x" + body)})
    sent["signed"] = requests.post(f"{url}/o/signed", data=body, timeout=10,
                                   headers={**signed, "X-Hub-Signature-256": github(body)})
    sent["fails"] = requests.post(f"{url}/o/fails?k={MARK}", json={"x": MARK}, headers=creds, timeout=10)
    sent["not-found"] = requests.get(f"{url}/nothing/here?key={MARK}", headers=creds, timeout=10)
    dead = f"dead-{MARK}"
    dest.plan(dead, 503, 503)
    sent["dead"] = requests.post(f"{url}/o/deliver?k={MARK}", json={"id": dead}, timeout=10,
                                 headers={**creds, "webhook-id": f"w-{MARK}"})
    sent["admin"] = requests.get(f"{url}{PREFIX}/deliveries", headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=10)
    assert {name: r.status_code for name, r in sent.items()} == {
        "ok": 200, "invalid": 422, "unauthorized": 401, "bad-signature": 401, "signed": 200, "fails": 502,
        "not-found": 404,
        "dead": 202, "admin": 200}
    wait_until(lambda: "dead after 2 attempt(s)" in ops.log(), 30, "the dead letter's log line")
    return sent


def test_an_access_line_per_request_and_a_line_per_failed_attempt_with_no_secret(ops, dest, fmt):
    sent = send_everything(ops, dest)
    log = ops.log()
    lines = access_lines(log, fmt)
    seen = {(a["method"], a["path"], a["status"], a["pipeline"]) for a in lines}
    assert seen >= {("POST", "/o/sync", 200, "ops-sync"), ("POST", "/o/sync", 422, "ops-sync"),
                    ("POST", "/o/guarded", 401, "ops-guarded"), ("POST", "/o/signed", 401, "ops-signed"),
                    ("POST", "/o/signed", 200, "ops-signed"), ("GET", "/nothing/here", 404, "_unrouted"),
                    ("POST", "/o/deliver", 202, "ops-deliver"), ("GET", PREFIX + "/deliveries", 200, "_admin")}, log
    versions = {p.name: p.version for p in dsl.compile_paths([PIPELINES], env={**ENV, "DEST_URL": dest.url})[0]}
    for a in lines:
        assert a["duration_ms"] >= 0 and a["trace_id"] == ""
        assert a["version"] == versions.get(a["pipeline"], ""), a     # as `hookline lint --versions` says
        assert bool(re.fullmatch(r"[0-9a-f]{16}", a["run_id"])) == (not a["pipeline"].startswith("_")), a
    [failed] = [a for a in lines if a["pipeline"] == "ops-fails"]
    assert failed["run_id"] == sent["fails"].json()["run_id"]     # the id the client can quote
    assert re.search(rf"run {failed['run_id']} pipeline ops-fails: step 'gone': destination unreachable", log), log
    [deliver] = [a for a in lines if a["pipeline"] == "ops-deliver"]
    assert deliver["delivery_id"] == sent["dead"].json()["id"]
    assert {a["delivery_id"] for a in lines if a is not deliver} == {""}
    assert len({a["run_id"] for a in lines if a["run_id"]}) == len([a for a in lines if a["run_id"]])
    if fmt == "json":
        assert all(a["level"] == "info" for a in lines)
        every = [json.loads(line) for line in log.splitlines() if line.strip()]     # each line is JSON
        assert {"time", "level", "logger", "pid", "message"} <= set.intersection(*(set(d) for d in every))
        assert any(d["message"].startswith("hookline: serving 5 pipeline(s)") for d in every)
        attempts = [json.loads(line) for line in log.splitlines()
                    if line.startswith("{") and json.loads(line)["logger"] == "hookline.delivery"]
        retry, dead = [a for a in attempts if a.get("delivery") == deliver["delivery_id"]]
        assert (retry["level"], retry["outcome"], retry["attempt"], dead["outcome"], dead["attempt"]) == \
            ("warning", "retry", 1, "dead", 2)
        assert retry["error"] == "step 'send': destination answered 503"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", retry["next_try_at"])
        assert dead["reason"].endswith("destination answered 503") and dead["job"] == retry["job"]
        assert retry["version"] == dead["version"] == versions["ops-deliver"]
    else:
        assert re.search(r"WARNING hookline\.delivery\[\d+\]: job \w+ attempt 1 failed: step 'send': destination "
                         r"answered 503; next try at \d{4}-\d\d-\d\dT[\d:.]+Z \(in [\d.]+ s\)", log), log
        assert re.search(r"WARNING hookline\.delivery\[\d+\]: job \w+ dead after 2 attempt\(s\): .*destination "
                         r"answered 503", log), log
    for secret in (MARK, ENV["OPS_BEARER"], ENV["OPS_GITHUB_SECRET"], TOKEN):
        assert secret not in log, f"{secret} is in the log:\n{log}"


@pytest.fixture
def json_ops(dest, store):
    server = Ops(dest, store, extra=("--log-format", "json"))
    yield server
    server.proc.stop()


def test_with_two_workers_each_writes_its_own_whole_json_access_lines(json_ops):
    """``--workers 2 --log-format json`` on SQLite and Redis: requests on new connections land
    on both HTTP workers; each request has exactly one access line, every line of the shared
    output is one whole JSON object, and the pids are the two HTTP workers'."""
    workers = _children(json_ops.proc.proc.pid)
    http = {pid for pid, name in workers.items() if name == "hookline-http"}
    assert len(http) == 2, workers
    sent, pids = 0, set()
    while sent < 400 and not (sent >= 10 and len(pids) == 2):
        resp = requests.post(json_ops.url + "/o/sync", json={"id": sent}, timeout=10)
        assert resp.status_code == 200 and resp.json() == {"id": sent}, resp.text
        sent += 1
        pids = {a["pid"] for a in access_lines(json_ops.log(), "json") if a["pipeline"] == "ops-sync"}
    assert pids == http, (pids, workers)
    wait_until(lambda: len([a for a in access_lines(json_ops.log(), "json") if a["pipeline"] == "ops-sync"])
               >= sent, 10, "an access line per request")
    log = json_ops.log()
    every = [json.loads(line) for line in log.splitlines() if line.strip()]   # a torn line would not parse
    mine = [d for d in every if d["logger"] == "hookline.access" and d["pipeline"] == "ops-sync"]
    assert len(mine) == sent and all(d["status"] == 200 and d["path"] == "/o/sync" for d in mine), mine
    assert len({d["run_id"] for d in mine}) == sent      # one line per request, none twice


def test_lines_of_two_workers_never_tear_each_other_when_the_log_reader_lags(dest, sqlite_store):
    """Two HTTP workers share standard error. When whatever reads it (a container runtime,
    journald) falls behind, the pipe fills and a write waits for room: a write of more than
    PIPE_BUF bytes may then be split around another process's. The log is read slowly here
    while 48 clients keep both workers busy (a batch of access lines outgrows PIPE_BUF); every line must still be one whole JSON object."""
    proc = start_hookline([PIPELINES], env={**ENV, "DEST_URL": dest.url}, workers=2, tail=False,
                          extra=("--store", sqlite_store, "--log-format", "json"))
    chunks, fd = [], proc.proc.stdout.fileno()

    def read_slowly():                   # ~1 MB/s at most: far less than two busy workers write
        while chunk := os.read(fd, 512):
            chunks.append(chunk)
            time.sleep(0.0005)
    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    answered, until = [], time.monotonic() + 60

    def client():           # a new connection every 50 requests: both workers get some
        while len(answered) < 4000 and time.monotonic() < until:
            with requests.Session() as session:
                for _ in range(50):
                    answered.append(session.post(proc.url + "/o/sync", json={"id": 1}, timeout=30).status_code)
    clients = [threading.Thread(target=client) for _ in range(48)]
    try:
        for c in clients:
            c.start()
        for c in clients:
            c.join()
    finally:
        proc.stop()
    reader.join(30)
    lines = b"".join(chunks).decode().splitlines()
    torn = [line for line in lines if not _json_object(line)]
    assert torn == [], f"{len(torn)} of {len(lines)} lines are not one JSON object, e.g. {torn[:2]}"
    access = [json.loads(line) for line in lines if json.loads(line)["logger"] == "hookline.access"]
    assert len({a["pid"] for a in access}) == 2 and len(access) >= len(answered) >= 4000, \
        (len(access), len(answered))


def _json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
