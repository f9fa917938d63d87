"""Operations on the delivery store, shared by the CLI (``hookline
deliveries``/``hookline dlq``) and the admin HTTP endpoints.

Every operation is ``async (store, **args) -> (found: bool, value)``: when
found, value is JSON-like (the CLI prints it, the HTTP side serialises it);
when not, value is the sentence saying why (standard error, or a 404's detail).
"""
from __future__ import annotations

import hmac
import re

from dsl import strict_json

from . import history
from .queue import STATES


def job_view(job, payload=False) -> dict:
    """A job as operators see it (the payload only on request)."""
    out = {"id": job.id, "delivery": job.delivery, "pipeline": job.pipeline, "branch": job.branch,
           "version": job.version, "state": job.state, "attempt": job.attempt, "created_at": job.created_at,
           "due_at": job.due_at, "last_error": job.last_error}
    if payload:
        out["payload"] = _payload(job.payload)
    return out


def _payload(raw: bytes):
    """The stored context, integers exact; its text when it cannot be read."""
    try:
        return strict_json.loads(raw, "the stored job", strict_json.MAX_STORED_DEPTH)
    except strict_json.JSONRefused:
        return raw.decode("utf-8", "replace")


async def show(store, ident: str):
    """A job by id, or the jobs of a delivery by delivery id."""
    job = await store.get(ident)
    if job is not None:
        return True, job_view(job, payload=True)
    jobs = await store.find(ident)
    if not jobs:
        return False, f"{ident}: no such job or delivery"
    return True, {"delivery": ident, "jobs": [job_view(j) for j in jobs]}


async def show_dead(store, ident: str):
    """``show`` for the dead-letter store: a dead job by id, or the dead jobs of a delivery;
    a job in any other state is not there."""
    job = await store.get(ident)
    if job is not None:
        if job.state != "dead":
            return False, _not_dead(ident, job.state)
        return True, job_view(job, payload=True)
    dead = [j for j in await store.find(ident) if j.state == "dead"]
    if not dead:
        return False, f"{ident}: no such dead job or delivery with dead jobs"
    return True, {"delivery": ident, "jobs": [job_view(j) for j in dead]}


def _not_dead(ident: str, state: str) -> str:
    return f"{ident}: not in the dead-letter store (the job is {state}; see deliveries show)"


async def list_jobs(store, state=None, limit=100):
    return True, [job_view(j) for j in await store.list(state, limit)]


async def replay(store, ident: str):
    if await store.replay(ident):
        return True, {"replayed": 1}
    job = await store.get(ident)
    return False, f"{ident}: no such job" if job is None else _not_dead(ident, job.state)


async def replay_all(store):
    return True, {"replayed": await store.replay_all()}


async def purge(store):
    return True, {"purged": await store.purge_dead()}


async def list_runs(store, pipeline=None, limit=50, q=None):
    """The newest runs' summaries (engine/history.py)."""
    return True, await history.list_runs(store, pipeline, limit, q)


async def show_run(store, run_id: str):
    record = await history.get_run(store, run_id)
    if record is None:
        return False, f"{run_id}: no such run (not recorded, or older than the pipeline's history keeps)"
    return True, record


def line(job: dict) -> str:
    """One greppable line per job for the CLI."""
    error = job["last_error"].replace("\n", " ")[:120]
    return (f"{job['id']}\t{job['state']}\t{job['pipeline']}/{job['branch']}\t"
            f"attempt={job['attempt']}\tdelivery={job['delivery']}\tversion={job['version'] or '-'}\t{error}")


# --- the admin HTTP endpoints (serve --admin-prefix, HOOKLINE_ADMIN_TOKEN) ----------------

_DELIVERY = re.compile(r"^/(?:deliveries|dlq)/([A-Za-z0-9_-]{1,64})$")
_REPLAY = re.compile(r"^/dlq/([A-Za-z0-9_-]{1,64})/replay$")
_RUN = re.compile(r"^/runs/([A-Za-z0-9_-]{1,64})$")
MAX_LIMIT = 1000


class _BadQuery(ValueError):
    """A query parameter the endpoint cannot use: a 400 naming it."""


async def handle_http(store, token: str, method: str, path: str, query: dict, authorization: str | None,
                      openapi=None):
    """One admin request → ``(status, JSON-like body)``; the caller writes it. ``openapi`` is the
    served pipelines' OpenAPI document (``GET /openapi.json``)."""
    if not authorized(authorization, token):
        return 401, {"title": "Unauthorized", "detail": "send Authorization: Bearer <HOOKLINE_ADMIN_TOKEN>"}
    if method == "GET" and path == "/openapi.json" and openapi is not None:
        return 200, openapi
    route = _route(method, path)
    if route is None:
        return 404, {"title": "Not Found", "detail": "no such admin endpoint"}
    try:
        found, value = await route(store, query)
    except _BadQuery as exc:
        return 400, {"title": "Bad Request", "detail": str(exc)}
    return (200, value) if found else (404, {"title": "Not Found", "detail": value})


def authorized(authorization: str | None, token: str) -> bool:
    """``Bearer <token>``, the scheme in any case (RFC 9110), the token compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def _route(method, path):
    if method == "GET" and path == "/deliveries":
        return lambda store, q: list_jobs(store, _state(q), _limit(q))
    if method == "GET" and path == "/dlq":
        return lambda store, q: list_jobs(store, "dead", _limit(q))
    if method == "GET" and path == "/runs":
        return lambda store, q: list_runs(store, _text(q, "pipeline"), _limit(q, "50"), _text(q, "q"))
    if method == "POST" and path == "/dlq/replay":
        return lambda store, q: replay_all(store)
    if method == "DELETE" and path == "/dlq":
        return lambda store, q: purge(store)
    m = _DELIVERY.match(path)
    if method == "GET" and m:
        look = show_dead if path.startswith("/dlq/") else show
        return lambda store, q: look(store, m.group(1))
    m = _REPLAY.match(path)
    if method == "POST" and m:
        return lambda store, q: replay(store, m.group(1))
    m = _RUN.match(path)
    if method == "GET" and m:
        return lambda store, q: show_run(store, m.group(1))
    return None


def _limit(query, default="100") -> int:
    value = query.get("limit", default)
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9
            and 1 <= int(value) <= MAX_LIMIT):
        raise _BadQuery(f"limit must be one whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _text(query, name):
    """A text parameter given once, or None when absent or empty."""
    value = query.get(name)
    if value is not None and not isinstance(value, str):
        raise _BadQuery(f"give {name} once")
    return value or None


def _state(query):
    value = query.get("state")
    if value is not None and value not in STATES:
        raise _BadQuery(f"state must be one of {', '.join(STATES)}")
    return value
