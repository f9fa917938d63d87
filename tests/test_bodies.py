"""``dsl.bodies``: a call's body written as XML, a form or text, read back as Hookline reads requests.

The round trip is property-tested: a JSON value of the mapping's class, written as XML and read
back through the inbound mapping (``engine.formats.parse_body``), is the same value with local
names, and the document is well-formed for a strict parser (expat with namespace checks,
through ``xml.etree``). Any JSON value at all is either written as well-formed XML or refused
with ``Unwritable`` — never malformed output, never another exception.
"""
from __future__ import annotations

import doctest
from xml.etree import ElementTree

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import dsl.bodies
from dsl.bodies import Unwritable, fits, write_form, write_text, write_xml
from engine.formats import parse_body

SETTINGS = settings(max_examples=300, deadline=None)

# XML 1.0 characters (no surrogates, controls other than tab/newline/return, U+FFFE/U+FFFF)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff",
                             min_codepoint=0x09).filter(lambda c: c >= " " or c in "\t\n\r"), max_size=12)
NCNAME = st.from_regex(r"[A-Za-z_\u00c0-\u00d6\u0391-\u03a1\u03a3-\u03a9\u0410-\u044f\u4e00-\u4e20]"
                       r"[A-Za-z0-9_.\-\u00b7\u0300-\u0302\u0410-\u044f\u4e00-\u4e20]{0,6}", fullmatch=True)
PREFIXES = st.sampled_from(["a", "soap", "cbc", "x1"])
URIS = st.sampled_from(["urn:a", "http://schemas.xmlsoap.org/soap/envelope/", "urn:x&y<\"z\">"])


def local(key: str) -> str:
    """The key as the inbound mapping names it: without its prefix."""
    head = "@" if key[:1] == "@" else ""
    return head + key[len(head):].rpartition(":")[2]


def localise(value):
    if type(value) is list:
        return [localise(v) for v in value]
    if type(value) is dict:
        return {k if k in ("@xmlns", "#text") else local(k): v if k == "@xmlns" else localise(v)
                for k, v in value.items()}
    return value


@st.composite
def element(draw, scope: tuple, depth: int):
    """An element's value in the round-trip class: a string, or an object of attributes,
    namespace declarations, children and (where the mapping keeps it as is) text."""
    if depth > 3 or draw(st.booleans()):
        return draw(TEXT)
    obj = {}
    if draw(st.integers(0, 3)) == 0:
        declared = draw(st.dictionaries(st.one_of(st.just(""), PREFIXES), URIS, min_size=1, max_size=2))
        obj["@xmlns"] = declared
        scope = tuple(sorted(set(scope) | {p for p in declared if p}))
    names = draw(st.lists(NCNAME, max_size=4, unique=True))
    for i, name in enumerate(names):
        key = f"{draw(st.sampled_from(scope))}:{name}" if scope and draw(st.booleans()) else name
        if i % 2:
            obj["@" + key] = draw(TEXT)
        elif draw(st.integers(0, 3)) == 0:
            obj[key] = draw(st.lists(element(scope, depth + 1), min_size=2, max_size=3))
        else:
            obj[key] = draw(element(scope, depth + 1))
    children = any(k[:1] != "@" for k in obj)
    if obj and draw(st.booleans()):            # text alone would read back as a string
        text = draw(TEXT)
        text = text.strip() if children else text
        if text and text.strip():
            obj["#text"] = text
    assume(obj)
    return obj


@st.composite
def documents(draw):
    name = draw(NCNAME)
    value = draw(element((), 0))
    if draw(st.booleans()) and type(value) is dict:          # a prefixed root declares its prefix
        value["@xmlns"] = {**value.get("@xmlns", {}), "env": "urn:env"}
        name = "env:" + name
    return {name: value}


@SETTINGS
@given(documents())
def test_xml_round_trips_through_the_inbound_mapping_with_local_names(doc):
    raw = write_xml(doc)
    ElementTree.fromstring(raw)                                  # strict: raises on any flaw
    assert parse_body("application/xml", raw) == localise(doc)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.one_of(st.text(max_size=6), NCNAME, st.sampled_from(
                        ["@a", "#text", "@xmlns", "soap:Envelope", "@xml:lang", "x:y:z", "xmlns"])),
                        inner, max_size=3), max_leaves=12)


@SETTINGS
@given(st.one_of(JSON, st.dictionaries(NCNAME, JSON, min_size=1, max_size=1)))
def test_any_json_value_is_well_formed_xml_or_refused_with_a_pointer(value):
    try:
        raw = write_xml(value)
    except Unwritable as exc:
        assert exc.pointer == "" or exc.pointer.startswith("/")
        return
    ElementTree.fromstring(raw)
    parse_body("application/xml", raw)


@pytest.mark.parametrize("value, pointer, message", [
    ({}, "", "one root element"),
    ("text", "", "one root element"),
    ({"r": [1]}, "/r", "would repeat the root element"),
    ({"r": {"1st": "x"}}, "/r/1st", "not an XML element name"),
    ({"r": {"#comment": "x"}}, "/r/#comment", "only \"#text\" starts with '#'"),
    ({"r": {"@xmlns": {"p": ""}}}, "/r/@xmlns/p", "needs a non-empty URI"),
    ({"r": {"@xmlns": {"xml": "urn:x"}}}, "/r/@xmlns/xml", "belong to XML itself"),
    ({"r": {"@xmlns": {"p": 1}}}, "/r/@xmlns/p", "a namespace URI is a string"),
    ({"r": {"xmlns": "urn:x"}}, "/r/xmlns", "namespaces are declared with"),
    ({"r": {"@xmlns:p": "urn:x"}}, "/r/@xmlns:p", "namespaces are declared with"),
    ({"r": {"#text": {"a": 1}}}, "/r/#text", "text is a string"),
    ({"r": {"a": float("inf")}}, "/r/a", "not a JSON number"),
    ({"r": {"a": "\ud800"}}, "/r/a", "U+D800"),
])
def test_what_cannot_be_xml_is_refused_with_its_pointer(value, pointer, message):
    with pytest.raises(Unwritable) as caught:
        write_xml(value)
    assert caught.value.pointer == pointer and message in caught.value.message


def test_prefixes_are_scoped_to_the_element_that_declares_them():
    inner = {"r": {"a": {"@xmlns": {"p": "urn:p"}, "p:x": "1"}, "p:y": "2"}}
    with pytest.raises(Unwritable, match="prefix 'p' is not declared") as caught:
        write_xml(inner)
    assert caught.value.pointer == "/r/p:y"
    assert write_xml({"r": {"@xml:lang": "de", "x": "1"}}).endswith(b'<r xml:lang="de"><x>1</x></r>')


def test_deep_nesting_is_refused_not_a_recursion_error():
    value = "x"
    for _ in range(dsl.bodies.MAX_DEPTH + 5):
        value = {"a": value}
    with pytest.raises(Unwritable, match="deeper than"):
        write_xml(value)


def test_form_and_text():
    assert write_form({"q": "a b&c", "n": [1, None, 2.5], "f": False}) == b"q=a+b%26c&n=1&n=2.5&f=false"
    assert parse_body("application/x-www-form-urlencoded", write_form({"\u00e9": "\u00fc"})) == {"\u00e9": "\u00fc"}
    assert write_text("caf\u00e9\r\n") == "caf\u00e9\r\n".encode() and write_text(12) == b"12"
    assert write_text(None) == b""
    for bad, call in [([1], write_form), ({"a": [[1]]}, write_form), ({"a": 1}, write_text),
                      ("\udc80", write_text), ({"a": "\udc80"}, write_form)]:
        with pytest.raises(Unwritable):
            call(bad)


@pytest.mark.parametrize("fmt, content_type, fit", [
    ("json", "application/json", True), ("json", "Application/Problem+JSON; charset=utf-8", True),
    ("json", "application/xml", False), ("xml", "text/xml; charset=utf-8", True),
    ("xml", "application/soap+xml", True), ("xml", "text/plain", False),
    ("form", "application/x-www-form-urlencoded", True), ("form", "multipart/form-data", False),
    ("text", "application/edi-x12", True), ("text", "application/json", True),
])
def test_fits(fmt, content_type, fit):
    assert fits(fmt, content_type) is fit


def test_doctests():
    failed, attempted = doctest.testmod(dsl.bodies)
    assert attempted and not failed
