"""``memory:`` — a store in a dict, for unit tests. Nothing persists.

Every method runs without awaiting in between, so on one event loop each is
atomic without a lock. Same contract as the durable stores.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace

from engine.queue import COUNTED, DuplicateJob, Job, StoreBase, StoredVersions
from engine.queue.runs import MemoryRuns


@dataclass(slots=True)
class _Lease:
    consumer: str
    until: float


class MemoryStore(StoreBase):
    """``clock`` (default ``time.time``) decides when a job is due and a lease or a
    dedupe key has expired: ``hookline test`` passes a simulated one, so retries
    happen without waiting."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self._jobs: dict[str, Job] = {}
        self._leases: dict[str, _Lease] = {}
        self._dedupe: dict[str, tuple[bytes, float]] = {}
        self._versions: dict[str, tuple[bytes, float]] = {}   # version -> (source, stored at)
        self._stored = StoredVersions()
        self._runs = MemoryRuns()

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def enqueue(self, jobs: list[Job], dedupe: tuple[str, bytes, float] | None = None,
                      source: bytes | None = None) -> bool:
        taken = [job.id for job in jobs if job.id in self._jobs]
        if taken or len({job.id for job in jobs}) < len(jobs):
            raise DuplicateJob(f"job id already stored: {(taken or [j.id for j in jobs])[0]}")
        if dedupe is not None:
            key, response, ttl_s = dedupe
            if self._dedupe_live(key):            # a response is stored (b"" is only a claim)
                return False
            self._dedupe[key] = (response, self.clock() + ttl_s)
        if source is not None and jobs and self._stored.wanted(jobs[0].version):
            self._versions[jobs[0].version] = (source, self.clock())
        for job in jobs:
            self._jobs[job.id] = replace(job, state="pending", lease="")
        return True

    async def dedupe_get(self, key: str) -> bytes | None:
        return self._dedupe_live(key)

    async def unclaim(self, key: str) -> None:
        if self._dedupe.get(key, (None, 0))[0] == b"":
            del self._dedupe[key]

    async def claim(self, key: str, ttl_s: float) -> bytes | None:
        stored = self._dedupe_live(key)
        if stored is None:
            self._dedupe[key] = (b"", self.clock() + ttl_s)
        return stored

    def _dedupe_live(self, key: str) -> bytes | None:
        response, expires = self._dedupe.get(key, (None, 0.0))
        return response if expires > self.clock() else None

    async def lease(self, consumer: str, limit: int, visibility_s: float) -> list[Job]:
        now, token = self.clock(), uuid.uuid4().hex
        ready = sorted((j for j in self._jobs.values() if self._ready(j, now)), key=lambda j: j.due_at)
        leased = [replace(job, state="leased", lease=token) for job in ready[:max(limit, 0)]]
        for job in leased:
            self._jobs[job.id] = job
            self._leases[job.id] = _Lease(consumer, now + visibility_s)
        return leased

    def _ready(self, job: Job, now: float) -> bool:
        if job.state == "pending":
            return job.due_at <= now
        return job.state == "leased" and self._leases[job.id].until <= now

    def _holds(self, job: Job) -> bool:
        current = self._jobs.get(job.id)
        return current is not None and current.state == "leased" and current.lease == job.lease

    def _finish(self, job: Job, **changes) -> None:
        if self._holds(job):
            current = self._jobs[job.id]
            self._jobs[job.id] = replace(current, attempt=current.attempt + 1, lease="", **changes)
            del self._leases[job.id]

    async def complete(self, job: Job) -> None:
        self._finish(job, state="done")

    async def retry(self, job: Job, due_at: float, error: str) -> None:
        self._finish(job, state="pending", due_at=due_at, last_error=error)

    async def dead(self, job: Job, reason: str) -> None:
        self._finish(job, state="dead", last_error=reason)

    async def release(self, consumer: str) -> None:
        now = self.clock()
        for job_id in [i for i, lease in self._leases.items() if lease.consumer == consumer]:
            self._jobs[job_id] = replace(self._jobs[job_id], state="pending", lease="", due_at=now)
            del self._leases[job_id]

    async def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def find(self, delivery: str) -> list[Job]:
        return _oldest_first(j for j in self._jobs.values() if j.delivery == delivery)

    async def list(self, state: str | None = None, limit: int = 100) -> list[Job]:
        return _oldest_first(j for j in self._jobs.values() if state in (None, j.state))[:limit]

    async def replay(self, job_id: str, pin: tuple[str, bytes] | None = None) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state != "dead":
            return False
        version = job.version
        if pin is not None:
            version = pin[0]
            self._versions[version] = (pin[1], self.clock())
        self._jobs[job_id] = replace(job, state="pending", attempt=0, due_at=self.clock(), last_error="",
                                     version=version)
        return True

    async def replay_all(self) -> int:
        return sum([await self.replay(j.id) for j in await self.list("dead", len(self._jobs))])

    async def purge_dead(self) -> int:
        return self._purge(lambda j: j.state == "dead")

    async def purge_done(self, created_before: float) -> int:
        return self._purge(lambda j: j.state == "done" and j.created_at < created_before)

    def _purge(self, doomed) -> int:
        ids = [j.id for j in self._jobs.values() if doomed(j)]
        for job_id in ids:
            del self._jobs[job_id]
        return len(ids)

    async def backlog(self) -> int:
        return sum(1 for j in self._jobs.values() if j.state in ("pending", "leased"))

    async def stats(self) -> tuple[dict, float | None]:
        counts = {state: 0 for state in COUNTED}
        for job in self._jobs.values():
            if job.state in counts:
                counts[job.state] += 1
        pending = [j.created_at for j in self._jobs.values() if j.state == "pending"]
        return counts, min(pending, default=None)

    async def ping(self) -> None:
        pass

    async def version_source(self, version: str) -> bytes | None:
        return self._versions.get(version, (None, 0))[0]

    async def drop_versions(self, stored_before: float) -> int:
        used = {j.version for j in self._jobs.values() if j.state in COUNTED}
        doomed = [v for v, (_, at) in self._versions.items() if at < stored_before and v not in used]
        for version in doomed:
            del self._versions[version]
        return len(doomed)

    async def record_runs(self, batch) -> None:
        self._runs.write(batch)

    async def runs(self, pipeline: str | None, limit: int, q: str | None) -> list[tuple]:
        return self._runs.list(pipeline, limit, q)

    async def run(self, run_id: str) -> tuple | None:
        return self._runs.get(run_id)

    async def run_attempts(self, delivery: str) -> list[bytes]:
        return self._runs.attempts_of(delivery)

    async def run_minutes(self, since_minute: int) -> list[tuple]:
        return self._runs.minutes_since(since_minute)


def _oldest_first(jobs) -> list[Job]:
    return sorted(jobs, key=lambda j: (j.created_at, j.id))


def from_url(url: str, for_delivery: bool = False) -> MemoryStore:
    return MemoryStore()
