"""The Redis store's half of the run history (engine/queue/runs.py has the others).

Keys, under the store's prefix::

    run:{id}                  string  the record, then the request and response bodies (:func:`pack`)
    runs:all                  zset    run id → at, every pipeline
    runs:p:{pipeline}         zset    run id → at
    attempts:{delivery}       list    attempt records, oldest first
    attempts:p:{pipeline}     zset    delivery id → time of its last attempt (for the age bound)
    minute:{pipeline}:{min}   hash    requests, errors, b0 … bN (HINCRBY), expires after MINUTES_KEPT_S
    minutes:pipelines         set     pipelines with aggregates

Writes are pipelined in one round trip per flush; the bounds need a second (which runs
to delete is read first). Search (``q``) reads the newest ``SEARCHED`` records of the
pipeline (or of all) and leaves the exact match to the caller.
"""
from __future__ import annotations

import time

from .runs import MINUTES_KEPT_S, RunBatch

SEARCHED = 20_000       # runs a search reads at most, newest first
CHUNK = 500             # records per MGET


async def write(client, key, batch: RunBatch) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for run_id, pipeline, at, _delivery, *stored in batch.runs:
            pipe.set(key("run:" + run_id), pack(*stored))
            pipe.zadd(key("runs:all"), {run_id: at})
            pipe.zadd(key("runs:p:" + pipeline), {run_id: at})
        for _job, delivery, pipeline, at, record in batch.attempts:
            pipe.rpush(key("attempts:" + delivery), record)
            pipe.zadd(key("attempts:p:" + pipeline), {delivery: at})
        for (pipeline, minute), counts in batch.minutes.items():
            name = key(f"minute:{pipeline}:{minute}")
            for i, n in enumerate(counts):
                if n:
                    pipe.hincrby(name, str(i), n)
            pipe.expire(name, MINUTES_KEPT_S)
            pipe.sadd(key("minutes:pipelines"), pipeline)
        await pipe.execute()
    if batch.bounds:
        await _bound(client, key, batch.bounds)


async def _bound(client, key, bounds) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for pipeline, keep, before in bounds:
            pipe.zrangebyscore(key("runs:p:" + pipeline), "-inf", f"({before!r}")
            pipe.zrevrange(key("runs:p:" + pipeline), keep, -1)
            pipe.zrangebyscore(key("attempts:p:" + pipeline), "-inf", f"({before!r}")
        found = await pipe.execute()
    async with client.pipeline(transaction=False) as pipe:
        for i, (pipeline, _keep, before) in enumerate(bounds):
            old = {r.decode() for r in found[3 * i] + found[3 * i + 1]}
            if old:
                pipe.delete(*(key("run:" + r) for r in old))
                pipe.zrem(key("runs:all"), *old)
                pipe.zrem(key("runs:p:" + pipeline), *old)
            deliveries = [d.decode() for d in found[3 * i + 2]]
            if deliveries:
                pipe.delete(*(key("attempts:" + d) for d in deliveries))
                pipe.zremrangebyscore(key("attempts:p:" + pipeline), "-inf", f"({before!r}")
        await pipe.execute()


async def runs(client, key, pipeline, limit, q) -> list[tuple]:
    index = key("runs:all" if pipeline is None else "runs:p:" + pipeline)
    if q is None:
        return await _records(client, key, await client.zrevrange(index, 0, limit - 1))
    import orjson
    quoted = orjson.dumps(q)
    # a run id, a delivery id or a header value, all in the record: the caller checks which
    return [r for r in await _records(client, key, await client.zrevrange(index, 0, SEARCHED - 1))
            if quoted in r[0]]


async def _records(client, key, ids) -> list[bytes]:
    out = []
    for start in range(0, len(ids), CHUNK):
        names = [key("run:" + i.decode()) for i in ids[start:start + CHUNK]]
        out += [unpack(r) for r in await client.mget(names) if r is not None]
    return out


async def run(client, key, run_id) -> tuple | None:
    found = await client.get(key("run:" + run_id))
    return unpack(found) if found is not None else None


def pack(record: bytes, body: bytes, response: bytes) -> bytes:
    """One string for the three parts of a run.

    >>> unpack(pack(b'{"a":1}', b"in", b"out"))
    (b'{"a":1}', b'in', b'out')
    """
    return b"%d %d\n" % (len(record), len(body)) + record + body + response


def unpack(blob: bytes) -> tuple[bytes, bytes, bytes]:
    head, _, rest = blob.partition(b"\n")
    size, body = (int(n) for n in head.split())
    return rest[:size], rest[size:size + body], rest[size + body:]


async def attempts(client, key, delivery) -> list[bytes]:
    return await client.lrange(key("attempts:" + delivery), 0, -1)


async def minutes(client, key, since_minute) -> list[tuple]:
    pipelines = sorted(p.decode() for p in await client.smembers(key("minutes:pipelines")))
    now = int(time.time() // 60)
    wanted = [(p, m) for p in pipelines for m in range(since_minute, now + 1)]
    async with client.pipeline(transaction=False) as pipe:
        for p, m in wanted:
            pipe.hgetall(key(f"minute:{p}:{m}"))
        found = await pipe.execute()
    out = []
    for (p, m), fields in zip(wanted, found):
        if fields:
            counts = [0] * (max(int(k) for k in fields) + 1)
            for k, v in fields.items():
                counts[int(k)] = int(v)
            out.append((p, m, counts))
    return out
