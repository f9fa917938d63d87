"""``hookline test [PATHS] [--junit FILE]``: run pipeline test files offline.

Every test builds a fresh server (``engine.server.App``) for its pipeline,
with its mocks as the outbound transport and a ``memory:`` store on a
simulated clock, sends its request through the server's request path
(:mod:`.inprocess`), delivers the async jobs when it asks for ``deliveries``,
and compares (:mod:`.expect`). Output: a dot (or ``F``) per test, then each
failure with one line per differing field, then ``N passed, M failed``.

Exit codes: 0 all passed, 1 a test failed (or its pipeline does not
compile), 2 a broken test file (``file:line:col: code: message``) or no test
file found.
"""
from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

import dsl
from dsl.errors import Diagnostic
from dsl.signing import sign

from ..queue.memory import MemoryStore
from .deliver import Clock, deliver_all
from .expect import Outcome, differences, parsed_body, show
from .inprocess import App, send, settle
from .load import Case, Suite, load_suite
from .mocks import Mocks

_NAME = re.compile(r"""^pipeline:\s*["']?([a-z0-9][a-z0-9-]*)""", re.M)
_MEDIA = {".json": "application/json", ".xml": "application/xml", ".csv": "text/csv", ".txt": "text/plain"}
LOGGER = "hookline"


class Broken(Exception):
    """Mistakes in a test file (or in how it was asked for), each naming its place."""

    def __init__(self, *diagnostics: Diagnostic):
        super().__init__("\n".join(map(str, diagnostics)))
        self.diagnostics = diagnostics


@dataclass(slots=True)
class Result:
    case: Case
    failures: list = field(default_factory=list)
    seconds: float = 0.0
    notes: list = field(default_factory=list)     # the response and the log lines, shown on failure

    @property
    def passed(self) -> bool:
        return not self.failures


def find_test_files(paths) -> list[Path]:
    """Test files named by ``paths``: directories searched for ``*.test.yaml``; a test
    file as it is; a pipeline file stands for its sibling ``NAME.test.yaml``."""
    out = []
    for p in map(Path, paths):
        if p.is_dir() or dsl.is_test_file(p):
            out += dsl.yaml_files([p], tests=True)
        else:
            out.append(p.with_name(p.stem + ".test" + p.suffix))
    return out


class Pipelines:
    """Pipeline files by name, per directory, read once."""

    def __init__(self):
        self.by_dir: dict = {}

    def find(self, directory: Path, name: str) -> Path | None:
        if directory not in self.by_dir:
            names = {}
            for file in dsl.pipeline_files([directory]):
                m = _NAME.search(_text(file))
                if m:
                    names.setdefault(m.group(1), file)
            self.by_dir[directory] = names
        return self.by_dir[directory].get(name)

    def known(self, directory: Path) -> str:
        return ", ".join(sorted(self.by_dir.get(directory, {}))) or "none"


def _text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def compile_for(suite: Suite, pipelines: Pipelines):
    """The suite's pipeline, compiled with the suite's env: ``(pipeline, diagnostics)``;
    raises Broken when no pipeline has that name."""
    directory = Path(suite.file).parent
    file = pipelines.find(directory, suite.pipeline)
    if file is None:
        raise Broken(suite.doc.diag(("pipeline",), "unknown-pipeline",
                                    f"no pipeline named '{suite.pipeline}' in {directory}/ "
                                    f"(found: {pipelines.known(directory)})"))
    return dsl.compile_text(_text(file), str(file), env=suite.env)


def request_parts(pipeline, case: Case, at=()) -> tuple[str, str, dict, bytes]:
    """``(method, target, headers, body)`` of a case's request, signed when it asks."""
    spec = case.request
    method = spec.get("method") or (next(iter(pipeline.methods)) if len(pipeline.methods) == 1 else "POST")
    target = spec.get("path")
    if target is None and "{" in pipeline.path:
        raise Broken(Diagnostic(case.file, case.line, case.col, "bad-test",
                                f"request.path is needed: the pipeline's path {pipeline.path} has parameters"))
    target = target or pipeline.path
    headers = dict(spec.get("headers", {}))
    body = _body(spec, case, headers)
    if "sign" in spec:
        if pipeline.verifier is None:
            raise Broken(Diagnostic(case.file, case.line, case.col, "bad-test",
                                    f"request.sign: pipeline '{pipeline.name}' has no receive.verify"))
        lower = {k.lower(): v for k, v in headers.items()}
        headers.update(sign(pipeline.verifier, spec["sign"]["secret"], method, target, lower, body, time.time()))
    return method, target, headers, body


def _body(spec, case, headers) -> bytes:
    named = {k.lower() for k in headers}
    if "raw" in spec:
        return spec["raw"].encode()
    if "body_file" in spec:
        media = _MEDIA.get(Path(spec["body_file"]).suffix.lower())
        if media and "content-type" not in named:
            headers["Content-Type"] = media
        return case.body_file
    if "body" in spec:
        if "content-type" not in named:
            headers["Content-Type"] = "application/json"
        return orjson.dumps(spec["body"])
    return b""


async def run_case(pipeline, case: Case) -> Result:
    """One test: a fresh server, its request, its deliveries, the comparison."""
    started = time.perf_counter()
    clock = Clock()
    store, transport = MemoryStore(clock=clock), Mocks(case.mocks)
    app = App([pipeline], outbound=transport, store=store)
    with captured_log() as lines:
        outcome = await exchange(app, pipeline, *request_parts(pipeline, case))
        if "deliveries" in case.expect:
            outcome.states, outcome.errors = await deliver_all(store, [pipeline], transport, clock)
        outcome.calls, outcome.unmatched = transport.calls, transport.unmatched
    result = Result(case, differences(case.expect, outcome), time.perf_counter() - started)
    result.notes = [f"response: {outcome.status} {show(outcome.body)}", *(f"log: {ln}" for ln in lines)]
    return result


async def exchange(app, pipeline, method, target, headers, body) -> Outcome:
    """Send one request and wait for the server's own tasks; the jobs it enqueued."""
    response = await send(app, method, target, headers, body)
    await settle(app)
    order = {b.id: i for i, b in enumerate(pipeline.branches)}
    jobs = sorted(await app.store.list(limit=1_000_000), key=lambda j: order.get(j.branch, len(order)))
    return Outcome(response.status, response.headers, parsed_body(response.headers, response.body),
                   jobs=[j.branch for j in jobs])


def _line(record) -> str:
    """A log record's message, and the exception it carries in one line (the traceback
    stays out of test output)."""
    exc = record.exc_info[1] if record.exc_info else None
    return record.getMessage() + (f" ({type(exc).__name__}: {exc})" if exc is not None else "")


class captured_log:
    """The server's log lines while a test runs (shown when it fails), kept off the terminal."""

    def __enter__(self):
        self.lines, self.logger = [], logging.getLogger(LOGGER)
        self.handler = logging.Handler(logging.INFO)
        self.handler.emit = lambda record: self.lines.append(_line(record))
        self.saved = self.logger.propagate, self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        return self.lines

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.propagate, level = self.saved
        self.logger.setLevel(level)


@dataclass(slots=True)
class Run:
    """The outcome of ``hookline test``: results, and the diagnostics of broken files."""

    results: list = field(default_factory=list)
    broken: list = field(default_factory=list)          # Diagnostic
    files: dict = field(default_factory=dict)           # test file -> [Result]
    found: int = 0                                      # test files found

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)

    @property
    def exit_code(self) -> int:
        return 2 if self.broken or not self.found else 1 if self.failed else 0


def run_paths(paths, out=sys.stdout) -> Run:
    """Load every test file, then run them, printing dots and failures to ``out``."""
    run, suites = Run(), []
    for file in find_test_files(paths):
        run.found += 1
        if not file.exists():
            run.broken.append(Diagnostic(str(file), 1, 1, "not-found", "no such test file"))
            continue
        suite, problems = load_suite(file)
        run.broken += problems
        if suite is not None:
            suites.append(suite)
    for d in run.broken:
        print(d, file=out)
    asyncio.run(_run_suites(suites, run, out))
    _report(run, out)
    return run


async def _run_suites(suites, run: Run, out) -> None:
    pipelines = Pipelines()
    for suite in suites:
        results = run.files.setdefault(suite.file, [])
        try:
            pipeline, problems = compile_for(suite, pipelines)
        except Broken as exc:
            run.broken += exc.diagnostics
            print(exc, file=out)
            continue
        for case in suite.cases:
            if pipeline is None:
                result = Result(case, [f"the pipeline does not compile: {d}" for d in problems
                                       if d.severity == "error"])
            else:
                try:
                    result = await run_case(pipeline, case)
                except Broken as exc:
                    run.broken += exc.diagnostics
                    print(f"\n{exc}", file=out)
                    continue
            results.append(result)
            run.results.append(result)
            out.write("." if result.passed else "F")
            out.flush()


def _report(run: Run, out) -> None:
    if run.results:
        out.write("\n")
    for result in (r for r in run.results if not r.passed):
        print(f"\nFAIL {result.case.where}: {result.case.name}", file=out)
        for line in result.failures + result.notes:
            print(f"  {line}", file=out)
    if run.broken:
        print(f"\n{len({d.file for d in run.broken})} broken test file(s)", file=out)
    elif not run.found:
        print("no test files found (NAME.test.yaml beside the pipelines)", file=out)
    if run.failed:
        out.write("\n")
    print(f"{len(run.results) - run.failed} passed, {run.failed} failed", file=out)
