"""Operations on the delivery store, shared by the CLI (``hookline
deliveries``/``hookline dlq``) and the admin HTTP endpoints.

Every operation is ``async (store, **args) -> (found: bool, value)`` where
value is JSON-like; the CLI prints it, the HTTP side serialises it.
"""
from __future__ import annotations

import orjson


def job_view(job, payload=False) -> dict:
    """A job as operators see it (the payload only on request)."""
    out = {"id": job.id, "delivery": job.delivery, "pipeline": job.pipeline, "branch": job.branch,
           "state": job.state, "attempt": job.attempt, "created_at": job.created_at,
           "due_at": job.due_at, "last_error": job.last_error}
    if payload:
        out["payload"] = orjson.loads(job.payload)
    return out


async def show(store, ident: str):
    """A job by id, or the jobs of a delivery by delivery id."""
    job = await store.get(ident)
    if job is not None:
        return True, job_view(job, payload=True)
    jobs = await store.find(ident)
    return bool(jobs), {"delivery": ident, "jobs": [job_view(j) for j in jobs]}


async def list_jobs(store, state=None, limit=100):
    return True, [job_view(j) for j in await store.list(state, limit)]


async def replay(store, ident: str):
    done = await store.replay(ident)
    return done, {"replayed": 1 if done else 0}


async def replay_all(store):
    return True, {"replayed": await store.replay_all()}


async def purge(store):
    return True, {"purged": await store.purge_dead()}


def line(job: dict) -> str:
    """One greppable line per job for the CLI."""
    error = job["last_error"].replace("\n", " ")[:120]
    return (f"{job['id']}\t{job['state']}\t{job['pipeline']}/{job['branch']}\t"
            f"attempt={job['attempt']}\tdelivery={job['delivery']}\t{error}")
