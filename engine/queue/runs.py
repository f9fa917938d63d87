"""What the run history (engine/history.py) hands a store, and the SQLite and memory
backends' halves of it (Redis: engine/queue/redis_runs.py; the SQLite store's run records
are files: engine/queue/segments.py).

A :class:`RunBatch` is one flush of one process: finished runs, delivery attempts,
per-minute aggregates to add, and the bounds to apply. Records are opaque bytes to the
store, indexed by run id, pipeline, time and delivery id; a run is three: its JSON
record, and the request and response bodies as they were (cut), kept beside it rather
than escaped into it. A store answers a run as ``(record, body, response)``.

    runs       run id, pipeline, at (unix s), delivery id ("" if none), record, body, response
    attempts   job id, delivery id, pipeline, at, record
    minutes    (pipeline, minute since 1970) → [requests, errors, bucket counts ...]
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from engine.queue import StoreUnavailable, segments

MINUTES_KEPT_S = 3 * 3600     # per-minute aggregates are kept this long (stats reads at most 2 h)
HISTORY_SUFFIX = ".history"   # SQLite: the history's file (attempts, aggregates) is the store's path + this
HISTORY_CHECKPOINT_S = 30.0   # SQLite: how often the history file's WAL is copied back (see SqliteHistory)
RUNS_SUFFIX = ".runs"         # SQLite: the run records' directory (engine/queue/segments.py)


@dataclass(slots=True)
class RunBatch:
    runs: list = field(default_factory=list)       # (run_id, pipeline, at, delivery, record, body, response)
    attempts: list = field(default_factory=list)   # (job, delivery, pipeline, at, record)
    minutes: dict = field(default_factory=dict)    # (pipeline, minute) -> [requests, errors, *buckets]
    bounds: list = field(default_factory=list)     # (pipeline, keep, delete runs older than this at)


def add_counts(old, new) -> list:
    """Element-wise sum of two aggregate rows (a row may have fewer buckets: an older layout)."""
    size = max(len(old), len(new))
    return [(old[i] if i < len(old) else 0) + (new[i] if i < len(new) else 0) for i in range(size)]


# --- SQLite: plain functions of a connection, run in the store's writer or reader thread ---

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    job TEXT NOT NULL,
    delivery TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    at REAL NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery);
CREATE INDEX IF NOT EXISTS attempts_pipeline_at ON attempts (pipeline, at);
CREATE TABLE IF NOT EXISTS run_minutes (
    pipeline TEXT NOT NULL,
    minute INTEGER NOT NULL,
    counts TEXT NOT NULL,
    PRIMARY KEY (pipeline, minute)
)
"""


class SqliteHistory:
    """The SQLite store's history: run records appended to files (``runs``, a
    :class:`~engine.queue.segments.Segments`, written from a thread of its own), and a
    SQLite file for the attempts and per-minute aggregates, with a writer thread (group
    commit, as the jobs'), a reader and a checkpointer of its own (engine/queue/sqlite.py
    lends the classes). The file is made in WAL mode, with its tables, before either
    connection opens it; run records an earlier version kept in it (``run_records``) are
    moved to the files then."""

    def __init__(self, path: str, writer_class, reader_class, checkpoint_every, runs_root: str):
        self.path, self._writer_class, self._checkpoint_every = path, writer_class, checkpoint_every
        self.runs_root = runs_root
        self.segments = segments.Segments(runs_root)
        self.appender = ThreadPoolExecutor(1, thread_name_prefix="hookline-history-append")
        self.writer = None
        self.reader = reader_class(path, "hookline-history-read")
        self._starting = None
        self._checkpoints = None

    async def _started(self) -> None:
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        try:
            await asyncio.shield(self._starting)
        except StoreUnavailable:
            self._starting = None        # the next call tries again
            raise

    async def _start(self) -> None:
        try:
            await asyncio.to_thread(_make, self.path, self.runs_root, self.segments)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None
        self.writer = self._writer_class(self.path, "NORMAL", sweep=False)
        self.writer.start()
        # the aggregates are committed every second, without fsync (synchronous=NORMAL); each
        # copy back is one. Every 30 s rather than every second: 1.8 and 2.7 points less CPU
        # a core-benchmark request in two side-by-side runs, none in a third (docs/performance.md)
        self._checkpoints = asyncio.get_running_loop().create_task(
            self._checkpoint_every(HISTORY_CHECKPOINT_S, self.path))

    async def record(self, batch: RunBatch) -> None:
        """The runs appended to their files, then the attempts and aggregates committed."""
        await self._started()
        if batch.runs or batch.bounds:
            try:
                await asyncio.get_running_loop().run_in_executor(self.appender, self.segments.append,
                                                                 batch.runs, batch.bounds)
            except OSError as exc:
                raise StoreUnavailable(f"run history {self.runs_root}: {exc}") from None
        if batch.attempts or batch.minutes:
            await self.writer.submit(sqlite_write, batch)

    async def read_runs(self, fn, *args):
        await self._started()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn, self.runs_root, *args)
        except OSError as exc:
            raise StoreUnavailable(f"run history {self.runs_root}: {exc}") from None

    async def read(self, fn, *args):
        await self._started()
        return await self.reader.run(fn, *args)

    async def close(self) -> None:
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            await asyncio.gather(self._checkpoints, return_exceptions=True)
        if self.writer is not None:
            self.writer.hand_over_now()
            await asyncio.to_thread(self.writer.stop)
        await asyncio.get_running_loop().run_in_executor(self.appender, self.segments.close)
        self.appender.shutdown()
        await self.reader.close()


def _make(path: str, runs_root: str, appender: segments.Segments) -> None:
    """WAL and the tables; the run records' directory; the run records an earlier version
    kept in the file (``run_records``) moved there, and their table dropped."""
    from .sqlite import BUSY_TIMEOUT_MS, _begin, _while_busy
    os.makedirs(runs_root, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _while_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))   # two processes at once: see there
        for statement in filter(str.strip, SQLITE_SCHEMA.split(";")):
            conn.execute(statement)
        _begin(conn)                 # one process moves them: the others find no table
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'run_records'").fetchone() is not None:
                rows = conn.execute("SELECT run_id, pipeline, at, delivery, record, body, response FROM run_records"
                                    " ORDER BY at").fetchall()
                appender.append(rows, [])
                appender.close()
                conn.execute("DROP TABLE run_records")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def sqlite_write(conn, batch: RunBatch) -> None:
    """The attempts and aggregates of a batch, and the attempts' bounds (the runs went to
    their files: :meth:`SqliteHistory.record`)."""
    import orjson
    _insert(conn, "INSERT INTO attempts VALUES ", batch.attempts)
    for (pipeline, minute), counts in batch.minutes.items():
        row = conn.execute("SELECT counts FROM run_minutes WHERE pipeline = ? AND minute = ?",
                           (pipeline, minute)).fetchone()
        if row is not None:
            counts = add_counts(orjson.loads(row[0]), counts)
        conn.execute("INSERT OR REPLACE INTO run_minutes VALUES (?, ?, ?)",
                     (pipeline, minute, orjson.dumps(counts).decode()))
    for pipeline, _keep, before in batch.bounds:
        conn.execute("DELETE FROM attempts WHERE pipeline = ? AND at < ?", (pipeline, before))
    if batch.minutes:
        conn.execute("DELETE FROM run_minutes WHERE minute < ?", (int((time.time() - MINUTES_KEPT_S) // 60),))


def _insert(conn, sql: str, rows: list, chunk: int = 500) -> None:
    """Many rows in one statement (``VALUES (…), (…), …``), not ``executemany``: SQLite runs a
    statement with the GIL released, and executemany released and took it back for every
    row — each time waiting for the event loop's thread to let go of it (measured: ~50 µs
    of a request's CPU went to that ping-pong on one core)."""
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        width = "(" + ", ".join("?" * len(part[0])) + ")"
        conn.execute(sql + ", ".join([width] * len(part)), [value for row in part for value in row])


def sqlite_attempts(conn, delivery) -> list[bytes]:
    return [bytes(r[0]) for r in conn.execute("SELECT record FROM attempts WHERE delivery = ? ORDER BY at",
                                              (delivery,))]


def sqlite_minutes(conn, since_minute) -> list[tuple]:
    import orjson
    return [(p, m, orjson.loads(c)) for p, m, c in
            conn.execute("SELECT pipeline, minute, counts FROM run_minutes WHERE minute >= ?", (since_minute,))]


# --- memory: ----------------------------------------------------------------------------

class MemoryRuns:
    """The memory: store's history: dicts in the server process."""

    def __init__(self):
        self.runs: dict = {}        # run_id -> (pipeline, at, delivery, (record, body, response))
        self.attempts: list = []    # (job, delivery, pipeline, at, record)
        self.minutes: dict = {}

    def write(self, batch: RunBatch) -> None:
        for run_id, pipeline, at, delivery, *stored in batch.runs:
            self.runs[run_id] = (pipeline, at, delivery, tuple(stored))
        self.attempts += batch.attempts
        for key, counts in batch.minutes.items():
            self.minutes[key] = add_counts(self.minutes.get(key, []), counts)
        for pipeline, keep, before in batch.bounds:
            mine = sorted((r for r in self.runs.items() if r[1][0] == pipeline), key=lambda r: r[1][1], reverse=True)
            for run_id, (_, at, *_rest) in mine[keep:] + [r for r in mine[:keep] if r[1][1] < before]:
                self.runs.pop(run_id, None)
            self.attempts = [a for a in self.attempts if a[2] != pipeline or a[3] >= before]
        oldest = int((time.time() - MINUTES_KEPT_S) // 60)
        self.minutes = {k: v for k, v in self.minutes.items() if k[1] >= oldest}

    def list(self, pipeline, limit, q) -> list[tuple]:
        rows = sorted(self.runs.items(), key=lambda r: r[1][1], reverse=True)
        if pipeline is not None:
            rows = [r for r in rows if r[1][0] == pipeline]
        if q is None:
            return [r[1][3] for r in rows[:limit]]
        import orjson
        quoted = orjson.dumps(q)
        return [r[1][3] for r in rows if q in (r[0], r[1][2]) or quoted in r[1][3][0]]

    def get(self, run_id) -> tuple | None:
        found = self.runs.get(run_id)
        return found[3] if found else None

    def attempts_of(self, delivery) -> list[bytes]:
        return [a[4] for a in sorted(self.attempts, key=lambda a: a[3]) if a[1] == delivery]

    def minutes_since(self, since_minute) -> list[tuple]:
        return [(p, m, c) for (p, m), c in self.minutes.items() if m >= since_minute]
