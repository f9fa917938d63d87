"""Properties of response negotiation over real HTTP (hypothesis).

Any JSON-like value, sent as the body to an echo pipeline (``respond.body: request.body``,
``formats: [json, xml, text, csv]``), with any Accept header from a grammar of media ranges
(wildcards, q-values including 0, parameters, case, junk), is answered 200 in exactly the
format RFC 9110 §12.5.1 picks among those that can carry the value, or 406 when none can —
never anything else. JSON answers parse back to the value; text answers are the string or
its JSON; CSV answers have the rows; XML answers are well-formed, and round-trip through
``engine.formats.parse_body`` for the values docs/http.md calls lossless.

The expected format is computed here, from the RFC and the documented choices (parameters
other than q are ignored; ties go to the order offered; a header with no valid range
accepts anything), not with ``engine.formats.negotiate``. One ``hookline serve
tests/pipelines/http_full`` per module.
"""
from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from conftest import HTTP_PROPERTY_SETTINGS, ROOT, serving
from engine.formats import parse_body

PIPELINES = ROOT / "tests" / "pipelines" / "http_full"
OFFERED = ("application/json", "application/xml", "text/plain", "text/csv")    # echo.yaml's formats
SETTINGS = HTTP_PROPERTY_SETTINGS


@pytest.fixture(scope="module")
def server():
    yield from serving([PIPELINES])


def echo(server, value, accept):
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if accept is not None:
        headers["Accept"] = accept
    return server.session.post(f"{server.url}/hf/echo", data=json.dumps(value), headers=headers, timeout=10)


# --- values ------------------------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1)     # orjson's integer range
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4)
                      | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=16)
FLAT_ROWS = st.lists(st.dictionaries(st.sampled_from(["sku", "qty", "note", "a b", "é"]), SCALARS, max_size=4),
                     max_size=4)
ANY_VALUE = VALUES | FLAT_ROWS | FLAT_ROWS      # flat rows often enough that CSV gets chosen


def has_csv_form(value) -> bool:
    """A flat object or a list of them (docs/http.md, Responses): the only values CSV can carry."""
    if type(value) is dict:
        value = [value]
    return type(value) is list and all(
        type(row) is dict and all(type(v) not in (dict, list) for v in row.values()) for row in value)


# --- Accept headers ------------------------------------------------------------------------------------

# Weighted towards the types that are not JSON, or JSON (offered first) would win most cases.
RANGES = ["application/json", "application/xml", "application/xml", "text/plain", "text/plain", "text/csv",
          "text/csv", "text/csv", "text/html", "image/png", "application/problem+json", "application/*",
          "text/*", "text/*", "image/*", "*/*"]
QVALUES = st.one_of(st.sampled_from(["0", "1", "0.0", "1.0", "1.000", "0.000"]),
                    st.text("0123456789", min_size=1, max_size=3).map(lambda d: "0." + d))
PARAMS = st.sampled_from(["charset=utf-8", "level=1", 'foo="bar"', "format=flowed"])
# Each is an invalid media range both for RFC 9110 and for the server, so it is ignored. (No DEL:
# a control character in a header is malformed HTTP, which Tornado answers 400 before Hookline.)
JUNK = st.one_of(st.sampled_from(["", "garbage", "text/", "/json", "application", ";q=0.5", "*/json",
                                  "text/csv;q=2", "application/json;q=-1", "text/plain;q=x", "text/*;q=1.5"]),
                 st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters=",/*\x7f"),
                         max_size=8))


@st.composite
def media_range(draw):
    """``(text, type, subtype, q)`` of one valid media range."""
    name = draw(st.sampled_from(RANGES))
    kind, _, sub = name.partition("/")
    params = draw(st.lists(PARAMS, max_size=2))
    q = draw(st.none() | QVALUES)
    if q is not None:
        params.insert(draw(st.integers(0, len(params))), draw(st.sampled_from(["q", "Q"])) + "=" + q)
    case = draw(st.sampled_from([str.lower, str.upper, str.title]))
    sep = draw(st.sampled_from([";", "; ", " ;"]))
    return sep.join([case(name), *params]), kind, sub, 1.0 if q is None else float(q)


@st.composite
def accept_headers(draw):
    """``(header or None, [(type, subtype, q), ...])``: no header (1 in 10), junk only (1 in 10),
    or distinct valid ranges mixed with junk."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return None, []
    ranges = [] if shape == 1 else draw(st.lists(media_range(), min_size=1, max_size=5,
                                                unique_by=lambda r: (r[1], r[2])))
    junk = draw(st.lists(JUNK, max_size=2))
    parts = draw(st.permutations([r[0] for r in ranges] + junk))
    header = draw(st.sampled_from([", ", ",", " , "])).join(parts).strip()
    return header, [r[1:] for r in ranges]


def weight(media: str, ranges) -> float:
    """The q of the most specific range matching ``media`` (0 when none does)."""
    kind, _, sub = media.partition("/")
    specificity = {(kind, sub): 2, (kind, "*"): 1, ("*", "*"): 0}
    matching = [(specificity[r_kind, r_sub], q) for r_kind, r_sub, q in ranges if (r_kind, r_sub) in specificity]
    return max(matching)[1] if matching else 0.0      # the ranges are distinct: no two of one rank


def expected_media(value, ranges) -> str | None:
    """What RFC 9110 picks among the formats that can carry ``value``; None → 406."""
    offers = [m for m in OFFERED if m != "text/csv" or has_csv_form(value)]
    if not ranges:
        return offers[0]
    weights = [(weight(m, ranges), -i, m) for i, m in enumerate(offers)]
    q, _, best = max(weights)
    return best if q > 0 else None


# --- the properties ------------------------------------------------------------------------------------

@SETTINGS
@given(value=ANY_VALUE, accept=accept_headers())
def test_any_value_any_accept_gets_the_rfc_choice_or_406(server, value, accept):
    header, ranges = accept
    resp = echo(server, value, header)
    what = f"Accept {header!r}, value {value!r}"
    want = expected_media(value, ranges)
    event(f"expected {want or 406}")
    assert resp.status_code in (200, 406), f"{what} → {resp.status_code}: {resp.text[:300]}"
    if want is None:
        assert resp.status_code == 406, f"{what} → {resp.headers.get('Content-Type')}"
        return
    assert resp.status_code == 200, f"{what} → {resp.text[:300]}"
    media = resp.headers["Content-Type"].partition(";")[0]
    assert media == want, what
    assert "accept" in resp.headers.get("Vary", "").lower()
    CHECK_BODY[media](value, resp.content, what)


def check_json(value, body: bytes, what: str):
    assert json.loads(body) == value, what


def check_text(value, body: bytes, what: str):
    assert (body.decode() == value) if type(value) is str else (json.loads(body) == value), what


def check_csv(value, body: bytes, what: str):
    value = [value] if type(value) is dict else value      # a flat object is one row
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    header = list(dict.fromkeys(k for row in value for k in row))
    assert rows[:1] == ([header] if header else []) and len(rows) == (len(value) + 1 if header else 0), what
    for row, cells in zip(value, rows[1:]):
        assert all(_same_cell(row.get(k), cell) for k, cell in zip(header, cells)), f"{what}: {cells}"


def _same_cell(v, cell: str) -> bool:
    """A string as it is, null as an empty cell, anything else as its JSON text."""
    if v is None:
        return cell == ""
    return cell == v if type(v) is str else json.loads(cell) == v


def check_xml(value, body: bytes, what: str):
    parse_body("application/xml", body)          # well-formed, whatever the value: raises otherwise


CHECK_BODY = {"application/json": check_json, "text/plain": check_text, "text/csv": check_csv,
              "application/xml": check_xml}


# --- XML round trip (the lossless subset of docs/http.md, "Writing XML") ---------------------------------

NAMES = st.from_regex(r"[A-Za-z_\u00e9][A-Za-z0-9_.\-\u00e9]{0,5}", fullmatch=True).filter(
    lambda n: n != "xmlns")
# Characters XML 1.0 can carry (CR included: it is written as &#13;), no surrogates.
XML_TEXT = st.text(st.sampled_from("\t\n\r&<>\"'") | st.characters(
    min_codepoint=0x20, blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff"), max_size=8)


@st.composite
def xml_objects(draw, children):
    """An element with attributes and/or children (at least one): ``#text`` only beside
    attributes, non-empty; a list has two or more items and no list inside."""
    attrs = draw(st.dictionaries(NAMES.map(lambda n: "@" + n), XML_TEXT, max_size=2))
    kids = draw(st.dictionaries(NAMES, children | st.lists(children, min_size=2, max_size=3), max_size=3))
    if not kids and attrs and draw(st.booleans()):
        attrs["#text"] = draw(XML_TEXT.filter(bool))
    if not attrs and not kids:
        kids = {draw(NAMES): draw(XML_TEXT)}
    return {**attrs, **kids}


ELEMENTS = st.recursive(XML_TEXT, lambda kids: xml_objects(kids), max_leaves=12)
LOSSLESS = st.builds(lambda name, value: {name: value}, NAMES, ELEMENTS)


@SETTINGS
@given(value=LOSSLESS)
def test_lossless_values_round_trip_through_xml(server, value):
    text = json.dumps(value)
    event("with attributes" if '"@' in text else "no attributes")
    event("with a list" if "[" in text else "no list")
    resp = echo(server, value, "application/xml")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert parse_body("application/xml", resp.content) == value, resp.content[:500]


# --- the checker itself ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ranges, value, expected", [
    ([], [], "application/json"),                                                     # no Accept
    ([("application", "xml", 0.9), ("application", "json", 0.8)], {}, "application/xml"),
    ([("*", "*", 0.0)], {}, None),
    ([("text", "*", 1.0)], [{"a": 1}], "text/plain"),
    ([("text", "csv", 1.0)], {"a": {"b": 1}}, None),                                   # no CSV form
    ([("text", "csv", 1.0)], {"a": 1}, "text/csv"),                                    # one row
    ([("application", "*", 0.5), ("application", "json", 0.0)], {}, "application/xml"),
    ([("text", "*", 0.2), ("text", "csv", 0.9)], [{"a": 1}], "text/csv"),
    ([("*", "*", 0.5), ("application", "json", 0.4)], {}, "application/xml"),
])
def test_the_expected_format_follows_the_rfc(ranges, value, expected):
    assert expected_media(value, ranges) == expected
