"""``redis://host:port/db?prefix=hookline:`` — Redis Streams with a consumer group.

Keys (all under the store's prefix, default ``hookline:``)::

    job:{id}          hash   the job's fields, plus consumer, until, msg (its stream entry)
    ready             stream one entry per job that is due; group "workers" hands them out
    delayed           zset   job id → due_at, for jobs not yet due (retries)
    leases            zset   job id → until, for leased jobs: the visibility timeouts
    state:{state}     zset   job id → created_at, one per state: lists, backlog, dead letters
    dead              stream one entry per job dead-lettered (id, delivery, pipeline, branch,
                             reason), for alerting (XREAD); about DEAD_STREAM_MAXLEN kept,
                             emptied by purge_dead; replay and lists use state:dead
    delivery:{id}     set    the job ids of one delivery
    dedupe:{key}      string the first response for a delivery id, with a TTL
    versions          hash   pipeline version → its source (dsl/sources.py), while jobs need it
    versions:stored   zset   pipeline version → when a process last stored its source
    version:{v}       set    the ids of the pending, leased and dead jobs version v accepted

Every operation that changes more than one key is one Lua script, so it is
atomic and several processes can share the work safely. ``lease`` moves due
``delayed`` jobs to the stream, takes over the entries of expired leases
(``XCLAIM`` of the ids in ``leases`` whose ``until`` has passed: their
consumer died), then reads new ones (``XREADGROUP``). ``complete``/``retry``/
``dead`` check the lease token, ``XACK`` and ``XDEL`` the entry. ``enqueue``
writes the dedupe key (``SET NX PX``) and all the jobs in one script: all or
nothing. Scripts carry ``#!lua flags=no-cluster``: Redis 7 or newer, not
Redis Cluster (they reach keys by name), and refused as a whole when Redis is
out of memory.

Expiry is judged by ``until`` (the leaser's own ``visibility_s``), not by the
stream's idle time (``XAUTOCLAIM``), which would let a consumer with a short
visibility steal a job leased with a long one. Time is the clients' clock:
keep the hosts in sync. Use a unique consumer name per process (``release``
frees all the leases of a name).

Durable means: acknowledged by the Redis server. Whether that survives a
Redis restart depends on Redis's own persistence (``appendonly yes`` with
``appendfsync always`` for an fsync per write); see docs/delivery.md.
"""
from __future__ import annotations

import asyncio
import functools
import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import hiredis
import redis.asyncio
import redis.exceptions

from engine.queue import (COUNTED, STATES, DuplicateJob, Job, StoreBase, StoredVersions,
                          StoreUnavailable)
from engine.queue import redis_runs as _runs

DEFAULT_PREFIX = "hookline:"
GROUP = "workers"
BATCH = 500  # jobs per script call in replay_all and purges
CLOSE_WAIT_S = 5.0  # close() waits this long for pipelined calls on their way
DEAD_STREAM_MAXLEN = 100_000  # the dead-letter stream keeps about this many entries
# A bounded pool that makes callers wait for a connection (instead of failing at 100, the
# default); still none after `timeout` s → StoreUnavailable. The URL's query may override both.
POOL = {"max_connections": 64, "timeout": 10}

PRELUDE = """#!lua flags=no-cluster
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local READY = P .. 'ready'

local function jobkey(id) return P .. 'job:' .. id end

local function move(id, from, to)
  if from then redis.call('ZREM', P .. 'state:' .. from, id) end
  redis.call('ZADD', P .. 'state:' .. to, redis.call('HGET', jobkey(id), 'created_at'), id)
  redis.call('HSET', jobkey(id), 'state', to)
end

-- the ready stream never exists without its group: a Redis that restarted empty (or was
-- flushed) under a running store gets both again here, not a stream XREADGROUP cannot read
local function ready_stream()
  if redis.call('EXISTS', READY) == 0 then
    redis.call('XGROUP', 'CREATE', READY, 'workers', '0', 'MKSTREAM')
  end
end

local function schedule(id, due)
  if tonumber(due) <= NOW then
    ready_stream()
    redis.call('HSET', jobkey(id), 'msg', redis.call('XADD', READY, '*', 'id', id))
  else
    redis.call('ZADD', P .. 'delayed', due, id)
    redis.call('HSET', jobkey(id), 'msg', '')
  end
end

-- a version's source, and when a process last stored it (the jobs of a version: version:{v})
local function store_version(version, source)
  redis.call('HSET', P .. 'versions', version, source)
  redis.call('ZADD', P .. 'versions:stored', NOW, version)
end

local function unversion(id)
  local version = redis.call('HGET', jobkey(id), 'version')
  if version and version ~= '' then redis.call('SREM', P .. 'version:' .. version, id) end
end

local function unschedule(id)
  local msg = redis.call('HGET', jobkey(id), 'msg')
  if msg and msg ~= '' then
    redis.call('XACK', READY, 'workers', msg)
    redis.call('XDEL', READY, msg)
  end
  redis.call('ZREM', P .. 'delayed', id)
  redis.call('ZREM', P .. 'leases', id)
  redis.call('HSET', jobkey(id), 'msg', '', 'lease', '', 'consumer', '', 'until', 0)
end
"""

# ARGV: prefix, now, dedupe key ('' = none), response, ttl ms, version, its source ('' = stored
# lately), then 10 fields per job.
ENQUEUE = PRELUDE + """
local seen = {}
for i = 8, #ARGV, 10 do
  if seen[ARGV[i]] or redis.call('EXISTS', jobkey(ARGV[i])) == 1 then return {-1, ARGV[i]} end
  seen[ARGV[i]] = true
end
if ARGV[3] ~= '' then
  local current = redis.call('GET', P .. 'dedupe:' .. ARGV[3])
  if current and current ~= '' then return {0} end   -- '' is only a claim: replace it
  redis.call('SET', P .. 'dedupe:' .. ARGV[3], ARGV[4], 'PX', ARGV[5])
end
if ARGV[7] ~= '' then store_version(ARGV[6], ARGV[7]) end
for i = 8, #ARGV, 10 do
  local id = ARGV[i]
  redis.call('HSET', jobkey(id), 'id', id, 'delivery', ARGV[i+1], 'pipeline', ARGV[i+2],
             'branch', ARGV[i+3], 'payload', ARGV[i+4], 'attempt', ARGV[i+5], 'created_at', ARGV[i+6],
             'due_at', ARGV[i+7], 'last_error', ARGV[i+8], 'lease', '', 'consumer', '', 'until', 0,
             'version', ARGV[i+9])
  redis.call('SADD', P .. 'delivery:' .. ARGV[i+1], id)
  if ARGV[i+9] ~= '' then redis.call('SADD', P .. 'version:' .. ARGV[i+9], id) end
  move(id, nil, 'pending')
  schedule(id, ARGV[i+7])
end
return {1}
"""

# ARGV: prefix, now, consumer, limit, lease token, lease until.
LEASE = PRELUDE + """
local consumer, limit, token, deadline = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
ready_stream()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', NOW, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', P .. 'delayed', id)
  schedule(id, NOW)
end
local out = {}
local function take(entries)
  for _, entry in ipairs(entries) do
    local msg, fields = entry[1], entry[2]
    local id = fields and fields[2]
    local state = id and redis.call('HGET', jobkey(id), 'state')
    if (state == 'pending' or state == 'leased') and redis.call('HGET', jobkey(id), 'msg') == msg then
      if state == 'pending' then move(id, 'pending', 'leased') end
      redis.call('HSET', jobkey(id), 'lease', token, 'consumer', consumer, 'until', deadline)
      redis.call('ZADD', P .. 'leases', deadline, id)
      out[#out + 1] = redis.call('HGETALL', jobkey(id))
    else  -- an entry no job points at any more
      redis.call('XACK', READY, 'workers', msg)
      redis.call('XDEL', READY, msg)
    end
  end
end
local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', NOW, 'LIMIT', 0, limit)
for _, id in ipairs(expired) do
  local claimed = redis.call('XCLAIM', READY, 'workers', consumer, 0, redis.call('HGET', jobkey(id), 'msg'))
  if #claimed == 0 then  -- its entry is gone: give it a new one, read below
    redis.call('ZREM', P .. 'leases', id)
    schedule(id, NOW)
  end
  take(claimed)
end
if #out < limit then
  local fresh = redis.call('XREADGROUP', 'GROUP', 'workers', consumer, 'COUNT', limit - #out,
                           'STREAMS', READY, '>')
  if fresh then take(fresh[1][2]) end
end
return out
"""

# ARGV: prefix, now, job id, lease token, new state, due_at[, error].
FINISH = PRELUDE + """
local id = ARGV[3]
local k = jobkey(id)
if redis.call('HGET', k, 'state') ~= 'leased' or redis.call('HGET', k, 'lease') ~= ARGV[4] then
  return 0
end
unschedule(id)
redis.call('HINCRBY', k, 'attempt', 1)
if ARGV[7] then redis.call('HSET', k, 'last_error', ARGV[7]) end
move(id, 'leased', ARGV[5])
if ARGV[5] == 'done' then unversion(id) end
if ARGV[5] == 'pending' then
  redis.call('HSET', k, 'due_at', ARGV[6])
  schedule(id, ARGV[6])
elseif ARGV[5] == 'dead' then
  redis.call('XADD', P .. 'dead', 'MAXLEN', '~', %d, '*', 'id', id,
             'delivery', redis.call('HGET', k, 'delivery'), 'pipeline', redis.call('HGET', k, 'pipeline'),
             'branch', redis.call('HGET', k, 'branch'), 'reason', ARGV[7] or '')
end
return 1
""" % DEAD_STREAM_MAXLEN

# ARGV: prefix, now, consumer.
RELEASE = PRELUDE + """
local released = 0
while true do
  local pending = redis.call('XPENDING', READY, 'workers', '-', '+', 100, ARGV[3])
  if #pending == 0 then break end
  for _, p in ipairs(pending) do
    local entry = redis.call('XRANGE', READY, p[1], p[1])[1]
    local id = entry and entry[2][2]
    redis.call('XACK', READY, 'workers', p[1])
    if id and redis.call('HGET', jobkey(id), 'msg') == p[1] then
      unschedule(id)
      redis.call('HSET', jobkey(id), 'due_at', ARGV[2])
      move(id, 'leased', 'pending')
      schedule(id, NOW)
      released = released + 1
    end
    redis.call('XDEL', READY, p[1])
  end
end
redis.call('XGROUP', 'DELCONSUMER', READY, 'workers', ARGV[3])
return released
"""

# ARGV: prefix, now, job id or '' for the next batch of dead jobs[, version, its source: the job
# is pinned to that version]. Returns {replayed, looked at}.
REPLAY = PRELUDE + """
local ids = {ARGV[3]}
if ARGV[3] == '' then ids = redis.call('ZRANGE', P .. 'state:dead', 0, %d) end
local replayed = 0
for _, id in ipairs(ids) do
  if redis.call('HGET', jobkey(id), 'state') == 'dead' then
    if ARGV[4] then
      unversion(id)
      store_version(ARGV[4], ARGV[5])
      redis.call('HSET', jobkey(id), 'version', ARGV[4])
      redis.call('SADD', P .. 'version:' .. ARGV[4], id)
    end
    redis.call('HSET', jobkey(id), 'attempt', 0, 'due_at', ARGV[2], 'last_error', '')
    move(id, 'dead', 'pending')
    schedule(id, NOW)
    replayed = replayed + 1
  else
    redis.call('ZREM', P .. 'state:dead', id)
  end
end
return {replayed, #ids}
""" % (BATCH - 1)

# ARGV: prefix, now, state, created before (exclusive max score). Returns how many were deleted.
PURGE = PRELUDE + """
local index = P .. 'state:' .. ARGV[3]
local ids = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. ARGV[4], 'LIMIT', 0, %d)
for _, id in ipairs(ids) do
  local delivery = redis.call('HGET', jobkey(id), 'delivery')
  if delivery then redis.call('SREM', P .. 'delivery:' .. delivery, id) end
  unversion(id)
  redis.call('DEL', jobkey(id))
  redis.call('ZREM', index, id)
end
return #ids
""" % BATCH

# ARGV: prefix, now, stored before. The sources stored last before then that no pending, leased
# or dead job was accepted by (the jobs of version v are in version:{v} until done or purged).
DROP_VERSIONS = PRELUDE + """
local dropped = 0
for _, version in ipairs(redis.call('ZRANGEBYSCORE', P .. 'versions:stored', '-inf', '(' .. ARGV[3])) do
  if redis.call('SCARD', P .. 'version:' .. version) == 0 then
    redis.call('HDEL', P .. 'versions', version)
    redis.call('ZREM', P .. 'versions:stored', version)
    dropped = dropped + 1
  end
end
return dropped
"""


def _guarded(method):
    """Redis errors (unreachable, timeout, out of memory, …) become StoreUnavailable."""
    @functools.wraps(method)
    async def guarded(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from None
    return guarded


def _enqueued(result) -> bool:
    if result[0] == -1:
        raise DuplicateJob(f"job id already stored: {result[1].decode()}")
    return result[0] == 1


def _settle(future: asyncio.Future, result, convert) -> None:
    if future.done():
        return
    if isinstance(result, StoreUnavailable):
        future.set_exception(result)
        return
    if isinstance(result, BaseException):
        future.set_exception(StoreUnavailable(f"redis: {type(result).__name__}: {result}"))
        return
    try:
        future.set_result(convert(result) if convert else result)
    except Exception as exc:        # DuplicateJob
        future.set_exception(exc)


class RedisStore(StoreBase):
    """Enqueues and finishes are pipelined: while one batch is on its way to Redis the
    next ones queue up and go together in the next round trip (one script call each,
    so each keeps its own atomicity and result), as the SQLite store's group commit."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = DEFAULT_PREFIX):
        self.url, self.prefix = url, prefix
        self._redis: redis.asyncio.Redis | None = None
        self._scripts: dict = {}
        self._waiting: list = []          # (script, args, future, convert) for the next round trip
        self._sending: asyncio.Task | None = None
        self._stored = StoredVersions()

    async def open(self) -> None:
        try:
            await self._open()
        except StoreUnavailable:
            await self.close()          # not half open: every call says "not open" until open() works
            raise

    @_guarded
    async def _open(self) -> None:
        self._redis = redis.asyncio.Redis(connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
            self.url, **POOL))
        names = {"enqueue": ENQUEUE, "lease": LEASE, "finish": FINISH, "release": RELEASE,
                 "replay": REPLAY, "purge": PURGE, "take": TAKE_TOKEN, "claim": CLAIM,
                 "unclaim": UNCLAIM, "drop_versions": DROP_VERSIONS}
        self._scripts = {name: self._redis.register_script(text) for name, text in names.items()}
        try:
            await self._redis.xgroup_create(self._key("ready"), GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def close(self) -> None:
        if self._sending is not None:         # let the round trip on its way finish (bounded)
            try:
                await asyncio.wait_for(asyncio.shield(self._sending), CLOSE_WAIT_S)
            except Exception:                  # TimeoutError
                if self._sending is not None:
                    self._sending.cancel()
        if self._redis is not None:
            await self._redis.aclose()
            await self._redis.connection_pool.disconnect()
            self._redis = None

    def _key(self, name: str) -> str:
        return self.prefix + name

    @property
    def _client(self) -> redis.asyncio.Redis:
        if self._redis is None:
            raise StoreUnavailable("redis: store is not open")
        return self._redis

    async def _run(self, script: str, *args):
        return await self._scripts[script](args=[self.prefix, repr(time.time()), *args], client=self._client)

    def _soon(self, script: str, args: list, convert=None) -> asyncio.Future:
        """Run ``script`` in the next pipelined round trip; the future gets its result."""
        if self._redis is None:
            raise StoreUnavailable("redis: store is not open")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((script, [self.prefix, repr(time.time()), *args], future, convert))
        if self._sending is None:
            self._sending = loop.create_task(self._send_waiting())
        return future

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    results = await self._evalsha_all(batch)
                except asyncio.CancelledError:     # close() gave up waiting
                    for _, _, future, _ in batch:
                        _settle(future, StoreUnavailable("redis: store closed"), None)
                    raise
                except Exception as exc:          # RedisError, OSError, the store closed
                    results = [exc] * len(batch)
                for (_, _, future, convert), result in zip(batch, results, strict=True):
                    _settle(future, result, convert)
        finally:
            self._sending = None
            for _, _, future, _ in self._waiting:  # only when stopped by close(): nobody sends them
                _settle(future, StoreUnavailable("redis: store closed"), None)
            self._waiting = []

    async def _evalsha_all(self, batch) -> list:
        """One pipelined round trip; entries Redis answered NOSCRIPT for (a restart, SCRIPT
        FLUSH) are sent again, alone, once their scripts are loaded: the rest ran once."""
        results = await self._pipeline([(script, args) for script, args, _, _ in batch])
        missing = [i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)]
        if missing:
            for script in {batch[i][0] for i in missing}:
                await self._client.script_load(self._scripts[script].script)
            again = await self._pipeline([batch[i][:2] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, calls) -> list:
        """One round trip: an EVALSHA per call, packed together on one pooled connection; the
        replies in order, an error reply (``ResponseError``) in its call's place. redis-py's
        ``Pipeline`` does the same with bookkeeping per command: the client's CPU per enqueue
        fell by about a fifth without it (docs/performance.md). The commands are packed in C
        by hiredis, all at once (redis-py's asyncio connection packs in Python, ~20 µs more
        per enqueue); text goes as UTF-8 whatever ``?encoding=`` the URL gives, as the store
        reads it back. A connection that breaks (Redis
        restarted or closed it) fails this round trip's calls, which may or may not have run
        (their callers answer 503 or retry later), and is dropped: the next round trip opens
        a new one. It is not sent again: an enqueue that ran would then report its own job
        as a duplicate."""
        packed = b"".join([hiredis.pack_command(("EVALSHA", self._scripts[script].sha, 0, *args))
                           for script, args in calls])
        pool = self._client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(packed)
            replies = []
            for _ in calls:
                try:
                    replies.append(await conn.read_response())
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:                    # broken, timed out or cancelled mid-read: the
            await conn.disconnect()              # connection must not serve anyone again
            raise
        finally:
            await pool.release(conn)

    def enqueue_soon(self, jobs: list[Job], dedupe=None, source=None) -> asyncio.Future:
        key, response, ttl_s = dedupe or ("", b"", 0.0)
        version = jobs[0].version if jobs else ""
        carried = source is not None and jobs and self._stored.wanted(version)
        fields = [value for job in jobs for value in (
            job.id, job.delivery, job.pipeline, job.branch, job.payload, job.attempt,
            repr(job.created_at), repr(job.due_at), job.last_error, job.version)]
        future = self._soon("enqueue", [key, response, max(1, round(ttl_s * 1000)), version,
                                        source if carried else "", *fields], _enqueued)
        if carried:
            self._stored.failed(version, future)
        return future

    async def enqueue(self, jobs: list[Job], dedupe: tuple[str, bytes, float] | None = None,
                      source: bytes | None = None) -> bool:
        return await self.enqueue_soon(jobs, dedupe, source)

    @_guarded
    async def dedupe_get(self, key: str) -> bytes | None:
        return await self._client.get(self._key("dedupe:" + key))

    @_guarded
    async def lease(self, consumer: str, limit: int, visibility_s: float) -> list[Job]:
        if limit < 1:
            return []
        until = time.time() + visibility_s
        rows = await self._run("lease", consumer, limit, uuid.uuid4().hex, repr(until))
        return [_job(_pairs(row)) for row in rows]

    # complete/retry/dead return the pipelined call's future (awaitable like a coroutine):
    # the call joins the next round trip at once, not when the caller first awaits.
    def complete(self, job: Job) -> asyncio.Future:
        return self._finish(job.id, job.lease, "done", "")

    def retry(self, job: Job, due_at: float, error: str) -> asyncio.Future:
        return self._finish(job.id, job.lease, "pending", repr(due_at), error)

    def dead(self, job: Job, reason: str) -> asyncio.Future:
        return self._finish(job.id, job.lease, "dead", "", reason)

    def _finish(self, *args) -> asyncio.Future:
        return self._soon("finish", list(args))

    @_guarded
    async def release(self, consumer: str) -> None:
        await self._run("release", consumer)

    @_guarded
    async def get(self, job_id: str) -> Job | None:
        jobs = await self._load([job_id])
        return jobs[0] if jobs else None

    @_guarded
    async def find(self, delivery: str) -> list[Job]:
        ids = await self._client.smembers(self._key("delivery:" + delivery))
        return sorted(await self._load(ids), key=lambda j: (j.created_at, j.id))

    @_guarded
    async def list(self, state: str | None = None, limit: int = 100) -> list[Job]:
        if limit < 1 or state not in (None, *STATES):
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for name in STATES if state is None else (state,):
                pipe.zrange(self._key("state:" + name), 0, limit - 1, withscores=True)
            ranked = sorted((score, job_id) for found in await pipe.execute() for job_id, score in found)
        return await self._load([job_id for _, job_id in ranked[:limit]])

    async def _load(self, ids) -> list[Job]:
        async with self._client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self._key("job:" + _text(job_id)))
            return [_job(fields) for fields in await pipe.execute() if fields]

    @_guarded
    async def replay(self, job_id: str, pin: tuple[str, bytes] | None = None) -> bool:
        replayed, _ = await self._run("replay", job_id, *(pin or ()))
        return replayed == 1

    @_guarded
    async def replay_all(self) -> int:
        total, looked = 0, BATCH
        while looked:
            replayed, looked = await self._run("replay", "")
            total += replayed
        return total

    @_guarded
    async def purge_dead(self) -> int:
        newest = await self._client.xrevrange(self._key("dead"), count=1)   # by Redis's own clock
        purged = await self._purge("dead", "+inf")
        if newest:     # the stream's entries up to the newest before the purge (later ones stay)
            ms, seq = newest[0][0].decode().split("-")
            await self._client.xtrim(self._key("dead"), minid=f"{ms}-{int(seq) + 1}", approximate=False)
        return purged

    @_guarded
    async def purge_done(self, created_before: float) -> int:
        return await self._purge("done", repr(created_before))

    async def _purge(self, state: str, created_before: str) -> int:
        total, deleted = 0, BATCH
        while deleted:
            deleted = await self._run("purge", state, created_before)
            total += deleted
        return total

    @_guarded
    async def backlog(self) -> int:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.zcard(self._key("state:pending"))
            pipe.zcard(self._key("state:leased"))
            return sum(await pipe.execute())

    @_guarded
    async def stats(self) -> tuple[dict, float | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            for state in COUNTED:
                pipe.zcard(self._key("state:" + state))
            pipe.zrange(self._key("state:pending"), 0, 0, withscores=True)
            *counts, oldest = await pipe.execute()
        return dict(zip(COUNTED, counts)), oldest[0][1] if oldest else None

    @_guarded
    async def ping(self) -> None:
        await self._client.ping()

    @_guarded
    async def version_source(self, version: str) -> bytes | None:
        return await self._client.hget(self._key("versions"), version)

    @_guarded
    async def drop_versions(self, stored_before: float) -> int:
        return await self._run("drop_versions", repr(stored_before))


    # the run history (engine/history.py; the keys are in engine/queue/redis_runs.py)

    @_guarded
    async def record_runs(self, batch) -> None:
        await _runs.write(self._client, self._key, batch)

    @_guarded
    async def runs(self, pipeline: str | None, limit: int, q: str | None) -> list[tuple]:
        return await _runs.runs(self._client, self._key, pipeline, limit, q)

    @_guarded
    async def run(self, run_id: str) -> tuple | None:
        return await _runs.run(self._client, self._key, run_id)

    @_guarded
    async def run_attempts(self, delivery: str) -> list[bytes]:
        return await _runs.attempts(self._client, self._key, delivery)

    @_guarded
    async def run_minutes(self, since_minute: int) -> list[tuple]:
        return await _runs.minutes(self._client, self._key, since_minute)

    @_guarded
    async def claim(self, key: str, ttl_s: float) -> bytes | None:
        return await self._scripts["claim"](keys=[self._key("dedupe:" + key)],
                                            args=[str(max(1, int(ttl_s * 1000)))], client=self._client)

    @_guarded
    async def unclaim(self, key: str) -> None:
        await self._scripts["unclaim"](keys=[self._key("dedupe:" + key)], args=[], client=self._client)

    @_guarded
    async def take_token(self, bucket: str, rate: float, burst: int) -> float:
        """A token bucket shared by every process on this Redis: 0 when a request may
        go ahead, else the seconds until it may (the bucket is not charged then)."""
        key = self._key("rate:" + bucket)
        wait = await self._scripts["take"](keys=[key], args=[repr(rate), str(burst)], client=self._client)
        return float(wait)


# A delivery id: what is stored, or nothing — then a '' placeholder is set (the claim).
CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], '', 'PX', ARGV[1])
return false
"""


UNCLAIM = """
if redis.call('GET', KEYS[1]) == '' then redis.call('DEL', KEYS[1]) end
return 0
"""


# Redis' own clock (TIME) keeps buckets right across machines whose clocks differ.
TAKE_TOKEN = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


def _pairs(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _job(fields: dict) -> Job:
    text = {_text(k): v for k, v in fields.items()}
    return Job(id=_text(text["id"]), delivery=_text(text["delivery"]), pipeline=_text(text["pipeline"]),
               branch=_text(text["branch"]), payload=text["payload"], attempt=int(text["attempt"]),
               created_at=float(text["created_at"]), due_at=float(text["due_at"]),
               state=_text(text["state"]), last_error=_text(text["last_error"]), lease=_text(text["lease"]),
               version=_text(text.get("version", b"")))


def from_url(url: str, for_delivery: bool = False) -> RedisStore:
    """``redis://host:port/db?prefix=myapp:`` (other query options go to redis-py)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return RedisStore(urlunsplit(parts._replace(query=rest)), prefix)
