"""Expressions checked against the validate schemas and known step outputs (issue 14, part 3).

Each case is a pipeline whose ``validate.body`` is BODY, with one expression; the test asserts
the warnings ``hookline lint`` prints for it (code, column within the expression, message part).
"""
from __future__ import annotations

import json

import pytest

from test_lint_cli import run

BODY = {
    "type": "object",
    "required": ["customer", "items"],
    "$defs": {"address": {"type": "object", "properties": {"city": {"type": "string"}},
                          "additionalProperties": False}},
    "properties": {
        "customer": {"type": "object", "additionalProperties": False,
                     "properties": {"email": {"type": "string"}, "address": {"$ref": "#/$defs/address"}}},
        "items": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                             "properties": {"sku": {"type": "string"}, "qty": {"type": "string"},
                                                            "price": {"type": "number"}}}},
        "pair": {"type": "array", "prefixItems": [{"type": "object", "properties": {"a": {"type": "integer"}},
                                                   "additionalProperties": False}]},
        "status": {"type": "string"},
        "meta": {"type": "object", "patternProperties": {"^x-": {"type": "string"}},
                 "additionalProperties": False},
        "tags": {"type": "object", "additionalProperties": {"type": "object", "properties": {"n": {"type": "integer"}},
                                                             "additionalProperties": False}},
        "either": {"anyOf": [{"type": "object", "properties": {"a": {}}, "additionalProperties": False},
                             {"type": "object", "properties": {"b": {}}, "additionalProperties": False}]},
        "both": {"allOf": [{"type": "object", "properties": {"a": {}}},
                           {"type": "object", "properties": {"b": {}}}], "unevaluatedProperties": False},
    },
}


def lint_expression(tmp_path, expression, extra_steps=""):
    text = (f"pipeline: p\nreceive: {{path: '/s/{{shop}}'}}\nvalidate:\n  body: {json.dumps(BODY)}\n"
            f"steps:\n{extra_steps}  - id: probe\n    transform: {json.dumps(expression)}\n")
    (tmp_path / "p.yaml").write_text(text)
    result = run("lint", "p.yaml", cwd=tmp_path)
    assert "Traceback" not in result.stderr
    line = text.count("\n")            # the probe's line, 1-based: the last one
    col0 = len("    transform: ") + 2  # the expression starts after the opening quote
    found = []
    for out in result.stdout.splitlines():
        _, number, col, rest = out.split(":", 3)
        assert int(number) == line, out
        code, message = rest.removeprefix(" warning: ").split(": ", 1)
        found.append((code, int(col) - col0, message))
    return found


CLEAN = [
    "request.body.customer.email", "request.body.customer.address.city", "request.body.items[].sku",
    "request.body.items[?price > `10`].sku", "request.body.pair[0].a", "request.body.meta.\"x-trace\"",
    "request.body.tags.anything.n", "request.body.either.b", "request.body.both.a",
    "request.body.items | [0].qty", "{e: request.body.customer.email}", "length(request.body.items[].sku)",
    "let $c = request.body.customer in $c.email", "request.body.unknown_extra", "request.params.shop",
    "sort_by(request.body.items, &price)[0].sku", "request.body.status == 'paid'",
    "sum(request.body.items[].price)",
]


@pytest.mark.parametrize("expression", CLEAN)
def test_paths_the_schema_allows_give_no_warning(tmp_path, expression):
    assert lint_expression(tmp_path, expression) == []


FLAGGED = [
    ("request.body.custmer.email", 13, "request.body does not declare 'custmer'", "did you mean 'customer'?"),
    ("request.body.customer.emial", 22, "the schema of request.body.customer has no field 'emial'", "'email'"),
    ("request.body.customer.address.town", 30, "request.body.customer.address has no field 'town'", ""),
    ("request.body.items[].skuu", 21, "request.body.items[] has no field 'skuu'", "'sku'"),
    ("request.body.items[?prise > `10`].sku", 20, "has no field 'prise'", "'price'"),
    ("request.body.pair[0].b", 21, "request.body.pair[0] has no field 'b'", ""),
    ("request.body.meta.trace", 18, "request.body.meta has no field 'trace'", ""),
    ("request.body.tags.x.m", 20, "request.body.tags.x has no field 'm'", ""),
    ("request.body.either.c", 20, "request.body.either has no field 'c'", ""),
    ("request.body.both.c", 18, "request.body.both has no field 'c'", ""),
    ("request.body.items | [0].sky", 25, "has no field 'sky'", "'sku'"),
    ("{e: request.body.customer.mail}", 26, "has no field 'mail'", "'email'"),
    ("length(request.body.items[].qtty)", 28, "has no field 'qtty'", "'qty'"),
    ("sort_by(request.body.items, &prise)", 29, "has no field 'prise'", "'price'"),
    ("request.params.shopp", 15, "request.params has no field 'shopp'", "'shop'"),
    ("request.body.status.code", 20, "request.body.status is never an object", ""),
    ("reqest.body", 0, "'reqest' is not in the context", "did you mean 'request'?"),
]


@pytest.mark.parametrize("expression, col, message, hint", FLAGGED)
def test_a_name_the_schema_cannot_hold_is_flagged_where_it_stands(tmp_path, expression, col, message, hint):
    found = lint_expression(tmp_path, expression)
    assert len(found) == 1, found
    code, at, text = found[0]
    assert code in ("unknown-field", "unknown-name")
    assert (at, message in text, hint in text) == (col, True, True), found


@pytest.mark.parametrize("expression, col, message", [
    ("request.body.status == `409`", 0, "is a string by its schema; comparing it with an integer"),
    ("sum(request.body.items[].qty)", 0, "sum() needs numbers"),
    ("sum(request.body.items)", 0, "sum() needs numbers; the items of its argument are an object"),
])
def test_what_a_schema_proves_can_never_work_is_flagged(tmp_path, expression, col, message):
    found = lint_expression(tmp_path, expression)
    assert [(code, at) for code, at, _ in found] == [("type-mismatch", col)], found
    assert message in found[0][2]


def test_a_transform_that_builds_an_object_gives_its_steps_a_shape(tmp_path):
    steps = "  - id: order\n    transform: \"{email: request.body.customer.email, n: length(request.body.items)}\"\n"
    assert lint_expression(tmp_path, "steps.order.email", steps) == []
    found = lint_expression(tmp_path, "steps.order.emial", steps)
    assert [(c, at) for c, at, _ in found] == [("unknown-field", 12)]
    assert "did you mean 'email'?" in found[0][2]


def test_a_call_output_has_status_headers_body_and_error(tmp_path):
    steps = "  - id: erp\n    call: {url: 'http://erp.test/x'}\n"
    assert lint_expression(tmp_path, "steps.erp.status == `200` && steps.erp.error", steps) == []
    found = lint_expression(tmp_path, "steps.erp.statuss", steps)
    assert "did you mean 'status'?" in found[0][2]
