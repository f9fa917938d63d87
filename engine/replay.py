"""``hookline dlq replay``: dead jobs delivered again by the pipeline version that accepted
them (the default), by today's version (``--current``: the job is pinned to it), or only
shown (``--dry-run``: what each version would send, and the difference).

A dry run runs the branch's steps as a delivery would, but with an outbound client that
sends nothing: each call is written down (method, URL, headers, body) and answered
``200 {}``. Header values that are credentials (``Authorization``, cookies, signatures,
API keys, tokens and every value a ``${env:}``/``${file:}`` secret went into) show as
``[redacted]``.
"""
from __future__ import annotations

import difflib

import orjson

from dsl import strict_json
from dsl.reads import missing
from dsl.runtime import Context, DeliveryFailed, StepFailed, arun_steps
from dsl.sources import compile_source

from . import tracing
from .durable import KEPT

REDACTED = "[redacted]"
_SECRET_NAMES = ("authorization", "cookie", "token", "secret", "key", "signature", "password", "auth")
_NOT_SECRET = ("idempotency-key",)
MAX_LISTED = 1000        # dead jobs one --all looks at


async def dead_jobs(store, ident: str | None):
    """``(jobs, None)``: the dead job ``ident`` (or every dead job), or ``(None, why not)``."""
    if ident is None:
        return await store.list("dead", MAX_LISTED), None
    job = await store.get(ident)
    if job is None:
        return None, f"{ident}: no such job"
    if job.state != "dead":
        return None, f"{ident}: not in the dead-letter store (the job is {job.state}; see deliveries show)"
    return [job], None


async def replay_current(store, ident: str | None, pipelines):
    """Replay with today's version of each job's pipeline; a job whose pipeline is not
    served any more stays dead (named in ``kept``)."""
    jobs, why = await dead_jobs(store, ident)
    if jobs is None:
        return False, why
    current = {p.name: p for p in pipelines}
    replayed, kept = [], []
    for job in jobs:
        pipeline = current.get(job.pipeline)
        if pipeline is None or job.branch not in {b.id for b in pipeline.branches}:
            kept.append(f"{job.id}: pipeline '{job.pipeline}' has no async branch '{job.branch}' today")
            continue
        if await store.replay(job.id, pin=(pipeline.version, pipeline.source)):
            replayed.append({"id": job.id, "from": job.version, "to": pipeline.version})
    if ident is not None and kept:
        return False, kept[0]
    return True, {"replayed": len(replayed), "jobs": replayed, "not_replayed": kept}


async def dry_run(store, ident: str | None, pipelines) -> tuple[bool, str]:
    """The text ``--dry-run`` prints: per job, each version's requests and their diff."""
    jobs, why = await dead_jobs(store, ident)
    if jobs is None:
        return False, why
    current = {p.name: p for p in pipelines}
    parts = [await _job_text(store, job, current.get(job.pipeline)) for job in jobs]
    return True, "\n".join(parts) + f"{len(jobs)} dead job(s); nothing was sent or changed\n"


async def _job_text(store, job, today) -> str:
    accepting = await _accepting(store, job, today)
    current = (today, None) if today is not None else (None, f"pipeline '{job.pipeline}' is not served today")
    old = await _sends(job, *accepting)
    new = await _sends(job, *current)
    versions = (job.version or "(stored before versions)", today.version if today is not None else "(none)")
    lines = [f"job {job.id} ({job.pipeline}/{job.branch}, delivery {job.delivery}): {job.last_error}",
             f"=== accepting version {versions[0]}", old, f"=== current version {versions[1]}", new]
    if versions[0] == versions[1]:
        lines.append("=== diff: none (the same version)")
    else:
        diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                    f"accepting {versions[0]}", f"current {versions[1]}")
        lines.append("=== diff\n" + ("".join(diff) or "(both send the same)\n"))
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


async def _accepting(store, job, today):
    """``(pipeline, None)`` of the version that accepted ``job``, or ``(None, why not)``."""
    if today is not None and (not job.version or job.version == today.version):
        return today, None
    if not job.version:
        return None, f"pipeline '{job.pipeline}' is not served today, and the job predates versions"
    source = await store.version_source(job.version)
    if source is None:
        return None, f"version {job.version} is not stored any more"
    pipeline, problems = compile_source(source)
    if pipeline is None:
        return None, "it does not compile any more: " + "; ".join(str(d) for d in problems if d.severity == "error")
    return pipeline, None


async def _sends(job, pipeline, why) -> str:
    """What ``pipeline``'s branch sends for ``job``, as text."""
    if pipeline is None:
        return f"(cannot tell: {why})"
    branch = next((b for b in pipeline.branches if b.id == job.branch), None)
    if branch is None:
        return f"(this version has no async branch '{job.branch}')"
    try:
        data = strict_json.loads(job.payload, "the stored job", strict_json.MAX_STORED_DEPTH)
    except strict_json.JSONRefused as exc:
        return f"(the stored job cannot be read: {exc.detail})"
    gap = missing(branch.needs, data.pop(KEPT)) if KEPT in data else None
    if gap is not None:
        return f"(would be dead-lettered: this version reads {'.'.join(gap)}, which the job did not keep)"
    data.pop(tracing.KEY, None)
    calls = Recording(secrets(pipeline))
    try:
        await arun_steps(branch.steps, Context(data, http=calls, job=job.id))
    except (DeliveryFailed, StepFailed) as exc:
        calls.sent.append(f"(then fails: {exc.detail})\n")
    return "\n".join(calls.sent) if calls.sent else "(sends nothing)\n"


def secrets(pipeline) -> tuple:
    """The values substituted from ``${env:}``/``${file:}`` (kept for the run history's masking)."""
    history = pipeline.history
    return history.secrets if history is not None else ()


class Recording:
    """An outbound client that sends nothing: each request is written down as text and
    answered ``200 {}``."""

    def __init__(self, secret_values=()):
        self.sent: list[str] = []
        self.secret_values = secret_values

    async def request(self, method, url, headers, body, timeout_s, max_bytes, redirects=0):
        items = headers.items() if isinstance(headers, dict) else headers
        lines = [f"{method} {url}"] + [f"{name}: {self._shown(name, value)}" for name, value in items]
        self.sent.append("\n".join(lines) + "\n\n" + _body_text(body))
        return 200, {"content-type": "application/json"}, b"{}"

    def _shown(self, name: str, value: str) -> str:
        lowered = name.lower()
        if lowered not in _NOT_SECRET and any(word in lowered for word in _SECRET_NAMES):
            return REDACTED
        if any(secret and secret in value for secret in self.secret_values):
            return REDACTED
        return value

    @staticmethod
    def parse(content_type, raw, kind=None):
        return orjson.loads(raw)


def _body_text(body) -> str:
    """A JSON body indented (one line a field, for the diff); others as text."""
    if body is None:
        return "(no body)\n"
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode() + "\n"
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace") + ("" if body.endswith(b"\n") else "\n")
