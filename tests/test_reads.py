"""What an async branch persists: only the parts of the context its expressions read.

The analysis (``dsl/reads.py``) must never change a result: every compliance
case gives the same value (or the same error) on the selection as on the
whole document.
"""
from __future__ import annotations

import pytest

from dsl.compiler import compile_text
from dsl.jmes import compile_expression
from dsl.reads import Selection, reads_of
from test_jmes_compliance import CASES, RUNTIME, same_json


def selection(expression: str) -> Selection:
    reads = compile_expression(expression).reads
    return Selection.of([None] if reads is None else reads)


EVALUATED = [c for c in CASES if "result" in c.values[1] or c.values[1]["error"] in RUNTIME]


def same_on_selection(expression: str, document, case) -> None:
    """``expression`` on what its selection keeps of ``document`` gives the case's result or error."""
    compiled = compile_expression(expression)
    kept = selection(expression).select(document)
    if "result" in case:
        actual = compiled.search(kept)
        assert same_json(actual, case["result"]), (expression, kept, actual)
    else:
        with pytest.raises(RUNTIME[case["error"]]):
            compiled.search(kept)


@pytest.mark.parametrize("given_doc, case", EVALUATED)
def test_a_selection_gives_every_compliance_result(given_doc, case):
    same_on_selection(case["expression"], given_doc, case)


@pytest.mark.parametrize("given_doc, case", EVALUATED)
def test_a_selection_gives_every_compliance_result_one_level_down(given_doc, case):
    """The same cases on ``request.body`` of a context, where a value that is not an object
    (a list, a number) must still be there for ``body.{a: a}`` to tell it from null."""
    context = {"request": {"body": given_doc, "headers": {"x": "y"}}, "steps": {"s": 1}}
    same_on_selection(f"request.body | {case['expression']}", context, case)


@pytest.mark.parametrize("expression, body", [
    ("request.body.{a: a}", [1, 2]), ("request.body.[a, b]", 5),
    ("request.body.{id: id} || `\"none\"`", []), ("length(request.body.{a: a})", "text"),
])
def test_multiselects_on_values_that_are_not_objects(expression, body):
    context = {"request": {"body": body}, "steps": {}}
    compiled = compile_expression(expression)
    assert compiled.search(selection(expression).select(context)) == compiled.search(context)


def test_the_analysis_keeps_less_than_everything_for_most_cases():
    """It must not answer "everything" by default: plain paths are found as paths."""
    expressions = {c.values[1]["expression"] for c in CASES if "result" in c.values[1]}
    narrowed = [e for e in expressions if compile_expression(e).reads is not None]
    assert len(narrowed) > 0.6 * len(expressions)


@pytest.mark.parametrize("expression, reads", [
    ("request.body.id", (("request", "body", "id"),)),
    ("steps.order", (("steps", "order"),)),
    ("steps.order.lines[*].sku", (("steps", "order", "lines"),)),
    ("request.body.items[?qty > `1`].sku", (("request", "body", "items"),)),
    ("{id: request.body.id, n: length(steps.order.lines)}",
     (("request", "body", "id"), ("steps", "order", "lines"))),
    ("request.headers.\"x-id\" || request.query.id", (("request", "headers", "x-id"), ("request", "query", "id"))),
    ("request | body.id", (("request", "body", "id"),)),
    ("sort_by(request.body.items, &price)[0]", (("request", "body", "items"),)),
    ("request.body.items[0].sku", (("request", "body", "items"),)),
    ("`1`", ()),
    ("@", None), ("*.body", None), ("keys(@)", None), ("[0]", None), ("@.request.body", (("request", "body"),)),
])
def test_reads(expression, reads):
    assert compile_expression(expression).reads == reads


def test_selection_merges_paths_and_shares_values():
    body = {"id": 1, "big": "x" * 100}
    data = {"request": {"body": body, "headers": {"a": "1"}}, "steps": {"s": [1]}}
    keep = Selection.of([("request", "body", "id"), ("request", "body"), ("steps", "s", "x")])
    assert keep.select(data) == {"request": {"body": body}, "steps": {"s": [1]}}   # not an object: whole
    assert keep.select(data)["request"]["body"] is body
    assert Selection.of([("a",), None]).select(data) is data


PIPELINE = """\
pipeline: reads
receive: {path: "/reads/{shop}"}
steps:
  - id: order
    transform: "{id: request.body.id, lines: request.body.lines}"
async:
  - id: forward
    when: "request.body.notify"
    steps:
      - id: send
        call:
          url: "http://127.0.0.1:9/orders/{request.params.shop}?n={request.query.n}"
          headers: {X-Trace: "{request.headers.\\"x-trace\\"}"}
          body: steps.order
      - id: check
        route:
          - when: "steps.send.status == `409`"
            steps: [{id: again, transform: "steps.order.id"}]
"""


def test_a_branch_reads_what_its_steps_evaluate():
    pipeline, problems = compile_text(PIPELINE, "reads.yaml")
    assert pipeline is not None, problems
    assert reads_of(pipeline.branches[0].steps) == {
        ("request", "params", "shop"), ("request", "query", "n"), ("request", "headers", "x-trace"),
        ("steps", "order"), ("steps", "send", "status"), ("steps", "order", "id")}


def test_something_unknown_in_a_step_means_everything():
    class Opaque:
        pass
    assert reads_of((Opaque(),)) is None
    assert reads_of((compile_expression("length(@)"),)) is None
