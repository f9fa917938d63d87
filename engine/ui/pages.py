"""The admin UI's pages: each ``async page(seen, *path groups) -> Response`` reads the store
through engine/admin.py (jobs) and engine/history.py (runs), then renders one template."""
from __future__ import annotations

import asyncio
import datetime
import hmac
import json
import logging
import re
from urllib.parse import unquote

from dsl.compiler import compile_text
from dsl.errors import Diagnostic
from dsl.verify import signature_headers

from .. import admin, history
from ..history import _mask as mask     # what a run record masks, the job page masks alike
from ..queue import STATES
from .web import Response

log = logging.getLogger("hookline")
ALWAYS_REDACTED = frozenset({"authorization", "cookie", "proxy-authorization"}) | signature_headers()
RUNS_SHOWN = 50
JOBS_SHOWN = 200
NOTICES = {"replayed": "The job was replayed.",
           "replayed-all": "{n} dead job(s) replayed.",
           "purged": "{n} dead job(s) purged.",
           "purge-unconfirmed": "Nothing purged: tick the box to confirm.",
           "logged-out": "You are logged out."}
_NEXT = re.compile(r"/ui/[A-Za-z0-9_\-./?=&%+]*")


# --- login ------------------------------------------------------------------------------------

async def stylesheet(seen):
    return Response(200, seen.console.css, [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")],
                    content_type="text/css; charset=utf-8")


async def login_form(seen, status=200, wrong=False, after=None):
    after = _next(seen.request.arg("next") if after is None else after)
    return seen.console.render(seen, "login.html", status, wrong=wrong, next=after)


async def login(seen):
    ui, req = seen.console, seen.request
    form = req.form()
    given = form.get("token", "")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), ui.token.encode()):
        log.warning("admin ui: login refused for %s: not the admin token", req.client)
        return await login_form(seen, 401, wrong=True, after=form.get("next", ""))
    cookie, _ = ui.sessions.issue()
    log.info("admin ui: login from %s", req.client)
    return ui.redirect(ui.prefix + _next(form.get("next", "")),
                       [ui.cookie(cookie, req.secure, ui.sessions.max_age_s)])


async def logout(seen):
    ui = seen.console
    return ui.redirect(ui.base + "/login?done=logged-out", [ui.cookie("", seen.request.secure, 0)])


def _next(value: str) -> str:
    """Where to go after the login: a path below /ui/ only (no other host, no other prefix)."""
    return value if _NEXT.fullmatch(value or "") and "//" not in value and ".." not in value else "/ui/"


# --- pipelines --------------------------------------------------------------------------------

async def pipelines(seen):
    ui = seen.console
    stats = await history.stats(ui.store, 3600)
    rows = [{"name": p.name, "path": p.path, "methods": sorted(p.methods), "description": p.description,
             "branches": len(p.branches), "recorded": p.history is not None, "stats": stats.get(p.name)}
            for p in ui.pipelines()]
    return ui.render(seen, "pipelines.html", rows=sorted(rows, key=lambda r: r["name"]), nav="pipelines")


async def pipeline(seen, name):
    ui = seen.console
    name = unquote(name)
    found = next((p for p in ui.pipelines() if p.name == name), None)
    if found is None:
        return ui.error(seen, 404, "Not Found", "No pipeline of that name is served.")
    source, diagnostics = await asyncio.get_running_loop().run_in_executor(None, _source, found.file)
    runs = await history.list_runs(ui.store, pipeline=name, limit=RUNS_SHOWN)
    marked = {d.line for d in diagnostics}
    lines = [{"n": n, "text": text, "marked": n in marked} for n, text in enumerate(source.splitlines(), 1)]
    return ui.render(seen, "pipeline.html", p=found, lines=lines, diagnostics=diagnostics, runs=runs,
                     nav="pipelines")


def _source(file: str):
    """The pipeline file's text now and what ``hookline lint`` says of it (warnings included)."""
    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        return "", [Diagnostic(file, 1, 1, "unreadable", str(getattr(exc, "strerror", None) or exc))]
    _, diagnostics = compile_text(text, file, require_env=False)
    return text, sorted(diagnostics)


# --- runs -------------------------------------------------------------------------------------

async def run(seen, run_id):
    ui = seen.console
    found = await history.get_run(ui.store, run_id)
    if found is None:
        return ui.error(seen, 404, "Not Found", "No run with that id is in the history (it may have aged out).")
    return ui.render(seen, "run.html", run=found, nav="runs")


async def search(seen):
    """Runs matching ``q`` (run id, delivery id or a header value), and jobs with that id or delivery id."""
    ui, q = seen.console, seen.request.arg("q").strip()[:200]
    runs = await history.list_runs(ui.store, limit=RUNS_SHOWN, q=q or None)
    jobs = await _jobs_matching(ui.store, q) if q else None
    return ui.render(seen, "search.html", q=q, runs=runs, jobs=jobs, nav="runs")


async def _jobs_matching(store, q):
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", q):
        return []
    job = await store.get(q)
    return [admin.job_view(job)] if job is not None else [admin.job_view(j) for j in await store.find(q)]


# --- deliveries and dead letters --------------------------------------------------------------

async def deliveries(seen):
    ui, state = seen.console, seen.request.arg("state")
    if state and state not in STATES:
        return ui.error(seen, 400, "Bad Request", f"state must be one of {', '.join(STATES)}.")
    _, jobs = await admin.list_jobs(ui.store, state or None, JOBS_SHOWN)
    return ui.render(seen, "jobs.html", jobs=jobs, state=state, states=STATES, dead_view=False,
                     nav="deliveries")


async def dlq(seen):
    ui = seen.console
    _, jobs = await admin.list_jobs(ui.store, "dead", JOBS_SHOWN)
    return ui.render(seen, "jobs.html", jobs=jobs, state="dead", states=STATES, dead_view=True, nav="dlq")


async def delivery(seen, ident):
    ui = seen.console
    found, value = await admin.show(ui.store, ident)
    if not found:
        return ui.error(seen, 404, "Not Found", "No job or delivery has that id.")
    jobs = value["jobs"] if "jobs" in value else [value]
    if "payload" in value:
        pipeline = next((p for p in ui.pipelines() if p.name == value["pipeline"]), None)
        value["payload"] = redacted(value["payload"], pipeline)
    return ui.render(seen, "delivery.html", ident=ident, jobs=jobs, one="jobs" not in value, nav="deliveries")


def redacted(payload, pipeline):
    """A job's stored context as the run history would record it: the values of the headers it
    redacts shown as ``[redacted]``, and those values and the pipeline's ``${env:}``/``${file:}``
    values masked wherever else they appear. (A pipeline not served now, or with its history
    off: Authorization, Cookie and the signature headers.)

        >>> redacted({"request": {"headers": {"authorization": "Bearer s3cret-token", "x-id": "1"}},
        ...           "steps": {"copy": "token s3cret-token"}}, None)["steps"]
        {'copy': 'token [redacted]'}
    """
    rules = pipeline.history if pipeline is not None else None
    names = rules.redact if rules is not None else ALWAYS_REDACTED
    secrets = list(rules.secrets) if rules is not None else []
    headers = payload.get("request", {}).get("headers") if isinstance(payload, dict) else None
    if isinstance(headers, dict):
        for name in names & headers.keys():
            values = headers[name] if isinstance(headers[name], list) else [headers[name]]
            secrets += [part for v in values if isinstance(v, str) for part in (v, v.partition(" ")[2]) if part]
            headers[name] = history.REDACTED
    return mask(payload, sorted(set(secrets), key=len, reverse=True))


async def replay(seen, job_id):
    ui = seen.console
    found, why = await admin.replay(ui.store, job_id)
    if not found:
        return ui.error(seen, 409, "Not replayed", "Only a dead job can be replayed: " + why.partition(": ")[2])
    return ui.redirect(f"{ui.base}/deliveries/{job_id}?done=replayed")


async def replay_all(seen):
    ui = seen.console
    _, value = await admin.replay_all(ui.store)
    return ui.redirect(f"{ui.base}/dlq?done=replayed-all&n={value['replayed']}")


async def purge(seen):
    ui = seen.console
    if seen.request.form().get("confirm") != "yes":
        return ui.redirect(f"{ui.base}/dlq?done=purge-unconfirmed")
    _, value = await admin.purge(ui.store)
    return ui.redirect(f"{ui.base}/dlq?done=purged&n={value['purged']}")


# --- template filters -------------------------------------------------------------------------

def _when(value) -> str:
    """Epoch seconds as UTC ``2026-12-04 13:12:05``; anything else as its text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _pretty(value) -> str:
    """A value as indented JSON (text stays text); the template escapes it."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _ms(value) -> str:
    return "" if value is None else f"{value:.1f} ms" if isinstance(value, float) else f"{value} ms"


FILTERS = {"when": _when, "pretty": _pretty, "ms": _ms}
