"""Accepted jobs keep the version that accepted them (issue 16, part 3), on SQLite and Redis.

A real ``hookline serve`` (one HTTP worker, one delivery worker) serves a pipeline whose async
branch posts to a local destination that is down (503). A request is accepted under v1; the
pipeline's file and the table it reads are rewritten (v2 changes the branch's body) and the
server reloads (SIGHUP); the destination comes up: it receives v1's body. A dead job replayed
with ``dlq replay --current`` sends v2's body, ``--dry-run`` shows both and their diff, the
plain ``replay`` sends v1's again; once no job needs v1, the store forgets its source.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import HOOKLINE, start_hookline
from test_async_delivery import redis_client, redis_store, sqlite_store, wait_until  # noqa: F401

TOKEN = "pin-token-4f9c2a7e1d"          # ${env:PIN_TOKEN}: never in a dry run's output or the store
PIPELINE = """\
pipeline: pinned
receive: {path: /pinned, methods: [POST]}
tables:
  names: {file: tables/names.json}
async:
  - id: erp
    retry: {max_attempts: 50, initial_s: 0.05, max_s: 0.2}
    steps:
      - id: send
        call:
          url: "${env:PIN_DEST}/recv"
          headers: {Authorization: "Bearer ${env:PIN_TOKEN}"}
          body: "%s"
"""
V1_BODY = "{id: request.body.id, item: lookup('names', request.body.sku), shape: 'v1'}"
V2_BODY = "{order_id: request.body.id, item: lookup('names', request.body.sku), shape: 'v2'}"


class Destination:
    """``POST /recv``: records each JSON body; answers ``status`` (503 while down), or what
    ``plan`` says for a body's id."""

    def __init__(self):
        self.status, self.plan, self.bodies, self.headers = 503, {}, [], []
        dest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ident = body.get("id", body.get("order_id"))
                status = dest.plan.get(ident, dest.status)
                if status == 200:
                    dest.bodies.append(body)
                    dest.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, ident) -> list[dict]:
        return [b for b in self.bodies if b.get("id", b.get("order_id")) == ident]


@pytest.fixture
def dest():
    d = Destination()
    yield d
    d.server.shutdown()


@pytest.fixture(params=["sqlite", "redis"])
def store(request):
    return request.getfixturevalue(f"{request.param}_store")


def write(directory, body: str, apple: str) -> None:
    (directory / "tables").mkdir(exist_ok=True)
    (directory / "tables" / "names.json").write_text(json.dumps({"A": apple}))
    (directory / "pinned.yaml").write_text(PIPELINE % body)


def hookline(*args, store, env) -> subprocess.CompletedProcess:
    return subprocess.run([*HOOKLINE, *args, "--store", store], capture_output=True, text=True, timeout=60,
                          env=env)


def version_of(directory, env) -> str:
    out = subprocess.run([*HOOKLINE, "lint", "--versions", str(directory)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.splitlines()
    return line.split("\t")[1]


def stored_versions(store) -> set[str]:
    """The versions whose source the store keeps (read as the store lays them out)."""
    if store.startswith("sqlite:"):
        with sqlite3.connect(store.partition(":")[2]) as conn:
            return {row[0] for row in conn.execute("SELECT version FROM versions")}
    prefix = store.partition("prefix=")[2]
    return {v.decode() for v in redis_client().hkeys(prefix + "versions")}


def dead_job(store, env, ident) -> dict:
    out = hookline("dlq", "list", store=store, env=env)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        job_id = line.split("\t")[0]
        shown = json.loads(hookline("dlq", "show", job_id, store=store, env=env).stdout)
        if shown["payload"]["request"]["body"]["id"] == ident:
            return shown
    raise AssertionError(f"no dead job for {ident}: {out.stdout}")


def test_a_job_is_delivered_by_the_version_that_accepted_it(tmp_path, dest, store, monkeypatch):
    import os
    directory = tmp_path / "pipelines"
    directory.mkdir()
    write(directory, V1_BODY, "Apple")
    env = {**os.environ, "PIN_DEST": dest.url, "PIN_TOKEN": TOKEN, "HOOKLINE_VERSION_KEEP_S": "1"}
    v1 = version_of(directory, env)
    server = start_hookline([directory], env={"PIN_DEST": dest.url, "PIN_TOKEN": TOKEN,
                                              "HOOKLINE_VERSION_KEEP_S": "1"},
                            extra=("--store", store), tail=True)
    try:
        dest.plan["dead-1"] = 400                     # not retried: dead at once, under v1
        for ident in ("pinned-1", "dead-1"):
            resp = requests.post(server.url + "/pinned", json={"id": ident, "sku": "A"}, timeout=10)
            assert resp.status_code == 202, resp.text
        wait_until(lambda: hookline("dlq", "list", store=store, env=env).stdout.count("\n") == 1, 20,
                   "dead-1 dead-lettered")
        assert v1 in stored_versions(store)

        write(directory, V2_BODY, "Avocado")          # the branch's body and the table it reads
        v2 = version_of(directory, env)
        assert v2 != v1
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: server.log.text().count(f"~pinned@{v2}") >= 2, 20,
                   "the server and its delivery worker on v2")

        dest.status = 200                             # the destination is up
        wait_until(lambda: dest.received("pinned-1"), 20, "pinned-1 delivered")
        assert dest.received("pinned-1") == [{"id": "pinned-1", "item": "Apple", "shape": "v1"}]
        assert f"delivering with version {v1} of pipeline 'pinned' (stored with its jobs)" in server.log.text()

        requests.post(server.url + "/pinned", json={"id": "pinned-2", "sku": "A"}, timeout=10)
        wait_until(lambda: dest.received("pinned-2"), 20, "pinned-2 delivered")
        assert dest.received("pinned-2") == [{"order_id": "pinned-2", "item": "Avocado", "shape": "v2"}]

        dead = dead_job(store, env, "dead-1")
        assert dead["version"] == v1
        dry = hookline("dlq", "replay", dead["id"], "--dry-run", "--pipelines", str(directory), store=store, env=env)
        assert dry.returncode == 0, dry.stderr
        assert f"=== accepting version {v1}" in dry.stdout and f"=== current version {v2}" in dry.stdout
        assert f"POST {dest.url}/recv" in dry.stdout and "Authorization: [redacted]" in dry.stdout
        assert TOKEN not in dry.stdout
        diff = dry.stdout.split("=== diff\n")[1]
        assert f"--- accepting {v1}" in diff and f"+++ current {v2}" in diff
        assert '-  "id": "dead-1",' in diff and '+  "order_id": "dead-1",' in diff
        assert '-  "item": "Apple",' in diff and '+  "item": "Avocado",' in diff
        assert dest.received("dead-1") == [] and dead_job(store, env, "dead-1")["id"] == dead["id"]   # nothing sent

        del dest.plan["dead-1"]
        replayed = hookline("dlq", "replay", dead["id"], "--current", "--pipelines", str(directory),
                            store=store, env=env)
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout)["jobs"] == [{"id": dead["id"], "from": v1, "to": v2}]
        wait_until(lambda: dest.received("dead-1"), 20, "dead-1 delivered again")
        assert dest.received("dead-1") == [{"order_id": "dead-1", "item": "Avocado", "shape": "v2"}]

        wait_until(lambda: v1 not in stored_versions(store), 20, "v1 forgotten once no job needs it")
        assert TOKEN.encode() not in b"".join(s.encode() for s in stored_versions(store))
    finally:
        server.stop()


def test_a_plain_replay_sends_the_accepting_versions_body_and_all_current_todays(tmp_path, dest, sqlite_store):
    import os
    store = sqlite_store
    directory = tmp_path / "pipelines"
    directory.mkdir()
    write(directory, V1_BODY, "Apple")
    env = {**os.environ, "PIN_DEST": dest.url, "PIN_TOKEN": TOKEN}
    server = start_hookline([directory], env={"PIN_DEST": dest.url, "PIN_TOKEN": TOKEN},
                            extra=("--store", store), tail=True)
    try:
        dest.status, dest.plan["dead-2"], dest.plan["dead-3"] = 200, 400, 400
        for ident in ("dead-2", "dead-3"):
            assert requests.post(server.url + "/pinned", json={"id": ident, "sku": "A"}, timeout=10).status_code == 202
        wait_until(lambda: hookline("dlq", "list", store=store, env=env).stdout.count("\n") == 2, 20,
                   "dead-2 and dead-3 dead-lettered")
        dead = dead_job(store, env, "dead-2")
        write(directory, V2_BODY, "Avocado")
        server.proc.send_signal(signal.SIGHUP)
        v2 = version_of(directory, env)
        wait_until(lambda: server.log.text().count(f"~pinned@{v2}") >= 2, 20, "the reload")

        same = hookline("dlq", "replay", dead["id"], "--dry-run", "--pipelines", str(tmp_path / "none"),
                        store=store, env=env)
        assert same.returncode == 2 and "--pipelines" in same.stderr, same
        missing = hookline("dlq", "replay", "no-such-job", "--dry-run", "--pipelines", str(directory),
                           store=store, env=env)
        assert missing.returncode == 1 and "no such job" in missing.stderr, missing
        every = hookline("dlq", "replay", "--all", "--dry-run", "--pipelines", str(directory), store=store, env=env)
        assert every.returncode == 0 and every.stdout.count("=== diff\n") == 2, every
        assert every.stdout.endswith("2 dead job(s); nothing was sent or changed\n"), every.stdout

        del dest.plan["dead-2"], dest.plan["dead-3"]
        assert hookline("dlq", "replay", dead["id"], store=store, env=env).returncode == 0
        wait_until(lambda: dest.received("dead-2"), 20, "dead-2 delivered again")
        assert dest.received("dead-2") == [{"id": "dead-2", "item": "Apple", "shape": "v1"}]
        not_dead = hookline("dlq", "replay", dead["id"], "--current", "--pipelines", str(directory),
                            store=store, env=env)
        assert not_dead.returncode == 1 and "not in the dead-letter store" in not_dead.stderr, not_dead

        current = hookline("dlq", "replay", "--all", "--current", "--pipelines", str(directory), store=store, env=env)
        assert current.returncode == 0 and json.loads(current.stdout)["replayed"] == 1, current   # dead-3 only
        wait_until(lambda: dest.received("dead-3"), 20, "dead-3 delivered again")
        assert dest.received("dead-3") == [{"order_id": "dead-3", "item": "Avocado", "shape": "v2"}]
    finally:
        server.stop()


def test_a_job_whose_version_is_gone_or_no_longer_compiles_is_dead_lettered_saying_what_to_do(tmp_path, monkeypatch):
    """The delivery worker (engine/delivery.py) with the memory store: a job of a version the
    store no longer keeps, and one whose stored version needs an ${env:} variable gone since."""
    import asyncio

    import dsl
    from engine.delivery import Deliverer
    from engine.queue import Job
    from engine.queue.memory import MemoryStore

    env = {"PIN_DEST": "http://127.0.0.1:9", "PIN_TOKEN": TOKEN}
    write(tmp_path, V1_BODY, "Apple")
    [v1], _ = dsl.compile_paths([tmp_path], env=env)
    write(tmp_path, V2_BODY, "Avocado")
    [v2], _ = dsl.compile_paths([tmp_path], env=env)
    monkeypatch.setenv("PIN_DEST", env["PIN_DEST"])
    monkeypatch.delenv("PIN_TOKEN", raising=False)      # the delivery worker's environment lost it

    async def main():
        store = MemoryStore()
        gone = Job.new("d-gone", "pinned", "erp", b'{"steps": {}}', version="0123456789ab")
        stale = Job.new("d-stale", "pinned", "erp", b'{"steps": {}}', version=v1.version)
        await store.enqueue([gone])
        await store.enqueue([stale], source=v1.source)
        deliverer = Deliverer(store, [v2], outbound=None)
        for job in await store.lease("c1", 10, 60):
            await deliverer.attempt(job)
        return await store.get(gone.id), await store.get(stale.id)

    gone, stale = asyncio.run(main())
    assert gone.state == "dead" and gone.last_error == (
        f"version 0123456789ab of pipeline 'pinned' is not stored any more; hookline dlq replay --current "
        f"{gone.id} delivers it with today's version"), gone
    assert stale.state == "dead" and stale.last_error.startswith(
        f"version {v1.version} of pipeline 'pinned' does not compile any more: "), stale
    assert "missing-env: environment variable PIN_TOKEN is not set" in stale.last_error, stale
