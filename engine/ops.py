"""What an operator's tools read: health probes and the Prometheus exposition.

    GET <admin prefix>/health/live    200 while the process answers (no token)
    GET <admin prefix>/health/ready   200 when pipelines are loaded, the store answers and the
                                      server is not draining after SIGTERM; else 503 (no token)
    GET <admin prefix>/metrics        the Prometheus text format (admin token as Bearer)

With ``serve --metrics-port`` the same three paths are also served, without a
token, on a port of their own (:func:`metrics_app`).
"""
from __future__ import annotations

import asyncio
import logging
import time

from dsl.runtime import dumps_json

from . import metrics
from .queue import StoreUnavailable

log = logging.getLogger("hookline")
PING_TIMEOUT_S = 2.0
OPEN = ("/health/live", "/health/ready")    # answered without the admin token
_JSON = "application/json"


class State:
    """What the probes and the exposition read from one HTTP worker."""

    def __init__(self, pipelines: int, store=None, counters=metrics.OFF):
        self.pipelines, self.store, self.counters = pipelines, store, counters
        self.metrics_on = counters is not metrics.OFF
        self.draining = False
        self.reloader = None        # engine.reload.Reloader of this worker (its failed count)


async def answer(state: State, path: str):
    """``(status, body bytes, content type)`` for an operations path, or None when
    ``path`` is not one (then the admin JSON endpoints answer)."""
    if path == "/health/live":
        return 200, dumps_json({"status": "live"}), _JSON
    if path == "/health/ready":
        status, checks = await ready(state)
        return status, dumps_json({"status": "ready" if status == 200 else "not ready", "checks": checks}), _JSON
    if path == "/metrics" and state.metrics_on:
        return 200, await exposition(state), metrics.CONTENT_TYPE
    return None


async def ready(state: State):
    """``(200 or 503, {check: "ok" or why not})``."""
    checks = {"pipelines": "ok" if state.pipelines else "none loaded",
              "draining": "draining after SIGTERM" if state.draining else "ok"}
    if state.store is not None:
        checks["store"] = await _ping(state.store)
    return (200 if all(v == "ok" for v in checks.values()) else 503), checks


async def _ping(store) -> str:
    try:
        await asyncio.wait_for(store.ping(), PING_TIMEOUT_S)
    except (StoreUnavailable, asyncio.TimeoutError):
        return "unreachable"
    except Exception:
        log.exception("readiness: the store check failed")
        return "unreachable"
    return "ok"


async def exposition(state: State) -> bytes:
    """Every process's metrics, plus the gauges read now: pipelines loaded, and the store's
    jobs by state and the age of its oldest pending job (left out when the store does not
    answer: a missing series, not a wrong zero)."""
    state.counters.flush()          # this process's last counts; the others' are at most FLUSH_S old
    gauges = {"hookline_pipelines_loaded": ("Pipelines this server runs", [({}, state.pipelines)])}
    if state.reloader is not None:
        gauges["hookline_failed_reloads"] = ("Reloads (SIGHUP, --reload) refused for errors since the start",
                                             [({}, state.reloader.failed)])
    if state.store is not None:
        try:
            counts, oldest = await asyncio.wait_for(state.store.stats(), PING_TIMEOUT_S)
        except (StoreUnavailable, asyncio.TimeoutError):
            pass
        except Exception:
            log.exception("metrics: reading the store's job counts failed")
        else:
            gauges["hookline_jobs"] = ("Async jobs in the store, by state",
                                       [({"state": s}, n) for s, n in counts.items()])
            age = 0.0 if oldest is None else max(0.0, time.time() - oldest)
            gauges["hookline_oldest_pending_job_age_seconds"] = (
                "Age of the oldest job waiting for delivery (0 when none waits)", [({}, age)])
    return metrics.exposition(gauges)


def metrics_app(state: State):
    """The ``--metrics-port`` server: the operations paths, no token."""
    from tornado import web

    class Handler(web.RequestHandler):
        async def get(self):
            found = await answer(state, self.request.path)
            if found is None:
                raise web.HTTPError(404)
            status, body, ctype = found
            self.set_status(status)
            self.set_header("Content-Type", ctype)
            self.set_header("Cache-Control", "no-store")
            self.finish(body)

    return web.Application([(r"/.*", Handler)], log_function=lambda handler: None)
