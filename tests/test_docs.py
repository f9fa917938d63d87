"""The docs are tested like code.

What is checked, over ``docs/*.md`` and ``docs/steps/*.md``:

* every ```yaml block that begins with ``pipeline:`` (or a
  ``# yaml-language-server`` modeline) compiles with ``dsl.compile_text`` and
  no diagnostic at all; with ``<!-- expect: code, code -->`` on the line
  before, it must produce exactly those diagnostic codes instead;
* a ```yaml block with a top-level ``tests:`` is a pipeline test file, run
  with ``hookline test`` by tests/test_hookline_test.py;
* every other ```yaml block is marked ``<!-- fragment -->`` (a single step, a
  key or two) and is skipped on purpose;
* every diagnostic code the compiler can emit (found in the source of
  ``dsl/`` and ``engine/cli.py``) has a heading in docs/errors.md, and every
  heading there is a real code; the same for the problem types of ``engine/``;
* every key of ``dsl.pipeline_schema()`` is in a key table of docs/dsl.md or
  docs/steps/*.md;
* the HTTP examples run: a ```http block starting with ``METHOD /path`` is
  sent to ``hookline serve`` (serving the page's pipelines) and the ```http
  block after it, starting with ``HTTP/1.1``, is the expected response (its
  status, the headers it lists, its JSON body; a ``run_id`` matches any run
  id). A ```http block after ``<!-- destination -->`` is what a destination
  app receives and answers: the request part (method, path, listed headers,
  JSON body, or any other body as exact text) is checked, the ``HTTP/1.1`` part is sent back;
* the shell examples run: every ``curl … localhost:8080`` line of a ```sh block runs
  against ``hookline serve pipelines`` and the demo destination (what `make run`
  starts), and prints the answer shown in the block after it, if any, or the status of
  its ``# → NNN`` comment, else a 2xx (tests/shell_examples.py says how).

Blocks are compiled in a temporary directory holding a copy of
``docs/examples/schemas`` and ``docs/examples/tables``, so
``{$ref: schemas/x.json}`` and ``file: tables/x.csv`` work as they do next to
docs/examples/*.yaml. ``${env:NAME}`` gets the fake destination's
base URL when NAME ends in ``_URL``, else ``test-<name>``; a block expected
to produce ``missing-env`` gets no environment.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

import dsl
from dsl import jmes_functions
from dsl.functions import bound_registry
from dsl.jmes import ExpressionError, compile_expression
from dsl.jmes_compile import compile_tree
from dsl.jmes_functions import InvalidValueError, NotANumberError
from dsl.jmes_parser import parse
from jmespath.exceptions import JMESPathTypeError
import shell_examples
from conftest import demo_env, start_hookline

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted([*DOCS.glob("*.md"), *(DOCS / "steps").glob("*.md")])
KEY_PAGES = [DOCS / "dsl.md", *sorted((DOCS / "steps").glob("*.md"))]
NEEDS_PIPELINE = ["dsl.md", "errors.md", "steps/transform.md", "steps/call.md", "steps/route.md"]
ENV_REF = re.compile(r"\$\{env:([^}]*)\}")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(fragment|destination|expect:([^>]*?))\s*-->\s*$")
REQUEST_LINE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/\S*)(?: HTTP/1\.1)?$")
STATUS_LINE = re.compile(r"^HTTP/1\.1 (\d{3})\b")
RUN_ID = re.compile(r"^[0-9a-f]{16}$")


# --- reading the pages -----------------------------------------------------------

@dataclass(frozen=True)
class Block:
    page: str          # relative to docs/
    line: int          # 1-based line of the opening fence
    lang: str
    text: str
    marker: str        # "", "fragment", "destination" or "expect"
    expect: tuple = ()

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_tests(self) -> bool:
        """A pipeline test file (top-level ``tests:``): run by tests/test_hookline_test.py."""
        return any(ln.startswith("tests:") for ln in self.text.splitlines())

    @property
    def is_pipeline(self) -> bool:
        if self.is_tests:
            return False
        lines = [ln for ln in self.text.splitlines() if ln.strip()]
        if lines and lines[0].startswith("# yaml-language-server:"):
            return True
        first = next((ln for ln in lines if not ln.startswith("#")), "")
        return first.startswith("pipeline:")


def read_blocks(page: Path) -> list[Block]:
    blocks, lines = [], page.read_text().splitlines()
    name = page.relative_to(DOCS).as_posix()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(2):
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2), i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        marker, expect = _marker(lines, start)
        blocks.append(Block(name, start + 1, lang, "\n".join(body) + "\n", marker, expect))
        i += 1
    return blocks


def _marker(lines, fence_index):
    j = fence_index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    m = MARKER.match(lines[j]) if j >= 0 else None
    if not m:
        return "", ()
    if m.group(2) is not None:
        return "expect", tuple(sorted(c.strip() for c in m.group(2).split(",") if c.strip()))
    return m.group(1), ()


ALL = [b for page in PAGES for b in read_blocks(page)]
YAML = [b for b in ALL if b.lang in ("yaml", "yml")]
PIPELINES = [b for b in YAML if b.marker != "fragment" and b.is_pipeline]
FRAGMENTS = [b for b in YAML if b.marker == "fragment"]
HTTP = [b for b in ALL if b.lang == "http"]


def env_for(text: str, base_url: str = "http://127.0.0.1:9") -> dict:
    """Values for every ``${env:NAME}`` in ``text``."""
    return {name: base_url if name.endswith("_URL") else f"test-{name.lower()}"
            for name in ENV_REF.findall(text)}


def copy_example_files(tmp: Path) -> None:
    """What pipelines on the pages refer to: schemas/ and tables/ of docs/examples."""
    for folder in ("schemas", "tables"):
        shutil.copytree(EXAMPLES / folder, tmp / folder, dirs_exist_ok=True)


def compile_block(block: Block, tmp: Path):
    copy_example_files(tmp)
    file = tmp / "pipeline.yaml"
    file.write_text(block.text)
    env = {} if "missing-env" in block.expect else env_for(block.text)
    return dsl.compile_text(block.text, str(file), env=env)


# --- pipelines compile ---------------------------------------------------------------

@pytest.mark.parametrize("block", [b for b in PIPELINES if b.marker != "expect"], ids=lambda b: b.id)
def test_pipeline_compiles_without_diagnostics(block, tmp_path):
    pipeline, problems = compile_block(block, tmp_path)
    assert [str(d) for d in problems] == []
    assert pipeline is not None


@pytest.mark.parametrize("block", [b for b in PIPELINES if b.marker == "expect"], ids=lambda b: b.id)
def test_pipeline_gives_the_expected_diagnostics(block, tmp_path):
    _, problems = compile_block(block, tmp_path)
    got = sorted(d.code for d in set(problems))
    assert got == sorted(block.expect), "\n".join(map(str, sorted(set(problems))))


def test_every_yaml_block_is_a_pipeline_or_marked_as_a_fragment():
    unmarked = [b.id for b in YAML if b.marker != "fragment" and not b.is_pipeline and not b.is_tests]
    assert unmarked == [], "mark these with <!-- fragment --> or make them whole pipelines"
    whole = [b.id for b in FRAGMENTS if b.is_pipeline]
    assert whole == [], "these are whole pipelines: remove <!-- fragment --> so they are compiled"


def test_markers_precede_the_blocks_they_mark():
    markers = sum(len(re.findall(r"<!--\s*(?:fragment|expect:[^>]*|destination)\s*-->", p.read_text()))
                  for p in PAGES)
    marked = sum(1 for b in ALL if b.marker)
    assert marked == markers, "a marker is not on the line before a fenced block"
    assert len(FRAGMENTS) >= 1
    assert all(b.lang == "http" for b in ALL if b.marker == "destination")


@pytest.mark.parametrize("page", NEEDS_PIPELINE)
def test_page_shows_at_least_one_whole_pipeline(page):
    assert (DOCS / page).exists(), f"docs/{page} is missing"
    assert any(b.page == page and b.marker != "expect" for b in PIPELINES)


def test_example_files_are_shown_verbatim_in_the_docs():
    shown = {b.text for b in PIPELINES}
    for file in sorted(EXAMPLES.glob("*.yaml")):
        assert file.read_text() in shown, f"{file.relative_to(ROOT)} differs from its block in the docs"


# --- every code is documented ----------------------------------------------------------

_CODE = re.compile(r"^[a-z]+(?:-[a-z]+)*$")
_CODE_ARG = {"Diagnostic": 3, "diag": 1, "error": 1, "ExpressionError": 0, "note": 0, "ArgError": 2}
_PRINTED_CODE = re.compile(r":\d+:\d+: ([a-z]+(?:-[a-z]+)*): ")


def _str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def diagnostic_codes_in_source() -> set[str]:
    """Codes given to Diagnostic/diag/error/ExpressionError/ArgError, the default of a
    parameter named ``code``, returned as ``(code, message)`` pairs, or printed as
    ``file:1:1: code: ...``."""
    codes = set()
    for file in [*sorted((ROOT / "dsl").rglob("*.py")), ROOT / "engine" / "cli.py"]:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                pos = _CODE_ARG.get(name)
                if pos is not None and len(node.args) > pos and _str(node.args[pos]):
                    codes.add(_str(node.args[pos]))
            elif isinstance(node, ast.arguments):
                named = zip(reversed(node.args), reversed(node.defaults))
                codes.update(_str(d) for a, d in named if a.arg == "code" and _str(d))
            elif isinstance(node, ast.Tuple) and len(node.elts) == 2 and _str(node.elts[0]) \
                    and "-" in _str(node.elts[0]) and isinstance(node.elts[1], (ast.JoinedStr, ast.Name)):
                codes.add(_str(node.elts[0]))
            elif _str(node):
                codes.update(_PRINTED_CODE.findall(_str(node)))
    return {c for c in codes if _CODE.match(c)}


def runtime_modules() -> list[Path]:
    """The engine modules the server can reach: the import closure of
    ``engine/cli.py`` (imports inside functions included). A module that is
    written but not wired in sends nothing yet. (All of ``dsl/`` is reachable:
    the CLI compiles.)"""
    todo, seen = [ROOT / "engine" / "cli.py"], []
    while todo:
        file = todo.pop()
        if file in seen or not file.exists():
            continue
        seen.append(file)
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                base = file.parent / Path(*(node.module or "").split("."))
                todo += [base.with_suffix(".py"), base / "__init__.py"]
                todo += [base / f"{alias.name}.py" for alias in node.names]
    return sorted(seen)


def problem_types_in_source() -> set[str]:
    """Slugs in ``problem(status, slug, ...)`` or any ``X(status, slug, ...)``
    with a literal 4xx/5xx status, those ``_slug()`` maps a status to, and
    those assigned to a variable named ``*slug*``."""
    slugs = set()
    for file in [*runtime_modules(), *sorted((ROOT / "dsl").rglob("*.py"))]:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call) and len(node.args) > 1 and _str(node.args[1]) \
                    and _CODE.match(_str(node.args[1])) and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, int) and 400 <= node.args[0].value <= 599:
                slugs.add(_str(node.args[1]))
            elif isinstance(node, ast.FunctionDef) and node.name == "_slug":
                slugs.update(_str(n) for n in ast.walk(node) if _str(n))
            elif isinstance(node, ast.Assign) and any("slug" in getattr(t, "id", "") for t in node.targets):
                slugs.update(_str(n) for n in ast.walk(node.value) if _str(n) and _CODE.match(_str(n)))
    return slugs


def documented(section: str) -> set[str]:
    """The ``### `code` `` headings under the ``## <section>`` of docs/errors.md."""
    text = (DOCS / "errors.md").read_text()
    part = re.split(r"^## ", text, flags=re.M)
    body = next((p for p in part if p.lower().startswith(section.lower())), "")
    return set(re.findall(r"^### `([a-z-]+)`", body, flags=re.M))


def test_the_source_scan_finds_the_known_codes():
    found = diagnostic_codes_in_source()
    assert {"bad-yaml", "unknown-key", "bad-arity", "unknown-function", "missing-env",
            "duplicate-route", "unreadable", "not-found"} <= found
    assert {"not-found", "validation", "bad-gateway", "internal"} <= problem_types_in_source()


def test_every_diagnostic_code_is_documented():
    found, docs = diagnostic_codes_in_source(), documented("Diagnostics")
    assert sorted(found - docs) == [], "add a ### `code` section to docs/errors.md"
    assert sorted(docs - found) == [], "docs/errors.md documents codes the code never emits"


def test_every_problem_type_is_documented():
    found, docs = problem_types_in_source(), documented("Problem")
    assert sorted(found - docs) == [], "add a ### `type` section to docs/errors.md"
    assert sorted(docs - found) == [], "docs/errors.md documents problem types engine/ never sends"


# --- every key is documented ------------------------------------------------------------

def schema_keys() -> set[str]:
    """Every property name of the DSL schema, through $ref and definitions."""
    schema, keys, seen = dsl.pipeline_schema(), set(), set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if "$ref" in node and node["$ref"] not in seen:
                seen.add(node["$ref"])
                stack.append(schema["definitions"][node["$ref"].rsplit("/", 1)[1]])
            keys.update(node.get("properties", {}))
            stack.extend(v for k, v in node.items()
                         if k not in ("defaultSnippets", "examples", "default", "enum"))
    return keys


def table_keys(pages) -> set[str]:
    """Backticked names in the first cell of every table row (``a.b`` gives a and b)."""
    out = set()
    for page in pages:
        for line in page.read_text().splitlines():
            if line.startswith("| `"):
                for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
                    out.update(re.split(r"[.\s\[\]]+", token))
    return out


def test_every_schema_key_is_in_a_key_table():
    keys = schema_keys()
    assert {"pipeline", "max_body_bytes", "timeout_s", "otherwise", "when"} <= keys
    assert sorted(keys - table_keys(KEY_PAGES)) == []


# --- HTTP examples -------------------------------------------------------------------------

@dataclass
class Message:
    start: str
    headers: list
    body: str


def parse_message(text: str) -> Message:
    head, _, body = text.strip("\n").partition("\n\n")
    start, *headers = head.splitlines()
    pairs = [tuple(part.strip() for part in h.split(":", 1)) for h in headers]
    return Message(start.strip(), pairs, body.strip())


def split_destination(block: Block) -> tuple[Message, Message]:
    lines = block.text.splitlines()
    at = next(i for i, ln in enumerate(lines) if STATUS_LINE.match(ln))
    return parse_message("\n".join(lines[:at])), parse_message("\n".join(lines[at:]))


def exchanges():
    """``(request block, response block)`` pairs, in page order."""
    pairs, plain = [], [b for b in HTTP if b.marker != "destination"]
    for block, after in zip(plain, plain[1:] + [None]):
        if REQUEST_LINE.match(block.text.splitlines()[0]):
            assert after is not None and after.page == block.page \
                and STATUS_LINE.match(after.text.splitlines()[0]), f"{block.id}: no response block after it"
            pairs.append((block, after))
    return pairs


EXCHANGES = exchanges()


def test_every_http_block_is_a_request_a_response_or_a_destination():
    used = {b.id for pair in EXCHANGES for b in pair} | {b.id for b in HTTP if b.marker == "destination"}
    assert sorted(b.id for b in HTTP if b.id not in used) == []
    for block in (b for b in HTTP if b.marker == "destination"):
        request, response = split_destination(block)
        assert REQUEST_LINE.match(request.start) and STATUS_LINE.match(response.start), block.id


class Destination:
    """A destination app answering what the docs' destination blocks say."""

    def __init__(self, blocks):
        self.stubs, self.mismatches = {}, []
        for block in blocks:
            request, response = split_destination(block)
            method, target = REQUEST_LINE.match(request.start).groups()
            self.stubs[(method, target)] = (block.id, request, response)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        dest = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub = dest.stubs.get((self.command, self.path)) \
                    or dest.stubs.get((self.command, self.path.partition("?")[0]))
                if stub is None:
                    dest.mismatches.append(f"no destination block for {self.command} {self.path}")
                    return self._send(404, [("Content-Type", "application/json")], b'{"error": "no stub"}')
                dest.check(stub, self.headers, raw)
                response = stub[2]
                self._send(int(STATUS_LINE.match(response.start).group(1)), response.headers,
                           response.body.encode())

            def _send(self, status, headers, body):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args):
                pass
        return Handler

    def check(self, stub, headers, raw):
        where, request, _ = stub
        for name, value in request.headers:
            if headers.get(name) != value:
                self.mismatches.append(f"{where}: header {name} was {headers.get(name)!r}, not {value!r}")
        if request.body and _body(raw.decode("utf-8", "replace")) != _body(request.body):
            self.mismatches.append(f"{where}: body was {raw.decode()}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _body(text: str):
    """A documented body: JSON compared as a value, anything else (XML, a form) as text."""
    try:
        return json.loads(text or "null")
    except ValueError:
        return text.strip()


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory):
    """``hookline serve`` over the pipelines of every page that has HTTP
    examples, calling a destination that answers as the docs say."""
    destination = Destination([b for b in HTTP if b.marker == "destination"])
    pages = {req.page for req, _ in EXCHANGES}
    served = [b for b in PIPELINES if b.page in pages and b.marker != "expect"]
    tmp = tmp_path_factory.mktemp("docs-pipelines")
    copy_example_files(tmp)
    env, durable = {}, False
    for i, block in enumerate(served):
        file = tmp / f"{i:02d}-{Path(block.page).stem}.yaml"
        file.write_text(block.text)
        env.update(env_for(block.text, destination.url))
        pipeline, _ = dsl.compile_text(block.text, str(file), env=env_for(block.text))
        durable = durable or getattr(pipeline, "durable", False)
    extra = ["--store", f"sqlite:{tmp / 'hookline.db'}"] if durable else []
    proc = start_hookline([tmp], env=env, extra=extra)
    yield proc, destination
    proc.stop()
    destination.close()


def exchange_problems(proc, destination, request_block, response_block) -> list[str]:
    """What differs between the documented response and the real one."""
    request, expected = parse_message(request_block.text), parse_message(response_block.text)
    method, target = REQUEST_LINE.match(request.start).groups()
    destination.mismatches.clear()
    got = requests.request(method, proc.url + target, headers=dict(request.headers),
                           data=request.body.encode() or None, timeout=10)
    problems = list(destination.mismatches)
    status = int(STATUS_LINE.match(expected.start).group(1))
    if got.status_code != status:
        problems.append(f"status {got.status_code}, not {status}: {got.text[:300]}")
    problems += [f"header {name}: {got.headers.get(name)!r}, not {value!r}"
                 for name, value in expected.headers if got.headers.get(name) != value]
    if not expected.body:
        return problems + ([f"body {got.text[:300]!r}, not empty"] if got.content else [])
    want, have = json.loads(expected.body), got.json() if got.content else None
    if isinstance(want, dict) and isinstance(have, dict) and "run_id" in want:
        if not RUN_ID.match(str(have.pop("run_id", ""))):
            problems.append("no run id")
        want.pop("run_id")
    return problems + ([f"body {json.dumps(have)}"] if have != want else [])


@pytest.mark.parametrize("page", sorted({req.page for req, _ in EXCHANGES}))
def test_http_examples(page, docs_server):
    """A page's requests are sent in page order: one may depend on an earlier
    one (a repeated delivery)."""
    failures = []
    for request, response in (pair for pair in EXCHANGES if pair[0].page == page):
        failures += [f"{request.id}: {p}" for p in exchange_problems(*docs_server, request, response)]
    assert failures == []


def test_counts():
    """Guard against a parser change that silently finds nothing."""
    counts = Counter(b.marker or ("pipeline" if b in PIPELINES else b.lang) for b in ALL)
    assert len(PIPELINES) >= 8 and counts["fragment"] >= 3 and len(EXCHANGES) >= 5, counts


# --- links between the pages ------------------------------------------------------------------

OWN_PAGES = [DOCS / p for p in ("dsl.md", "errors.md", "cli.md", "architecture.md", "operations.md",
                                "expressions.md")] \
    + sorted((DOCS / "steps").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors for ``page``."""
    out, seen = set(), Counter()
    for line in page.read_text().splitlines():
        m = re.match(r"^#{1,6} (.*)$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return out


@pytest.mark.parametrize("page", OWN_PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert broken == []


# --- the example diagnostic lines in errors.md are real -------------------------------------

_HEAD = "pipeline: orders\nreceive:\n  path: /hooks/orders\n"
_STEP = _HEAD + "steps:\n  - id: order\n    transform: "
_CALL = _HEAD + "steps:\n  - id: stock\n    call:\n      url: "
EXAMPLE_SOURCES = {
    "bad-yaml": _STEP + "`5`\n",
    "duplicate-key": _HEAD + "receive:\n  path: /x\n",
    "legacy-yaml": _HEAD + "validate:\n  body:\n    properties:\n      test: {const: yes}\n",
    "empty-file": "# nothing yet\n",
    "too-large": "a: &a [*a]\n",
    "unknown-key": "pipeline: orders\nrecieve:\n  path: /hooks/orders\n",
    "missing-key": "pipeline: orders\n",
    "wrong-type": _HEAD + "  max_body_bytes: 1MB\n",
    "bad-value": _HEAD + "  methods: [HEAD]\n",
    "bad-step": _HEAD + "steps:\n  - id: order\n    description: no kind\n",
    "bad-branch": _HEAD + "steps:\n  - id: check\n    route:\n      - otherwise: {respond: {status: 200}}\n"
                          "      - when: \"request.body.test\"\n        respond: {status: 202}\n",
    "bad-expression": _STEP + "\"request.body.total > 100\"\n",
    "unknown-function": _STEP + "\"sum_by(request.body.lines, &qty)\"\n",
    "bad-arity": _STEP + "\"length(request.body.lines, `1`)\"\n",
    "unknown-variable": _STEP + "\"let $tax = request.body.tax in request.body.net * (`1` + $rate)\"\n",
    "bad-argument": _STEP + "\"pad_left(request.body.id, `8`, '00')\"\n",
    "bare-literal": _HEAD + "steps:\n  - id: check\n    route:\n      - when: \"request.body.test == true\"\n"
                            "        respond: {status: 204}\n",
    "step-not-run": _STEP + "\"steps.stock.body\"\n  - id: stock\n    transform: \"request.body\"\n",
    "unknown-step": _STEP + "\"steps.ordr.id\"\n",
    "dashed-name": _STEP + "request.headers.x-github-event\n",
    "quoted-text": _STEP + "'duplicate'\n",
    "unknown-field": _HEAD.replace("receive:", "validate:\n  body: {properties: {customer: {properties: "
                                                  "{email: {}}, additionalProperties: false}}}\nreceive:")
    + "steps:\n  - id: order\n    transform: request.body.customer.emial\n",
    "unknown-name": _STEP + "reqest.body\n",
    "type-mismatch": _HEAD.replace("receive:", "validate:\n  body: {properties: {status: {type: string}}}\nreceive:")
    + "steps:\n  - id: order\n    transform: request.body.status == `409`\n",
    "duplicate-step": _STEP + "\"request.body\"\n  - id: order\n    transform: \"request.body.id\"\n",
    "duplicate-branch": _HEAD + "async:\n  - id: crm\n    steps: [{id: a, transform: '@'}]\n"
                                "  - id: crm\n    steps: [{id: b, transform: '@'}]\n",
    "bad-template": _CALL + "\"${env:ERP_URL}/stock/{request.body.sku\"\n",
    "missing-env": _CALL + "\"${env:ERP_URL}/stock\"\n",
    "missing-file": _CALL + "\"https://erp.example.com/stock\"\n      headers:\n"
                            "        Authorization: \"Bearer ${file:secrets/erp-token}\"\n",
    "url-authority-from-request": _CALL + "\"https://{request.body.erp_host}/stock\"\n",
    "bad-url": _CALL + "\"erp.example.com/stock\"\n",
    "unwritable-body": _HEAD + "respond:\n  formats: [json, csv]\n  body: \"{id: request.body.id, "
                               "lines: [request.body.first, request.body.second]}\"\n",
    "content-type-mismatch": _CALL + "\"https://erp.example.com/orders\"\n"
                                     "      headers: {Content-Type: application/xml}\n      body: request.body\n",
    "bad-schema": _HEAD + "validate:\n  body: {$ref: schemas/order.json}\n",
    "bad-path": "pipeline: orders\nreceive:\n  path: /hooks/{shop-id}/orders\n",
    "substitution-not-allowed": _HEAD + "respond:\n  headers:\n    X-Env: \"'${env:STAGE}'\"\n",
    "literal-secret": _HEAD + "  verify:\n    preset: github\n    secrets: [\"s3cret\"]\n",
    "bad-verify": _HEAD + "  verify:\n    preset: standard-webhooks\n    secrets: [\"${env:ERP_URL}\"]\n",
    "literal-required": _STEP + "\"regex_match(request.body.ref, request.body.pattern)\"\n",
    "unknown-table": _STEP + "\"lookup('erp_status', request.body.status)\"\n",
    "bad-table": _HEAD + "tables:\n  erp_status:\n    values: [{status: paid, erp: P}, {status: refunded, erp: R}]\n",
}


@pytest.mark.parametrize("code", sorted(EXAMPLE_SOURCES))
def test_example_diagnostic_line_is_what_the_compiler_prints(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {} if code == "missing-env" else {"ERP_URL": "https://erp.example.com"}
    _, problems = dsl.compile_text(EXAMPLE_SOURCES[code], "pipelines/orders.yaml", env=env)
    lines = [str(d) for d in sorted(set(problems)) if d.code == code]
    assert lines and lines[0] in (DOCS / "errors.md").read_text(), lines


def test_example_lines_across_files_are_what_the_cli_prints(tmp_path, monkeypatch, capsys):
    from engine.cli import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "orders.yaml").write_text(_HEAD)
    (tmp_path / "pipelines" / "orders2.yaml").write_text(_HEAD)
    (tmp_path / "pipelines" / "z.yaml").write_bytes(b"\xff\xfe")
    assert main(["lint", "pipelines", "pipelines/orders.yml"]) == 1
    text = (DOCS / "errors.md").read_text()
    printed = capsys.readouterr().out.splitlines()
    for code in ("duplicate-pipeline", "duplicate-route", "not-found"):
        assert next(ln for ln in printed if f": {code}: " in ln) in text
    unreadable = next(ln for ln in printed if ": unreadable: " in ln)
    assert unreadable.replace("z.yaml", "orders.yaml") in text


def test_every_diagnostic_code_has_a_checked_example_line():
    checked = set(EXAMPLE_SOURCES) | {"duplicate-pipeline", "duplicate-route", "not-found", "unreadable"}
    assert sorted(diagnostic_codes_in_source() - checked) == [], "add a case to EXAMPLE_SOURCES"


def test_every_cli_command_and_option_is_in_cli_md():
    """A command or an option added to engine/cli.py needs a word in docs/cli.md."""
    import argparse
    from engine.cli import _parser
    text, missing = (DOCS / "cli.md").read_text(), []
    stack = [("hookline", _parser())]
    while stack:
        name, parser = stack.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack += [(f"{name} {cmd}", sub) for cmd, sub in action.choices.items()]
            missing += [f"{name} {o}" for o in action.option_strings if o.startswith("--") and o != "--help"
                        and o not in text]
        if name.count(" ") == 1 and f"hookline {name.split()[1]}" not in text:
            missing.append(name)
    assert missing == []


# --- docs/expressions.md: every example and every function row runs -----------------------------

EXPRESSION_ERRORS = {"invalid-type": JMESPathTypeError, "invalid-value": InvalidValueError,
                     "not-a-number": NotANumberError}


def expression_examples() -> list:
    """``pytest.param(input, expr, outcome, expected)`` for each ``expr:`` line of the
    ```example blocks: ``input:`` holds until the next one; ``result:`` or ``error:`` follows."""
    params = []
    for block in (b for b in ALL if b.lang == "example"):
        given, expr = None, None
        for n, line in enumerate(block.text.splitlines()):
            key, _, rest = line.partition(":")
            rest = rest.strip()
            if key == "input":
                given = json.loads(rest)
            elif key == "expr":
                expr = rest
            elif key in ("result", "error"):
                value = json.loads(rest) if key == "result" else rest
                params.append(pytest.param(given, expr, key, value, id=f"{block.id}+{n}"))
            else:
                raise AssertionError(f"{block.id}: unknown line {line!r}")
    return params


EXAMPLES_RUN = expression_examples()


def test_expressions_page_has_examples_of_every_feature():
    text = " ".join(p.values[1] for p in EXAMPLES_RUN)
    assert len(EXAMPLES_RUN) >= 30
    for feature in ("let ", "$.", " ? ", " // ", " % ", "×", "÷", "−", "[::-1]", "[?", "&", "{", " | "):
        assert feature in text, feature


@pytest.mark.parametrize("given, expr, outcome, expected", EXAMPLES_RUN)
def test_expression_example(given, expr, outcome, expected):
    if outcome == "result":
        assert compile_expression(expr).search(given) == expected
    elif expected in EXPRESSION_ERRORS:
        with pytest.raises(EXPRESSION_ERRORS[expected]):
            compile_expression(expr).search(given)
    else:
        with pytest.raises(ExpressionError) as caught:
            compile_expression(expr)
        assert caught.value.code == expected


def function_rows() -> list[list[str]]:
    """The cells of each row of the table under ``## Functions`` (``\\|`` is a literal bar)."""
    text = (DOCS / "expressions.md").read_text()
    section = text.split("\n## Functions\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def _code(cell: str) -> str:
    """The text of a ``code`` or ````code```` span."""
    m = re.fullmatch(r"(`+)\s?(.*?)\s?\1", cell)
    assert m, cell
    return m.group(2)


FUNCTION_ROWS = {_code(row[0]): row for row in function_rows()}


def test_every_function_has_a_row():
    assert sorted(FUNCTION_ROWS) == sorted(jmes_functions.FUNCTIONS)


# The row of lookup() reads this table; now() and uuid() give a new value each time,
# so their rows are checked for the form of the value shown.
DOC_FUNCTIONS = bound_registry({"erp_status": {"paid": "P", "refunded": "R"}}, 1_048_576)
NEW_EACH_TIME = {"now": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z",
                 "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"}


def same(name: str, got, shown: str) -> bool:
    if name in NEW_EACH_TIME:
        return all(re.fullmatch(NEW_EACH_TIME[name], text) for text in (got, json.loads(shown)))
    return got == json.loads(shown)


@pytest.mark.parametrize("name", sorted(FUNCTION_ROWS))
def test_function_row(name):
    _, signature, example, result, null, wrong = FUNCTION_ROWS[name]
    assert _code(signature).startswith(f"{name}(")
    tree = parse(_code(example))
    assert tree["type"] == "function_expression" and tree["value"] == name
    assert same(name, compile_expression(_code(example), DOC_FUNCTIONS).search({}), _code(result))
    # "null": what it gives with every argument that is not an &expr null.
    tree["children"] = [c if c["type"] == "expref" else {"type": "literal", "children": [], "value": None,
                                                           "offset": c["offset"]} for c in tree["children"]]
    if null == "invalid-type":
        with pytest.raises(JMESPathTypeError):
            compile_tree(tree)({}, ({},))
    else:
        assert same(name, compile_tree(tree)({}, ({},)), _code(null))
    if wrong != "—":
        assert _code(wrong).startswith(f"{name}(")
        with pytest.raises(JMESPathTypeError) as caught:
            compile_expression(_code(wrong), DOC_FUNCTIONS).search({})
        assert name in str(caught.value)


# --- the shell examples run against `make run`'s set-up ---------------------------------------

SHELL = {page: shell_examples.examples(page, DOCS) for page in PAGES}
SHELL_PAGES = sorted(page.relative_to(DOCS).as_posix() for page, found in SHELL.items() if found)


def test_the_shell_examples_are_found():
    """docs/http.md alone shows more than a dozen `curl` examples with their answers."""
    assert "http.md" in SHELL_PAGES
    assert sum(1 for found in SHELL.values() for ex in found if ex.answer) >= 12


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("page", SHELL_PAGES)
def test_shell_examples_print_what_the_page_shows(page, examples_server):
    """Each ``curl … localhost:8080`` line of a page's ```sh blocks, run as written against
    ``hookline serve pipelines`` and the demo destination (see tests/shell_examples.py)."""
    address, failures = examples_server.url.removeprefix("http://"), []
    for ex in SHELL[DOCS / page]:
        got = shell_examples.run(ex, address, ROOT)
        failures += [f"{ex.id}: {p}" for p in shell_examples.differences(ex, got)]
    assert failures == []


TRANSCRIPTS = [t for page in PAGES for t in shell_examples.transcripts(page, DOCS)]


def test_the_lint_transcripts_are_found():
    assert len(TRANSCRIPTS) >= 3, [t.id for t in TRANSCRIPTS]


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.id)
def test_lint_transcripts_print_what_the_page_shows(transcript):
    """Without the demo environment, as the pages' `missing-env` warnings assume."""
    env = {k: v for k, v in os.environ.items() if k not in demo_env("")}
    assert shell_examples.replay(transcript, str(ROOT / ".venv" / "bin" / "hookline"), ROOT, env) == []
