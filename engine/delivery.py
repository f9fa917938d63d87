"""Background delivery of async branches: lease persisted jobs, run their
steps, complete, retry with backoff or dead-letter.

At-least-once: a job is completed only after its steps succeeded; a crash
between the two means the job is leased again once its lease expires, so
destinations get an ``Idempotency-Key`` (``<job id>.<step id>``) to dedupe.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid

from dsl import strict_json
from dsl.reads import missing
from dsl.sources import compile_source
from dsl.runtime import Context, DeliveryFailed, StepFailed, arun_steps

from . import tracing
from .durable import KEPT, Outage
from .history import Watched
from .logs import fields, iso_time
from .metrics import OFF
from .queue import VERSION_KEEP_S, StoreUnavailable
from .reload import changes

log = logging.getLogger("hookline.delivery")
MAX_STORED_VERSIONS = 64   # compiled stored versions a delivery process keeps (the oldest go first)


def _not_kept(job, gap: tuple) -> str:
    what = ".".join(gap) or "the whole context"
    return (f"branch '{job.branch}' of pipeline '{job.pipeline}' now reads {what}, which this job did not "
            "keep (it was stored by an earlier version of the pipeline, which did not read it); "
            "have the sender deliver it again")


class Backlog:
    """Backpressure: pending + leased jobs in the store, counted at most once a second
    by ``run()``; ``full`` while the count is at ``limit`` or over."""

    def __init__(self, store, limit: int, every_s: float = 1.0, outage=None):
        self.store, self.limit, self.every_s, self.count = store, limit, every_s, 0
        self.outage = outage or Outage()

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    async def run(self) -> None:
        while True:
            try:
                self.count = await self.store.backlog()
            except StoreUnavailable as exc:     # the last count stands; requests get 503 anyway
                self.outage.note(exc, "backlog check(s)")
            except Exception:
                log.exception("backlog check failed")
            await asyncio.sleep(self.every_s)


class Nudge:
    """Wakes the delivery workers after a commit with jobs: one byte down each one's pipe,
    at most once per event-loop iteration however many commits it saw."""

    def __init__(self, fds):
        self.fds, self._pending = tuple(fds), False

    def __call__(self) -> None:
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._pending = False
        for fd in self.fds:
            try:
                os.write(fd, b"w")
            except BlockingIOError:     # the pipe is full: that worker has bytes to read
                pass


def watch(fd: int, event: asyncio.Event) -> None:
    """Set ``event`` whenever a :class:`Nudge` wrote to ``fd`` (the read end)."""
    def readable():
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass
        event.set()
    asyncio.get_running_loop().add_reader(fd, readable)


class Deliverer:
    """Leases jobs and runs their branches, ``concurrency`` at a time; ``run()`` until ``stop()``."""

    def __init__(self, store, pipelines, outbound, *, concurrency=64, visibility_s=60.0,
                 poll_s=0.5, rng=random.uniform, outage=None, metrics=OFF,
                 clock=time.time, history=None):
        self.store, self.outbound, self.metrics, self.clock = store, outbound, metrics, clock
        self.history = history           # engine.history.Recorder: each attempt recorded, or None
        self._calls: dict = {}           # job id -> the calls of its running attempt (history only)
        self._stored: dict = {}          # version -> task compiling that stored version (see _branch)
        self._drop_at = 0.0              # when to next forget the versions no job needs (clock)
        self.swap(pipelines)
        self.consumer = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.outage = outage or Outage(log, metrics)
        self.concurrency, self.visibility_s, self.poll_s = concurrency, visibility_s, poll_s
        self.rng = rng
        self.running: set = set()
        self.wake = asyncio.Event()
        self._stopping = False

    def swap(self, pipelines) -> None:
        """Deliver with the branches of ``pipelines`` from now on (a reload); attempts running
        keep the branch they started with."""
        self.branches = {(p.name, b.id): b for p in self._instrumented(pipelines) for b in p.branches}
        before, self.served = getattr(self, "served", None), tuple(pipelines)
        self.versions = {p.name: p.version for p in pipelines}
        if before is not None:      # the jobs of the versions before keep theirs (see _branch)
            log.info("delivery: %s", changes(before, pipelines))
        self.recorded = {p.name: p.history for p in pipelines if p.history is not None}

    def _instrumented(self, pipelines):
        return tracing.instrument(self.metrics.instrument(pipelines))

    async def run(self) -> None:
        while not self._stopping:
            self.wake.clear()            # before leasing: a nudge during the lease is kept
            if self.clock() >= self._drop_at:
                await self._drop_versions()
            free = self.concurrency - len(self.running)
            jobs = await self._lease(free) if free > 0 else []
            for job in jobs:
                task = asyncio.get_running_loop().create_task(self.attempt(job))
                self.running.add(task)
                task.add_done_callback(self._finished)
            if not jobs:
                await self._sleep()

    async def _lease(self, limit):
        try:
            jobs = await self.store.lease(self.consumer, limit, self.visibility_s)
            if self.outage.down:
                self.outage.recovered()
            return jobs
        except StoreUnavailable as exc:          # Redis down, a full disk: said, not a traceback a second
            self.outage.note(exc, "failed lease(s)")
        except Exception:
            log.exception("lease failed; retrying")
        await asyncio.sleep(1)
        return []

    async def _drop_versions(self) -> None:
        """Forget the stored versions no job needs any more (every VERSION_KEEP_S / 3)."""
        self._drop_at = self.clock() + VERSION_KEEP_S / 3
        try:
            dropped = await self.store.drop_versions(self.clock() - VERSION_KEEP_S)
        except StoreUnavailable as exc:
            self.outage.note(exc, "version clean-up(s)")
            return
        if dropped:
            log.info("forgot %d stored pipeline version(s) that no job needs any more", dropped)

    async def _branch(self, job):
        """``(branch, None)``: the branch of the pipeline version that accepted ``job`` — the
        one served now, or one kept in the store, compiled on first use and cached by version;
        or ``(None, why)``."""
        current = self.branches.get((job.pipeline, job.branch))
        if not job.version or self.versions.get(job.pipeline) == job.version:   # "": stored before versions
            if current is None:
                return None, f"pipeline '{job.pipeline}' has no async branch '{job.branch}' any more"
            return current, None
        task = self._stored.get(job.version)
        if task is None:
            if len(self._stored) >= MAX_STORED_VERSIONS:
                self._stored.pop(next(iter(self._stored)))
            task = self._stored[job.version] = asyncio.ensure_future(self._compile_stored(job))
        try:
            branches, why = await asyncio.shield(task)
        except Exception:                           # StoreUnavailable: tried again later
            self._stored.pop(job.version, None)
            raise
        if branches is None:
            self._stored.pop(job.version, None)     # tried again for the next job (the env may be fixed)
            return None, why
        if job.branch not in branches:
            return None, f"version {job.version} of pipeline '{job.pipeline}' has no async branch '{job.branch}'"
        return branches[job.branch], None

    async def _compile_stored(self, job):
        source = await self.store.version_source(job.version)
        if source is None:
            return None, (f"version {job.version} of pipeline '{job.pipeline}' is not stored any more; "
                          f"hookline dlq replay --current {job.id} delivers it with today's version")
        pipeline, problems = await asyncio.to_thread(compile_source, source)
        if pipeline is None:
            errors = [str(d) for d in problems if d.severity == "error"]
            return None, (f"version {job.version} of pipeline '{job.pipeline}' does not compile any more: "
                          + "; ".join(errors[:3]))
        log.info("delivering with version %s of pipeline '%s' (stored with its jobs)", job.version, job.pipeline)
        [pipeline] = self._instrumented([pipeline])
        return {b.id: b for b in pipeline.branches}, None

    async def _sleep(self):
        try:
            await asyncio.wait_for(self.wake.wait(), self.poll_s)
        except asyncio.TimeoutError:
            pass

    def _finished(self, task):
        self.running.discard(task)
        self.wake.set()

    async def attempt(self, job) -> None:
        """Run the job's branch and record the outcome; when the store cannot record it, the
        job stays leased and is taken again after the visibility timeout (at least once)."""
        try:
            await self._attempt(job)
        except StoreUnavailable as exc:
            self.outage.note(exc, "outcome(s) not recorded, delivered again later")

    async def _attempt(self, job) -> None:
        branch, why = await self._branch(job)
        if branch is None:
            await self._dead_now(job, why)
            return
        try:
            data = strict_json.loads(job.payload, "the stored job", strict_json.MAX_STORED_DEPTH)
        except strict_json.JSONRefused as exc:
            await self._dead_now(job, f"the stored job cannot be read: {exc.detail}")
            return
        gap = missing(branch.needs, data.pop(KEPT)) if KEPT in data else None
        if gap is not None:
            await self._dead_now(job, _not_kept(job, gap))
            return
        ctx = Context(data, http=self._watched(job), job=job.id)
        traceparent = data.pop(tracing.KEY, None)      # the request's trace (engine/tracing.py)
        began = time.perf_counter()
        try:
            with tracing.delivery(job, traceparent):
                await arun_steps(branch.steps, ctx)
        except DeliveryFailed as exc:
            await self._failed(job, branch, exc.retryable, exc.detail, began, exc.retry_after)
            return
        except StepFailed as exc:
            await self._failed(job, branch, False, exc.detail, began)
            return
        except Exception as exc:
            log.exception("job %s: unexpected failure", job.id)
            await self._failed(job, branch, True, f"unexpected failure ({type(exc).__name__})", began)
            return
        self.metrics.delivered(job.pipeline, job.branch, "done", time.perf_counter() - began)
        self._record(job, "done", time.perf_counter() - began, None)
        await self.store.complete(job)

    async def _failed(self, job, branch, retryable, detail, began, retry_after=None):
        """Dead-letter or retry the job; one log line either way (``detail`` is the step's
        client-safe text: never a body or a credential)."""
        attempt = job.attempt + 1
        age = self.clock() - job.created_at
        facts = dict(pipeline=job.pipeline, version=job.version, branch=job.branch, job=job.id,
                     delivery=job.delivery, attempt=attempt, error=detail)
        if not retryable or branch.retry.gives_up(attempt, age):
            why = f"{branch.retry.why_dead(attempt, age)}: {detail}" if retryable else detail
            self.metrics.delivered(job.pipeline, job.branch, "dead", time.perf_counter() - began)
            self._record(job, "dead", time.perf_counter() - began, why)
            log.warning("job %s dead after %d attempt(s): %s", job.id, attempt, why,
                        extra=fields(**facts, outcome="dead", reason=why))
            await self.store.dead(job, why)
            return
        delay = branch.retry.next_delay(attempt, self.rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, branch.retry.max_s))
        due = self.clock() + delay
        self.metrics.delivered(job.pipeline, job.branch, "retry", time.perf_counter() - began)
        self._record(job, "retry", time.perf_counter() - began, detail)
        log.warning("job %s attempt %d failed: %s; next try at %s (in %.1f s)", job.id, attempt, detail,
                    iso_time(due), delay, extra=fields(**facts, outcome="retry", next_try_at=iso_time(due)))
        await self.store.retry(job, due, detail)

    async def _dead_now(self, job, reason: str) -> None:
        """Dead-letter a job that cannot run at all (recorded as an attempt without a call)."""
        self._record(job, "dead", 0.0, reason)
        await self.store.dead(job, reason)

    def _watched(self, job):
        """The outbound client of one attempt: its calls kept for the run history."""
        if self.history is None or job.pipeline not in self.recorded:
            return self.outbound
        calls = self._calls[job.id] = []
        return Watched(self.outbound, calls, "")

    def _record(self, job, outcome: str, seconds: float, error) -> None:
        """The attempt in the run history, with the status of its last call (None: no answer)."""
        history = self.recorded.get(job.pipeline)
        if self.history is not None and history is not None:
            calls = self._calls.pop(job.id, None)
            self.history.attempt(job, history, outcome, calls[-1][4] if calls else None, seconds, error)

    async def stop(self, timeout: float) -> None:
        """Stop leasing, let running attempts finish (bounded), release leases."""
        self._stopping = True
        self.wake.set()
        if self.running:
            await asyncio.wait(set(self.running), timeout=timeout)
        for task in list(self.running):
            task.cancel()
        try:
            await self.store.release(self.consumer)
        except StoreUnavailable as exc:
            log.warning("releasing leases failed (%s); they expire after %.0f s", exc, self.visibility_s)
        except Exception:
            log.exception("releasing leases failed; they expire after %.0f s", self.visibility_s)
