"""Hookline's functions and tables over real HTTP: ``hookline serve`` on a directory of
pipelines that use them, real provider payloads in, hostile values in, and the
server still answering afterwards.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT, serving

CORPUS = ROOT / "tests" / "data" / "corpus"

PIPELINES = {
    "shop.yaml": """
pipeline: shop-to-erp
receive:
  path: /fn/shopify/orders
tables:
  erp_status:
    file: tables/erp-status.csv
steps:
  - id: erp
    transform: >-
      {order: to_string(request.body.order_number),
       booked_on: format_datetime(request.body.created_at, '%Y-%m-%d', 'Europe/Paris'),
       booked_at: to_datetime(request.body.created_at, `null`, 'UTC'),
       pay_by: format_datetime(datetime_add(request.body.created_at, 'P30D'), '%d.%m.%Y'),
       status: lookup('erp_status', request.body.financial_status, 'XX'),
       total_cents: to_integer(regex_replace(request.body.total_price, '\\.', '')),
       first_name: regex_extract(request.body.customer.first_name, '^(\\S+)'),
       lines: request.body.line_items[].{sku: sku, price: round(to_number(price), `1`)},
       id: uuid5('6ba7b811-9dad-11d1-80b4-00c04fd430c8', request.body.admin_graphql_api_id)}
respond:
  body: steps.erp
""",
    "github.yaml": """
pipeline: github-ref
receive:
  path: /fn/github/push
respond:
  body: >-
    {kind: regex_extract(request.body.ref, '^refs/(?P<kind>heads|tags)/').kind,
     name: regex_replace(request.body.ref, '^refs/(heads|tags)/', ''),
     pushed: to_datetime(request.body.repository.pushed_at),
     digest: sha256(request.body.pusher.email)}
""",
    "slack.yaml": """
pipeline: slack-action
receive:
  path: /fn/slack/actions
respond:
  body: "json_parse(request.body.payload).{type: type, action: actions[0].action_id, user: user.id}"
""",
    "hostile.yaml": """
pipeline: hostile
receive:
  path: /fn/hostile
  max_body_bytes: 2000000
respond:
  body: >-
    {match: regex_match(request.body.subject, '^(a+)+$'),
     parsed: length(json_parse(request.body.json) || ''),
     formatted: format_datetime(request.body.at, request.body.format),
     rounded: round(request.body.value, request.body.digits),
     replaced: length(regex_replace(request.body.subject, 'a', request.body.with)),
     decoded: base64_decode(request.body.b64),
     when: to_datetime(request.body.epoch)}
""",
}
ERP_STATUS = "status,code\npending,10\npaid,20\nrefunded,30\nvoided,90\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("functions-http")
    for name, text in PIPELINES.items():
        (folder / name).write_text(text.lstrip())
    (folder / "tables").mkdir()
    (folder / "tables" / "erp-status.csv").write_text(ERP_STATUS)
    yield from serving([folder])


def post(server, path, body=None, **kwargs):
    return server.session.post(server.url + path, json=body, timeout=30, **kwargs)


def test_a_shopify_order_mapped_for_an_erp(server):
    order = json.loads((CORPUS / "shopify" / "orders.create.json").read_text())
    got = post(server, "/fn/shopify/orders", order)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body | {"lines": body["lines"][:2]} == {
        "order": "1234", "booked_on": "2022-01-01", "booked_at": "2022-01-01T00:00:00Z", "pay_by": "30.01.2022",
        "status": "90", "total_cents": 40495, "first_name": "John",
        "lines": [{"sku": "SKU2006-001", "price": 90.0}, {"sku": "LENS-PROTECT-2YR", "price": 20.0}],
        "id": body["id"]}
    assert body["id"] == post(server, "/fn/shopify/orders", order).json()["id"]   # uuid5: stable
    assert post(server, "/fn/shopify/orders", order | {"financial_status": "odd"}).json()["status"] == "XX"


def test_a_github_push_ref(server):
    push = json.loads((CORPUS / "github" / "push.json").read_text())
    got = post(server, "/fn/github/push", push)
    assert got.json() == {"kind": "tags", "name": "simple-tag", "pushed": "2019-05-15T15:20:57Z",
                          "digest": got.json()["digest"]}
    assert len(got.json()["digest"]) == 64
    assert post(server, "/fn/github/push", push | {"ref": "refs/heads/feature/x"}).json()["name"] == "feature/x"


def test_slacks_json_in_a_form_field(server):
    payload = json.dumps({"type": "block_actions", "user": {"id": "U0CA5"},
                          "actions": [{"action_id": "approve", "value": "order-1001"}]})
    got = server.session.post(server.url + "/fn/slack/actions", data={"payload": payload}, timeout=30)
    assert got.json() == {"type": "block_actions", "action": "approve", "user": "U0CA5"}
    bad = server.session.post(server.url + "/fn/slack/actions", data={"payload": "{not json"}, timeout=30)
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("respond: json_parse(): argument 1 (text) is not JSON")


NORMAL = {"subject": "aaa", "json": "[1]", "at": "2026-12-04", "format": "%Y", "value": 1.25, "digits": 1,
          "with": "-", "b64": "eA==", "epoch": 0}


def test_the_hostile_pipeline_answers_normal_values(server):
    got = post(server, "/fn/hostile", NORMAL)
    assert got.json() == {"match": True, "parsed": 1, "formatted": "2026", "rounded": 1.3, "replaced": 3,
                          "decoded": "x", "when": "1970-01-01T00:00:00Z"}


@pytest.mark.parametrize("change,detail", [
    ({"json": "[" * 5000 + "]" * 5000}, "json_parse(): argument 1 (text) is not JSON (depth limit exceeded"),
    ({"format": "%1000000000Y"}, "format_datetime(): argument 2 (format) has %1"),
    ({"format": "%Y" * 5000}, "format_datetime(): argument 2 (format) is longer than 200 characters"),
    ({"digits": 10 ** 9}, "round(): argument 2 (digits) must be between -15 and 15"),
    ({"value": "12.5"}, "round(): argument 1 (value) must be a number, got string"),
    ({"subject": "a" * 90_000, "with": "x" * 30}, "regex_replace(): argument 1 (subject) would give a result "
                                                 "longer than the body limit (2000000 bytes)"),
    ({"subject": "a" * 100_001, "with": ""}, "regex_replace(): argument 1 (subject) has more than 100000 matches"),
    ({"b64": "%%%"}, "base64_decode(): argument 1 (text) is not valid base64"),
    ({"epoch": 1e300}, "to_datetime(): argument 1 (value) is outside the years 1 to 9999"),
    ({"at": "x" * 1_000_000}, "format_datetime(): argument 1 (value) is longer than 100 characters"),
])
def test_hostile_values_are_a_422_naming_the_function_and_the_argument(server, change, detail):
    started = time.perf_counter()
    got = post(server, "/fn/hostile", NORMAL | change)
    assert got.status_code == 422, got.text
    assert got.headers["Content-Type"] == "application/problem+json"
    problem = got.json()
    assert problem["type"] == "https://hookline.dev/problems/expression-failed"
    assert problem["detail"].startswith("respond: " + detail), problem["detail"]
    assert "aaaa" not in problem["detail"] and "%Y%Y" not in problem["detail"]   # never the value
    assert time.perf_counter() - started < 10
    assert post(server, "/fn/hostile", NORMAL).status_code == 200    # still answering


def test_a_pathological_regex_subject_is_answered_at_once(server):
    started = time.perf_counter()
    got = post(server, "/fn/hostile", NORMAL | {"subject": "a" * 100_000 + "!", "with": ""})
    elapsed = time.perf_counter() - started
    assert got.status_code == 200 and got.json()["match"] is False and got.json()["replaced"] == 1
    assert elapsed < 5, elapsed     # a backtracking engine would not finish '^(a+)+$' on this at all
    ok = post(server, "/fn/hostile", NORMAL)
    assert ok.status_code == 200


def test_the_server_answers_others_while_hostile_requests_come_in(server):
    """Hostile requests from one client and normal ones from another, interleaved: every
    normal one is answered, and fast."""
    hostile = requests.Session()
    slowest = 0.0
    for i in range(6):
        hostile.post(server.url + "/fn/hostile", json=NORMAL | {"json": "[" * 3000, "subject": "a" * 50_000 + "!"},
                     timeout=30)
        started = time.perf_counter()
        assert post(server, "/fn/github/push", {"ref": f"refs/heads/b{i}", "repository": {"pushed_at": i}}
                    ).json()["name"] == f"b{i}"
        slowest = max(slowest, time.perf_counter() - started)
    hostile.close()
    assert slowest < 5, slowest
