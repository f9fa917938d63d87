"""The compiler is total: any text yields a pipeline or diagnostics, never an exception.

``dsl.compile_text(text, "x.yaml", env={})`` returns ``(Pipeline, [])`` (or
only warnings) or ``(None, [Diagnostic, ...])`` with at least one error, for
(a) arbitrary text, (b) arbitrary YAML-shaped data using the DSL's own key
names, and (c) mutations of a valid pipeline. Every diagnostic names a place
(line and column ≥ 1) inside the file, a code and a message. Compiled
pipelines are frozen.
"""
from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dsl
from dsl import Diagnostic
from dsl.graph import Pipeline

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FILE = "x.yaml"


def all_keys(schema) -> list[str]:
    """Every property name the DSL schema knows, at any level."""
    names, stack = set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            stack.extend(v for k, v in node.items() if k not in ("defaultSnippets", "examples"))
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(names)


DSL_KEYS = all_keys(dsl.pipeline_schema()) + ["$ref"]
assert {"pipeline", "receive", "steps", "transform", "call", "route", "otherwise"} <= set(DSL_KEYS)

# Strings that look like the DSL's expressions, templates and substitutions.
JMES_ALPHABET = "abcsteprquody.[]{}()*?@&|!=<>,:'\"`$ 0123456789_-"
jmes_text = st.one_of(
    st.text(alphabet=JMES_ALPHABET, max_size=30),
    st.sampled_from(["steps.a", "request.body", "sum_by(@)", "length(@, @)", "a.[b", "`1",
                     "${env:X}", "${file:nope}", "{request.body.x}", "http://h.test/{a}", "http://{a}/",
                     "{", "}", "steps.b.x", "request.params.shop", "&a", "@", "[?a > `1`]"]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), jmes_text)
keys = st.one_of(st.sampled_from(DSL_KEYS), st.text(min_size=1, max_size=12))
yaml_data = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(keys, children, max_size=5)),
    max_leaves=30,
)


def check(text: str):
    """Compile ``text`` and assert the contract; return the result."""
    try:
        pipeline, problems = dsl.compile_text(text, FILE, env={})
    except Exception as exc:
        raise AssertionError(f"compile_text raised {type(exc).__name__}: {exc}\non:\n{text}") from exc
    assert isinstance(problems, list)
    assert all(isinstance(d, Diagnostic) for d in problems)
    if pipeline is None:
        assert problems, "no pipeline and no diagnostic saying why"
        assert any(d.severity == "error" for d in problems)
    else:
        assert isinstance(pipeline, Pipeline)
        assert all(d.severity == "warning" for d in problems), "a pipeline compiled despite errors"
        assert None not in list(all_steps(pipeline.steps)), "a compiled pipeline has holes"
    for d in problems:
        assert d.file == FILE
        assert d.line >= 1 and d.col >= 1, str(d)
        assert d.code and d.message and d.severity in ("error", "warning"), str(d)
    return pipeline, problems


def all_steps(steps):
    for step in steps:
        yield step
        for branch in getattr(step, "branches", ()):
            yield from all_steps(branch.steps)


_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")


def assert_inside(text: str, problems):
    """Each position is on a line of the file, at most one past its last character.

    libyaml reports the end of a file without a final newline as the start of
    the line after it; that one position is allowed too.
    """
    lines = _BREAK.split(text) + [""]
    for d in problems:
        assert d.line <= len(lines), f"{d}: the file has {len(lines) - 1} line(s)"
        assert d.col <= len(lines[d.line - 1]) + 1, \
            f"{d}: line {d.line} is {lines[d.line - 1]!r} ({len(lines[d.line - 1])} characters)\n{text}"


# --- (a) arbitrary text ----------------------------------------------------------

@SETTINGS
@given(st.text(max_size=300))
def test_any_text_compiles_or_gives_diagnostics(text):
    check(text)


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("ab:- \n[]{},&*!|>'\"#%@`?$.\t")), max_size=200))
def test_yaml_punctuation_compiles_or_gives_diagnostics(text):
    check(text)


# --- (b) YAML-shaped data ------------------------------------------------------------

def dump(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@SETTINGS
@given(st.one_of(st.dictionaries(keys, yaml_data, max_size=8), yaml_data))
def test_any_yaml_data_compiles_or_gives_diagnostics(data):
    check(dump(data))


# --- (c) mutations of a valid pipeline ----------------------------------------------

VALID = {
    "pipeline": "orders",
    "description": "every kind of step",
    "receive": {"path": "/hooks/{shop}/orders", "methods": ["POST", "PUT"], "max_body_bytes": 4096,
                "dedupe": {"key": 'request.headers."x-delivery-id"', "ttl_s": 600}},
    "validate": {"body": {"type": "object", "required": ["id"]},
                 "params": {"type": "object", "properties": {"shop": {"type": "string"}}}},
    "steps": [
        {"id": "order", "transform": "{id: request.body.id, lines: request.body.items[?qty > `0`]}"},
        {"id": "stock", "call": {
            "method": "POST", "url": "http://erp.example.test/shops/{request.params.shop}/stock",
            "query": {"dry": "request.query.dry"},
            "headers": {"Idempotency-Key": "order-{steps.order.id}"},
            "body": "steps.order", "timeout_s": 2.5, "on_error": "continue"}},
        {"id": "decide", "description": "route on the answer", "route": [
            {"when": "steps.stock.status == `409`", "respond": {"status": 409, "body": "steps.stock.body"}},
            {"when": "steps.stock.status >= `500`",
             "steps": [{"id": "note", "transform": "length(steps.order.lines)"}]},
            {"otherwise": {"steps": [{"id": "fine", "transform": "`true`"}]}},
        ]},
    ],
    "respond": {"status": 201, "headers": {"X-Order": "to_string(steps.order.id)"},
                "body": "{order: steps.order, stock: steps.stock.status}"},
    "async": [{"id": "notify", "when": "steps.stock.status == `200`", "retry": {"max_attempts": 3},
               "steps": [{"id": "ping", "call": {"url": "http://notify.example.test/orders",
                                                 "body": "steps.order"}}]}],
}


def paths(node, at=()):
    """Every path to a value below ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield at + (k,)
            yield from paths(v, at + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield at + (i,)
            yield from paths(v, at + (i,))


def parent_of(data, path):
    for key in path[:-1]:
        data = data[key]
    return data


def mutate(data, path, how, value):
    parent, last = parent_of(data, path), path[-1]
    if how == "drop":
        del parent[last]
    elif how == "replace":
        parent[last] = value
    elif how == "add-key" and isinstance(parent[last], dict):
        parent[last][value[0]] = value[1]
    elif how == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))


@st.composite
def mutated(draw):
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        candidates = list(paths(data))
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        how = draw(st.sampled_from(["drop", "replace", "replace", "add-key", "duplicate"]))
        if how == "add-key":
            value = (draw(keys), draw(yaml_data))
        else:
            value = draw(st.one_of(jmes_text, scalars, yaml_data))
        mutate(data, path, how, value)
    return data


def test_the_valid_pipeline_compiles():
    pipeline, problems = check(dump(VALID))
    assert problems == [] and pipeline is not None
    assert pipeline.name == "orders" and len(pipeline.steps) == 3


@SETTINGS
@given(mutated())
def test_mutated_pipelines_compile_or_give_diagnostics(data):
    check(dump(data))


def problems_of(text: str) -> list:
    """The diagnostics for ``text``; inputs that crash the compiler are left to
    the totality tests above, so that a crash cannot mask a position bug."""
    try:
        return dsl.compile_text(text, FILE, env={})[1]
    except Exception:
        assume(False)


@SETTINGS
@given(mutated())
def test_diagnostics_of_mutated_pipelines_point_inside_the_file(data):
    text = dump(data)
    assert_inside(text, problems_of(text))


@SETTINGS
@given(st.text(max_size=300))
def test_diagnostics_of_any_text_point_inside_the_file(text):
    assert_inside(text, problems_of(text))


# Inputs that once escaped as exceptions (see tests/test_loader.py for the loader's side).
@pytest.mark.parametrize("text", [
    "pipeline: !!int abc\nreceive: {path: /a}\n",
    "pipeline: a\nreceive: {path: /a, max_body_bytes: !!float big}\n",
    "pipeline: a\nreceive: {path: /a}\nsteps: [{id: a, transform: !!bool maybe}]\n",
    "pipeline: !!int\nreceive: {path: /a}\n",
])
def test_bad_standard_tags_give_diagnostics(text):
    check(text)


@pytest.mark.parametrize("inner", ['transform: "sum_by(@)"', 'route: [{when: "a.["}]'])
def test_a_bad_step_inside_a_route_branch_gives_diagnostics(inner):
    text = ("pipeline: p\nreceive: {path: /p}\nsteps:\n  - id: r\n    route:\n"
            f"      - when: request.body.x\n        steps:\n          - id: inner\n            {inner}\n")
    _, problems = check(text)
    assert [d.line for d in problems] == [9]


def test_compile_text_reports_each_problem_once():
    for text in ["description: x\n",
                 "pipeline: p\nreceive: {path: /a/{x}/{x}/{x}}\n"]:
        _, problems = check(text)
        repeated = sorted({str(d) for d in problems if problems.count(d) > 1})
        assert repeated == [], f"reported more than once: {repeated}"


# --- positions inside scalars ------------------------------------------------------

raw_literal = st.text(alphabet=st.characters(blacklist_characters="'\\", blacklist_categories=("Cs", "Cc"),
                                             max_codepoint=0x2FF), max_size=60)


@st.composite
def expression_before_nope(draw):
    """An expression that parses, ends with the unknown function ``nope()``, and
    exercises YAML escapes and line folding on the way."""
    parts = draw(st.lists(st.one_of(st.sampled_from(["request.body", "a.b", "`1`", "@"]),
                                    raw_literal.map(lambda t: f"'{t}'")), max_size=4))
    joiner = draw(st.sampled_from([" || ", " ||\n ", " || \t"]))
    return joiner.join([*parts, "nope(@)"])


def embed(expr: str, style) -> str:
    head = "pipeline: p\nreceive: {path: /p}\nsteps:\n  - id: a\n"
    if style in ("|-", ">-"):
        body = "".join(f"      {line}\n" for line in expr.split("\n"))
        return f"{head}    transform: {style}\n{body}"
    width, quote = style
    return yaml.safe_dump({"pipeline": "p", "receive": {"path": "/p"}, "steps": [{"id": "a", "transform": expr}]},
                          default_style=quote, width=width, allow_unicode=True, sort_keys=False)


@SETTINGS
@given(expression_before_nope(),
       st.one_of(st.sampled_from(["|-", ">-"]),
                 st.tuples(st.integers(20, 100), st.sampled_from([None, '"', "'"]))))
def test_an_unknown_function_is_reported_at_its_name(expr, style):
    text = embed(expr, style)
    problems = problems_of(text)
    unknown = [d for d in problems if d.code == "unknown-function"]
    assert len(unknown) == 1, problems
    d, lines = unknown[0], _BREAK.split(text) + [""]
    line = lines[d.line - 1] if d.line <= len(lines) else ""
    assert line[d.col - 1:d.col + 3] == "nope", f"{d} points at {line[d.col - 1:d.col + 3]!r} in:\n{text}"


# --- frozen ---------------------------------------------------------------------

def test_compiled_pipelines_are_frozen():
    pipeline, _ = check(dump(VALID))
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipeline.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipeline.respond.status = 500
    for step in all_steps(pipeline.steps):
        with pytest.raises(dataclasses.FrozenInstanceError):
            step.id = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipeline.steps[2].branches[0].respond = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipeline.checks[0].part = "query"
    assert isinstance(pipeline.methods, frozenset) and isinstance(pipeline.steps, tuple)
    assert all(isinstance(b.steps, tuple) for b in pipeline.steps[2].branches)
