"""``dsl.kinds``: what an expression's value is when the expression alone decides it.

A verdict must never be a guess: every expression reported as never-CSV is checked against
real data (its value has no CSV form whatever the request holds, here for a few requests),
and expressions that read the request stay unknown.
"""
from __future__ import annotations

import doctest

import pytest
from jmespath.exceptions import JMESPathError

import dsl.kinds
from dsl.expressions import compile_expression
from dsl.bodies import WRITERS, Unwritable
from dsl.kinds import body_problem, csv_problem
from engine.formats import NotAcceptable, serialise

CONTEXTS = [{"request": {"body": body}, "steps": {}} for body in (
    {}, None, {"id": 1, "items": [1, 2], "first": "a", "second": {"b": 1}, "sku": "X", "tags": ["t"]},
    {"id": "A", "items": "abc", "first": None, "second": None, "tags": []})]


@pytest.mark.parametrize("expression, problem", [
    ("'ok'", "it is always a string"),
    ("`12`", "it is always a number"),
    ("`null`", "it is always null"),
    ("length(request.body.items)", "it is always a number"),
    ("request.body.items | length(@)", "it is always a number"),
    ("request.body.id == `1`", "it is always a boolean"),
    ("join(', ', request.body.tags)", "it is always a string"),
    ("{id: request.body.id, lines: [request.body.first, request.body.second]}",
     "the value at key 'lines' is a list, and a CSV cell holds"),
    ("{id: request.body.id, customer: {name: request.body.first}}", "the value at key 'customer' is an object"),
    ("request.body.{id: id, both: [first, second]}", "the value at key 'both' is a list"),
    ("[request.body.id, request.body.sku]", None),
    ("[`1`, request.body.id]", "item 0 is not an object"),
    ("[{a: request.body.id}, {b: {c: request.body.id}}]", "item 1: the value at key 'b' is an object"),
    ("`[{\"sku\": \"A\"}, {\"sku\": \"B\", \"tags\": [1]}]`", "item 1: the value at key 'tags' is a list"),
    ("`{\"a\": 1}`", None),
    ("`[]`", None),
    ("{id: request.body.id, sku: request.body.sku}", None),
    ("request.body", None),
    ("request.body.items[].{sku: @}", None),
    ("{lines: request.body.items[*]}", None),          # a projection may be null: a cell takes it
    ("{n: length(request.body.items), ok: `true`, none: `null`}", None),
    ("request.body.id + `1`", "it is always a number"),
    ("-request.body.id", "it is always a number"),
    ("upper(request.body.sku)", "it is always a string"),
    ("let $x = request.body in {id: $x.id, both: [$x.first, $x.second]}", "the value at key 'both' is a list"),
])
def test_csv_problem(expression, problem):
    found = csv_problem(expression)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem)), found
    if found is not None:                               # never a guess: no request gives it a CSV form
        search = compile_expression(expression).search
        for context in CONTEXTS:
            try:
                value = search(context)
            except Exception:                           # a wrong type is a 422: no CSV either
                continue
            with pytest.raises((NotAcceptable, TypeError)):
                serialise(value, "csv")


@pytest.mark.parametrize("fmt, expression, problem", [
    ("xml", "{order: request.body, note: 'x'}", "an XML document has one root element"),
    ("xml", "request.body.{a: id, b: sku}", "an XML document has one root element"),
    ("xml", "[request.body]", "an XML document has one root element"),
    ("xml", "join('', request.body.tags)", "an XML document has one root element"),
    ("xml", "{\"order id\": request.body.id}", "'order id' is not an XML element name"),
    ("xml", "{\"@a\": request.body.id}", "'@a' is not an XML element name"),
    ("xml", "{Order: {Lines: {\"1st\": request.body.id}}}", "'1st' is not an XML element name"),
    ("xml", "{Order: {\"@bad attr\": request.body.id}}", "'bad attr' is not an XML attribute name"),
    ("xml", "`{\"a\": {\"b\": [[1]]}}`", "a list directly inside a list"),
    ("xml", "{Order: request.body}", None),
    ("xml", "{\"soap:Envelope\": {\"@xmlns\": request.body.ns, \"soap:Body\": request.body}}", None),
    ("xml", "request.body", None),
    ("form", "'a=1'", "a form is an object of fields, not a string"),
    ("form", "{id: request.body.id, customer: {name: request.body.sku}}", "the field 'customer' holds"),
    ("form", "{tags: [request.body.sku, [request.body.id]]}", "the field 'tags' holds"),
    ("form", "{tags: [request.body.sku, request.body.id], n: `[1, 2]`}", None),
    ("text", "{id: request.body.id}", "it is always an object"),
    ("text", "[request.body.id]", "it is always a list"),
    ("text", "request.body.note", None),
    ("json", "`1`", None),
])
def test_body_problem(fmt, expression, problem):
    found = body_problem(fmt, expression)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem)), found
    if found is not None:                               # never a guess: every request gets 422
        search = compile_expression(expression).search
        for context in CONTEXTS:
            try:
                value = search(context)
            except JMESPathError:                       # a wrong type is a 422 as well
                continue
            with pytest.raises(Unwritable):
                WRITERS[fmt](value)


@pytest.mark.parametrize("source", ["a +", "$x", "a ? b : c", "request.body.x ? `1` : `2`"])
def test_what_the_structure_does_not_decide_is_unknown(source):
    assert csv_problem(source) is None


def test_doctests():
    failed, attempted = doctest.testmod(dsl.kinds)
    assert attempted and not failed
