"""``hookline fuzz [PATHS] --max-examples N --seconds S``: requests that pass a
pipeline's ``validate`` schemas but break it.

From each validated part (``params``, ``query``, ``headers``, ``body``) a
Hypothesis strategy is built with hypothesis-jsonschema; each generated
request goes through the server's request path in process (:mod:`.inprocess`)
with every call answered by the echo (:class:`.mocks.Echo`). A request that
ends in a 5xx or in ``422 expression-failed`` is a finding (a ``422
validation`` is not: the schema refused it, as it should). Hypothesis shrinks
it to a minimal request, which is printed as a test case for the pipeline's
test file — the mocks it needs included — so that once the pipeline is fixed
the test keeps it fixed. After a finding the search starts again, the kinds
already found no longer counting, until nothing new turns up or the budget
is spent.

The harness leaves out what is not the subject: ``receive.verify``, ``auth``,
``allow_ips``, ``rate_limit`` and dedupe are switched off on the copy that
is fuzzed (a generated request is neither signed nor repeated).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import orjson
import yaml

import dsl
from dsl.loader import load_yaml
from dsl.schemas import load_schema_and_source

from ..queue.memory import MemoryStore
from .expect import parsed_body, show
from .inprocess import App, send, settle
from .load import load_suite
from .mocks import Echo
from .runner import captured_log

PARTS = ("params", "query", "headers", "body")
MAX_FINDINGS = 10           # distinct kinds of failure reported per pipeline
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_RESERVED = {"host", "content-length", "content-type", "content-encoding", "transfer-encoding", "connection"}
_TEXT = re.compile(r"^[\x20-\x7e]*$")


class Found(Exception):
    """A generated request broke the pipeline: what was sent, what came back, the calls it
    made and the server's log lines (the reason, which the client is not told)."""

    def __init__(self, kind: str, request: dict, calls: list, log: list):
        super().__init__(kind)
        self.kind, self.request, self.calls, self.log = kind, request, calls, log


@dataclasses.dataclass
class Budget:
    max_examples: int
    seconds: float
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def spent(self) -> bool:
        return time.monotonic() - self.started > self.seconds


def harness(pipeline):
    """The pipeline as fuzzed: no signature, access checks or dedupe in the way."""
    return dataclasses.replace(pipeline, verifier=None, auth=None, allow_ips=None, rate_limit=None, dedupe=None)


def schemas_of(file: str) -> dict:
    """The pipeline file's ``validate`` schemas, ``$ref`` files read, by part."""
    doc, _ = load_yaml(Path(file).read_text(encoding="utf-8"), file)
    validate = doc.data.get("validate", {}) if doc is not None and isinstance(doc.data, dict) else {}
    out = {}
    for part in PARTS:
        if part in validate:
            schema, _, problem = load_schema_and_source(validate[part], Path(file).parent)
            if problem is None:
                out[part] = schema
    return out


def takes_json(pipeline) -> bool:
    accepted = pipeline.content_types
    return not accepted or "*/*" in accepted or "application/json" in accepted


def strategy(pipeline, schemas):
    """Requests as ``{method, params, query, headers, body}`` whose parts fit the schemas."""
    from hypothesis import strategies as st
    from hypothesis_jsonschema import from_schema
    parts = {"method": st.sampled_from(sorted(pipeline.methods))}
    for part in PARTS:
        if part in schemas:
            parts[part] = from_schema(schemas[part])
    for name in pipeline.param_names:
        if "params" not in schemas:
            parts["params"] = st.fixed_dictionaries({n: st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
                                                     for n in pipeline.param_names})
            break
    return st.fixed_dictionaries(parts)


def as_request(pipeline, drawn: dict):
    """``(method, target, headers, body)`` from a drawn request, or None when HTTP cannot
    carry it (a header value with a line break, an object in a query string)."""
    params = drawn.get("params") or {}
    path = pipeline.path
    for name in pipeline.param_names:
        text = _text(params.get(name, "x"))
        if text is None or text == "":
            return None
        path = path.replace("{" + name + "}", quote(text, safe=""))
    pairs = []
    for name, value in (drawn.get("query") or {}).items():
        for item in value if isinstance(value, list) else [value]:
            text = _text(item)
            if text is None:
                return None
            pairs.append((name, text))
    target = path + ("?" + urlencode(pairs) if pairs else "")
    headers = {}
    for name, value in (drawn.get("headers") or {}).items():
        text = _text(value)
        if not _TOKEN.match(name) or name.lower() in _RESERVED or text is None or not _TEXT.match(text):
            return None
        headers[name] = text
    body = b""
    if "body" in drawn:
        body = _json(drawn["body"])
        headers["Content-Type"] = "application/json"
    return drawn["method"], target, headers, body


def _text(value):
    """A scalar as a URL or header carries it; None for an object or a list."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float, str)):
        return str(value)
    return None


def _json(value) -> bytes:
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value).encode()


async def attempt(pipeline, request) -> tuple[str | None, list]:
    """Send one request; the kind of failure (None: it was handled) and the calls made."""
    echo = Echo()
    app = App([pipeline], outbound=echo, store=MemoryStore())
    response = await send(app, *request)
    await settle(app)
    return _failure(response), echo.calls


def _failure(response) -> str | None:
    """``"422 expression-failed: <detail>"`` (a problem document), ``"503: <body>"`` (the
    pipeline's own answer), or None when the response is not a finding."""
    body = parsed_body(response.headers, response.body)
    problem = isinstance(body, dict) and isinstance(body.get("type"), str) and "detail" in body
    kind = body["type"].rsplit("/", 1)[-1] if problem else ""
    if response.status >= 500 or (response.status == 422 and kind == "expression-failed"):
        return f"{response.status} {kind}: {body['detail']}" if problem else f"{response.status}: {show(body)}"
    return None


def _kind(failure: str) -> str:
    """What makes two findings the same: the status and the problem, not a body's values."""
    return failure if not failure[3:4] == ":" else failure[:3]


def search(pipeline, schemas, budget: Budget, known: set, loop) -> Found | None:
    """One Hypothesis search for a failure not in ``known``, shrunk; None when none turned up."""
    from hypothesis import HealthCheck, Phase, given, settings

    state = {"found": False}

    @settings(max_examples=budget.max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=[Phase.generate, Phase.shrink])
    @given(strategy(pipeline, schemas))
    def probe(drawn):
        if budget.spent and not state["found"]:
            return
        request = as_request(pipeline, drawn)
        if request is None:
            return
        with captured_log() as log:
            kind, calls = loop.run_until_complete(attempt(pipeline, request))
        if kind is not None and _kind(kind) not in known:
            state["found"] = True
            raise Found(kind, {"drawn": drawn, "request": request}, calls, log)

    try:
        probe()
    except Found as found:
        return found
    return None


def fuzz_pipeline(pipeline, budget: Budget, loop) -> list[Found]:
    """Every distinct failure found, each shrunk, at most MAX_FINDINGS."""
    target, schemas, findings = harness(pipeline), schemas_of(pipeline.file), []
    known: set = set()
    while len(findings) < MAX_FINDINGS and not budget.spent:
        found = search(target, schemas, budget, known, loop)
        if found is None:
            break
        findings.append(found)
        known.add(_kind(found.kind))
    return findings


def success_status(pipeline) -> int:
    """What the pipeline answers when all goes well (its respond, else 202 or 204)."""
    if pipeline.respond is not None:
        return pipeline.respond.status
    return 202 if pipeline.branches else 204


def as_test_case(pipeline, found: Found, number: int) -> str:
    """The finding as an entry of a test file's ``tests:`` list (YAML), with a comment
    saying what the pipeline answered; its mocks answer as the echo did."""
    method, target, headers, body = found.request["request"]
    request = {"method": method, "path": target}
    headers = {k: v for k, v in headers.items() if k != "Content-Type"}
    if headers:
        request["headers"] = headers
    if "body" in found.request["drawn"]:
        request["body"] = found.request["drawn"]["body"]
    case = {"name": f"fuzz finding {number}", "request": request}
    if found.calls:
        case["mocks"] = [{"match": {"method": c["method"], "url": c["url"]}, "respond": {"body": c}}
                         for c in _unique_calls(found.calls)]
    case["expect"] = {"status": success_status(pipeline)}
    text = yaml.safe_dump([case], sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    indented = "\n".join("  " + line for line in text.splitlines())
    said = "".join(f"# log: {line}\n" for line in found.log)
    return f"# {found.kind}\n{said}{indented}\n"


def _unique_calls(calls) -> list:
    seen, out = set(), []
    for call in calls:
        key = (call["method"], call["url"])
        if key not in seen:
            seen.add(key)
            out.append(call)
    return out


def env_for(file: Path, extra: dict) -> dict:
    """The environment a pipeline is fuzzed with: the process's, its test file's ``env``,
    then ``--env``."""
    env = dict(os.environ)
    sibling = file.with_name(file.stem + ".test" + file.suffix)
    if sibling.exists():
        suite, _ = load_suite(sibling)
        if suite is not None:
            env.update(suite.env)
    return {**env, **extra}


def fuzz_command(paths, max_examples: int, seconds: float, extra_env: dict, out) -> int:
    """0: nothing found; 1: a finding, or a pipeline that does not compile; 2: no pipeline."""
    files = dsl.pipeline_files(paths)
    missing = [p for p in map(Path, paths) if not p.exists()]
    if missing or not files:
        print(f"hookline fuzz: {'no such file: ' + str(missing[0]) if missing else 'no pipeline found'}", file=out)
        return 2
    code, loop = 0, asyncio.new_event_loop()
    try:
        for file in files:
            code = max(code, _fuzz_file(file, Budget(max_examples, seconds), extra_env, loop, out))
    finally:
        loop.close()
    return code


def _fuzz_file(file: Path, budget: Budget, extra_env: dict, loop, out) -> int:
    pipeline, problems = dsl.compile_text(file.read_text(encoding="utf-8"), str(file),
                                          env=env_for(file, extra_env), require_env=False)
    errors = [d for d in problems if d.severity == "error"]
    for d in errors:
        print(d, file=out)
    if pipeline is None:
        return 1
    if not takes_json(pipeline) and "body" in schemas_of(str(file)):
        print(f"{file}: skipped: its body is not JSON ({', '.join(sorted(pipeline.content_types))})", file=out)
        return 0
    findings = fuzz_pipeline(pipeline, budget, loop)
    if not findings:
        print(f"{file}: nothing found", file=out)
        return 0
    print(f"{file}: {len(findings)} request(s) the schema accepts break the pipeline\n", file=out)
    for number, found in enumerate(findings, 1):
        print(as_test_case(pipeline, found, number), file=out)
    return 1
