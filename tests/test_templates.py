"""dsl.templates: parse ``${env:…}``/``${file:…}``/``{expr}`` strings and render them.

In a URL a request value is percent-encoded, so that nothing in it (``/``,
``..``, ``?``, ``#``, ``@``, ``%``) can change the URL's structure: the host,
the path segments, the query and the fragment stay the ones in the file.
"""
from __future__ import annotations

import dataclasses
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.expressions import compile_expression
from dsl.runtime import StepFailed
from dsl.templates import Part, Template, parse, to_text


def kinds(raw: str) -> list[tuple[str, str, int]]:
    return [(p.kind, p.text, p.offset) for p in parse(raw)]


# --- parse ---------------------------------------------------------------------

@pytest.mark.parametrize("raw, parts", [
    ("plain", [("lit", "plain", 0)]),
    ("", []),
    ("${env:ERP}/stock/{request.params.sku}?x={{1}}",
     [("env", "ERP", 0), ("lit", "/stock/", 10), ("expr", "request.params.sku", 18), ("lit", "?x={1}", 37)]),
    ("Bearer ${file:token.txt}", [("lit", "Bearer ", 0), ("file", "token.txt", 7)]),
    ("${env:A}{x}", [("env", "A", 0), ("expr", "x", 9)]),
    ("{{literal}}", [("lit", "{literal}", 0)]),
    ("$${env:A}", [("lit", "$", 0), ("env", "A", 1)]),
    ("{ a.b }", [("expr", " a.b ", 1)]),
    ("{}", [("expr", "", 1)]),
    ("a}b", [("lit", "a", 0), ("error", "}", 1), ("lit", "b", 2)]),
    ("x/{unclosed", [("lit", "x/", 0), ("error", "{", 2), ("lit", "unclosed", 3)]),
    ("{a{b}}", [("error", "{", 0), ("lit", "a", 1), ("expr", "b", 3), ("error", "}", 5)]),
])
def test_parse(raw, parts):
    assert kinds(raw) == parts


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab.${}:envfil/ ?#@é"), max_size=40))
def test_parse_is_total_and_offsets_point_into_the_raw_text(raw):
    parts = parse(raw)
    assert [p.offset for p in parts] == sorted(p.offset for p in parts)
    for p in parts:
        if p.kind == "expr":
            assert raw[p.offset - 1] == "{" and raw[p.offset:p.offset + len(p.text)] == p.text
        elif p.kind in ("env", "file"):
            assert raw.startswith(f"${{{p.kind}:{p.text}}}", p.offset)
        elif p.kind == "error":
            assert raw[p.offset] in "{}"
    assert all(a.kind != "lit" or b.kind != "lit" for a, b in zip(parts, parts[1:])), "literals are merged"


def test_parts_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Part("lit", "a", 0).text = "b"


# --- render ---------------------------------------------------------------------

def url_template(*parts) -> Template:
    return Template(tuple(compile_expression(p[1:-1]) if p.startswith("{") else p for p in parts), True)


SHOP_URL = url_template("https://erp.example.test/shops/", "{x}", "/orders")


@pytest.mark.parametrize("value, segment", [
    ("a/b", "a%2Fb"),
    ("a?b=1", "a%3Fb%3D1"),
    ("a#frag", "a%23frag"),
    ("user@evil.test", "user%40evil.test"),
    ("100%", "100%25"),
    ("a b", "a%20b"),
    ("é", "%C3%A9"),
    ("\r\nX: y", "%0D%0AX%3A%20y"),
    (12, "12"),
    (True, "true"),
    ({"a": [1]}, "%7B%22a%22%3A%5B1%5D%7D"),
])
def test_url_values_are_percent_encoded(value, segment):
    assert SHOP_URL.render({"x": value}) == f"https://erp.example.test/shops/{segment}/orders"


@pytest.mark.parametrize("value", ["..", "."])
def test_a_dot_segment_value_cannot_climb_the_path(value):
    """``/shops/{x}/orders`` with x = ``..`` must not become ``/orders``.

    HTTP clients (yarl under aiohttp, WHATWG parsers) remove ``.``/``..``
    segments, and treat ``%2e`` as a dot too, so the value has to be refused
    (a StepFailed for the request) or rendered as something that is not a dot
    segment in either spelling.
    """
    try:
        url = SHOP_URL.render({"x": value})
    except StepFailed:
        return
    segments = urlsplit(url).path.split("/")
    dots = [s for s in segments if unquote(s) in (".", "..")]
    assert dots == [], f"x = {value!r} renders {url!r}: a dot segment that changes the path"


def test_a_null_value_renders_empty():
    assert url_template("http://h.test/a?q=", "{x}").render({"x": None}) == "http://h.test/a?q="


def test_header_templates_are_not_encoded():
    t = Template(("Bearer ", compile_expression("x")), False)
    assert t.render({"x": "a/b?c"}) == "Bearer a/b?c"


def test_to_text():
    assert [to_text(v) for v in ("s", None, 1, 1.5, False, [1, "a"], {"k": None})] == \
           ["s", "", "1", "1.5", "false", '[1,"a"]', '{"k":null}']


def test_to_text_of_an_integer_beyond_64_bits_is_its_digits():
    """JSON integers have no size limit; ``sum()`` or a literal can exceed 64 bits."""
    try:
        text = to_text(2**64)
    except TypeError as exc:
        pytest.fail(f"to_text(2**64) raised TypeError: {exc}; a call URL using it would fail with a 500")
    assert text == "18446744073709551616"


def test_is_static():
    assert Template(("http://h.test/",), True).is_static
    assert not SHOP_URL.is_static


def test_template_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SHOP_URL.url = False


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=30).filter(lambda s: s not in ("", ".", "..")),
                 st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False), st.booleans()))
def test_no_value_changes_host_segments_query_or_fragment(value):
    url = url_template("https://erp.example.test/shops/", "{x}", "/orders?src=", "{x}").render({"x": value})
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.fragment) == ("https", "erp.example.test", "")
    segments = parts.path.split("/")
    assert len(segments) == 4 and segments[:2] == ["", "shops"] and segments[3] == "orders"
    assert unquote(segments[2]) == to_text(value)
    assert parts.query.startswith("src=") and "&" not in parts.query and "#" not in parts.query
    assert unquote(parts.query[4:]) == to_text(value)
