"""The SQLite store's run records: append-only files, a directory per pipeline.

    PATH.runs/<pipeline>/bounds                              {"keep": N, "max_age_s": S}
    PATH.runs/<pipeline>/<first µs>-<pid>-<nonce>.open       being written by process pid
    PATH.runs/<pipeline>/<first µs>-<last µs>-<count>-<pid>-<nonce>.seg    closed

A flush of the run history (engine/history.py) appends each pipeline's runs to that
process's open segment with one ``write``: no B-tree, no write-ahead log, no checkpoint.
In a SQLite file the same runs cost ~4 times their size in writes and, with the
checkpointer, ~25 µs of CPU a run (docs/performance.md, "Run history"); appended,
about one. A segment is closed (renamed, its count and last time in the name) once it
holds ``keep // 4`` runs (at least 1, at most 512) or 8 MiB. When one of a pipeline's
segments closes or its bounds change, and otherwise at most once a second, a process
deletes the closed segments that hold only runs past the bounds: the newest ``keep`` runs
and those younger than ``max_age`` stay. Readers apply the bounds exactly (the pipeline's
``bounds`` file); the disk holds at most about one segment more per process.

Each record: a header (``HEAD``: magic, the lengths of the meta, record, body and response,
the time), then ``run_id\\ndelivery``, the record's JSON, the body and the response body.
A reader stops at a record cut short (a process killed in a write, a full disk). Each
process holds an exclusive ``flock`` on the segments it writes; an ``.open`` file nobody
holds (its process killed, a container restarted: whatever its pid now names) is closed by
the next process that bounds that pipeline: its records counted, a torn tail cut off.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import struct
import threading
import time

import orjson

HEAD = struct.Struct("<4sIIIId")
MAGIC = b"HLR1"
SEGMENT_RUNS_MAX = 512
SEGMENT_BYTES_MAX = 8 * 1024 * 1024
BOUND_S = 1.0                # else (no segment closed, same bounds) closed segments are looked over at most this often
IOV_MAX = 1000               # buffers a writev takes at once (Linux: 1024)


class Segments:
    """One process's writer: the open segment of each pipeline. Thread-safe (one lock)."""

    def __init__(self, root: str):
        self.root = root
        self.nonce = secrets.token_hex(4)
        self.current: dict = {}     # pipeline -> _Open
        self.bounds: dict = {}      # pipeline -> (keep, max_age_s) as last written
        self.bounded: dict = {}     # pipeline -> when its closed segments were last looked over
        self.changed: set = set()   # pipelines with a segment closed or bounds written since then
        self.lock = threading.Lock()

    def append(self, runs: list, bounds: list) -> None:
        """``runs``: (run_id, pipeline, at, delivery, record, body, response) rows, oldest
        first; ``bounds``: (pipeline, keep, delete runs older than this unix time). A
        pipeline's closed segments are looked over when one of its segments was closed or
        its bounds changed, and otherwise at most every BOUND_S: not at every flush (a directory
        listing and a parse of each name, for nothing most times)."""
        with self.lock:
            now = time.time()
            limits = {name: (keep, max(0, round(now - before))) for name, keep, before in bounds}
            groups: dict = {}
            for row in runs:
                groups.setdefault(row[1], []).append(row)
            for pipeline, rows in groups.items():
                self._append(pipeline, rows, limits.get(pipeline))
            for pipeline, (keep, max_age_s) in limits.items():
                if pipeline in self.changed or now - self.bounded.get(pipeline, 0.0) >= BOUND_S:
                    self._bound(pipeline, keep, now - max_age_s)
                    self.bounded[pipeline] = now
            self.changed.clear()

    def _append(self, pipeline: str, rows: list, limit) -> None:
        folder = os.path.join(self.root, pipeline)
        written = self.bounds.get(pipeline)
        if limit is not None and (written is None or written[0] != limit[0] or abs(written[1] - limit[1]) > 1):
            os.makedirs(folder, exist_ok=True)
            _write_bounds(folder, *limit)
            self.bounds[pipeline] = limit
            self.changed.add(pipeline)
        keep = limit[0] if limit is not None else SEGMENT_RUNS_MAX * 8
        while rows:
            seg = self.current.get(pipeline)
            if seg is None:
                os.makedirs(folder, exist_ok=True)
                seg = self.current[pipeline] = _Open(folder, rows[0][2], self.nonce,
                                                     max(1, min(keep // 4, SEGMENT_RUNS_MAX)))
            room = seg.limit - seg.count
            part, rows = rows[:room], rows[room:]
            seg.write(part)
            if seg.count >= seg.limit or seg.size >= SEGMENT_BYTES_MAX:
                self._close(pipeline)

    def _close(self, pipeline: str) -> None:
        seg = self.current.pop(pipeline)
        seg.close()
        self.changed.add(pipeline)

    def close(self) -> None:
        """Close every open segment (at shutdown)."""
        with self.lock:
            for pipeline in list(self.current):
                self._close(pipeline)

    def _bound(self, pipeline: str, keep: int, before: float) -> None:
        """Delete the closed segments past the bounds (close an orphaned ``.open`` first)."""
        folder = os.path.join(self.root, pipeline)
        mine = self.current.get(pipeline)
        closed, total = [], mine.count if mine is not None else 0
        for entry in _entries(folder):
            if entry.open:
                if entry.nonce != self.nonce:
                    entry = _close_orphan(folder, entry)
                    if entry is not None:
                        closed.append(entry)
            else:
                closed.append(entry)
        closed.sort(key=lambda e: e.last, reverse=True)
        for entry in closed:
            if total >= keep or entry.last < before:
                _unlink(os.path.join(folder, entry.name))
            else:
                total += entry.count


class _Open:
    __slots__ = ("folder", "name", "fd", "first", "last", "count", "size", "limit", "pid", "nonce")

    def __init__(self, folder: str, first: float, nonce: str, limit: int):
        self.folder, self.first, self.last, self.nonce, self.limit = folder, first, first, nonce, limit
        self.pid, self.count, self.size = os.getpid(), 0, 0
        self.name = f"{_us(first):016d}-{self.pid}-{nonce}.open"
        self.fd = os.open(os.path.join(folder, self.name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)    # held while this process writes it

    def write(self, rows: list) -> None:
        """The rows with one ``writev`` (no copy of them joined first); a failed write is
        cut back off, so that the file never holds a torn record before a whole one."""
        parts, size = [], 0
        for run_id, _pipeline, at, delivery, record, body, response in rows:
            meta = f"{run_id}\n{delivery}".encode()
            parts += (HEAD.pack(MAGIC, len(meta), len(record), len(body), len(response), at),
                      meta, record, body, response)
            size += HEAD.size + len(meta) + len(record) + len(body) + len(response)
        try:
            for start in range(0, len(parts), IOV_MAX):
                chunk = parts[start:start + IOV_MAX]
                written, want = os.writev(self.fd, chunk), sum(map(len, chunk))
                if written < want:                       # short write: the rest as one buffer
                    rest = memoryview(b"".join(chunk))[written:]
                    while rest:
                        rest = rest[os.write(self.fd, rest):]
        except OSError:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise
        self.size += size
        self.count += len(rows)
        self.last = rows[-1][2]

    def close(self) -> None:
        """Renamed closed (or removed, if empty) while this process still holds its lock."""
        try:
            if not self.count:
                _unlink(os.path.join(self.folder, self.name))
                return
            closed = f"{_us(self.first):016d}-{_us(self.last):016d}-{self.count}-{self.pid}-{self.nonce}.seg"
            os.rename(os.path.join(self.folder, self.name), os.path.join(self.folder, closed))
        except FileNotFoundError:
            pass                     # the directory was removed meanwhile
        finally:
            os.close(self.fd)


class _Entry:
    __slots__ = ("name", "open", "first", "last", "count", "pid", "nonce")

    def __init__(self, name, is_open, first, last, count, pid, nonce):
        self.name, self.open, self.first, self.last = name, is_open, first, last
        self.count, self.pid, self.nonce = count, pid, nonce


def _entries(folder: str) -> list[_Entry]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        stem, dot, ext = name.rpartition(".")
        parts = stem.split("-")
        try:
            if ext == "open" and len(parts) == 3:
                out.append(_Entry(name, True, int(parts[0]) / 1e6, None, None, int(parts[1]), parts[2]))
            elif ext == "seg" and len(parts) == 5:
                out.append(_Entry(name, False, int(parts[0]) / 1e6, int(parts[1]) / 1e6, int(parts[2]),
                                  int(parts[3]), parts[4]))
        except ValueError:
            continue                 # not ours
    return out


def _close_orphan(folder: str, entry: _Entry) -> _Entry | None:
    """An ``.open`` segment no process holds any more (its writer's lock went with it: a
    kill -9, a container restarted, whatever its pid now means): count its whole records,
    cut a torn tail, rename it closed. None while its writer lives, if another process got
    there first, or if it held nothing."""
    path = os.path.join(folder, entry.name)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None              # its process is writing it
        if not os.path.exists(path):
            return None              # closed by another process between our open and our lock
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
        records = list(_records(data))
        if not records:
            os.unlink(path)
            return None
        end, last = records[-1][6], records[-1][0]
        if end < len(data):
            os.ftruncate(fd, end)
        name = f"{_us(entry.first):016d}-{_us(last):016d}-{len(records)}-{entry.pid}-{entry.nonce}.seg"
        os.rename(path, os.path.join(folder, name))
    except FileNotFoundError:
        return None
    finally:
        os.close(fd)
    return _Entry(name, False, entry.first, last, len(records), entry.pid, entry.nonce)


def _records(data: bytes):
    """``(at, run_id, delivery, record, body, response, end offset)`` of each whole record."""
    view, at_end, pos = memoryview(data), len(data), 0
    size = HEAD.size
    while pos + size <= at_end:
        magic, meta_n, record_n, body_n, response_n, at = HEAD.unpack_from(data, pos)
        end = pos + size + meta_n + record_n + body_n + response_n
        if magic != MAGIC or end > at_end:
            return
        start = pos + size
        run_id, _, delivery = bytes(view[start:start + meta_n]).decode().partition("\n")
        start += meta_n
        record = view[start:start + record_n]
        body = view[start + record_n:start + record_n + body_n]
        response = view[start + record_n + body_n:end]
        yield at, run_id, delivery, record, body, response, end
        pos = end


def _write_bounds(folder: str, keep: int, max_age_s: int) -> None:
    tmp = os.path.join(folder, f".bounds.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(orjson.dumps({"keep": keep, "max_age_s": max_age_s}))
    os.replace(tmp, os.path.join(folder, "bounds"))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _us(at: float) -> int:
    return int(at * 1_000_000)


# --- reading -------------------------------------------------------------------------------

def pipelines(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root) if not n.startswith("."))
    except FileNotFoundError:
        return []


def live(root: str, pipeline: str, now: float | None = None) -> list[tuple]:
    """The pipeline's runs within its bounds, newest first: ``(at, run_id, delivery, record,
    body, response)``. A segment closed or deleted while it is read is looked for again."""
    folder = os.path.join(root, pipeline)
    for _attempt in range(5):
        found, moved = [], False
        for entry in _entries(folder):
            try:
                with open(os.path.join(folder, entry.name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                moved = True
                continue
            found += [r[:6] for r in _records(data)]
        if not moved:
            break
    keep, max_age_s = _bounds(folder)
    before = (now if now is not None else time.time()) - max_age_s if max_age_s is not None else None
    found.sort(key=lambda r: r[0], reverse=True)
    if keep is not None:
        found = found[:keep]
    if before is not None:
        found = [r for r in found if r[0] >= before]
    return found


def _bounds(folder: str) -> tuple:
    try:
        with open(os.path.join(folder, "bounds"), "rb") as f:
            bounds = orjson.loads(f.read())
        return bounds["keep"], bounds["max_age_s"]
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError):
        return None, None


def list_runs(root: str, pipeline: str | None, limit: int, q: str | None) -> list[tuple]:
    """Records newest first (of ``pipeline``); with ``q`` the candidates: a run id, a
    delivery id, or the JSON string in the record (exact matching is the caller's)."""
    names = [pipeline] if pipeline is not None else pipelines(root)
    found = [r for name in names for r in live(root, name)]
    if q is not None:
        quoted = orjson.dumps(q)
        found = [r for r in found if q in (r[1], r[2]) or quoted in bytes(r[3])]
    found.sort(key=lambda r: r[0], reverse=True)
    return [(bytes(r[3]), b"", b"") for r in (found if q is not None else found[:limit])]


def find_run(root: str, run_id: str) -> tuple | None:
    for name in pipelines(root):
        for r in live(root, name):
            if r[1] == run_id:
                return bytes(r[3]), bytes(r[4]), bytes(r[5])
    return None
