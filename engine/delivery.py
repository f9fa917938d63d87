"""Background delivery of async branches: lease persisted jobs, run their
steps, complete, retry with backoff or dead-letter.

At-least-once: a job is completed only after its steps succeeded; a crash
between the two means the job is leased again once its lease expires, so
destinations get an ``Idempotency-Key`` (``<job id>.<step id>``) to dedupe.
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid

import orjson

from dsl.runtime import Context, DeliveryFailed, StepFailed, arun_steps

log = logging.getLogger("hookline.delivery")


class Deliverer:
    """One per process; ``run()`` until ``stop()``."""

    def __init__(self, store, pipelines, outbound, *, concurrency=64, visibility_s=60.0,
                 poll_s=0.5, max_backlog=100_000, rng=random.uniform):
        self.store, self.outbound = store, outbound
        self.branches = {(p.name, b.id): b for p in pipelines for b in p.branches}
        self.consumer = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.concurrency, self.visibility_s, self.poll_s = concurrency, visibility_s, poll_s
        self.max_backlog, self.backlog, self.rng = max_backlog, 0, rng
        self.running: set = set()
        self.wake = asyncio.Event()
        self._stopping = False
        self._last_backlog = 0.0

    @property
    def full(self) -> bool:
        """Backpressure: refuse new async work while the backlog is over its bound."""
        return self.backlog >= self.max_backlog

    async def run(self) -> None:
        while not self._stopping:
            await self._refresh_backlog()
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
            return await self.store.lease(self.consumer, limit, self.visibility_s)
        except Exception:
            log.exception("lease failed; retrying")
            await asyncio.sleep(1)
            return []

    async def _refresh_backlog(self):
        now = time.monotonic()
        if now - self._last_backlog >= 1.0:
            self._last_backlog = now
            try:
                self.backlog = await self.store.backlog()
            except Exception:
                log.exception("backlog check failed")

    async def _sleep(self):
        self.wake.clear()
        try:
            await asyncio.wait_for(self.wake.wait(), self.poll_s)
        except asyncio.TimeoutError:
            pass

    def _finished(self, task):
        self.running.discard(task)
        self.wake.set()

    async def attempt(self, job) -> None:
        branch = self.branches.get((job.pipeline, job.branch))
        if branch is None:
            await self.store.dead(job, f"pipeline '{job.pipeline}' has no async branch '{job.branch}' any more")
            return
        ctx = Context(orjson.loads(job.payload), http=self.outbound, job=job.id)
        try:
            await arun_steps(branch.steps, ctx)
        except DeliveryFailed as exc:
            await self._failed(job, branch, exc.retryable, exc.detail, exc.retry_after)
            return
        except StepFailed as exc:
            await self._failed(job, branch, False, exc.detail)
            return
        except Exception as exc:
            log.exception("job %s: unexpected failure", job.id)
            await self._failed(job, branch, True, f"unexpected failure ({type(exc).__name__})")
            return
        await self.store.complete(job)

    async def _failed(self, job, branch, retryable, detail, retry_after=None):
        attempt = job.attempt + 1
        age = time.time() - job.created_at
        if not retryable:
            log.warning("job %s dead: %s", job.id, detail)
            await self.store.dead(job, detail)
        elif branch.retry.gives_up(attempt, age):
            log.warning("job %s dead after %d attempts: %s", job.id, attempt, detail)
            await self.store.dead(job, f"gave up after {attempt} attempts: {detail}")
        else:
            delay = branch.retry.next_delay(attempt, self.rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, branch.retry.max_s))
            await self.store.retry(job, time.time() + delay, detail)

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
        except Exception:
            log.exception("releasing leases failed; they expire after %.0f s", self.visibility_s)
