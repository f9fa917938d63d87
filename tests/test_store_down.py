"""Persist before acknowledge, with a real ``hookline serve`` and a store that really goes
away (docs/dsl.md, ``async``): while the store cannot commit, an async request gets
``503`` with ``Retry-After`` and a problem document — never ``202``, never another 5xx —
and no job is stored, so nothing it carried ever reaches the destination; once the
store is back, requests are acknowledged and delivered again, without a restart.

* Redis: a ``redis-server`` of the test's own (no persistence, a password), killed
  with SIGKILL and started again, empty, on the same port. Without ``redis-server``
  on PATH the test skips, except with CI=true, where it fails. The emptied Redis has
  lost the stream's consumer group too: leasing makes it again (it once did not, and
  nothing acknowledged after the restart was delivered until hookline restarted).
* SQLite: the database on a tmpfs of a few MB that the test fills up (a full disk:
  the test runs as root, so permissions would not stop a write). Without the right
  to mount (not root, a container without CAP_SYS_ADMIN) the test skips. Its requests
  carry ~600 KB bodies: a small job still fits in the room the WAL file already has.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from conftest import HOOKLINE, ROOT, free_port
from test_async_delivery import ADMIN, DEDUPE, DELIVER, Server, dest, wait_until  # noqa: F401 (dest: a fixture)

TOKEN = f"Bearer sk_live_{secrets.token_hex(12)}"     # a sender's credential: never in the log
BIG = 600_000        # body bytes (under the 1 MiB limit): far more than the WAL has room for
# What a client must never read: a traceback, the store's own words, where the store is.
LEAKS = re.compile(r"Traceback|File \"|redis|sqlite|Error \d+|refused|disk|127\.0\.0\.1:\d", re.I)


# --- a Redis server of our own, and a disk that fills up -------------------------------------

def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not on PATH (apt-get install redis-server): cannot kill and restart Redis"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class RedisServer:
    """``redis-server`` on ``port``, keeping nothing on disk, with a password; ``kill()`` is
    SIGKILL, ``start()`` again gives an empty server on the same port."""

    def __init__(self, binary, port, workdir):
        self.binary, self.port, self.workdir = binary, port, workdir
        self.password = secrets.token_hex(16)
        self.url = f"redis://:{self.password}@127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1", "--requirepass", self.password, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis("127.0.0.1", self.port, password=self.password, socket_connect_timeout=0.5)
        try:
            wait_until(lambda: self._pings(client), 10, f"redis-server on port {self.port}")
        finally:
            client.close()

    def _pings(self, client) -> bool:
        assert self.proc.poll() is None, f"redis-server exited with {self.proc.returncode} (port taken?)"
        try:
            return client.ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(redis_server_binary(), free_port(), tmp_path)
    server.start()
    yield server
    server.kill()


class Disk:
    """A tmpfs mounted at ``path``; ``fill()`` writes a file until the filesystem is full,
    ``free()`` deletes it."""

    def __init__(self, path):
        self.path, self.filler = path, path / "filler"

    def fill(self) -> None:
        chunk = b"\0" * 65536
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk"
    path.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small filesystem to fill up")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (root with CAP_SYS_ADMIN needed): {mounted.stderr.strip()}")
    yield Disk(path)
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def serve(dest):
    """``serve(store)`` → ``hookline serve`` of DELIVER and DEDUPE on ``store`` (one HTTP
    worker, one delivery worker), stopped at teardown — before the fixtures it was given
    its store by (the test's Redis, the tmpfs), as it is set up after them."""
    started = []

    def start(store):
        started.append(Server([DELIVER, DEDUPE], dest, store, extra=("--admin-prefix", ADMIN[0]),
                              env={"HOOKLINE_ADMIN_TOKEN": ADMIN[1]}))
        return started[-1]

    yield start
    for server in started:
        server.proc.stop()


# --- requests and what they must get -------------------------------------------------------

def send(url, rid, size=200, webhook_id=None) -> requests.Response:
    headers = {"Authorization": TOKEN, **({"webhook-id": webhook_id} if webhook_id else {})}
    return requests.post(url, json={"id": rid, "filler": "x" * size}, headers=headers, timeout=20)


def accepted(resp, what) -> str:
    """The delivery id of a 202."""
    assert resp.status_code == 202, f"{what}: {resp.status_code} {resp.text[:300]}"
    delivery = resp.json()["id"]
    assert isinstance(delivery, str) and len(delivery) == 32, resp.text
    return delivery


def refused(resp, what) -> None:
    """503 + Retry-After + a problem document that says nothing about the store."""
    assert resp.status_code == 503, f"{what}: {resp.status_code} {resp.text[:300]}"
    assert resp.headers.get("Retry-After", "").isdigit(), (what, dict(resp.headers))
    assert resp.headers["Content-Type"] == "application/problem+json", (what, dict(resp.headers))
    body = resp.json()
    assert (body["status"], body["type"].rsplit("/", 1)[-1]) == (503, "unavailable"), (what, body)
    assert not LEAKS.search(resp.text), f"{what}: the answer tells about the store: {resp.text}"


def all_refused(url, n, size=200) -> list[str]:
    """``n`` requests at once (one pipelined round trip, or one group commit, for several)."""
    rids = [f"burst-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(lambda rid: send(url, rid, size), rids))
    for rid, resp in zip(rids, answers, strict=True):
        refused(resp, rid)
    return rids


def alive_and_discreet(server, *secret_values) -> None:
    """The server never died nor lost a worker, and its log never shows a secret."""
    assert server.proc.proc.poll() is None, f"hookline serve exited:\n{server.log()}"
    time.sleep(0.3)                                      # the last lines on their way through the pipe
    log = "".join(server.lines)
    assert "exited (status" not in log, f"a worker died:\n{log[-4000:]}"
    assert "unexpected failure" not in log, f"a request failed with a 500:\n{log[-4000:]}"
    for value in (TOKEN.split()[1], *secret_values):
        assert value not in log, f"the log shows a secret ({value[:6]}…):\n{log[-4000:]}"


def said_why(server, words: str) -> None:
    """The operator learns from the log why requests got 503: one WARNING with the store's own
    words (not one line per request, nor a traceback)."""
    time.sleep(1.5)                                      # a backlog check (once a second) fails too
    lines = [line for line in server.lines if "WARNING hookline[" in line and "store unavailable:" in line]
    assert len(lines) == 1 and words in lines[0], "".join(server.lines)[-4000:]      # 10 s apart at most
    assert "Traceback" not in "".join(server.lines), "".join(server.lines)[-4000:]


def said_back(server) -> None:
    """Once writes go through again the HTTP worker says so, once, with what failed meanwhile."""
    lines = [line for line in server.lines if "INFO hookline[" in line and "store available again" in line]
    assert len(lines) == 1 and "request(s) answered 503" in lines[0], "".join(server.lines)[-4000:]


def admin_unavailable(server) -> None:
    """The admin endpoints answer a store that is down as the pipelines do: 503, not 500."""
    resp = requests.get(server.url + ADMIN[0] + "/deliveries", timeout=20,
                        headers={"Authorization": f"Bearer {ADMIN[1]}"})
    assert resp.status_code == 503 and resp.headers["Retry-After"].isdigit(), (resp.status_code, resp.text)
    assert resp.json()["type"] == "https://hookline.dev/problems/unavailable", resp.text


def acknowledged_again(url, within_s, size=200) -> tuple[list[str], list[str]]:
    """Send until a request is acknowledged (bounded): (acknowledged ids, refused ids)."""
    deadline, refused_ids = time.monotonic() + within_s, []
    while True:
        rid = f"back-{len(refused_ids)}-{uuid.uuid4().hex[:6]}"
        resp = send(url, rid, size)
        if resp.status_code == 202:
            accepted(resp, rid)
            return [rid], refused_ids
        refused(resp, rid)
        refused_ids.append(rid)
        assert time.monotonic() < deadline, f"still 503 {within_s} s after the store came back"
        time.sleep(0.2)


def delivered_in_time(dest, rids, within_s=10.0) -> set[str]:
    """The ids of ``rids`` still not delivered after ``within_s`` (empty: all arrived)."""
    deadline = time.monotonic() + within_s
    while not set(rids) <= dest.delivered() and time.monotonic() < deadline:
        time.sleep(0.05)
    return set(rids) - dest.delivered()


def never_arrive(dest, rids) -> None:
    """Refused requests do not reach the destination, even with the delivery worker running
    on for a while."""
    time.sleep(2)
    assert not set(rids) & dest.ids(), f"refused, yet delivered: {set(rids) & dest.ids()}"


def stored(payloads, rids) -> set[str]:
    """The ids of ``rids`` that some stored job's payload (its persisted request body) holds."""
    return {rid for rid in rids if any(f'"id":"{rid}"'.encode() in p for p in payloads)}


def redis_payloads(server: RedisServer) -> list[bytes]:
    client = redis.Redis("127.0.0.1", server.port, password=server.password)
    try:
        return [client.hget(key, "payload") or b"" for key in client.scan_iter("hookline:job:*")]
    finally:
        client.close()


def sqlite_payloads(path) -> list[bytes]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT payload FROM jobs")]
    finally:
        conn.close()


# --- the tests -------------------------------------------------------------------------------

def test_redis_gone_answers_503_and_redis_back_acknowledges_and_delivers_again(redis_server, serve, dest):
    server = serve(redis_server.url)
    deliver, dedupe = server.url + "/a/deliver", server.url + "/a/dedupe"
    accepted(send(deliver, "before"), "before the kill")
    wait_until(lambda: "before" in dest.delivered(), 10, "the first request to arrive")

    redis_server.kill()
    down = [f"down-{i}" for i in range(4)]
    for rid in down:                                     # the pooled connection breaks, then none opens
        started = time.monotonic()
        refused(send(deliver, rid), rid)
        assert time.monotonic() - started < 5, f"{rid}: the 503 took {time.monotonic() - started:.1f} s"
    down += all_refused(deliver, 6)
    refused(send(dedupe, "down-dedupe", webhook_id="wh-down"), "dedupe while Redis is gone")
    down.append("down-dedupe")
    admin_unavailable(server)
    alive_and_discreet(server, redis_server.password)
    said_why(server, "redis: ConnectionError")

    redis_server.start()                                 # empty: what was stored before is gone
    back, late = acknowledged_again(deliver, within_s=10)
    for i in range(3):
        back.append(f"after-{i}")
        accepted(send(deliver, back[-1]), back[-1])
    back.append("after-dedupe")                          # the refused delivery id, sent again
    accepted(send(dedupe, "after-dedupe", webhook_id="wh-down"), "dedupe once Redis is back")
    assert stored(redis_payloads(redis_server), back) == set(back)
    assert not stored(redis_payloads(redis_server), down + late), "a refused request was stored"
    missing = delivered_in_time(dest, back)
    alive_and_discreet(server, redis_server.password)
    assert not missing, f"acknowledged, never delivered: {missing}\n{server.log()}"
    never_arrive(dest, down + late)
    said_back(server)


def test_sqlite_on_a_full_disk_answers_503_and_acknowledges_again_once_there_is_room(disk, serve, dest):
    server = serve(f"sqlite:{disk.path}/hookline.db")
    deliver, dedupe = server.url + "/a/deliver", server.url + "/a/dedupe"
    accepted(send(deliver, "before"), "before the disk filled up")
    wait_until(lambda: "before" in dest.delivered(), 10, "the first request to arrive")

    disk.fill()
    down = [f"down-{i}" for i in range(3)]
    for rid in down:
        refused(send(deliver, rid, size=BIG), rid)
    down += all_refused(deliver, 4, size=BIG)
    refused(send(dedupe, "down-dedupe", size=BIG, webhook_id="wh-down"), "dedupe on a full disk")
    down.append("down-dedupe")
    alive_and_discreet(server)
    said_why(server, "full")

    disk.free()
    back, late = acknowledged_again(deliver, within_s=10, size=BIG)
    back.append("after-dedupe")                          # the refused delivery id, sent again
    accepted(send(dedupe, "after-dedupe", size=BIG, webhook_id="wh-down"), "dedupe once there is room")
    payloads = sqlite_payloads(disk.path / "hookline.db")
    assert stored(payloads, back) == set(back)
    assert not stored(payloads, down + late), "a refused request was stored"
    missing = delivered_in_time(dest, back)
    assert not missing, f"acknowledged, never delivered: {missing}\n{server.log()}"
    never_arrive(dest, down + late)
    alive_and_discreet(server)
    said_back(server)


OPEN = ROOT / "tests" / "pipelines" / "security" / "limits-open.yaml"    # /sec/open: needs no store


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_store_down_at_start_up_answers_503_serves_the_rest_and_delivers_once_it_answers(
        kind, tmp_path, dest):
    # Redis not listening yet, or SQLite under a path it cannot create (its parent is a file):
    # the ready line was printed, then the HTTP and delivery workers died opening the store and
    # were restarted ~5 times a second with tracebacks, and every request hung.
    if kind == "redis":
        store = RedisServer(redis_server_binary(), free_port(), tmp_path)
        url, come_back = store.url, store.start
    else:
        blocker = tmp_path / "not-yet"
        blocker.write_text("a file where the store's directory goes")
        url = f"sqlite:{blocker}/hookline.db"

        def come_back():
            blocker.unlink()
    try:
        server = Server([DELIVER, DEDUPE, OPEN], dest, url, extra=("--admin-prefix", ADMIN[0]),
                        env={"HOOKLINE_ADMIN_TOKEN": ADMIN[1]})
        try:
            down_then_up(server, dest, come_back)
        finally:
            server.proc.stop()
    finally:
        if kind == "redis":
            store.kill()


def down_then_up(server, dest, come_back) -> None:
    assert requests.post(server.url + "/sec/open", timeout=5).status_code == 204   # needs no store
    down = [f"down-{i}" for i in range(3)]
    for rid in down:
        refused(send(server.url + "/a/deliver", rid), rid)
    refused(send(server.url + "/a/dedupe", "down-dedupe", webhook_id="wh-start"), "dedupe before the store")
    admin_unavailable(server)
    alive_and_discreet(server)
    log = "".join(server.lines)
    said = [line for line in server.lines if "store unavailable at start-up:" in line]
    assert len(said) == 2, log[-4000:]                   # the HTTP worker and the delivery worker, once each
    assert "Traceback" not in log and "restarting" not in log, log[-4000:]

    come_back()
    back, late = acknowledged_again(server.url + "/a/deliver", within_s=15)
    accepted(send(server.url + "/a/dedupe", "after-dedupe", webhook_id="wh-start"), "dedupe once it answers")
    back.append("after-dedupe")
    missing = delivered_in_time(dest, back, within_s=15)
    assert not missing, f"acknowledged, never delivered: {missing}\n{server.log()}"
    never_arrive(dest, down + late)
    alive_and_discreet(server)
    assert "Traceback" not in "".join(server.lines), server.log()


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_as_the_store_comes_back_still_exits(redis_server, dest, tmp_path, attempt):
    """Redis down at start. The workers once died opening the store and were restarted every
    ~0.2 s, and a SIGTERM in that pause, just as Redis came back, left the restarted (now
    healthy) workers running with nobody to stop them: ``hookline serve`` never exited. They
    wait for the store now; a SIGTERM as it comes back still ends everything."""
    redis_server.kill()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*HOOKLINE, "serve", str(DELIVER), "--port", "0", "--store", redis_server.url],
                                env={**os.environ, "DEST_URL": dest.url}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: log.read_text().count("store unavailable at start-up") == 2, 15,
                   "both workers waiting for the store")
        redis_server.start()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()[-3000:]
    except subprocess.TimeoutExpired:
        pytest.fail("serve did not exit 15 s after SIGTERM: a restarted worker was left running\n"
                    + log.read_text()[-3000:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
