#!/usr/bin/env python3
"""Where the time of an async acknowledgement (d/e) and of a signed request (f) goes: the
pieces that bench.py --suite async|verify add to the sync pipeline c, timed one by one in this
process (pinned to core 0; the destination, dest_server.py, to core 1).

Per piece: server CPU µs per operation (time.process_time: every thread of this process, so
SQLite's writer and reader threads count) and, for the store, operations per second at 32
concurrent callers (as many as wrk's connections).

    ack path      orjson.loads of the order (c does this too), orjson.dumps of the persisted
                  context (engine/durable.py: _persisted), two uuid4s, one store.enqueue
    delivery      store.lease (64 at a time), orjson.loads of the job payload, one outbound call
                  (engine/outbound.py, aiohttp) to the destination, store.complete
    signed (f)    Verifier.check (github preset, HMAC-SHA256 of the body), store.dedupe_get, an
                  enqueue of no jobs with the response (the delivery id remembered)

Usage: .venv/bin/python benchmarks/async_micro.py [--n 3000] [--stores sqlite,redis]
Prints one line per piece: `piece  cpu_us=…  [ops/s=…]`. Compare within one run only.
"""
import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import inspect  # noqa: E402

from engine import durable  # noqa: E402
from engine.outbound import Outbound  # noqa: E402
from engine.queue import Job, open_store  # noqa: E402
from dsl.verify import make_verifier  # noqa: E402
from handler_a import EXPR  # noqa: E402

import jmespath  # noqa: E402

BODY = ROOT.parent / "shared" / "corpus" / "shopify" / "orders.create.json"
CONC = 32
WRK_HEADERS = {"host": "127.0.0.1:8080", "content-type": "application/json", "content-length": "14894"}


def persisted(data):
    """engine/durable.py's _persisted (the context as the store keeps it), whatever its
    signature is this week (it gained an ``auth`` argument); no auth configured here."""
    fn = durable._persisted
    extra = [None] * (len(inspect.signature(fn).parameters) - 1)
    return fn(data, *extra)


def timed_sync(fn, n):
    """CPU µs per call of fn() (best of 3 batches: the machine is shared)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t0) / n * 1e6)
    return best


async def timed_async(make, n, conc=CONC):
    """CPU µs per operation and operations/s for n coroutines make(i), conc at a time."""
    sem = asyncio.Semaphore(conc)

    async def one(i):
        async with sem:
            await make(i)
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    c1, w1 = time.process_time(), time.perf_counter()
    return (c1 - c0) / n * 1e6, n / (w1 - w0)


def line(name, cpu, rate=None, extra=""):
    print(f"{name:<50} cpu_us={cpu:7.1f}" + (f"  ops/s={rate:7.0f}" if rate else "") + extra, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def stores(args, body, payload, tmp):
    for name in args.stores.split(","):
        url = (f"sqlite:{tmp}/micro.db" if name == "sqlite"
               else f"redis://127.0.0.1:6379/0?prefix=bench-micro-{uuid.uuid4().hex[:8]}:")
        store = open_store(url)
        try:
            await store.open()
        except Exception as exc:
            print(f"{name}: store not available ({exc}); skipped")
            continue
        try:
            n = args.n
            jobs = [Job.new(uuid.uuid4().hex, "bench-order-async", "dest", payload) for _ in range(n)]
            cpu, rate = await timed_async(lambda i: store.enqueue([jobs[i]]), n)
            line(f"{name}: enqueue 1 job ({len(payload)} B payload)", cpu, rate)
            # as the deliverer does: lease up to 64, complete them (concurrently), lease again
            done, lease_cpu, done_cpu, wall = 0, 0.0, 0.0, 0.0
            while done < n:
                c0, w0 = time.process_time(), time.perf_counter()
                got = await store.lease("micro", 64, 60)
                c1 = time.process_time()
                if not got:
                    break
                await asyncio.gather(*(store.complete(job) for job in got))
                c2, w2 = time.process_time(), time.perf_counter()
                lease_cpu, done_cpu, wall, done = lease_cpu + c1 - c0, done_cpu + c2 - c1, wall + w2 - w0, done + len(got)
            line(f"{name}: lease, 64 at a time (per job)", lease_cpu / max(done, 1) * 1e6)
            line(f"{name}: complete (64 at a time)", done_cpu / max(done, 1) * 1e6, done / wall if wall else None,
                 "  (ops/s: lease + complete)")
            resp = orjson.dumps([200, '{"order":1}', "application/json", []])
            cpu, rate = await timed_async(lambda i: store.dedupe_get(f"micro:{i}"), n)
            line(f"{name}: dedupe_get (a miss)", cpu, rate)
            cpu, rate = await timed_async(lambda i: store.enqueue([], dedupe=(f"micro:{i}", resp, 86400)), n)
            line(f"{name}: enqueue no job + dedupe key (f's commit)", cpu, rate)
            await store.purge_done(time.time() + 60)
        finally:
            if name == "redis":
                import redis
                r = redis.Redis()
                keys = list(r.scan_iter(match=store.prefix + "*", count=1000))
                for i in range(0, len(keys), 500):
                    r.delete(*keys[i:i + 500])
                r.close()
            await store.close()


async def outbound(args, shaped, dest_port):
    out = Outbound()
    url = f"http://127.0.0.1:{dest_port}/recv"
    data = orjson.dumps(shaped)
    headers = {"Content-Type": "application/json", "Idempotency-Key": "x.send"}
    await out.request("POST", url, headers, data, 5, 10 << 20)
    cpu, rate = await timed_async(lambda i: out.request("POST", url, headers, data, 5, 10 << 20), args.n)
    line(f"outbound call (aiohttp POST {len(data)} B, 32 at a time)", cpu, rate)
    await out.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="operations per piece (default 3000)")
    ap.add_argument("--stores", default="sqlite,redis")
    args = ap.parse_args()
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
    if pin:
        os.sched_setaffinity(0, {0})     # threads started from now on inherit it
    body = BODY.read_bytes()
    order = orjson.loads(body)
    shaped = jmespath.search(EXPR, order)
    data = {"request": {"method": "POST", "path": "/hook", "params": {}, "query": {},
                        "headers": WRK_HEADERS, "body": order}, "steps": {"order": shaped}}
    payload = orjson.dumps(persisted(data))
    print(f"async_micro: n={args.n} loadavg={os.getloadavg()[0]:.2f} pinning={'core 0, dest core 1' if pin else 'off'}")
    line(f"orjson.loads order ({len(body)} B; c does it too)", timed_sync(lambda: orjson.loads(body), args.n))
    line(f"orjson.dumps persisted context ({len(payload)} B)",
         timed_sync(lambda: orjson.dumps(persisted(data)), args.n))
    line("orjson.loads job payload (delivery)", timed_sync(lambda: orjson.loads(payload), args.n))
    line("uuid4().hex x2 (delivery id, job id)", timed_sync(lambda: (uuid.uuid4().hex, uuid.uuid4().hex), args.n))
    secret = "bench-secret"
    verifier = make_verifier("github", [secret])
    import hashlib
    import hmac
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    hdrs = {"x-hub-signature-256": sig, "x-github-delivery": "d-1"}
    line("Verifier.check github (HMAC-SHA256, 14.9 KB)",
         timed_sync(lambda: verifier.check("POST", "/hook", hdrs, body, time.time()), args.n))

    tmp = Path(tempfile.mkdtemp(prefix="hookline-micro-"))
    port = free_port()
    dest = subprocess.Popen((["taskset", "-c", "1"] if pin else []) + [sys.executable, str(HERE / "dest_server.py"),
                                                                       str(port)], start_new_session=True)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(outbound(args, shaped, port))
        asyncio.run(stores(args, body, payload, tmp))
    finally:
        dest.terminate()
        dest.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
