"""What the run history (engine/history.py) hands a store, and the SQLite and memory
backends' halves of it (Redis: engine/queue/redis_runs.py).

A :class:`RunBatch` is one flush of one process: finished runs, delivery attempts,
per-minute aggregates to add, and the bounds to apply. Records are opaque JSON bytes
to the store; it indexes them by run id, pipeline, time and delivery id, and keeps
``headers`` (the recorded, redacted request headers as JSON text) to search by value.

    runs       run id, pipeline, at (unix s), delivery id ("" if none), headers, record
    attempts   job id, delivery id, pipeline, at, record
    minutes    (pipeline, minute since 1970) → [requests, errors, bucket counts ...]
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

MINUTES_KEPT_S = 3 * 3600     # per-minute aggregates are kept this long (stats reads at most 2 h)


@dataclass(slots=True)
class RunBatch:
    runs: list = field(default_factory=list)       # (run_id, pipeline, at, delivery, headers text, record)
    attempts: list = field(default_factory=list)   # (job, delivery, pipeline, at, record)
    minutes: dict = field(default_factory=dict)    # (pipeline, minute) -> [requests, errors, *buckets]
    bounds: list = field(default_factory=list)     # (pipeline, keep, delete runs older than this at)


def add_counts(old, new) -> list:
    """Element-wise sum of two aggregate rows (a row may have fewer buckets: an older layout)."""
    size = max(len(old), len(new))
    return [(old[i] if i < len(old) else 0) + (new[i] if i < len(new) else 0) for i in range(size)]


# --- SQLite: plain functions of a connection, run in the store's writer or reader thread ---

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    at REAL NOT NULL,
    delivery TEXT NOT NULL,
    headers TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_pipeline_at ON runs (pipeline, at);
CREATE INDEX IF NOT EXISTS runs_at ON runs (at);
CREATE INDEX IF NOT EXISTS runs_delivery ON runs (delivery) WHERE delivery != '';
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


def sqlite_write(conn, batch: RunBatch) -> None:
    import orjson
    conn.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)", batch.runs)
    conn.executemany("INSERT INTO attempts VALUES (?, ?, ?, ?, ?)", batch.attempts)
    for (pipeline, minute), counts in batch.minutes.items():
        row = conn.execute("SELECT counts FROM run_minutes WHERE pipeline = ? AND minute = ?",
                           (pipeline, minute)).fetchone()
        if row is not None:
            counts = add_counts(orjson.loads(row[0]), counts)
        conn.execute("INSERT OR REPLACE INTO run_minutes VALUES (?, ?, ?)",
                     (pipeline, minute, orjson.dumps(counts).decode()))
    for pipeline, keep, before in batch.bounds:
        conn.execute("DELETE FROM runs WHERE pipeline = ? AND at < ?", (pipeline, before))
        row = conn.execute("SELECT at FROM runs WHERE pipeline = ? ORDER BY at DESC LIMIT 1 OFFSET ?",
                           (pipeline, keep - 1)).fetchone()
        if row is not None:
            conn.execute("DELETE FROM runs WHERE pipeline = ? AND at < ?", (pipeline, row[0]))
        conn.execute("DELETE FROM attempts WHERE pipeline = ? AND at < ?", (pipeline, before))
    if batch.minutes:
        conn.execute("DELETE FROM run_minutes WHERE minute < ?", (int((time.time() - MINUTES_KEPT_S) // 60),))


def sqlite_runs(conn, pipeline, limit, q) -> list[bytes]:
    """Records newest first; with ``q`` the candidates (exact matching is the caller's)."""
    where, args = [], []
    if pipeline is not None:
        where.append("pipeline = ?")
        args.append(pipeline)
    if q is not None:
        import orjson
        where.append("(run_id = ? OR delivery = ? OR instr(headers, ?) > 0)")
        args += [q, q, orjson.dumps(q).decode()]
    sql = "SELECT record FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY at DESC"
    if q is None:
        sql += " LIMIT ?"
        args.append(limit)
    return [bytes(r[0]) for r in conn.execute(sql, args)]


def sqlite_run(conn, run_id) -> bytes | None:
    row = conn.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return bytes(row[0]) if row else None


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
        self.runs: dict = {}        # run_id -> (pipeline, at, delivery, headers, record)
        self.attempts: list = []    # (job, delivery, pipeline, at, record)
        self.minutes: dict = {}

    def write(self, batch: RunBatch) -> None:
        for run_id, pipeline, at, delivery, headers, record in batch.runs:
            self.runs[run_id] = (pipeline, at, delivery, headers, record)
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

    def list(self, pipeline, limit, q) -> list[bytes]:
        rows = sorted(self.runs.items(), key=lambda r: r[1][1], reverse=True)
        if pipeline is not None:
            rows = [r for r in rows if r[1][0] == pipeline]
        if q is None:
            return [r[1][4] for r in rows[:limit]]
        import orjson
        quoted = orjson.dumps(q).decode()
        return [r[1][4] for r in rows if q in (r[0], r[1][2]) or quoted in r[1][3]]

    def get(self, run_id) -> bytes | None:
        found = self.runs.get(run_id)
        return found[4] if found else None

    def attempts_of(self, delivery) -> list[bytes]:
        return [a[4] for a in sorted(self.attempts, key=lambda a: a[3]) if a[1] == delivery]

    def minutes_since(self, since_minute) -> list[tuple]:
        return [(p, m, c) for (p, m), c in self.minutes.items() if m >= since_minute]
