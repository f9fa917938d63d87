"""Run history (issue 15 part 5; docs/operations.md, "Run history"): every run recorded in the
store with its headers redacted, bodies cut, steps, calls, response and deliveries; bounded per
pipeline; read with ``hookline runs`` and ``GET <admin prefix>/runs``.

Real servers (``hookline serve``) on SQLite, Redis and memory: stores, the recording
destination of test_async_delivery.py, and the CLI against the server's store.
"""
from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest
import requests

from conftest import ROOT, free_port
from engine import history
from engine.queue import open_store
from test_async_delivery import (  # noqa: F401  (fixtures, re-exported for pytest)
    ADMIN, REDIS, dest, hookline, redis_client, redis_store, servers, sqlite_store, store, wait_until)

PIPELINES = ROOT / "tests" / "pipelines" / "history"
RECORDED, AGED, OFF, PLAIN, ASYNC = (PIPELINES / f"{n}.yaml" for n in
                                     ("recorded", "aged", "unrecorded", "plain", "delivered"))
MARK = "SECRETMARK"                      # in every credential here: never in the store
TOKEN, DEST_TOKEN = f"{MARK}-client-token-1", f"{MARK}-dest-token-2"
ENV = {"HIST_TOKEN": TOKEN, "HIST_DEST_TOKEN": DEST_TOKEN, "HOOKLINE_ADMIN_TOKEN": ADMIN[1]}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BEARER = {"Authorization": f"Bearer {ADMIN[1]}"}


def serve(servers, dest, store, paths=(RECORDED, AGED, OFF, PLAIN), extra=()):
    return servers(list(paths), dest, store, extra=("--admin-prefix", ADMIN[0], *extra), env=ENV)


def runs(server, **query) -> list[dict]:
    resp = requests.get(f"{server.url}{ADMIN[0]}/runs", params=query, headers=BEARER, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def run(server, run_id) -> dict:
    resp = requests.get(f"{server.url}{ADMIN[0]}/runs/{run_id}", headers=BEARER, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def recorded(server, rid, path="/h/recorded") -> requests.Response:
    headers = {**AUTH, "X-Api-Key": f"{MARK}-api-key", "X-Hub-Signature-256": f"sha256={MARK}-signature",
               "X-Request-Tag": f"tag-{rid}"}
    return requests.post(server.url + path, json={"id": rid, "filler": "x" * 400}, headers=headers, timeout=10)


def wait_runs(server, n, timeout=15, **query) -> list[dict]:
    """The runs ``query`` lists, once there are ``n`` or more."""
    found = {}

    def enough():
        found["runs"] = runs(server, **query)
        return len(found["runs"]) >= n
    wait_until(enough, timeout, f"{n} run(s) of {query}", poll=0.1)
    return found["runs"]


def run_ids(text: str) -> dict[str, str]:
    """run id → the pid of the worker that served it, from the access lines."""
    return {m.group(2): m.group(1) for m in re.finditer(r"hookline\.access\[(\d+)\]: .* run=([0-9a-f]{16})", text)}


# --- what a run holds ----------------------------------------------------------------------------

def test_a_run_is_recorded_with_secrets_redacted_body_cut_steps_and_calls(dest, servers, store):
    server = serve(servers, dest, store)
    resp = recorded(server, "r-1")
    assert resp.status_code == 200 and resp.json() == {"id": "r-1", "destination": 200}, resp.text
    (summary,) = wait_runs(server, 1, pipeline="hist-recorded")
    assert summary["pipeline"] == "hist-recorded" and summary["method"] == "POST"
    assert summary["path"] == "/h/recorded" and summary["status"] == 200 and summary["error"] is None
    assert re.fullmatch(r"[0-9a-f]{12}", summary["version"]) and summary["delivery"] == ""
    record = run(server, summary["run_id"])
    headers = record["headers"]
    assert headers["authorization"] == headers["x-api-key"] == headers["x-hub-signature-256"] == "[redacted]"
    assert headers["x-request-tag"] == "tag-r-1"
    sent = json.dumps({"id": "r-1", "filler": "x" * 400}).encode()
    assert record["body"] == sent[:300].decode() and record["body_truncated"] is True
    copied, sent_step = record["steps"]
    assert (copied["id"], copied["kind"], sent_step["id"], sent_step["kind"]) == ("copied", "transform", "sent", "call")
    assert copied["duration_ms"] >= 0 and sent_step["duration_ms"] > 0
    # copied by a step: masked all the same
    assert copied["output"] == {"id": "r-1", "auth": "[redacted]", "key": "[redacted]"}
    assert sent_step["output"]["status"] == 200
    (call,) = record["calls"]
    assert call["step"] == "sent" and call["method"] == "POST" and call["url"] == dest.url + "/recv"
    assert call["status"] == 200 and call["duration_ms"] > 0 and call["error"] is None
    response = record["response"]
    assert response["status"] == 200 and json.loads(response["body"]) == {"id": "r-1", "destination": 200}
    assert response["headers"]["content-type"] == "application/json" and response["body_truncated"] is False
    assert record["jobs"] == []
    assert MARK not in json.dumps(record)
    assert_never_stored(store, MARK)


def assert_never_stored(store, marker):
    if store.startswith("sqlite:"):
        path = Path(store.partition(":")[2])
        files = [f for found in path.parent.glob(path.name + "*")
                 for f in ([found] if found.is_file() else [f for f in found.rglob("*") if f.is_file()])]
        assert any(f.suffix in (".open", ".seg") for f in files)        # the run files were looked at too
        for file in files:
            assert marker.encode() not in file.read_bytes(), file
    else:
        client, prefix = redis_client(), store.partition("prefix=")[2]
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            assert marker.encode() not in client.dump(key), key


def test_a_failed_run_keeps_its_error_and_a_refused_one_its_status(dest, servers, sqlite_store):
    server = serve(servers, dest, sqlite_store)
    refused = requests.post(server.url + "/h/recorded", json={"id": "no-auth"}, timeout=10)
    assert refused.status_code == 401
    dest.plan("down", 503)
    failed = recorded(server, "down")
    assert failed.status_code == 502, failed.text
    found = {r["status"]: r for r in wait_runs(server, 2, pipeline="hist-recorded")}
    assert set(found) == {401, 502}
    assert "503" in found[502]["error"] and found[401]["error"] is None
    calls = run(server, found[502]["run_id"])["calls"]
    assert [c["status"] for c in calls] == [503]


def test_a_step_output_with_an_integer_past_64_bits_is_recorded_exactly(dest, servers, sqlite_store):
    server = serve(servers, dest, sqlite_store)
    big = 2 ** 70 + 1
    resp = requests.post(server.url + "/h/recorded", data=f'{{"id": {big}}}', timeout=10,
                         headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    (summary,) = wait_runs(server, 1, pipeline="hist-recorded")
    assert run(server, summary["run_id"])["steps"][0]["output"]["id"] == big
    assert "Traceback" not in "".join(server.lines)


# --- bounds --------------------------------------------------------------------------------------

def test_only_the_newest_keep_runs_of_a_pipeline_stay(dest, servers, sqlite_store):
    server = serve(servers, dest, sqlite_store)
    sent = [f"k-{i}" for i in range(8)]
    for rid in sent:
        assert recorded(server, rid).status_code == 200
    wait_until(lambda: [r["run_id"] for r in runs(server, pipeline="hist-recorded")] and
               all(run(server, r["run_id"])["headers"]["x-request-tag"] in {f"tag-{x}" for x in sent[-5:]}
                   for r in runs(server, pipeline="hist-recorded")), 15, "the 3 oldest runs deleted", poll=0.2)
    kept = runs(server, pipeline="hist-recorded", limit=100)
    tags = [run(server, r["run_id"])["headers"]["x-request-tag"] for r in kept]
    assert tags == [f"tag-{rid}" for rid in reversed(sent[-5:])]      # newest first, keep: 5


def test_runs_older_than_max_age_are_deleted(dest, servers, sqlite_store):
    server = serve(servers, dest, sqlite_store)
    first = requests.post(server.url + "/h/aged", json={"n": 1}, timeout=10)
    (old,) = wait_runs(server, 1, pipeline="hist-aged")
    wait_until(lambda: history.time.time() - old["at"] > 2.2, 5, "the first run older than max_age")
    requests.post(server.url + "/h/aged", json={"n": 2}, timeout=10)
    wait_until(lambda: [r["run_id"] for r in runs(server, pipeline="hist-aged")] not in ([], [old["run_id"]]) and
               old["run_id"] not in [r["run_id"] for r in runs(server, pipeline="hist-aged")], 10,
               "the old run deleted, the new one kept", poll=0.1)
    assert first.status_code == 200 and len(runs(server, pipeline="hist-aged")) == 1


def test_history_false_records_nothing(dest, servers, sqlite_store):
    server = serve(servers, dest, sqlite_store)
    for i in range(3):
        assert requests.post(server.url + "/h/off", json={"n": i}, timeout=10).status_code == 200
    assert requests.post(server.url + "/h/aged", json={"n": "after"}, timeout=10).status_code == 200
    wait_runs(server, 1, pipeline="hist-aged")       # flushed after the three
    assert runs(server, pipeline="hist-off") == []
    assert {r["pipeline"] for r in runs(server, limit=100)} == {"hist-aged"}
    assert "hist-off" not in asyncio.run(_stats(sqlite_store))


async def _stats(url, since_s=3600):
    store = open_store(url)
    await store.open()
    try:
        return await history.stats(store, since_s)
    finally:
        await store.close()


def test_stats_count_every_request_not_only_the_runs_kept(dest, servers, store):
    server = serve(servers, dest, store)
    for i in range(7):
        assert recorded(server, f"s-{i}").status_code == 200
    dest.plan("s-down", 503)
    assert recorded(server, "s-down").status_code == 502
    wait_until(lambda: asyncio.run(_stats(store)).get("hist-recorded", {}).get("requests") == 8, 10,
               "8 requests counted", poll=0.1)
    counted = asyncio.run(_stats(store))["hist-recorded"]
    assert counted["errors"] == 1 and 0 < counted["p50_ms"] <= counted["p99_ms"]
    assert len(runs(server, pipeline="hist-recorded", limit=100)) == 5      # keep: 5


# --- search, the CLI, the admin endpoints ------------------------------------------------------

def test_search_by_run_id_and_header_value_but_never_a_redacted_one(dest, servers, sqlite_store):
    server = serve(servers, dest, sqlite_store)
    for rid in ("q-1", "q-2"):
        recorded(server, rid)
    both = wait_runs(server, 2, pipeline="hist-recorded")
    by_tag = runs(server, q="tag-q-1")
    assert len(by_tag) == 1 and run(server, by_tag[0]["run_id"])["headers"]["x-request-tag"] == "tag-q-1"
    assert [r["run_id"] for r in runs(server, q=both[1]["run_id"])] == [both[1]["run_id"]]
    assert runs(server, q=f"sha256={MARK}-signature") == [] and runs(server, q="[redacted]") == []


def test_the_cli_lists_and_shows_runs_with_its_exit_codes(dest, servers, sqlite_store, tmp_path):
    server = serve(servers, dest, sqlite_store)
    recorded(server, "c-1")
    (summary,) = wait_runs(server, 1, pipeline="hist-recorded")
    listed = hookline("runs", "list", "--pipeline", "hist-recorded", store=sqlite_store)
    assert listed.returncode == 0, listed.stderr
    fields = listed.stdout.strip().split("\t")
    assert fields[0] == summary["run_id"] and fields[2:6] == ["hist-recorded", "POST", "/h/recorded", "200"]
    assert fields[6].endswith("ms") and fields[7] == "delivery=-"
    shown = hookline("runs", "show", summary["run_id"], store=sqlite_store)
    assert shown.returncode == 0 and json.loads(shown.stdout)["steps"][0]["id"] == "copied"
    missing = hookline("runs", "show", "0123456789abcdef", store=sqlite_store)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "0123456789abcdef: no such run" in missing.stderr
    nowhere = hookline("runs", "list", store=f"sqlite:{tmp_path}/absent.db")
    assert nowhere.returncode == 2 and "no store at" in nowhere.stderr


def test_the_admin_endpoints_need_the_token_and_answer_404_and_400(dest, servers, sqlite_store):
    server = serve(servers, dest, sqlite_store)
    base = server.url + ADMIN[0]
    assert requests.get(base + "/runs", timeout=10).status_code == 401
    assert requests.get(base + "/runs/0123456789abcdef", headers={"Authorization": "Bearer wrong"},
                        timeout=10).status_code == 401
    missing = requests.get(base + "/runs/0123456789abcdef", headers=BEARER, timeout=10)
    assert missing.status_code == 404 and "no such run" in missing.json()["detail"]
    bad = requests.get(base + "/runs", params={"limit": "0"}, headers=BEARER, timeout=10)
    assert bad.status_code == 400 and "limit" in bad.json()["detail"]


def test_the_memory_store_keeps_runs_in_the_server(dest, servers):
    server = serve(servers, dest, "memory:")
    recorded(server, "m-1")
    (summary,) = wait_runs(server, 1, pipeline="hist-recorded")
    assert run(server, summary["run_id"])["headers"]["authorization"] == "[redacted]"


def test_runs_from_both_workers_are_visible(dest, servers, store):
    server = serve(servers, dest, store, extra=("--workers", "2"))
    for i in range(400):          # a new connection each, until both workers have served some
        with requests.Session() as session:
            assert session.post(server.url + "/h/plain", json={"n": i}, timeout=10).status_code == 200
        if i >= 20 and len(set(run_ids("".join(server.lines)).values())) == 2:
            break
    wait_until(lambda: len(set(run_ids("".join(server.lines)).values())) == 2, 10, "access lines of both workers")
    served = run_ids("".join(server.lines))
    wait_until(lambda: set(served) <= {r["run_id"] for r in runs(server, pipeline="hist-plain", limit=1000)}, 15,
               f"all {len(served)} runs listed", poll=0.2)
    assert len(set(served.values())) == 2


# --- deliveries ----------------------------------------------------------------------------------

def test_a_delivery_s_attempts_are_recorded_retry_then_done(dest, servers, store):
    server = serve(servers, dest, store, paths=(ASYNC,))
    dest.plan("a-1", 503)
    resp = requests.post(server.url + "/h/async", json={"id": "a-1"}, timeout=10)
    assert resp.status_code == 202, resp.text
    delivery = resp.json()["id"]
    (summary,) = wait_runs(server, 1, pipeline="hist-async")
    assert summary["delivery"] == delivery and summary["status"] == 202
    found = {}

    def attempts_done():
        found["run"] = run(server, summary["run_id"])
        return [a["outcome"] for job in found["run"]["jobs"] for a in job["attempts"]] == ["retry", "done"]
    wait_until(attempts_done, 20, "a retry then a done attempt", poll=0.2)
    (job,) = found["run"]["jobs"]
    assert job["state"] == "done" and job["branch"] == "dest" and job["delivery"] == delivery
    retry, done = job["attempts"]
    assert (retry["attempt"], retry["status"], done["attempt"], done["status"]) == (1, 503, 2, 200)
    assert "503" in retry["error"] and done["error"] is None
    assert retry["at"] <= done["at"] and retry["duration_ms"] > 0 and done["duration_ms"] > 0
    assert [r["run_id"] for r in runs(server, q=delivery)] == [summary["run_id"]]
    listed = hookline("runs", "list", "--pipeline", "hist-async", store=store)
    assert listed.returncode == 0 and listed.stdout.split("\t")[-1].strip() == f"delivery={delivery}"


def test_a_store_that_is_down_fails_no_request_of_a_pipeline_that_does_not_need_it(dest, servers):
    closed = f"redis://127.0.0.1:{free_port()}/0?prefix=hookline-test-{uuid.uuid4().hex}:"
    server = serve(servers, dest, closed, paths=(PLAIN,))
    for i in range(5):
        resp = requests.post(server.url + "/h/plain", json={"n": i}, timeout=10)
        assert resp.status_code == 200 and resp.json() == {"n": i}
    wait_until(lambda: "store unavailable" in "".join(server.lines), 10, "the store outage in the log")
    assert "Traceback" not in "".join(server.lines)
