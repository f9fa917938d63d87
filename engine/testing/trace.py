"""``hookline run``: one request through a pipeline offline, printing each step's
output and time — a debugger for a pipeline.

The request goes through the server's request path as in ``hookline test``
(:mod:`.inprocess`); the pipeline's steps (and its async branches' steps) are
wrapped in :class:`Traced`, which times each one and notes what it added to
``steps`` (a ``route`` branch's inner steps included). Async jobs are then
delivered at once (:mod:`.deliver`) so that their steps are shown too.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import dsl
from dsl.errors import Diagnostic
from dsl.runtime import StepFailed

from ..queue.memory import MemoryStore
from .deliver import Clock, deliver_all
from .expect import parsed_body
from .inprocess import App, send, settle
from .load import Case, load_suite
from .mocks import Echo, Mocks
from .runner import Broken, Pipelines, compile_for, request_parts

INDENT = "    "
ONE_LINE = 100


class Traced:
    """A step that records, when it runs, its time and the outputs it added."""

    __slots__ = ("step", "id", "is_async", "where", "log")

    def __init__(self, step, where: str, log: list):
        self.step, self.id, self.is_async, self.where, self.log = step, step.id, step.is_async, where, log

    def run(self, ctx):
        before, started = set(ctx.steps), time.perf_counter()
        try:
            self.step.run(ctx)
        finally:
            self._note(ctx, before, started)

    async def arun(self, ctx):
        before, started = set(ctx.steps), time.perf_counter()
        try:
            await self.step.arun(ctx)
        finally:
            self._note(ctx, before, started)

    def _note(self, ctx, before, started):
        exc = sys.exc_info()[1]
        added = {k: v for k, v in ctx.steps.items() if k not in before or k == self.id}
        self.log.append((self.where, type(self.step).__name__.lower(), self.id,
                         time.perf_counter() - started, added, exc))


def traced(pipeline, log: list):
    """``pipeline`` with every top-level step, and every async branch's, wrapped."""
    branches = tuple(dataclasses.replace(b, steps=tuple(Traced(s, f"async {b.id}", log) for s in b.steps))
                     for b in pipeline.branches)
    return dataclasses.replace(pipeline, steps=tuple(Traced(s, "", log) for s in pipeline.steps),
                               branches=branches)


async def run_one(pipeline, transport, method, target, headers, body, out) -> int:
    """Send the request, deliver its jobs, print what happened; the response status."""
    log: list = []
    pipeline = traced(pipeline, log)
    clock = Clock()
    store = MemoryStore(clock=clock)
    app = App([pipeline], outbound=transport, store=store)
    print(f"request: {method} {target} ({len(body)} bytes)", file=out)
    started = time.perf_counter()
    response = await send(app, method, target, headers, body)
    elapsed = time.perf_counter() - started
    await settle(app)
    _print_steps([e for e in log if not e[0]], out)
    print(f"response: {response.status} in {elapsed * 1000:.2f} ms", file=out)
    for name, value in response.headers.get_all():
        if name not in ("Date", "Content-Length"):
            print(f"{INDENT}{name}: {value}", file=out)
    print(_pretty(parsed_body(response.headers, response.body)), file=out)
    jobs = await store.list(limit=1_000_000)
    if jobs:
        print(f"async: {len(jobs)} job(s) enqueued ({', '.join(j.branch for j in jobs)}), delivered now:", file=out)
        await deliver_all(store, [pipeline], transport, clock)
        _print_steps([e for e in log if e[0]], out)
        for job in await store.list(limit=1_000_000):
            why = f": {job.last_error}" if job.state == "dead" else ""
            print(f"async {job.branch}: {job.state} after {job.attempt} attempt(s){why}", file=out)
    return response.status


def _print_steps(entries, out) -> None:
    for where, kind, step_id, seconds, added, exc in entries:
        head = f"{where}: " if where else ""
        print(f"{head}step {step_id} ({kind}) {seconds * 1000:.2f} ms", file=out)
        for name, value in added.items():
            label = "" if name == step_id and len(added) == 1 else f"steps.{name} = "
            print(_pretty(value, label), file=out)
        if exc is not None:
            reason = exc.detail if isinstance(exc, StepFailed) else getattr(exc, "detail", str(exc))
            print(f"{INDENT}failed: {reason}", file=out)


def _pretty(value, label: str = "") -> str:
    """JSON on one line when it fits in ONE_LINE characters, else indented."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > ONE_LINE:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return "\n".join(INDENT + (label if i == 0 else "") + line for i, line in enumerate(text.splitlines()))


def run_command(args, out) -> int:
    """``hookline run``: 0 when the request ran (whatever its status), 1 when the pipeline
    does not compile, 2 for a broken test file or a bad option."""
    try:
        pipeline, problems, transport, case = _prepare(args)
        for d in problems:
            print(d, file=out)
        if pipeline is None:
            return 1
        request = request_parts(pipeline, case)
    except Broken as exc:
        print(exc, file=out)
        return 2
    asyncio.run(run_one(pipeline, transport, *request, out))
    for call in transport.unmatched:
        print(f"unmatched call: {call}: no mock matches it", file=out)
    return 0


def _prepare(args):
    """``(pipeline or None, diagnostics, transport, case)`` for a test file's test (with
    its mocks) or for a pipeline file and the request options (with the echo)."""
    path = Path(args.path)
    if dsl.is_test_file(path):
        suite, problems = load_suite(path)
        if suite is None:
            raise Broken(*problems)
        pipeline, problems = compile_for(suite, Pipelines())
        case = _chosen(suite, args.test)
        return pipeline, problems, Mocks(case.mocks), case
    env = {**os.environ, **dict(_assignment(e) for e in args.env)}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Broken(Diagnostic(str(path), 1, 1, "not-found", getattr(exc, "strerror", None) or str(exc))) from None
    pipeline, problems = dsl.compile_text(text, str(path), env=env)
    return pipeline, problems, Echo(), _case_from_options(args, path)


def _chosen(suite, name):
    if name is None:
        return suite.cases[0]
    for case in suite.cases:
        if case.name == name:
            return case
    names = "; ".join(c.name for c in suite.cases)
    raise Broken(suite.doc.diag(("tests",), "bad-test", f"no test named {name!r} (there are: {names})", key=True))


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise Broken(Diagnostic("--env", 1, 1, "bad-option", f"--env {text!r}: write NAME=VALUE"))
    return name, value


def _case_from_options(args, path) -> Case:
    headers = dict(_header(h) for h in args.header)
    request = {"headers": headers}
    if args.method:
        request["method"] = args.method.upper()
    if args.path_:
        request["path"] = args.path_
    body_file = None
    if args.body is not None:
        request["raw"] = args.body
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    elif args.body_file:
        request["body_file"] = args.body_file
        try:
            body_file = Path(args.body_file).read_bytes()
        except OSError as exc:
            raise Broken(Diagnostic(args.body_file, 1, 1, "not-found", exc.strerror or str(exc))) from None
    return Case("", str(path), 1, 1, request, (), {}, body_file)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise Broken(Diagnostic("--header", 1, 1, "bad-option", f"--header {text!r}: write 'Name: value'"))
    return name.strip(), value.strip()
