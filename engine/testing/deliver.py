"""Async branches delivered to completion at once: the server's own
:class:`engine.delivery.Deliverer` runs every job committed to a ``memory:``
store, and when only retries are left the simulated clock jumps to the next
one that is due, so a branch that retries for a day ends in milliseconds.

    clock = Clock()
    store = MemoryStore(clock=clock)
    ...                                  # requests commit jobs to the store
    outcomes = await deliver_all(store, [pipeline], mocks, clock)   # {"erp": ["done"]}
"""
from __future__ import annotations

import time

from ..delivery import Deliverer

MAX_ROUNDS = 10_000     # leases; a branch that still has work after this many is reported as such


class Clock:
    """Seconds since 1970 that move only when told: ``clock()``, ``clock.at = t``."""

    def __init__(self, start: float | None = None):
        self.at = time.time() if start is None else start

    def __call__(self) -> float:
        return self.at


async def deliver_all(store, pipelines, transport, clock: Clock) -> dict:
    """Deliver every job in ``store`` until each is done or dead; returns
    ``{branch: [state of each job, ...]}`` and ``{branch: [last error, ...]}``.
    Backoff takes the longest delay its jitter allows (deterministic)."""
    deliverer = Deliverer(store, pipelines, transport, rng=lambda low, high: high, clock=clock)
    for _ in range(MAX_ROUNDS):
        jobs = await store.lease("hookline-test", 100, 60.0)
        if not jobs:
            waiting = await store.list("pending", limit=1_000_000)
            if not waiting:
                break
            clock.at = max(clock.at, min(j.due_at for j in waiting))
            continue
        for job in jobs:
            await deliverer.attempt(job)
    states, errors = {}, {}
    for job in await store.list(limit=1_000_000):
        states.setdefault(job.branch, []).append(job.state)
        errors.setdefault(job.branch, []).append(job.last_error)
    return states, errors
