"""dsl.schemas: the user's JSON Schemas (``validate.*``), checked at load time
the way the per-request validator (jsonschema-rs) reads them, and enforced
over real HTTP.

* patterns are ECMA-262: ``\\p{Letter}`` and ``(?<name>…)`` load and are
  enforced; a pattern no dialect compiles is ``bad-schema`` at its line:col;
* ``format`` is asserted under every draft (the table in docs/dsl.md lists
  exactly the formats checked, each tested here with a valid and an invalid
  value), and ``validate.formats: false`` turns it off.
"""
from __future__ import annotations

import json
import re

import pytest
import requests

import dsl
from conftest import ROOT, serving

DRAFTS = {
    "draft-04": "http://json-schema.org/draft-04/schema#",
    "draft-06": "http://json-schema.org/draft-06/schema#",
    "draft-07": "http://json-schema.org/draft-07/schema#",
    "2019-09": "https://json-schema.org/draft/2019-09/schema",
    "2020-12": None,    # no $schema: the default
}

# An invalid value for every format docs/dsl.md lists (the valid one is in the docs' table).
INVALID = {
    "date": "2026-02-30", "date-time": "2026-04-02 10:15", "time": "25:00:00Z", "duration": "1 day",
    "email": "not-an-email", "idn-email": "not-an-email", "hostname": "-erp-.example.com",
    "idn-hostname": "-bücher-", "ipv4": "192.0.2.300", "ipv6": "2001:db8:::1",
    "uri": "orders/1", "uri-reference": "http://[::1", "iri": "/ü", "iri-reference": "http://[::1",
    "uri-template": "/orders/{id", "uuid": "5f0c6b52-1c6f-4c1e-9d8a", "json-pointer": "lines/0",
    "relative-json-pointer": "/lines", "regex": "([",
}


def documented_formats() -> dict:
    """``{format: (valid value, set of drafts)}`` from the table under ``### Formats`` in docs/dsl.md."""
    text = (ROOT / "docs" / "dsl.md").read_text().split("### Formats", 1)[1].split("\n\n**", 1)[0]
    out = {}
    for row in re.findall(r"^\| (`.*)\|$", text, re.M)[1:]:   # the header row first
        names, valid, drafts = [cell.strip() for cell in row.split("|")]
        values = re.findall(r"`([^`]+)`", valid)
        for i, name in enumerate(re.findall(r"`([^`]+)`", names)):
            out[name] = (values[min(i, len(values) - 1)], _drafts(drafts))
    return out


def _drafts(cell: str) -> set:
    names = list(DRAFTS)
    if cell == "all":
        return set(names)
    if cell.endswith(" and later"):
        return set(names[names.index(cell.removesuffix(" and later")):])
    return {d.strip() for d in cell.split(",")}


FORMATS = documented_formats()


def format_pipeline(draft: str, formats: bool = True) -> str:
    schema = {"type": "object", "properties": {f: {"type": "string", "format": f} for f in FORMATS}}
    if DRAFTS[draft]:
        schema["$schema"] = DRAFTS[draft]
    flag = "" if formats else "  formats: false\n"
    return (f"pipeline: formats-{draft}-{str(formats).lower()}\nreceive:\n  path: /formats/{draft}/{str(formats).lower()}\n"
            f"validate:\n{flag}  body: {json.dumps(schema)}\nrespond:\n  body: \"'ok'\"\n")


PATTERNS = """\
pipeline: patterns
receive:
  path: /patterns
validate:
  body:
    type: object
    properties:
      name: {type: string, pattern: '^\\p{Letter}+$'}
      year: {type: string, pattern: '(?<year>[0-9]{4})'}
      contact: {format: email}
    patternProperties:
      '^\\p{Lu}': {type: integer}
respond:
  body: "'ok'"
"""


NUMBERS = """\
pipeline: numbers
receive:
  path: /numbers
validate:
  body:
    type: object
    properties:
      count: {const: 1e3}
      price: {type: number, multipleOf: 1e-8}
      mode: {const: 0o755}
respond:
  body: "'ok'"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schemas")
    (folder / "patterns.yaml").write_text(PATTERNS)
    (folder / "numbers.yaml").write_text(NUMBERS)
    for draft in DRAFTS:
        (folder / f"formats-{draft}.yaml").write_text(format_pipeline(draft))
    for draft in ("draft-07", "2020-12"):
        (folder / f"formats-{draft}-off.yaml").write_text(format_pipeline(draft, formats=False))
    yield from serving([folder])


def post(server, path, body) -> requests.Response:
    return server.session.post(server.url + path, json=body, timeout=10)


# --- inline schemas are read as YAML 1.2: 1e3 is a number ---------------------------------

@pytest.mark.parametrize("body, status", [
    ({"count": 1000}, 200), ({"count": 1000.0}, 200), ({"count": "1e3"}, 422), ({"count": 1001}, 422),
    ({"price": 19.99}, 200), ({"price": 0.12345678}, 200), ({"price": 0.123456789}, 422),
    ({"mode": 493}, 200), ({"mode": 755}, 422),
])
def test_exponent_and_octal_numbers_in_an_inline_schema_are_numbers(server, body, status):
    resp = post(server, "/numbers", body)
    assert resp.status_code == status, resp.text


def test_the_numbers_pipeline_compiles_without_a_diagnostic():
    _, problems = dsl.compile_text(NUMBERS, "numbers.yaml")
    assert problems == []


# --- patterns: the ECMA-262 dialect -------------------------------------------------------

@pytest.mark.parametrize("body, status", [
    ({"name": "Zoë"}, 200), ({"name": "Ωμέγα"}, 200), ({"name": "Zoë1"}, 422), ({"name": "a b"}, 422),
    ({"year": "since 2026"}, 200), ({"year": "since 26"}, 422),
    ({"Émile": 3}, 200), ({"Émile": "3"}, 422), ({"émile": "3"}, 200),
])
def test_ecma_patterns_load_and_are_enforced(server, body, status):
    resp = post(server, "/patterns", body)
    assert resp.status_code == status, resp.text
    if status == 422:
        assert resp.json()["errors"][0]["pointer"] == "/body/" + next(iter(body))


@pytest.mark.parametrize("schema_yaml, at", [
    ("{type: object, properties: {name: {type: string, pattern: '(['}}}", "'(['"),
    ("\n    type: object\n    properties:\n      name:\n        pattern: '(?<y>x'", "'(?<y>x'"),
    ("\n    patternProperties:\n      '(?<y>x': {type: string}", "'(?<y>x'"),
    ("{$schema: 'http://json-schema.org/draft-07/schema#', pattern: 'a{2,1}'}", "'a{2,1}'"),
])
def test_a_pattern_no_ecma_engine_compiles_is_bad_schema_at_its_place(schema_yaml, at):
    text = f"pipeline: p\nreceive:\n  path: /p\nvalidate:\n  body: {schema_yaml}\n"
    before = text[:text.index(at)]
    where = (before.count("\n") + 1, len(before) - before.rfind("\n"))
    pipeline, problems = dsl.compile_text(text, "p.yaml")
    assert pipeline is None
    assert [(d.code, d.line, d.col) for d in problems] == [("bad-schema", *where)], problems
    assert "(ECMA-262)" in problems[0].message


def test_a_schema_from_a_file_points_at_its_ref(tmp_path):
    (tmp_path / "s.json").write_text('{"properties": {"a": {"pattern": "(["}}}')
    text = "pipeline: p\nreceive:\n  path: /p\nvalidate:\n  body: {$ref: s.json}\n"
    _, problems = dsl.compile_text(text, str(tmp_path / "p.yaml"))
    assert [(d.line, d.col, d.code) for d in problems] == [(5, 9, "bad-schema")]
    assert "at properties/a/pattern" in problems[0].message


# --- formats --------------------------------------------------------------------------------

def test_the_docs_list_the_formats_this_file_tests():
    assert sorted(FORMATS) == sorted(INVALID)


@pytest.mark.parametrize("draft", DRAFTS)
@pytest.mark.parametrize("name", sorted(INVALID))
def test_each_documented_format_is_checked_in_the_drafts_the_docs_say(server, draft, name):
    valid, drafts = FORMATS[name]
    assert post(server, f"/formats/{draft}/true", {name: valid}).status_code == 200
    resp = post(server, f"/formats/{draft}/true", {name: INVALID[name]})
    if draft in drafts:
        assert resp.status_code == 422, resp.text
        assert resp.json()["errors"][0]["pointer"] == f"/body/{name}"
    else:
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("draft", ["draft-07", "2020-12"])
def test_formats_false_checks_no_format(server, draft):
    assert post(server, f"/formats/{draft}/false", INVALID).status_code == 200
    assert post(server, f"/formats/{draft}/true", {"email": "not-an-email"}).status_code == 422


@pytest.mark.parametrize("contact, status", [("ops@example.com", 200), ("ops", 422), (5, 200), (None, 200)])
def test_format_checks_strings_only(server, contact, status):
    assert post(server, "/patterns", {"contact": contact}).status_code == status
