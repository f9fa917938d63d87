"""Async branches end to end: persist, acknowledge, deliver in the background.

Every test starts its own ``hookline serve`` (tests/pipelines/async) and its
own recording destination: a Tornado app in a thread that records each call
(request id from the body, ``Idempotency-Key``, arrival and finish times,
the status it answered), can hold calls at a gate so that deliveries are in
flight when the test wants them to be, and answers a planned list of
failures per request id before it succeeds.

The crash tests print the duplicates they measured (run with ``-s``) and
record them as the junit property ``duplicates``: delivery is at least once,
so a job whose call reached the destination just before ``kill -9`` is
delivered again, with the same ``Idempotency-Key``.

Redis cases use the server at 127.0.0.1:6379 with a unique key prefix per
test; without it they skip, except with CI=true, where they fail.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from conftest import HOOKLINE, ROOT, refused, start_hookline
from engine.queue import open_store

PIPELINES = ROOT / "tests" / "pipelines" / "async"
DELIVER, DEDUPE, RESPOND, TIMEOUT, HELD = (PIPELINES / f"{name}.yaml" for name in
                                           ("deliver", "dedupe", "respond", "timeout", "held"))
REDIS = ("127.0.0.1", 6379)
VISIBILITY_S = 8.0              # `serve --visibility-s` (default 60): longer than any call here (timeout_s: 5)
POSTERS = 32                    # concurrent client threads
DROP, SLOW = -1, -2             # planned answers: close the connection; answer 200 after a while
KILL_VISIBILITY_S = 20.0        # the kill -9 test's lease: see there
KILL_VISIBILITY = ("--visibility-s", str(KILL_VISIBILITY_S))
HOLD_S = 3.0                    # a held call is answered 503 after this (under timeout_s and VISIBILITY_S)
ADMIN = ("/_hookline", "test-admin-token-0123456789")


# --- the recording destination ------------------------------------------------------------------

@dataclass
class Call:
    rid: str            # "id" from the JSON body
    key: str            # Idempotency-Key
    arrived: float      # time.monotonic()
    status: int = 0     # what the destination answered (0 while it holds the call)
    finished: float = 0.0


class _Recv(web.RequestHandler):
    def initialize(self, dest):
        self.dest = dest

    async def post(self):
        call = self.dest.arrive(json.loads(self.request.body)["id"], self.request.headers.get("Idempotency-Key", ""))
        try:
            await asyncio.wait_for(self.dest.passage(), self.dest.hold_s)
        except asyncio.TimeoutError:        # held long enough: "try again" keeps leases short
            status, retry_after = 503, None
        else:
            await asyncio.sleep(self.dest.delay_s)
            status, retry_after = self.dest.answer(call.rid)
        if status == DROP:
            call.status, call.finished = DROP, time.monotonic()
            self.request.connection.close()
            return
        if status == SLOW:
            await asyncio.sleep(retry_after)
            status, retry_after = 200, None
        if retry_after is not None:
            self.set_header("Retry-After", retry_after)
        self.set_status(status)
        self.write({"ok": status < 300})
        call.status, call.finished = status, time.monotonic()


class Destination:
    """``POST /recv`` with a JSON body holding ``id``; records every call in ``calls``.

    ``plan(rid, 503, (429, "1"), 400, DROP, (SLOW, 1.0))`` answers those to
    the next calls for ``rid`` (a status; one with Retry-After; the connection
    closed unanswered; 200 after a second), then 200. ``hold()`` keeps calls
    waiting (recorded on arrival) until ``release()``, or answers them 503
    after ``hold_s`` when that is set; ``release(budget=n)`` lets n calls pass,
    then holds again. ``delay_s`` is added to every call.
    """

    def __init__(self, delay_s: float = 0.0, hold_s: float | None = None):
        self.delay_s, self.hold_s = delay_s, hold_s
        self.budget: int | None = None      # calls the open gate still lets pass (None: any)
        self.calls: list[Call] = []
        self._plans: dict[str, list] = {}
        self._lock = threading.Lock()
        self._sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{self._sockets[0].getsockname()[1]}"
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the destination did not start"

    def _run(self, ready):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self.gate = asyncio.Event()
        self.gate.set()
        HTTPServer(web.Application([(r"/recv", _Recv, {"dest": self})])).add_sockets(self._sockets)
        ready.set()
        self._loop.run_forever()

    def arrive(self, rid, key) -> Call:
        call = Call(rid, key, time.monotonic())
        with self._lock:
            self.calls.append(call)
        return call

    def answer(self, rid):
        """(status, Retry-After or None) for the next call of ``rid``."""
        with self._lock:
            plan = self._plans.get(rid)
            planned = plan.pop(0) if plan else 200
        return planned if isinstance(planned, tuple) else (planned, None)

    def plan(self, rid, *answers):
        with self._lock:
            self._plans[rid] = list(answers)

    async def passage(self):
        """Through the gate (in the destination's loop); once a budget is spent it closes."""
        while True:
            await self.gate.wait()
            if self.budget is None:
                return
            if self.budget > 0:
                self.budget -= 1
                return
            self.gate.clear()

    def hold(self):
        self._loop.call_soon_threadsafe(self.gate.clear)

    def release(self, budget: int | None = None):
        def release():
            self.budget = budget
            self.gate.set()
        self._loop.call_soon_threadsafe(release)

    def held(self) -> int:
        """Calls waiting at the gate now."""
        with self._lock:
            return sum(1 for c in self.calls if c.status == 0)

    def held_jobs(self) -> set[str]:
        """The job ids (the Idempotency-Key's first part) of the calls waiting at the gate now."""
        with self._lock:
            return {c.key.partition(".")[0] for c in self.calls if c.status == 0}

    def of(self, rid) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.rid == rid]

    def ids(self) -> set[str]:
        with self._lock:
            return {c.rid for c in self.calls}

    def delivered(self, since: float = 0.0) -> set[str]:
        """Request ids answered 2xx at least once (in a call that arrived after ``since``)."""
        with self._lock:
            return {c.rid for c in self.calls if 200 <= c.status < 300 and c.arrived > since}

    def stop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def dest():
    d = Destination()
    yield d
    d.release()
    d.stop()


# --- servers, the CLI, clients ------------------------------------------------------------------

class Server:
    """``hookline serve`` on ``store``; its output is drained (and kept) so it never blocks."""

    def __init__(self, paths, dest, store, extra=(), env=None):
        self.proc = start_hookline(paths, env={"DEST_URL": dest.url, **(env or {})},
                                   extra=("--store", store, "--visibility-s", str(VISIBILITY_S), *extra),
                                   tail=False)
        self.url, self.lines = self.proc.url, []
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self):
        for line in iter(self.proc.proc.stdout.readline, ""):
            self.lines.append(line)

    def kill(self):
        self.proc.proc.send_signal(signal.SIGKILL)
        self.proc.proc.wait(10)

    def log(self) -> str:
        self._drain.join(1 if self.proc.proc.poll() is not None else 0)
        return "".join(self.lines[-60:])


@pytest.fixture
def servers():
    """``servers(paths, dest, store, extra=())`` → a started Server; all stopped at teardown."""
    started = []

    def start(*args, **kwargs):
        started.append(Server(*args, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.proc.stop()


@pytest.fixture
def sqlite_store(tmp_path):
    return f"sqlite:{tmp_path}/hookline.db"


@pytest.fixture(params=["sqlite", "redis"])
def store(request):
    """The store URL of one test, once per backend."""
    return request.getfixturevalue(f"{request.param}_store")


def redis_client():
    """A sync client to the test Redis, or skip (fail under CI=true) saying why."""
    try:
        import redis
        client = redis.Redis(*REDIS, socket_connect_timeout=1)
        client.ping()
        return client
    except Exception as exc:
        message = (f"Redis at {REDIS[0]}:{REDIS[1]} is unreachable ({type(exc).__name__}: {exc}); "
                   "start one with: redis-server --save '' --appendonly no")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def redis_store():
    client, prefix = redis_client(), f"hookline-test:{uuid.uuid4().hex}:"
    yield f"redis://{REDIS[0]}:{REDIS[1]}/0?prefix={prefix}"
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def hookline(*args, store, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*HOOKLINE, *args, "--store", store], capture_output=True, text=True, timeout=60,
                          env=None if env is None else {**os.environ, **env})


def jobs(store, state=None) -> list[dict]:
    """``hookline deliveries list`` (or ``dlq list`` for dead), parsed from its lines."""
    args = ("dlq", "list") if state == "dead" else ("deliveries", "list", *(("--state", state) if state else ()))
    out = hookline(*args, "--limit", "100000", store=store)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    return [{"id": r[0], "state": r[1], "branch": r[2], "attempt": int(r[3].split("=")[1]),
             "delivery": r[4].split("=")[1], "version": r[5].split("=")[1],
             "last_error": r[6] if len(r) > 6 else ""} for r in rows]


def show(ident, store) -> dict:
    out = hookline("deliveries", "show", ident, store=store)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_until(predicate, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def post(url, rid, headers=None, session=None) -> requests.Response:
    return (session or requests).post(url, json={"id": rid, "filler": "x" * 200}, headers=headers, timeout=30)


def post_many(urls, n) -> dict[str, requests.Response]:
    """``n`` requests with unique ids, spread over ``urls`` in turn, ``POSTERS`` at a time
    (one keep-alive session per thread)."""
    rids = [f"req-{i:04d}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    local = threading.local()

    def send(i):
        local.session = getattr(local, "session", None) or requests.Session()
        return post(urls[i % len(urls)], rids[i], session=local.session)

    with ThreadPoolExecutor(POSTERS) as pool:
        return dict(zip(rids, pool.map(send, range(n))))


def accepted_ids(answers) -> set[str]:
    bad = {rid: (r.status_code, r.text[:200]) for rid, r in answers.items() if r.status_code != 202}
    assert not bad, f"{len(bad)} requests not accepted, e.g. {next(iter(bad.items()))}"
    return set(answers)


def say(text: str) -> None:
    """Show a measurement with ``-s``, also under xdist (whose workers swallow ``print``)."""
    sys.__stderr__.write(f"\n{text}\n")
    sys.__stderr__.flush()


def duplicates(dest, record_property, label) -> int:
    """Deliveries (calls the destination answered 2xx) beyond one per request id; all the calls
    of one request id must carry one Idempotency-Key."""
    calls = list(dest.calls)
    by_rid: dict[str, set] = {}
    for call in calls:
        by_rid.setdefault(call.rid, set()).add(call.key)
    mixed = {rid: keys for rid, keys in by_rid.items() if len(keys) != 1}
    assert not mixed, f"a request delivered under several Idempotency-Keys: {next(iter(mixed.items()))}"
    ok = sum(1 for c in calls if 200 <= c.status < 300)
    extra = ok - len(dest.delivered())
    say(f"[{label}] {len(by_rid)} request ids, {len(calls)} calls, {ok} answered 2xx: "
        f"{extra} duplicate deliveries (same Idempotency-Key)")
    record_property("duplicates", extra)
    return extra


def after_the_restart(dest, restarting, killed, leased) -> tuple[float, float]:
    """Of the calls that arrived after ``restarting``: when (seconds after ``killed``) the last one
    for a job that was not ``leased`` at the kill arrived, and the first one for a job that was (inf
    when none was). Calls the killed process sent can still be read after it died: hence ``restarting``."""
    after = [(c.arrived - killed, c.key.partition(".")[0] in leased)
             for c in list(dest.calls) if c.arrived > restarting]
    return (max((t for t, was_leased in after if not was_leased), default=0.0),
            min((t for t, was_leased in after if was_leased), default=float("inf")))


def peek(store, read):
    """``await read(store)`` in this process: the Store API, for polling and for reading the
    state right after a kill (a CLI process per poll is slow on a busy machine); the CLI is
    what the tests assert on."""
    async def run():
        async with open_store(store) as opened:
            return await read(opened)
    return asyncio.run(run())


def leased_now(store) -> set[str]:
    return {job.id for job in peek(store, lambda s: s.list("leased", 100_000))}


def held_lease_holders(redis_store, dest) -> set[bytes]:
    """The consumers (one per delivery worker) holding the leases of the jobs whose calls the
    destination holds now, read from the Redis hashes. Such a job stays leased by its consumer
    until release(), alive or dead; a job leased but not called yet, or answered but not completed
    yet, leaves its consumer the next moment."""
    prefix = redis_store.partition("prefix=")[2]
    client = redis_client()
    try:
        pipe = client.pipeline(transaction=False)
        for job_id in dest.held_jobs():
            pipe.hmget(f"{prefix}job:{job_id}", "state", "consumer")
        return {consumer for state, consumer in pipe.execute() if state == b"leased" and consumer}
    finally:
        client.close()


def done_count(store) -> int:
    return len(peek(store, lambda s: s.list("done", 100_000)))


def state(store, delivery) -> str:
    """The state of the one job of ``delivery``."""
    (job,) = peek(store, lambda s: s.find(delivery))
    return job.state


# --- 1. kill -9 of one server on SQLite ----------------------------------------------------------

def test_kill_9_mid_delivery_then_restart_delivers_every_acknowledged_request(
        dest, servers, sqlite_store, record_property):
    n = 500
    dest.delay_s, dest.hold_s = 0.03, HOLD_S
    dest.hold()                                  # deliveries wait in flight until all are acknowledged
    # the jobs pending at the kill must all be delivered before the leased ones come back:
    # a longer lease than the module's leaves room for a busy machine's slower delivery
    server = servers([DELIVER], dest, sqlite_store, extra=KILL_VISIBILITY)
    started = time.monotonic()
    sent = accepted_ids(post_many([server.url + "/a/deliver"], n))
    posted = time.monotonic() - started
    dest.release()
    wait_until(lambda: len(dest.delivered()) >= n * 0.3, 30, "30% of the deliveries")
    server.kill()
    killed, delivered_at_kill = time.monotonic(), len(dest.delivered())
    leased = leased_now(sqlite_store)
    assert delivered_at_kill < n, "everything was delivered before the kill: the test proves nothing"
    assert leased, "no job was leased at the kill: the takeover after the visibility timeout is untested"
    restarting = time.monotonic()               # calls arriving after this come from the new process
    servers([DELIVER], dest, sqlite_store, extra=KILL_VISIBILITY)
    restarted = time.monotonic() - killed
    wait_until(lambda: done_count(sqlite_store) == n, KILL_VISIBILITY_S + 60, "every job done", poll=0.2)
    all_done = time.monotonic() - killed
    pending_last, leased_first = after_the_restart(dest, restarting, killed, leased)
    say(f"[sqlite kill -9] {n} acknowledged in {posted:.1f} s; killed after {delivered_at_kill} had been delivered, "
        f"{len(leased)} jobs leased; restarted {restarted:.1f} s after the kill; the jobs pending "
        f"at the kill delivered by {pending_last:.1f} s, the leased ones from {leased_first:.1f} s; all done "
        f"{all_done:.1f} s after the kill (visibility {KILL_VISIBILITY_S:g} s)")
    duplicates(dest, record_property, "sqlite kill -9")
    assert dest.delivered() == sent
    assert pending_last < leased_first, "the pending jobs waited for the leased ones' visibility timeout"
    assert not jobs(sqlite_store, "pending") and not jobs(sqlite_store, "leased")


# --- 2. two processes on one Redis, one killed ---------------------------------------------------

def test_two_servers_on_one_redis_survivor_delivers_the_killed_ones_jobs(
        dest, servers, redis_store, record_property):
    # Conditions, not timing: the destination lets 30 % through, then holds every call (the
    # pipeline's call timeout, 60 s, outlasts the test's visibility, 8 s), so both delivery
    # workers end up with their calls held and their leases standing still; one server is
    # killed in that state, and only then are calls let through again.
    n = 1000
    dest.delay_s, dest.hold_s = 0.03, HOLD_S
    dest.hold()
    a, b = servers([HELD], dest, redis_store), servers([HELD], dest, redis_store)
    started = time.monotonic()
    sent = accepted_ids(post_many([a.url + "/a/held", b.url + "/a/held"], n))
    posted = time.monotonic() - started
    dest.hold_s = None                              # from now on a held call waits for release()
    dest.release(budget=int(n * 0.3))
    wait_until(lambda: len(dest.delivered()) >= n * 0.3, 60, "30% of the deliveries")
    # leases of jobs whose calls are held (after the budget: until release()), not any leases: a
    # worker holds none between completing its answered jobs and leasing the next ones, a moment
    # a kill could fall in (a delivery worker starved of CPU makes it long)
    wait_until(lambda: len(held_lease_holders(redis_store, dest)) == 2, 60,
               "both servers' delivery workers holding leased jobs, their calls held", poll=0.2)
    a.kill()
    killed, delivered_at_kill = time.monotonic(), len(dest.delivered())
    holders = held_lease_holders(redis_store, dest)
    dest.release()
    assert delivered_at_kill < n, "everything was delivered before the kill: the test proves nothing"
    assert len(holders) == 2, (f"jobs with calls held at the kill leased by {holders}: the killed server "
                               "held none, so no takeover")
    wait_until(lambda: done_count(redis_store) == n, VISIBILITY_S + 60, "every job done by the survivor",
               poll=0.2)
    all_done = time.monotonic() - killed
    say(f"[redis kill -9] {n} acknowledged by 2 servers in {posted:.1f} s; one killed after "
        f"{delivered_at_kill} had been delivered; the survivor finished {all_done:.1f} s after "
        f"(visibility {VISIBILITY_S:g} s)")
    duplicates(dest, record_property, "redis kill -9")
    assert dest.delivered() == sent
    assert not jobs(redis_store, "pending") and not jobs(redis_store, "leased")
    assert b.proc.proc.poll() is None, b.log()


# --- 3. retries, dead letters, replay ------------------------------------------------------------

def test_503s_are_retried_with_the_same_idempotency_key_until_delivered(dest, servers, store):
    server = servers([DELIVER], dest, store, extra=("--admin-prefix", ADMIN[0]),
                     env={"HOOKLINE_ADMIN_TOKEN": ADMIN[1]})
    dest.plan("r503", 503, 503, 503)
    resp = post(server.url + "/a/deliver", "r503")
    assert resp.status_code == 202, resp.text
    delivery = resp.json()["id"]
    assert resp.headers["Location"] == f"{ADMIN[0]}/deliveries/{delivery}"
    shown = requests.get(server.url + resp.headers["Location"], headers={"Authorization": f"Bearer {ADMIN[1]}"},
                         timeout=10)
    assert shown.status_code == 200 and shown.json()["delivery"] == delivery, shown.text
    wait_until(lambda: "r503" in dest.delivered(), 15, "the 4th attempt")
    calls = dest.of("r503")
    assert [c.status for c in calls] == [503, 503, 503, 200]
    (job,) = show(delivery, store)["jobs"]
    assert {c.key for c in calls} == {f"{job['id']}.send"}
    wait_until(lambda: state(store, delivery) == "done", 5, "the job done", poll=0.1)
    assert show(delivery, store)["jobs"][0]["attempt"] == 4


def test_429_retry_after_is_honoured(dest, servers, sqlite_store):
    server = servers([DELIVER], dest, sqlite_store)
    dest.plan("r429", (429, "1"))
    assert post(server.url + "/a/deliver", "r429").status_code == 202
    wait_until(lambda: "r429" in dest.delivered(), 15, "the retry after 429")
    first, second = dest.of("r429")
    assert (first.status, second.status) == (429, 200)
    assert second.arrived - first.finished >= 1.0, f"retried {second.arrived - first.finished:.2f} s after the 429"
    assert first.key == second.key


def test_timeouts_and_dropped_connections_are_retried(dest, servers, sqlite_store):
    server = servers([TIMEOUT], dest, sqlite_store)
    dest.plan("slow", (SLOW, 2.0))
    dest.plan("drop", DROP)
    deliveries = {rid: post(server.url + "/a/timeout", rid).json()["id"] for rid in ("slow", "drop")}
    for rid, delivery in deliveries.items():
        wait_until(lambda: state(sqlite_store, delivery) == "done", 15, f"{rid} done", poll=0.1)
        calls = dest.of(rid)
        assert show(delivery, sqlite_store)["jobs"][0]["attempt"] == len(calls) >= 2, calls
        assert len({c.key for c in calls}) == 1, calls
    assert dest.of("drop")[0].status == DROP
    assert dest.of("slow")[1].arrived - dest.of("slow")[0].arrived >= 1.0, "retried before the 1 s timeout"


def dead_job(dest, server, store, rid) -> dict:
    """Send ``rid``, which the destination refuses with 400; its job once dead."""
    dest.plan(rid, 400)
    resp = post(server.url + "/a/deliver", rid)
    assert resp.status_code == 202, resp.text
    delivery = resp.json()["id"]
    wait_until(lambda: state(store, delivery) == "dead", 15, f"{rid} dead-lettered", poll=0.1)
    (job,) = [j for j in jobs(store, "dead") if j["delivery"] == delivery]
    return job


def test_400_is_dead_lettered_with_the_reason_and_replay_delivers_it(dest, servers, store):
    server = servers([DELIVER], dest, store)
    job = dead_job(dest, server, store, "r400")
    assert "destination answered 400" in job["last_error"], job
    assert job["attempt"] == 1 and len(dest.of("r400")) == 1
    shown = json.loads(hookline("dlq", "show", job["id"], store=store).stdout)
    assert shown["state"] == "dead" and shown["payload"]["request"]["body"]["id"] == "r400"
    # the job keeps only what the branch reads (`body: request.body`): no headers, query, params
    assert shown["payload"].keys() == {"request", "steps", "_kept"} and shown["payload"]["steps"] == {}
    assert shown["payload"]["request"].keys() == {"body"}, shown["payload"]
    assert shown["payload"]["_kept"] == [["request", "body"]]      # what it kept, for later versions
    out = hookline("dlq", "replay", job["id"], store=store)
    assert out.returncode == 0 and json.loads(out.stdout) == {"replayed": 1}, out
    wait_until(lambda: "r400" in dest.delivered(), 10, "the replayed job delivered by the running server")
    assert [c.status for c in dest.of("r400")] == [400, 200]
    assert len({c.key for c in dest.of("r400")}) == 1
    assert jobs(store, "dead") == []
    wait_until(lambda: show(job["id"], store)["state"] == "done", 10, "the replayed job done")
    # delivered after the replay: done, without the error it once died of
    assert (show(job["id"], store)["last_error"], [j["last_error"] for j in jobs(store, "done")]) == ("", [""])
    out = hookline("dlq", "replay", job["id"], store=store)
    assert out.returncode == 1, "replaying a job that is not dead must say so"
    assert out.stdout == "" and f"{job['id']}: not in the dead-letter store (the job is done" in out.stderr, out
    out = hookline("dlq", "show", job["id"], store=store)
    assert out.returncode == 1, "dlq show of a job that is not dead must fail"
    assert out.stdout == "" and "not in the dead-letter store" in out.stderr, out


def test_dlq_replay_all_and_purge(dest, servers, store):
    server = servers([DELIVER], dest, store)
    for rid in ("all-1", "all-2"):
        dead_job(dest, server, store, rid)
    out = hookline("dlq", "replay", "--all", store=store)
    assert out.returncode == 0 and json.loads(out.stdout) == {"replayed": 2}, out
    wait_until(lambda: {"all-1", "all-2"} <= dest.delivered(), 10, "both replayed jobs delivered")
    gone = dead_job(dest, server, store, "purged")
    out = hookline("dlq", "purge", store=store)
    assert out.returncode == 0 and json.loads(out.stdout) == {"purged": 1}, out
    assert jobs(store, "dead") == []
    assert hookline("dlq", "show", gone["id"], store=store).returncode == 1
    assert "purged" not in dest.delivered()


OPS = [("deliveries", "list"), ("deliveries", "show", "0123456789abcdef"), ("dlq", "list"),
       ("dlq", "show", "0123456789abcdef"), ("dlq", "replay", "0123456789abcdef"), ("dlq", "replay", "--all"),
       ("dlq", "purge")]


@pytest.mark.parametrize("where", ["default", "missing-dir"])
def test_the_store_commands_refuse_a_store_that_does_not_exist(tmp_path, where):
    # `cd /tmp && hookline deliveries list` printed "0 job(s)", exit 0, and left a new hookline.db
    store = [] if where == "default" else ["--store", f"sqlite:{tmp_path}/nope/jobs.db"]
    expected = tmp_path / ("hookline.db" if where == "default" else "nope/jobs.db")
    for args in OPS:
        out = subprocess.run([*HOOKLINE, *args, *store], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert out.returncode == 2, (args, out)
        assert out.stdout == "" and f"no store at {expected}" in out.stderr, (args, out.stderr)
    assert list(tmp_path.iterdir()) == [], "a reading command created a store"


def test_an_unknown_id_is_an_error_on_stderr_only(sqlite_store):
    asyncio.run(_create(sqlite_store))
    unknown = "0123456789abcdef0123456789abcdef"
    for args in (("deliveries", "show", unknown), ("dlq", "show", unknown), ("dlq", "replay", unknown)):
        out = hookline(*args, store=sqlite_store)
        assert (out.returncode, out.stdout) == (1, ""), (args, out)
        assert out.stderr.startswith(f"hookline {args[0]} {args[1]}: {unknown}: no such "), (args, out.stderr)
    out = hookline("deliveries", "list", store=sqlite_store)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "0 job(s)\n")


async def _create(url):
    async with open_store(url):
        pass


def test_deliveries_list_shows_the_oldest_first_as_its_help_says(dest, servers, store):
    server = servers([DELIVER], dest, store)
    older, newer = (post(server.url + "/a/deliver", rid).json()["id"] for rid in ("older", "newer"))
    usage = subprocess.run([*HOOKLINE, "deliveries", "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "list jobs (oldest first)" in usage
    assert [j["delivery"] for j in jobs(store)] == [older, newer]
    (first,) = [line.split("\t")[4] for line in
                hookline("deliveries", "list", "--limit", "1", store=store).stdout.splitlines()]
    assert first == f"delivery={older}", "`deliveries list --limit 1` does not show the oldest job"


# --- 4. dedupe -----------------------------------------------------------------------------------

def test_a_repeated_webhook_id_gets_the_first_response_and_one_delivery(dest, servers, store):
    server = servers([DEDUPE], dest, store)
    first = post(server.url + "/a/dedupe", "d-1", {"webhook-id": "wh-1"})
    again = post(server.url + "/a/dedupe", "d-1", {"webhook-id": "wh-1"})
    assert first.status_code == 202
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers.get("Location") == first.headers.get("Location")
    wait_until(lambda: "d-1" in dest.delivered(), 10, "the delivery")
    time.sleep(1.0)                              # two lease polls: a second job would have been sent by now
    assert len(dest.of("d-1")) == 1
    assert len(jobs(store)) == 1


def test_concurrent_copies_of_one_webhook_create_one_delivery(dest, servers, store):
    server = servers([DEDUPE], dest, store)
    copies = 10
    barrier = threading.Barrier(copies)

    def send(_):
        barrier.wait(5)
        return post(server.url + "/a/dedupe", "d-2", {"webhook-id": "wh-2"})

    with ThreadPoolExecutor(copies) as pool:
        answers = list(pool.map(send, range(copies)))
    assert {(r.status_code, r.content) for r in answers} == {(202, answers[0].content)}
    wait_until(lambda: "d-2" in dest.delivered(), 10, "the delivery")
    time.sleep(1.0)
    assert len(dest.of("d-2")) == 1
    assert len(jobs(store)) == 1


# --- 5. SIGTERM ----------------------------------------------------------------------------------

def test_sigterm_with_jobs_in_flight_exits_0_releases_leases_and_a_restart_delivers(
        dest, servers, store):
    n = 20
    dest.hold()
    server = servers([DELIVER], dest, store, extra=("--shutdown-timeout", "1"))
    sent = accepted_ids(post_many([server.url + "/a/deliver"], n))
    wait_until(lambda: len(dest.ids()) == n, 10, "every job in flight at the destination")
    assert jobs(store, "leased"), "nothing leased before SIGTERM"
    server.proc.proc.send_signal(signal.SIGTERM)
    assert server.proc.proc.wait(10) == 0, server.log()
    assert jobs(store, "leased") == []
    assert {j["state"] for j in jobs(store)} == {"pending"} and len(jobs(store)) == n
    dest.release()                               # the stopped server's calls are answered to no one
    restarting = time.monotonic()
    servers([DELIVER], dest, store)
    wait_until(lambda: dest.delivered(since=restarting) == sent, 15, "every job delivered after the restart")
    wait_until(lambda: done_count(store) == n, 10, "every job done", poll=0.1)


def test_sigterm_lets_a_delivery_in_flight_finish_within_the_timeout_and_takes_no_new_work(
        dest, servers, store):
    n = 5
    dest.hold()                                  # every call waits at the destination: in flight at SIGTERM
    server = servers([DELIVER], dest, store, extra=("--shutdown-timeout", "8"))
    sent = accepted_ids(post_many([server.url + "/a/deliver"], n))
    wait_until(lambda: len(dest.ids()) == n, 10, "every job in flight at the destination")
    server.proc.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: refused(server.url), 5, "new connections refused once stopping")
    time.sleep(0.5)
    assert server.proc.proc.poll() is None, "serve exited without waiting for the calls in flight"
    dest.release()                               # the calls are answered within --shutdown-timeout
    assert server.proc.proc.wait(15) == 0, server.log()
    assert dest.delivered() == sent
    assert sorted(len(dest.of(rid)) for rid in sent) == [1] * n, "an attempt was cut short and repeated"
    assert {j["state"] for j in jobs(store)} == {"done"} and len(jobs(store)) == n


# --- 6. respond + async --------------------------------------------------------------------------

def test_a_sync_respond_does_not_wait_for_the_async_branch(dest, servers, sqlite_store):
    dest.delay_s = 1.0
    server = servers([RESPOND], dest, sqlite_store)
    started = time.monotonic()
    resp = post(server.url + "/a/respond", "s-1")
    answered = time.monotonic()
    assert (resp.status_code, resp.json()) == (200, {"received": "s-1"})
    assert answered - started < 0.8, f"the response took {answered - started:.2f} s"
    assert all(c.finished == 0 for c in dest.of("s-1")), "the destination finished before the response"
    wait_until(lambda: "s-1" in dest.delivered(), 10, "the async delivery")
    assert dest.of("s-1")[-1].finished - answered >= 0.5


# --- 7. processes ---------------------------------------------------------------------------------

def _children(pid: int) -> dict[int, str]:
    """pid → process name (``/proc/PID/comm``) of ``pid``'s children."""
    out = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if entry.isdigit() and int(fields[1]) == pid:
                with open(f"/proc/{entry}/comm") as f:
                    out[int(entry)] = f.read().strip()
        except (OSError, ValueError, IndexError):
            pass
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_delivery_runs_in_a_nicer_process_of_its_own_and_every_worker_dies_with_serve(
        dest, servers, sqlite_store):
    server = servers([DELIVER], dest, sqlite_store)
    wait_until(lambda: len(_children(server.proc.proc.pid)) == 2, 10, "two workers")
    workers = _children(server.proc.proc.pid)
    assert sorted(workers.values()) == ["hookline-delive", "hookline-http"], workers
    # the delivery worker lowers its priority once its store is open: wait for that, then compare
    wait_until(lambda: 19 in {_nice(pid) for pid in workers}, 15, "the delivery worker's nice 19")
    nice = {name: _nice(pid) for pid, name in workers.items()}
    assert nice == {"hookline-http": 0, "hookline-delive": 19}, nice
    resp = post(server.url + "/a/deliver", "proc-1")
    assert resp.status_code == 202, resp.text
    wait_until(lambda: "proc-1" in dest.delivered(), 5, "the delivery worker delivers")
    server.kill()                        # kill -9 of `hookline serve` itself
    wait_until(lambda: not any(map(_alive, workers)), 5, "the workers to die with their parent")


def test_delivery_workers_0_delivers_inside_the_one_http_process(dest, servers, sqlite_store):
    server = servers([DELIVER], dest, sqlite_store, extra=("--delivery-workers", "0"))
    wait_until(lambda: any("(workers=1, delivery_workers=0, " in line for line in server.lines), 5,
               "the ready line")
    assert _children(server.proc.proc.pid) == {}
    assert post(server.url + "/a/deliver", "inline-1").status_code == 202
    wait_until(lambda: "inline-1" in dest.delivered(), 5, "delivered by the HTTP process itself")


def test_two_http_workers_and_delivery_workers_0_deliver_in_the_http_workers(dest, servers, sqlite_store):
    server = servers([DELIVER], dest, sqlite_store, extra=("--workers", "2", "--delivery-workers", "0"))
    wait_until(lambda: sorted(_children(server.proc.proc.pid).values()) == ["hookline-http"] * 2, 10,
               "two HTTP workers and no delivery worker")
    rids = [f"w2-{i}" for i in range(10)]
    assert all(post(server.url + "/a/deliver", rid).status_code == 202 for rid in rids)
    wait_until(lambda: set(rids) <= set(dest.delivered()), 5, "every job delivered by the HTTP workers")


def _runs_libuv(pid: int) -> bool:
    """Whether process ``pid`` runs a libuv loop: libuv wakes its loop through an eventfd,
    asyncio's own loop through a socket pair (the module being mapped would not tell: a
    forked worker inherits its parent's imports)."""
    fds = f"/proc/{pid}/fd"
    return any(_link(f"{fds}/{fd}") == "anon_inode:[eventfd]" for fd in os.listdir(fds))


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


try:
    import uvloop  # noqa: F401
    HAS_UVLOOP = True
except ImportError:     # not on PyPy or Windows (pyproject.toml's marker)
    HAS_UVLOOP = False
needs_uvloop = pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed on this platform")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("loop", ["asyncio", pytest.param("uvloop", marks=needs_uvloop)])
def test_loop_picks_the_event_loop_every_worker_runs_on(dest, servers, sqlite_store, loop):
    server = servers([DELIVER], dest, sqlite_store, extra=("--loop", loop))
    wait_until(lambda: any(f"delivery_workers=1, loop={loop})" in line for line in server.lines), 5,
               "the ready line naming the loop")
    wait_until(lambda: len(_children(server.proc.proc.pid)) == 2, 10, "two workers")
    resp = post(server.url + "/a/deliver", f"loop-{loop}")
    assert resp.status_code == 202, resp.text
    wait_until(lambda: f"loop-{loop}" in dest.delivered(), 5, "the delivery")
    libuv = {name: _runs_libuv(pid) for pid, name in _children(server.proc.proc.pid).items()}
    assert libuv == {"hookline-http": loop == "uvloop", "hookline-delive": loop == "uvloop"}, libuv


@needs_uvloop
def test_loop_auto_is_uvloop_when_installed_and_asyncio_when_not(tmp_path, dest, servers, sqlite_store):
    server = servers([DELIVER], dest, sqlite_store)
    wait_until(lambda: any("loop=uvloop)" in line for line in server.lines), 5, "loop=uvloop by default")
    assert post(server.url + "/a/deliver", "auto-1").status_code == 202
    blocked = tmp_path / "no-uvloop"
    (blocked / "uvloop").mkdir(parents=True)      # shadows the installed uvloop: importing it fails
    (blocked / "uvloop" / "__init__.py").write_text("raise ImportError('uvloop hidden by the test')\n")
    hidden = {"PYTHONPATH": os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")]))}
    server = servers([DELIVER], dest, sqlite_store, env=hidden)
    wait_until(lambda: any("loop=asyncio)" in line for line in server.lines), 5, "the fallback to asyncio")
    assert post(server.url + "/a/deliver", "auto-2").status_code == 202
    wait_until(lambda: {"auto-1", "auto-2"} <= set(dest.delivered()), 5, "both delivered")
    asked = subprocess.run([*HOOKLINE, "serve", str(DELIVER), "--loop", "uvloop", "--store", sqlite_store],
                           env={**os.environ, **hidden, "DEST_URL": dest.url}, capture_output=True, text=True,
                           timeout=30)
    assert asked.returncode == 2, asked.stderr
    assert asked.stderr.strip().splitlines()[-1] == (
        "hookline serve: --loop: uvloop is not installed (pip install uvloop, or --loop asyncio)")


READS = """\
pipeline: as-reads
receive: {path: /a/reads, methods: [POST]}
async:
  - id: dest
    steps:
      - id: send
        call: {url: "${env:DEST_URL}/recv", body: "%s", timeout_s: 5}
    retry: {max_attempts: 3, initial_s: 0.1, max_s: 1, max_age_s: 600}
"""


def test_a_job_replayed_under_a_pipeline_that_reads_more_is_dead_lettered_saying_why(
        dest, servers, sqlite_store, tmp_path):
    """A job keeps what its branch read when it was stored. Fixed the pipeline to read one
    more field, then replayed the dead job with today's version (``--current``): it must not
    be delivered with that field null."""
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "reads.yaml").write_text(READS % "{id: request.body.id}")
    (tmp_path / "v2" / "reads.yaml").write_text(READS % "{id: request.body.id, note: request.body.filler}")
    server = servers([tmp_path / "v1"], dest, sqlite_store)
    dest.plan("kept-1", 400)
    delivery = post(server.url + "/a/reads", "kept-1").json()["id"]
    wait_until(lambda: state(sqlite_store, delivery) == "dead", 15, "the first attempt dead-lettered", poll=0.1)
    (job,) = [j for j in jobs(sqlite_store, "dead") if j["delivery"] == delivery]
    assert json.loads(hookline("dlq", "show", job["id"], store=sqlite_store).stdout)["payload"]["request"] == {
        "body": {"id": "kept-1"}}
    server.proc.stop()
    servers([tmp_path / "v2"], dest, sqlite_store)
    assert hookline("dlq", "replay", job["id"], "--current", "--pipelines", str(tmp_path / "v2"),
                    store=sqlite_store, env={"DEST_URL": dest.url}).returncode == 0
    wait_until(lambda: "did not keep" in (jobs(sqlite_store, "dead") or [{}])[0].get("last_error", ""), 15,
               "the replayed job dead-lettered again", poll=0.1)
    (again,) = jobs(sqlite_store, "dead")
    assert "now reads request.body.filler, which this job did not keep" in again["last_error"], again
    assert len(dest.of("kept-1")) == 1, "the destination must not get the order with its note null"


def test_two_delivery_workers_share_the_jobs(dest, servers, sqlite_store):
    server = servers([DELIVER], dest, sqlite_store, extra=("--delivery-workers", "2"))
    wait_until(lambda: sorted(_children(server.proc.proc.pid).values())
               == ["hookline-delive", "hookline-delive", "hookline-http"], 10, "one HTTP and two delivery workers")
    rids = [f"d2-{i}" for i in range(40)]
    assert all(post(server.url + "/a/deliver", rid).status_code == 202 for rid in rids)
    wait_until(lambda: set(rids) <= set(dest.delivered()), 5, "every job delivered")
    assert sorted(c.rid for c in dest.calls if c.rid in rids) == sorted(rids), "a job delivered twice"


def test_a_nudge_wakes_every_delivery_worker():
    """One byte down each delivery worker's own pipe (a shared pipe woke only whichever read first)."""
    from engine.delivery import Nudge
    pipes = [os.pipe() for _ in range(3)]

    async def main():
        nudge = Nudge([write for _, write in pipes])
        nudge()
        nudge()                          # twice in one loop iteration: one byte each
        await asyncio.sleep(0)
    asyncio.run(main())
    try:
        assert [os.read(read, 10) for read, _ in pipes] == [b"w"] * 3
    finally:
        for fd in (fd for pipe in pipes for fd in pipe):
            os.close(fd)
