"""``sqlite:PATH`` — one SQLite file in WAL mode with ``synchronous=FULL``.

Group commit: every write (enqueue, lease, complete, …) goes to one writer
thread with its own connection. It takes all the operations waiting in its
queue, runs them in one transaction (each in a savepoint of its own only
when one of them failed: that failure then undoes only its own writes),
COMMITs once (one fsync of the WAL) and only then resolves the callers'
futures, handing them back to the event loop in one go. While a COMMIT is
being fsync'ed new callers queue up, so the busier the server the more
callers share one fsync. Reads use a second connection in a reader thread.
Nothing blocks the event loop.

Durable means: when ``enqueue`` returns, the WAL frame holding the jobs has
been fsync'ed; a ``kill -9`` or a power cut after that loses nothing.
Several processes may share one file (each has its own writer; SQLite's
lock and ``busy_timeout`` serialise their transactions).
"""
from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.queue import (COUNTED, DuplicateJob, Job, QueueError, StoreBase, StoredVersions,
                          StoreUnavailable)
from engine.queue import runs as _runs
from engine.queue import segments as _segments

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    delivery TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    branch TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempt INTEGER NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    state TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    lease TEXT NOT NULL DEFAULT '',
    consumer TEXT NOT NULL DEFAULT '',
    until REAL NOT NULL DEFAULT 0,
    version TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_state_due ON jobs (state, due_at);
CREATE INDEX IF NOT EXISTS jobs_delivery ON jobs (delivery);
CREATE TABLE IF NOT EXISTS versions (
    version TEXT PRIMARY KEY,
    source BLOB NOT NULL,
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY,
    response BLOB NOT NULL,
    expires_at REAL NOT NULL
);
"""
JOB_COLUMNS = "id, delivery, pipeline, branch, payload, attempt, created_at, due_at, state, last_error, lease, version"
MAX_BATCH = 1000          # operations per transaction
DEDUPE_SWEEP_S = 60.0     # how often expired dedupe keys are deleted
BUSY_TIMEOUT_MS = 10_000  # another process holding the write lock
BUSY_S = 0.002            # an operation arriving this soon after the last commit means "busy" ...
GATHER_S = 0.0005         # ... and then the writer waits this long for more to share the commit
CHECKPOINT_S = 1.0        # how often the WAL is copied back (see SqliteStore._checkpoint_every)
WAL_RESTART_BYTES = 16 * 1024 * 1024   # a WAL file past this is checkpointed with RESTART, and cut back
RESTART_TRIES = 50        # ... tried this often, a millisecond apart, else again a second later


def connect(path: str, writer: bool = False, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in WAL mode. A writer's connection never checkpoints on its own
    (the store's checkpointer does, outside any commit) and waits for another
    process's write lock in :func:`_begin` rather than in SQLite's busy handler."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _while_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    if writer:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_RESTART_BYTES}")   # on a restart, cut the file back
        conn.execute("PRAGMA busy_timeout = 0")
    return conn


def _begin(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE; while another process holds the write lock, try again after
    0.1 ms, doubling up to 2 ms (SQLite's busy handler sleeps 1, 2, 5, 10 … 100 ms:
    a commit waiting on a lock held for 1 ms would often wait 10)."""
    _while_busy(lambda: conn.execute("BEGIN IMMEDIATE"))


def _while_busy(statement) -> None:
    """Run ``statement()`` until no other connection holds the lock it needs (for at most
    BUSY_TIMEOUT_MS). Also used for ``journal_mode = WAL``: two processes opening a new
    file at once got SQLITE_BUSY there at once, without SQLite's busy handler (22 of 60
    tries), and a delivery worker died at start."""
    deadline, pause = time.monotonic() + BUSY_TIMEOUT_MS / 1000, 0.0001
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:       # SQLITE_BUSY, _BUSY_RECOVERY, _BUSY_SNAPSHOT, …
            if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY") or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.002)


class _Op:
    __slots__ = ("fn", "args", "loop", "future")

    def __init__(self, fn, args, loop):
        self.fn, self.args, self.loop = fn, args, loop
        self.future = loop.create_future()


def _settle_all(outcomes) -> None:
    """In the caller's loop: resolve the futures of one batch (one hand-off for all)."""
    for future, ok, value in outcomes:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)


def _hand_back(batch, results) -> None:
    """One ``call_soon_threadsafe`` per event loop per batch, not one per operation."""
    by_loop: dict = {}
    for op, (ok, value) in zip(batch, results, strict=True):
        by_loop.setdefault(op.loop, []).append((op.future, ok, value))
    for loop, outcomes in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, outcomes)
        except RuntimeError:  # the caller's loop is gone: nobody is waiting
            pass


_STOP = object()


def _drain(q: queue.SimpleQueue) -> list:
    items = []
    while not q.empty():
        items.append(q.get_nowait())
    return items


class Writer:
    """The one thread that writes: batches queued operations into one COMMIT.

    ``commits`` counts the transactions committed (one fsync each).
    """

    def __init__(self, path: str, synchronous: str = "FULL", sweep: bool = True):
        self.path, self.synchronous, self.sweep = path, synchronous, sweep
        self.commits = 0
        self._ops: queue.SimpleQueue = queue.SimpleQueue()    # lists of _Op, or _STOP
        self._waiting: dict = {}       # event loop -> [_Op] submitted in its current pass
        self._stop_lock, self._stopped = threading.Lock(), False
        self._thread = threading.Thread(target=self._run, name="hookline-sqlite-writer", daemon=True)
        self._error: QueueError | None = None
        self._swept = 0.0

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn, *args) -> asyncio.Future:
        """Run ``fn(conn, *args)`` in the next batch; the future resolves after its COMMIT.

        What one pass of the event loop submits reaches the writer as one queue item, at
        the end of that pass: the writer thread is woken once a pass, not once an
        operation. Woken per operation, it took the GIL from the event loop at every
        system call the loop made and committed ~4 requests where ~14 were waiting
        (``docs/delivery.md``, "One hand-over a pass")."""
        loop = asyncio.get_running_loop()
        op = _Op(fn, args, loop)
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = []
            loop.call_soon(self._hand_over, loop)
        waiting.append(op)
        return op.future

    def _hand_over(self, loop) -> None:
        ops = self._waiting.pop(loop, None)
        if not ops:
            return
        with self._stop_lock:
            if not self._stopped:
                self._ops.put(ops)
                return
        self._refuse(ops)

    def _refuse(self, ops) -> None:
        _hand_back(ops, [(False, StoreUnavailable(f"sqlite {self.path}: store is closed"))] * len(ops))

    def hand_over_now(self) -> None:
        """From the event loop: pass on what its current pass submitted, now (before stopping)."""
        self._hand_over(asyncio.get_running_loop())

    def stop(self) -> None:
        """Commit what was handed over, then end the thread; what arrives later fails with
        StoreUnavailable. Call :meth:`hand_over_now` from the event loop first."""
        self._ops.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = connect(self.path, writer=True, synchronous=self.synchronous)
        except sqlite3.Error as exc:
            conn, self._error = None, StoreUnavailable(f"sqlite {self.path}: {exc}")
        stopping, last = False, 0.0
        while not stopping:
            items = [self._ops.get()]
            if time.monotonic() - last < BUSY_S:   # busy: let a few more callers join this commit
                time.sleep(GATHER_S)
            while not self._ops.empty():
                items.append(self._ops.get_nowait())
            stopping = _STOP in items
            ops = [op for item in items if item is not _STOP for op in item]
            for start in range(0, len(ops), MAX_BATCH):
                self._commit(conn, ops[start:start + MAX_BATCH])
                last = time.monotonic()
        with self._stop_lock:
            self._stopped = True
        self._refuse([op for item in _drain(self._ops) if item is not _STOP for op in item])
        if conn is not None:
            conn.close()

    def _commit(self, conn: sqlite3.Connection | None, batch: list[_Op]) -> None:
        if self._error is not None:
            _hand_back(batch, [(False, self._error)] * len(batch))
            return
        try:
            results = _run_batch(conn, batch)
            if self.sweep:
                self._sweep(conn)
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            _rollback(conn)
            results = [(False, StoreUnavailable(f"sqlite {self.path}: {exc}"))] * len(batch)
        _hand_back(batch, results)

    def _sweep(self, conn: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._swept > DEDUPE_SWEEP_S:
            conn.execute("DELETE FROM dedupe WHERE expires_at <= ?", (now,))
            self._swept = now


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # SQLite rolled back on its own (a failed COMMIT may leave no transaction)


def _run_batch(conn: sqlite3.Connection, batch: list[_Op]) -> list:
    """Run the batch in one transaction: first straight through (the usual case: nothing
    fails); if any operation raises, start again with each in a savepoint of its own."""
    _begin(conn)
    try:
        return [(True, op.fn(conn, *op.args)) for op in batch]
    except Exception as exc:
        if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
            raise  # I/O, lock, corruption: the whole batch fails
        conn.execute("ROLLBACK")
    _begin(conn)
    return [_in_savepoint(conn, op) for op in batch]


def _in_savepoint(conn: sqlite3.Connection, op: _Op) -> tuple[bool, object]:
    """One operation; its own failure undoes only its own writes."""
    conn.execute("SAVEPOINT op")
    try:
        result = (True, op.fn(conn, *op.args))
    except sqlite3.Error as exc:
        if not isinstance(exc, sqlite3.IntegrityError):
            raise  # I/O, lock, corruption: the whole batch fails
        conn.execute("ROLLBACK TO op")
        result = (False, StoreUnavailable(f"sqlite: {exc}"))
    except Exception as exc:  # DuplicateJob, or a bug: this caller's problem only
        conn.execute("ROLLBACK TO op")
        result = (False, exc)
    conn.execute("RELEASE op")
    return result


class Reader:
    """A second connection, used from one thread of its own."""

    def __init__(self, path: str, name: str = "hookline-sqlite-read"):
        self.path = path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def run(self, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn, args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None

    def _call(self, fn, args):
        if self._conn is None:
            self._conn = connect(self.path)
        return fn(self._conn, *args)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._pool.shutdown()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class SqliteStore(StoreBase):
    """``for_delivery=True`` (a delivery worker's store): its commits — lease, complete,
    retry, dead — are not fsync'd (``synchronous=NORMAL``). A power cut may undo the last
    of them, which at-least-once delivery already allows: the job is delivered again.
    Enqueues and dedupe claims, committed by the HTTP workers, are always fsync'd."""

    def __init__(self, path: str, for_delivery: bool = False):
        self.path, self.for_delivery = path, for_delivery
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._checkpoints: asyncio.Task | None = None
        self._history: _runs.SqliteHistory | None = None    # the run history's own file: see open()
        self._stored = StoredVersions()

    @property
    def commits(self) -> int:
        """Transactions committed by this process so far (each one fsync)."""
        return self._writer.commits if self._writer else 0

    async def open(self) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None
        self._writer = Writer(self.path, "NORMAL" if self.for_delivery else "FULL")
        self._reader = Reader(self.path)
        self._writer.start()
        try:
            await self._write(_create)
        except StoreUnavailable:
            await self.close()
            raise
        self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_every(CHECKPOINT_S))

    def _history_db(self) -> _runs.SqliteHistory:
        """The run history, opened on first use: its run records in files under ``PATH.runs/``
        (engine/queue/segments.py), its attempts and per-minute aggregates in a file of its
        own, ``PATH.history``: ``synchronous=NORMAL`` (a power cut may lose the last of them,
        never a job), and no commit shared with the jobs'."""
        if self._writer is None:
            raise StoreUnavailable(f"sqlite {self.path}: store is not open")
        if self._history is None:
            self._history = _runs.SqliteHistory(self.path + _runs.HISTORY_SUFFIX, Writer, Reader,
                                                self._checkpoint_every, self.path + _runs.RUNS_SUFFIX)
        return self._history

    async def _checkpoint_every(self, seconds: float, path: str | None = None) -> None:
        """Copy the WAL back into the database now and then, with a connection and thread
        of its own (PASSIVE: it never blocks the writers; and it fsyncs the database file,
        which would hold up the reader's queries), so that no commit pays for it."""
        path = path or self.path
        checkpointer = Reader(path, "hookline-sqlite-checkpoint")
        try:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await checkpointer.run(_checkpoint, path + "-wal")
                except StoreUnavailable:
                    pass              # the next round tries again
        finally:
            await asyncio.shield(checkpointer.close())

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            await asyncio.gather(self._checkpoints, return_exceptions=True)
            self._checkpoints = None
        writer, reader, self._writer, self._reader = self._writer, self._reader, None, None
        history, self._history = self._history, None
        if history is not None:
            await history.close()
        if writer is not None:
            writer.hand_over_now()
            await asyncio.to_thread(writer.stop)
            await reader.close()

    def _write(self, fn, *args) -> asyncio.Future:
        if self._writer is None:
            raise StoreUnavailable(f"sqlite {self.path}: store is not open")
        return self._writer.submit(fn, *args)

    def _read(self, fn, *args):
        if self._reader is None:
            raise StoreUnavailable(f"sqlite {self.path}: store is not open")
        return self._reader.run(fn, *args)

    async def enqueue(self, jobs: list[Job], dedupe: tuple[str, bytes, float] | None = None,
                      source: bytes | None = None) -> bool:
        return await self.enqueue_soon(jobs, dedupe, source)

    def enqueue_soon(self, jobs: list[Job], dedupe=None, source=None) -> asyncio.Future:
        if source is None or not jobs or not self._stored.wanted(jobs[0].version):
            return self._write(_enqueue, jobs, dedupe, None)   # the writer's own future: no task needed
        future = self._write(_enqueue, jobs, dedupe, source)
        self._stored.failed(jobs[0].version, future)
        return future

    async def dedupe_get(self, key: str) -> bytes | None:
        return await self._read(_dedupe_get, key)

    async def claim(self, key: str, ttl_s: float) -> bytes | None:
        return await self._write(_claim, key, ttl_s)

    async def unclaim(self, key: str) -> None:
        await self._write(_change, "DELETE FROM dedupe WHERE key = ? AND response = x''", (key,))

    async def lease(self, consumer: str, limit: int, visibility_s: float) -> list[Job]:
        return await self._write(_lease, consumer, limit, visibility_s) if limit > 0 else []

    async def complete(self, job: Job) -> None:
        await self._write(_finish, job, "state = 'done'", ())

    async def retry(self, job: Job, due_at: float, error: str) -> None:
        await self._write(_finish, job, "state = 'pending', due_at = ?, last_error = ?", (due_at, error))

    async def dead(self, job: Job, reason: str) -> None:
        await self._write(_finish, job, "state = 'dead', last_error = ?", (reason,))

    async def release(self, consumer: str) -> None:
        await self._write(_change, "UPDATE jobs SET state = 'pending', lease = '', consumer = '', due_at = ?"
                          " WHERE state = 'leased' AND consumer = ?", (time.time(), consumer))

    async def get(self, job_id: str) -> Job | None:
        jobs = await self._read(_select, "WHERE id = ?", (job_id,))
        return jobs[0] if jobs else None

    async def find(self, delivery: str) -> list[Job]:
        return await self._read(_select, "WHERE delivery = ? ORDER BY created_at, id", (delivery,))

    async def list(self, state: str | None = None, limit: int = 100) -> list[Job]:
        where = "" if state is None else "WHERE state = ?"
        args = (limit,) if state is None else (state, limit)
        return await self._read(_select, f"{where} ORDER BY created_at, id LIMIT ?", args)

    async def replay(self, job_id: str, pin: tuple[str, bytes] | None = None) -> bool:
        if pin is None:
            return bool(await self._write(_change, _REPLAY + " AND id = ?", (time.time(), job_id)))
        return await self._write(_replay_pinned, job_id, *pin)

    async def replay_all(self) -> int:
        return await self._write(_change, _REPLAY, (time.time(),))

    async def purge_dead(self) -> int:
        return await self._write(_change, "DELETE FROM jobs WHERE state = 'dead'", ())

    async def purge_done(self, created_before: float) -> int:
        return await self._write(_change, "DELETE FROM jobs WHERE state = 'done' AND created_at < ?",
                                 (created_before,))

    async def backlog(self) -> int:
        return await self._read(_count_backlog)

    async def stats(self) -> tuple[dict, float | None]:
        return await self._read(_stats)

    async def ping(self) -> None:
        await self._read(_ping)

    async def version_source(self, version: str) -> bytes | None:
        return await self._read(_version_source, version)

    async def drop_versions(self, stored_before: float) -> int:
        return await self._write(_change, "DELETE FROM versions WHERE stored_at < ? AND version NOT IN"
                                 " (SELECT version FROM jobs WHERE state IN ('pending', 'leased', 'dead'))",
                                 (stored_before,))

    # the run history (engine/history.py; the SQL is in engine/queue/runs.py)

    async def record_runs(self, batch) -> None:
        await self._history_db().record(batch)

    async def runs(self, pipeline: str | None, limit: int, q: str | None) -> list[tuple]:
        return await self._history_db().read_runs(_segments.list_runs, pipeline, limit, q)

    async def run(self, run_id: str) -> tuple | None:
        return await self._history_db().read_runs(_segments.find_run, run_id)

    async def run_attempts(self, delivery: str) -> list[bytes]:
        return await self._history_db().read(_runs.sqlite_attempts, delivery)

    async def run_minutes(self, since_minute: int) -> list[tuple]:
        return await self._history_db().read(_runs.sqlite_minutes, since_minute)


_REPLAY = "UPDATE jobs SET state = 'pending', attempt = 0, last_error = '', due_at = ? WHERE state = 'dead'"


# Operations: plain functions of a connection, run inside the writer's or reader's thread.

def _create(conn: sqlite3.Connection) -> None:
    for statement in filter(str.strip, SCHEMA.split(";")):
        conn.execute(statement)  # not executescript(): it would COMMIT the batch early
    if "version" not in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}:   # a store from before
        conn.execute("ALTER TABLE jobs ADD COLUMN version TEXT NOT NULL DEFAULT ''")


def _store_version(conn, version: str, source: bytes) -> None:
    conn.execute("INSERT INTO versions VALUES (?, ?, ?) ON CONFLICT (version) DO UPDATE SET"
                 " source = excluded.source, stored_at = excluded.stored_at", (version, source, time.time()))


def _version_source(conn, version: str) -> bytes | None:
    row = conn.execute("SELECT source FROM versions WHERE version = ?", (version,)).fetchone()
    return bytes(row[0]) if row else None


def _replay_pinned(conn, job_id: str, version: str, source: bytes) -> bool:
    if not conn.execute(_REPLAY.replace("due_at = ?", "due_at = ?, version = ?") + " AND id = ?",
                        (time.time(), version, job_id)).rowcount:
        return False
    _store_version(conn, version, source)
    return True


def _enqueue(conn, jobs, dedupe, source) -> bool:
    if dedupe is not None:
        key, response, ttl_s = dedupe
        now = time.time()
        row = conn.execute("SELECT expires_at, response FROM dedupe WHERE key = ?", (key,)).fetchone()
        if row is not None and row[0] > now and row[1]:      # b"" is only a claim: replace it
            return False
        conn.execute("INSERT OR REPLACE INTO dedupe VALUES (?, ?, ?)", (key, response, now + ttl_s))
    rows = [(j.id, j.delivery, j.pipeline, j.branch, j.payload, j.attempt, j.created_at, j.due_at, j.last_error,
             j.version) for j in jobs]
    try:
        conn.executemany("INSERT INTO jobs (id, delivery, pipeline, branch, payload, attempt, created_at,"
                         " due_at, state, last_error, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                         rows)
    except sqlite3.IntegrityError:
        raise DuplicateJob("a job id is already stored") from None
    if source is not None:
        _store_version(conn, jobs[0].version, source)
    return True


def _lease(conn, consumer: str, limit: int, visibility_s: float) -> list[Job]:
    now = time.time()
    ids = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE state = 'leased' AND until <= ?"
                                      " LIMIT ?", (now, limit))]
    ids += [r[0] for r in conn.execute("SELECT id FROM jobs WHERE state = 'pending' AND due_at <= ?"
                                       " ORDER BY due_at LIMIT ?", (now, limit - len(ids)))]
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    rows = conn.execute(f"UPDATE jobs SET state = 'leased', lease = ?, consumer = ?, until = ?"
                        f" WHERE id IN ({marks}) RETURNING {JOB_COLUMNS}",
                        (uuid.uuid4().hex, consumer, now + visibility_s, *ids)).fetchall()
    return sorted((Job(*row) for row in rows), key=lambda j: j.due_at)


def _finish(conn, job: Job, changes: str, args: tuple) -> None:
    conn.execute(f"UPDATE jobs SET {changes}, attempt = attempt + 1, lease = '', consumer = ''"
                 " WHERE id = ? AND state = 'leased' AND lease = ?", (*args, job.id, job.lease))


def _change(conn, sql: str, args: tuple) -> int:
    return conn.execute(sql, args).rowcount


def _select(conn, where: str, args: tuple) -> list[Job]:
    return [Job(*row) for row in conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs {where}", args)]


def _claim(conn, key: str, ttl_s: float) -> bytes | None:
    now = time.time()
    row = conn.execute("SELECT response FROM dedupe WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
    if row is not None:
        return bytes(row[0])
    conn.execute("INSERT OR REPLACE INTO dedupe VALUES (?, ?, ?)", (key, b"", now + ttl_s))
    return None


def _checkpoint(conn, wal: str) -> None:
    """PASSIVE (never blocks a writer) while the WAL file is small. Under a steady load
    from two processes a PASSIVE checkpoint never catches up with the last frame, so the
    WAL never starts again from its beginning: it grew by ~20 MB a second in the async
    benchmark (d1: 350 MB in 15 s). Past WAL_RESTART_BYTES, RESTART: it holds writers off
    while it copies the frames left (most were copied by the PASSIVE rounds) and finds no
    reader on the WAL, then the next commit writes the WAL from its start and cuts the file
    back to WAL_RESTART_BYTES (``journal_size_limit``)."""
    try:
        big = os.path.getsize(wal) > WAL_RESTART_BYTES
    except OSError:
        big = False
    if not big:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return
    # without SQLite's busy handler, whose sleeps (1, 2, 5, 10, 15, 20 … ms) kept writers
    # waiting 20-50 ms where a reader needed 1: tried again here every millisecond
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        for _ in range(RESTART_TRIES):
            if conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0] == 0:
                return
            time.sleep(0.001)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _dedupe_get(conn, key: str) -> bytes | None:
    row = conn.execute("SELECT response FROM dedupe WHERE key = ? AND expires_at > ?",
                       (key, time.time())).fetchone()
    return row[0] if row else None


def _count_backlog(conn) -> int:
    return conn.execute("SELECT count(*) FROM jobs WHERE state IN ('pending', 'leased')").fetchone()[0]


def _stats(conn) -> tuple[dict, float | None]:
    counts = {state: 0 for state in COUNTED}
    counts.update(conn.execute("SELECT state, count(*) FROM jobs WHERE state IN ('pending', 'leased', 'dead') "
                               "GROUP BY state"))
    oldest = conn.execute("SELECT min(created_at) FROM jobs WHERE state = 'pending'").fetchone()[0]
    return counts, oldest


def _ping(conn) -> None:
    conn.execute("SELECT 1").fetchone()


def from_url(url: str, for_delivery: bool = False) -> SqliteStore:
    return SqliteStore(url.partition(":")[2] or "hookline.db", for_delivery)
