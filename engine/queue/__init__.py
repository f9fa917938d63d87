"""Durable job stores for async branches: persist first, acknowledge at once,
deliver in the background with retries and a dead-letter store.

    store = open_store("sqlite:hookline.db")      # or "redis://127.0.0.1:6379/0", "memory:"
    await store.open()
    await store.enqueue([Job.new("dlv-1", "orders", "erp", b'{"order": 1}')])
    for job in await store.lease("worker-1", limit=10, visibility_s=30):
        await store.complete(job)                  # or retry(job, due_at, error) / dead(job, reason)
    await store.close()

A job's life (``state``)::

    enqueue ─→ pending ─lease─→ leased ─complete─→ done
                  ↑                │  └─dead──────→ dead ─replay─→ pending
                  └──retry/release─┘   (or its lease expires: leased again)

``complete``, ``retry`` and ``dead`` each record one attempt (``attempt + 1``)
and act only while the caller still holds the lease (``job.lease`` is the
token ``lease`` returned); a job whose lease expired and was taken by another
consumer is left alone. Delivery is at least once: a consumer that dies
mid-delivery has its jobs delivered again after ``visibility_s``.

Exceptions::

    QueueError
     ├── StoreUnavailable   the store could not commit or answer (the server answers 503)
     └── DuplicateJob       enqueue() got a job id the store already holds; nothing was enqueued

Backends, one module each, named after the URL scheme: ``memory`` (tests;
nothing persists), ``sqlite`` (one file, WAL, fsync per group commit),
``redis`` (Streams + a consumer group; as durable as the server's own
persistence). They share one contract test: tests/test_queue_contract.py.
"""
from __future__ import annotations

import asyncio
import importlib
import os
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

__all__ = ["COUNTED", "DEFAULT_URL", "STATES", "VERSION_KEEP_S", "DuplicateJob", "Job", "QueueError", "Store",
           "StoreUnavailable", "StoredVersions", "open_store"]

DEFAULT_URL = "sqlite:hookline.db"
STATES = ("pending", "leased", "done", "dead")
COUNTED = ("pending", "leased", "dead")   # the states stats() counts (done jobs only pile up)

# URL scheme → module in this package with a ``from_url(url) -> Store``.
BACKENDS = {"memory": "memory", "sqlite": "sqlite", "redis": "redis", "rediss": "redis"}


class QueueError(Exception):
    """Base of this package's errors."""


class StoreUnavailable(QueueError):
    """The store could not commit or answer; nothing was acknowledged (→ 503)."""


class DuplicateJob(QueueError):
    """``enqueue`` got a job id the store already holds; none of the jobs were enqueued."""


@dataclass(frozen=True, slots=True)
class Job:
    id: str            # stable job id (uuid4 hex), used for Idempotency-Key
    delivery: str      # id of the request that created it (several branch jobs share it)
    pipeline: str
    branch: str        # async branch id
    payload: bytes     # JSON document (the context): opaque to the store
    attempt: int       # attempts made so far (0 when new)
    created_at: float  # unix seconds
    due_at: float      # when it may next be leased
    state: str         # "pending" | "leased" | "done" | "dead"
    last_error: str = ""
    lease: str = ""    # lease token while leased
    version: str = ""  # the version of the pipeline that accepted it ("": stored before versions)

    @classmethod
    def new(cls, delivery: str, pipeline: str, branch: str, payload: bytes,
            due_at: float | None = None, version: str = "") -> Job:
        """A pending job with a fresh id, due now unless ``due_at`` is given."""
        now = time.time()
        return cls(uuid.uuid4().hex, delivery, pipeline, branch, payload, 0, now,
                   now if due_at is None else due_at, "pending", version=version)


# A version's source (dsl/sources.py) stays in the store while a pending, leased or dead job
# was accepted by it, and for at least VERSION_KEEP_S after a process last stored it. A
# process stores a version's source with the first jobs it accepts under it, then again
# every VERSION_KEEP_S / 3 (not per request): so a process that believes the source is
# stored is right even when the last job of that version has just been delivered.
VERSION_KEEP_S = float(os.environ.get("HOOKLINE_VERSION_KEEP_S", "300"))


class StoredVersions:
    """Which version sources this process stored lately (per store): ``wanted(version)``
    says whether the next enqueue must carry the source."""

    def __init__(self, keep_s: float = VERSION_KEEP_S, clock=time.monotonic):
        self.refresh_s, self.clock, self.stored = keep_s / 3, clock, {}

    def wanted(self, version: str) -> bool:
        """True (and noted as stored) when the source should go with this enqueue."""
        at = self.stored.get(version)
        now = self.clock()
        if at is not None and now - at < self.refresh_s:
            return False
        self.stored[version] = now
        return True

    def failed(self, version: str, future) -> None:
        """When ``future`` (the enqueue that carried the source) fails, send it again."""
        future.add_done_callback(lambda f: f.cancelled() or f.exception() is None
                                 or self.stored.pop(version, None))


class Store(Protocol):
    async def open(self) -> None:
        """Connect, create what is missing (file, tables, consumer group)."""

    async def close(self) -> None:
        """Finish what was accepted, then disconnect."""

    async def enqueue(self, jobs: list[Job], dedupe: tuple[str, bytes, float] | None = None,
                      source: bytes | None = None) -> bool:
        """Commit ``jobs`` durably, all or none, before returning.

        ``source``: the source of the pipeline version that accepted them (all of one
        version, ``jobs[0].version``); stored in the same commit unless this store stored
        it lately (:class:`StoredVersions`).

        ``dedupe=(key, response, ttl_s)`` stores the first response for a
        delivery id in the same commit. If ``key`` is already stored (within
        its TTL) nothing is enqueued and the result is False: answer with
        ``dedupe_get(key)``. Otherwise True.
        """

    def enqueue_soon(self, jobs: list[Job], dedupe=None, source=None) -> asyncio.Future:
        """``enqueue`` as a future (StoreBase runs it as a task; SQLite hands back its
        writer's own future)."""

    async def dedupe_get(self, key: str) -> bytes | None:
        """The stored first response for ``key``, if within its TTL (``b""``: claimed,
        the first copy is still running)."""

    async def claim(self, key: str, ttl_s: float) -> bytes | None:
        """Atomically claim a delivery id before running anything: ``None`` when this
        caller now holds it (a ``b""`` placeholder for ``ttl_s``), else what is stored
        (``b""`` while another copy runs, or its response). ``enqueue`` with the same
        key replaces the placeholder with the response."""

    async def unclaim(self, key: str) -> None:
        """Drop this caller's claim (the placeholder only, never a stored response):
        the first copy failed, so the sender's retry may run."""

    async def lease(self, consumer: str, limit: int, visibility_s: float) -> list[Job]:
        """Up to ``limit`` due pending jobs, plus leased jobs whose lease
        expired, now leased to ``consumer`` for ``visibility_s`` seconds, each
        with a new ``lease`` token. Roughly in the order they became due
        (SQLite: by ``due_at``; Redis: by when they entered the stream)."""

    async def complete(self, job: Job) -> None:
        """Done (attempt + 1); ignored if the lease was lost."""

    async def retry(self, job: Job, due_at: float, error: str) -> None:
        """Attempt + 1, back to pending at ``due_at``; ignored if the lease was lost."""

    async def dead(self, job: Job, reason: str) -> None:
        """Attempt + 1, to the dead-letter store; ignored if the lease was lost."""

    async def release(self, consumer: str) -> None:
        """On shutdown: the leases of ``consumer`` back to pending, due now."""

    async def get(self, job_id: str) -> Job | None: ...

    async def find(self, delivery: str) -> list[Job]:
        """The jobs of one delivery, oldest first."""

    async def list(self, state: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs (in ``state``), oldest first by ``created_at``."""

    async def replay(self, job_id: str, pin: tuple[str, bytes] | None = None) -> bool:
        """Dead → pending, due now, attempt 0, no last error. False if not dead.
        ``pin=(version, source)``: the job is delivered by that version from now on
        (``dlq replay --current``); its source is stored in the same commit."""

    async def replay_all(self) -> int: ...

    async def purge_dead(self) -> int: ...

    async def purge_done(self, created_before: float) -> int:
        """Forget done jobs created before ``created_before`` (retention)."""

    async def backlog(self) -> int:
        """Pending + leased jobs, for backpressure."""

    async def stats(self) -> tuple[dict, float | None]:
        """For metrics: ``({"pending": n, "leased": n, "dead": n}, created_at of the oldest
        pending job or None)``."""

    async def ping(self) -> None:
        """Return when the store answers (readiness); raise StoreUnavailable when not."""

    async def version_source(self, version: str) -> bytes | None:
        """The stored source of a pipeline version (dsl/sources.py), if kept."""

    async def drop_versions(self, stored_before: float) -> int:
        """Forget the sources that no pending, leased or dead job was accepted by, stored
        last before ``stored_before`` (unix seconds; delivery passes now - VERSION_KEEP_S);
        returns how many."""

    # The run history (engine/history.py, engine/queue/runs.py): a run is stored and answered as
    # three byte strings, (record JSON, request body, response body); attempts as JSON.

    async def record_runs(self, batch) -> None:
        """Write one ``runs.RunBatch``: runs, attempts, minute aggregates (added to what is
        stored), then apply its bounds (runs per pipeline, age)."""

    async def runs(self, pipeline: str | None, limit: int, q: str | None) -> list[tuple]:
        """Runs newest first (``limit`` of them; their bodies may be left empty); with ``q``:
        every run whose id or delivery id is ``q`` or whose record holds ``q`` as a JSON string."""

    async def run(self, run_id: str) -> tuple | None: ...

    async def run_attempts(self, delivery: str) -> list[bytes]:
        """The delivery attempts of one delivery's jobs, oldest first."""

    async def run_minutes(self, since_minute: int) -> list[tuple]:
        """``(pipeline, minute, counts)`` of every aggregate from ``since_minute`` on."""


class StoreBase:
    """What every backend shares: ``async with store:`` opens and closes it."""

    def enqueue_soon(self, jobs: list[Job], dedupe=None, source=None) -> asyncio.Future:
        """``enqueue`` as a future, for a caller that answers from a done-callback
        rather than from a task of its own (the request path)."""
        return asyncio.ensure_future(self.enqueue(jobs, dedupe, source))

    async def __aenter__(self):
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def open_store(url: str = DEFAULT_URL, for_delivery: bool = False) -> Store:
    """The (not yet opened) store for ``url``.

        open_store("sqlite:/var/lib/hookline/queue.db")    # "sqlite:" alone: ./hookline.db
        open_store("redis://127.0.0.1:6379/0?prefix=hookline:")   # prefix defaults to "hookline:"
        open_store("memory:")

    Stores are also async context managers: ``async with open_store(url) as store:``.
    ``for_delivery``: the store of a process that only leases and finishes jobs (a
    delivery worker); SQLite then skips the fsync of those commits (see its module).
    """
    scheme = url.partition(":")[0].lower()
    if scheme not in BACKENDS:
        raise ValueError(f"unknown store URL {url!r}: expected one of "
                         + ", ".join(f"{s}:" for s in BACKENDS))
    module = importlib.import_module(f"{__name__}.{BACKENDS[scheme]}")
    return module.from_url(url, for_delivery=for_delivery)
