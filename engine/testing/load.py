"""A test file (``NAME.test.yaml``) → a :class:`Suite` of cases, or diagnostics
at ``file:line:col`` — loaded by the pipelines' own loader (``dsl.loader``)
and shape-checked against :func:`engine.testing.spec.tests_schema`.

    >>> suite, problems = load_suite_text("pipeline: p\\ntests:\\n  - {name: a, request: {}, expect: {}}\\n", "p.test.yaml")
    >>> suite.pipeline, [c.name for c in suite.cases], problems
    ('p', ['a'], [])
    >>> _, problems = load_suite_text("pipeline: p\\ntests: []\\n", "p.test.yaml")
    >>> [str(d) for d in problems]
    ["p.test.yaml:2:8: bad-value: 'tests': [] should be non-empty"]
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jsonschema

from dsl.errors import Diagnostic
from dsl.loader import load_yaml
from dsl.shape import check_shape

from .spec import tests_schema

ROOT = "the test file"
_BODIES = ("body", "body_file", "raw")


@dataclass(frozen=True, slots=True)
class Case:
    """One test: its name, where it is, and its parts as written (plain data)."""

    name: str
    file: str
    line: int
    col: int
    request: dict
    mocks: tuple
    expect: dict
    body_file: bytes | None = None     # the bytes of request.body_file, read at load time

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Suite:
    file: str
    pipeline: str
    env: dict
    cases: tuple
    doc: object          # dsl.loader.Document: places for diagnostics found later


@lru_cache(maxsize=1)
def _validator():
    return jsonschema.Draft7Validator(tests_schema())


def load_suite(file) -> tuple[Suite | None, list[Diagnostic]]:
    """Read and check one test file."""
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Diagnostic(str(file), 1, 1, "unreadable", getattr(exc, "strerror", None) or str(exc))]
    return load_suite_text(text, str(file))


def load_suite_text(text: str, file: str) -> tuple[Suite | None, list[Diagnostic]]:
    doc, problems = load_yaml(text, file)
    if doc is None:
        return None, problems
    if not isinstance(doc.data, dict):
        return None, problems + [doc.diag((), "wrong-type", "a test file must be a mapping of keys")]
    problems += check_shape(doc, _validator(), ROOT)
    if problems:
        return None, sorted(set(problems))
    problems += _names(doc) + [d for i in range(len(doc.data["tests"])) for d in _case_problems(doc, i)]
    cases = [_case(doc, i, problems) for i in range(len(doc.data["tests"]))]
    if problems:
        return None, sorted(set(problems))
    return Suite(file, doc.data["pipeline"], dict(doc.data.get("env", {})), tuple(cases), doc), []


def _names(doc) -> list[Diagnostic]:
    seen, out = {}, []
    for i, case in enumerate(doc.data["tests"]):
        if case["name"] in seen:
            out.append(doc.diag(("tests", i, "name"), "bad-test",
                                f"test name '{case['name']}' is already used at line {seen[case['name']]}"))
        seen.setdefault(case["name"], doc.pos(("tests", i, "name"))[0])
    return out


def _case_problems(doc, i) -> list[Diagnostic]:
    case, at = doc.data["tests"][i], ("tests", i)
    out = _one_at_most(doc, at + ("request",), case["request"], _BODIES)
    out += _one_at_most(doc, at + ("expect",), case["expect"], ("body", "body_contains"))
    for j, mock in enumerate(case.get("mocks", [])):
        where = at + ("mocks", j)
        if sum(k in mock for k in ("respond", "fail", "responses")) != 1:
            out.append(doc.diag(where, "bad-test", "a mock needs exactly one of respond, fail, responses"))
        answers = [("respond", mock["respond"])] if "respond" in mock else []
        answers += [(("responses", k), a) for k, a in enumerate(mock.get("responses", []))]
        for key, answer in answers:
            out += _answer_problems(doc, where + (key if isinstance(key, tuple) else (key,)), answer)
    return out


def _answer_problems(doc, path, answer) -> list[Diagnostic]:
    out = _one_at_most(doc, path, answer, ("body", "raw"))
    if "fail" in answer and set(answer) != {"fail"}:
        out.append(doc.diag(path, "bad-test", "an answer with fail has no status, headers or body"))
    return out


def _one_at_most(doc, path, data, keys) -> list[Diagnostic]:
    given = [k for k in keys if k in data]
    if len(given) < 2:
        return []
    return [doc.diag(path + (given[1],), "bad-test", f"give one of {', '.join(keys)}, not {' and '.join(given)}",
                     key=True)]


def _case(doc, i, problems) -> Case:
    case = doc.data["tests"][i]
    line, col = doc.pos(("tests", i))
    raw = None
    if "body_file" in case["request"]:
        path = Path(doc.file).parent / case["request"]["body_file"]
        try:
            raw = path.read_bytes()
        except OSError as exc:
            problems.append(doc.diag(("tests", i, "request", "body_file"), "not-found",
                                     f"cannot read {case['request']['body_file']}: {exc.strerror}"))
    return Case(case["name"], doc.file, line, col, case["request"], tuple(case.get("mocks", [])),
                case["expect"], raw)
