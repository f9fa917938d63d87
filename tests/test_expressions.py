"""The Community Edition's language where users meet it: a served pipeline, and ``hookline lint``.

A real ``hookline serve`` answers a request through arithmetic, ``let``, ``$``,
the ternary, string functions and slices, ``group_by`` and ``items``/``from_items``;
hostile widths answer 422 and leave the server responsive. ``hookline lint``
points every misuse knowable at load time at its line and column.
"""
from __future__ import annotations

import re
import subprocess
import textwrap
import time

import pytest
import requests

from conftest import HOOKLINE, start_hookline

PIPELINE = textwrap.dedent("""\
    pipeline: erp-order
    receive:
      path: /orders
    steps:
      - id: order
        transform: >-
          let $tax = request.body.tax_rate, $ref = request.body.ref in
          {
            branch: replace($ref, 'refs/heads/', ''),
            day: request.body.created_at[:10],
            code: upper(pad_left(to_string(request.body.id), `8`, '0')),
            first: split(request.body.customer, ' ', `1`)[0],
            last: split(request.body.customer, ' ', `1`)[1],
            lines: request.body.lines[*].{sku: trim(sku), total: price * qty,
                                          gross: price * qty * (`1` + $tax),
                                          size: qty >= `10` ? 'bulk' : 'unit',
                                          currency: $.request.body.currency},
            net: sum(map(&(price * qty), request.body.lines)),
            cents: sum(map(&(price * qty), request.body.lines)) * `100` // `1`,
            by_warehouse: group_by(request.body.lines, &warehouse),
            flags: from_items(items(request.body.flags)[?@[1]])
          }
    respond:
      body: steps.order
    """)

ORDER = {"id": 4217, "ref": "refs/heads/main", "created_at": "2026-12-04T10:00:00+01:00",
         "customer": "Ada King Lovelace", "tax_rate": 0.25, "currency": "EUR",
         "flags": {"gift": True, "express": False},
         "lines": [{"sku": " TEE-M ", "price": 10, "qty": 2, "warehouse": "north"},
                   {"sku": "MUG", "price": 4.5, "qty": 10, "warehouse": "south"},
                   {"sku": "CAP", "price": 8, "qty": 1, "warehouse": "north"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("expressions")
    (directory / "erp-order.yaml").write_text(PIPELINE)
    proc = start_hookline([directory], tail=True)
    try:
        yield proc
    finally:
        proc.stop()


def test_a_served_pipeline_computes_with_the_community_edition(server):
    answer = requests.post(server.url + "/orders", json=ORDER, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["branch"] == "main"
    assert body["day"] == "2026-12-04"
    assert body["code"] == "00004217"
    assert (body["first"], body["last"]) == ("Ada", "King Lovelace")
    assert body["lines"] == [
        {"sku": "TEE-M", "total": 20, "gross": 25.0, "size": "unit", "currency": "EUR"},
        {"sku": "MUG", "total": 45.0, "gross": 56.25, "size": "bulk", "currency": "EUR"},
        {"sku": "CAP", "total": 8, "gross": 10.0, "size": "unit", "currency": "EUR"}]
    assert body["net"] == 73.0
    assert body["cents"] == 7300.0
    assert body["by_warehouse"] == {"north": [ORDER["lines"][0], ORDER["lines"][2]],
                                    "south": [ORDER["lines"][1]]}
    assert body["flags"] == {"gift": True}


@pytest.mark.parametrize("change, detail", [
    ({"tax_rate": "25%"}, "step 'order'"),                  # a string in arithmetic
    ({"lines": [{"sku": "A", "price": 1, "qty": None, "warehouse": "n"}]}, "step 'order'"),
    ({"customer": None}, "step 'order'"),                    # split() of null
])
def test_a_wrong_value_is_422_expression_failed(server, change, detail):
    answer = requests.post(server.url + "/orders", json={**ORDER, **change}, timeout=30)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["type"].endswith("/expression-failed")
    assert detail in problem["detail"]


HOSTILE = textwrap.dedent("""\
    pipeline: hostile
    receive:
      path: /pad
    steps:
      - id: padded
        transform: "pad_left('x', request.body.width, '*')"
      - id: replaced
        transform: "replace(request.body.text, 'a', request.body.new)"
    respond:
      body: "[length(steps.padded), length(steps.replaced)]"
    """)


def test_hostile_widths_are_422_and_the_server_stays_responsive(tmp_path):
    (tmp_path / "hostile.yaml").write_text(HOSTILE)
    proc = start_hookline([tmp_path], tail=True)
    try:
        ok = {"width": 3, "text": "banana", "new": "o"}
        assert requests.post(proc.url + "/pad", json=ok, timeout=30).json() == [3, 6]
        for hostile in ({**ok, "width": 10 ** 12}, {**ok, "width": 1e300},
                        {**ok, "text": "a" * 100_000, "new": "b" * 1000}):
            started = time.monotonic()
            answer = requests.post(proc.url + "/pad", json=hostile, timeout=30)
            assert answer.status_code == 422, answer.text
            assert answer.json()["type"].endswith("/expression-failed")
            assert time.monotonic() - started < 10
        assert requests.post(proc.url + "/pad", json=ok, timeout=30).json() == [3, 6]
    finally:
        proc.stop()


MISUSES = textwrap.dedent("""\
    pipeline: misuses
    receive:
      path: /misuses
    steps:
      - id: syntax
        transform: "request.body.total * "
      - id: function
        transform: "let $x = request.body in lower_case($x.name)"
      - id: arity
        transform: >-
          {name: request.body.name,
           padded: pad_left(request.body.id)}
      - id: variable
        transform: "let $rate = `0.2` in request.body.net * (`1` + $rat)"
      - id: argument
        transform: "pad_left(request.body.id, `8`, '00')"
      - id: ternary
        transform: "request.body.ok ? 'yes'"
    """)

# (line, col, code): the column is the offending character inside the expression.
# An expression that ends too early points at its closing quote.
EXPECTED = [(6, 38, "bad-expression"), (8, 42, "unknown-function"), (12, 16, "bad-arity"),
            (14, 64, "unknown-variable"), (16, 48, "bad-argument"), (18, 40, "bad-expression")]


def test_lint_points_at_each_misuse(tmp_path):
    (tmp_path / "misuses.yaml").write_text(MISUSES)
    result = subprocess.run([*HOOKLINE, "lint", "misuses.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    found = [(int(m[1]), int(m[2]), m[3]) for m in
             re.finditer(r"^misuses\.yaml:(\d+):(\d+): ([a-z-]+): ", result.stdout, re.M)]
    assert found == EXPECTED, result.stdout
    lines = MISUSES.splitlines()
    starts = [lines[line - 1][col - 1:] for line, col, _ in EXPECTED]
    assert [s[:1] for s in starts] == ['"', "l", "p", "$", "'", '"']
    assert starts[1].startswith("lower_case(") and starts[3].startswith("$rat)")
