"""The SQLite store's run records in append-only files (engine/queue/segments.py): the disk
stays bounded, a process killed in the middle of a segment loses nothing whole, and runs an
earlier version kept in ``PATH.history`` are moved to the files."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson

from engine.queue import open_store
from engine.queue.runs import HISTORY_SUFFIX, RUNS_SUFFIX, RunBatch
from engine.queue.segments import HEAD, MAGIC


def row(n: int, at: float, pipeline="orders", delivery=""):
    record = orjson.dumps({"run_id": f"run-{n:05d}", "pipeline": pipeline, "at": at, "n": n,
                           "headers": {"x-tag": f"tag-{n}"}})
    return (f"run-{n:05d}", pipeline, at, delivery, record, f"body-{n}".encode(), f"answer-{n}".encode())


async def with_store(path: Path, fn):
    store = open_store(f"sqlite:{path}")
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


def on_disk(path: Path, pipeline="orders") -> list[str]:
    folder = Path(str(path) + RUNS_SUFFIX) / pipeline
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".seg", ".open"))


def test_the_newest_keep_runs_are_read_and_the_disk_holds_little_more(tmp_path):
    path, keep, now = tmp_path / "h.db", 40, time.time()

    async def go(store):
        n = 0
        for _flush in range(60):                    # 420 runs, 7 a flush
            batch = RunBatch(runs=[row(n + i, now - 1000 + n + i) for i in range(7)],
                             bounds=[("orders", keep, now - 3600)])
            n += 7
            await store.record_runs(batch)
        return await store.runs("orders", 1000, None), await store.run("run-00419"), await store.run("run-00379")

    listed, newest, gone = asyncio.run(with_store(path, go))
    assert [orjson.loads(r[0])["n"] for r in listed] == list(range(419, 419 - keep, -1))
    assert newest == (listed[0][0], b"body-419", b"answer-419")
    assert gone is None                             # past keep: not shown, even while its file is there
    files = on_disk(path)
    held = sum(int(name.split("-")[2]) for name in files if name.endswith(".seg"))
    assert keep <= held <= keep + keep // 4 + 7, files          # a segment holds keep // 4 = 10 runs


def test_runs_past_max_age_are_not_read_and_their_files_go(tmp_path):
    path, now = tmp_path / "h.db", time.time()

    async def go(store):
        await store.record_runs(RunBatch(runs=[row(i, now - 500 + i) for i in range(8)],
                                         bounds=[("orders", 4, now - 3600)]))
        await store.record_runs(RunBatch(runs=[row(100, now)], bounds=[("orders", 4, now - 60)]))
        return await store.runs("orders", 100, None)

    listed = asyncio.run(with_store(path, go))
    assert [orjson.loads(r[0])["n"] for r in listed] == [100]
    assert len(on_disk(path)) == 1                  # the 8 old runs' segments deleted


def test_a_segment_left_open_by_a_killed_process_is_closed_and_its_torn_tail_cut(tmp_path):
    path, now = tmp_path / "h.db", time.time()
    child = f"""
import asyncio, os, sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_history_files import row, with_store
from pathlib import Path
from engine.queue.runs import RunBatch

async def go(store):
    await store.record_runs(RunBatch(runs=[row(i, {now} - 100 + i) for i in range(5)],
                                     bounds=[("orders", 1000, {now} - 3600)]))
    print("written", flush=True)
    time.sleep(60)

asyncio.run(with_store(Path({str(path)!r}), go))
"""
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout.readline().strip() == "written"
        (left,) = on_disk(path)

        async def alongside(store):          # another process writing while the child lives
            await store.record_runs(RunBatch(runs=[row(40, now - 50)], bounds=[("orders", 1000, now - 3600)]))
        asyncio.run(with_store(path, alongside))
        assert left in on_disk(path) and left.endswith(".open")          # held by its live writer: left alone
    finally:
        proc.kill()
        proc.wait()
    folder = Path(str(path) + RUNS_SUFFIX) / "orders"
    whole = (folder / left).stat().st_size
    with open(folder / left, "ab") as f:            # a record cut short: its header and half its data
        f.write(HEAD.pack(MAGIC, 9, 50, 10, 10, now) + b"run-torn\n" + b"{" * 20)

    async def go(store):
        before = await store.runs("orders", 100, None)
        await store.record_runs(RunBatch(runs=[row(50, now)], bounds=[("orders", 1000, now - 3600)]))
        return before, await store.runs("orders", 100, None)

    before, after = asyncio.run(with_store(path, go))
    assert [orjson.loads(r[0])["n"] for r in before] == [40, 4, 3, 2, 1, 0]      # up to the torn tail
    assert [orjson.loads(r[0])["n"] for r in after] == [50, 40, 4, 3, 2, 1, 0]
    files = on_disk(path)
    closed = [n for n in files if n.endswith(".seg") and n.split("-")[2] == "5"]
    assert len(closed) == 1 and not any(n == left for n in files), files
    assert (folder / closed[0]).stat().st_size == whole            # the torn record cut off


def test_runs_an_earlier_version_kept_in_the_history_file_are_moved_to_the_files(tmp_path):
    path, now = tmp_path / "h.db", time.time()
    conn = sqlite3.connect(str(path) + HISTORY_SUFFIX)
    conn.execute("CREATE TABLE run_records (run_id TEXT NOT NULL, pipeline TEXT NOT NULL, at REAL NOT NULL,"
                 " delivery TEXT NOT NULL, record BLOB NOT NULL, body BLOB NOT NULL, response BLOB NOT NULL)")
    conn.executemany("INSERT INTO run_records VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [row(1, now - 2, "orders", "d-1"), row(2, now - 1, "refunds")])
    conn.commit()
    conn.close()

    async def go(store):
        return (await store.runs(None, 10, None), await store.run("run-00001"),
                await store.runs(None, 10, "d-1"))

    listed, first, by_delivery = asyncio.run(with_store(path, go))
    assert [orjson.loads(r[0])["n"] for r in listed] == [2, 1]
    assert first[1:] == (b"body-1", b"answer-1")
    assert [orjson.loads(r[0])["n"] for r in by_delivery] == [1]
    conn = sqlite3.connect(str(path) + HISTORY_SUFFIX)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'run_records'").fetchone() is None
    conn.close()
    assert os.path.isdir(str(path) + RUNS_SUFFIX + "/refunds")
