"""engine.formats: bodies parsed by Content-Type, values serialised by format, Accept negotiated.

Pure and fast: no server. The cases are tables; the properties (hypothesis) say that
JSON round-trips exactly, XML round-trips on its lossless subset, any value serialises to
XML that parses back, and no input makes parse_body or negotiate raise anything but
BodyError / None.
"""
from __future__ import annotations

import base64
import codecs
import doctest
import math
import re
from pathlib import Path

import jmespath
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.formats
from engine.formats import (FORMATS, MAX_XML_DEPTH, OFFERED, BodyError, NotAcceptable, negotiate,
                            parse_body, serialise)

UBL = Path(__file__).parent / "data" / "corpus" / "xml" / "ubl-tc434-example1.xml"
ORDER = Path(__file__).parent / "data" / "corpus" / "shopify" / "orders.create.json"
FORM = "application/x-www-form-urlencoded"
SETTINGS = settings(max_examples=200, deadline=None)


def error_of(content_type, raw, **kw) -> tuple[int, str]:
    with pytest.raises(BodyError) as info:
        parse_body(content_type, raw, **kw)
    return info.value.status, info.value.slug


def test_doctests():
    assert doctest.testmod(engine.formats).failed == 0


# --- parsing: which parser, by Content-Type -------------------------------------------------

@pytest.mark.parametrize("content_type, raw, expected", [
    ("application/json", b'{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
    ("Application/JSON; charset=UTF-8", b'{"a": "\xc3\xa9"}', {"a": "é"}),
    ("application/vnd.api+json", b'{"data": {}}', {"data": {}}),
    ("application/problem+json; charset=utf-8", b"[1]", [1]),
    (None, b'{"no": "content-type"}', {"no": "content-type"}),
    ("", b"3", 3),
    ("text/plain", b"hello \xe2\x82\xac", "hello €"),
    ("text/plain; charset=iso-8859-1", b"caf\xe9", "café"),
    ("text/plain; charset=\"windows-1252\"", b"\x80 5", "€ 5"),
    (FORM, b"a=1&b=2&b=3&c=&d=x+y%21", {"a": "1", "b": ["2", "3"], "c": "", "d": "x y!"}),
    (FORM + "; charset=iso-8859-1", b"name=Jos%E9&city=M\xfcnster", {"name": "José", "city": "Münster"}),
    (FORM, b"name=Jos%C3%A9", {"name": "José"}),
    ("application/xml", b"<a>1</a>", {"a": "1"}),
    ("text/xml; charset=utf-8", b"<a>1</a>", {"a": "1"}),
    ("application/atom+xml", b"<feed><id>x</id></feed>", {"feed": {"id": "x"}}),
], ids=lambda v: v if isinstance(v, str) else None)
def test_parse_by_content_type(content_type, raw, expected):
    assert parse_body(content_type, raw) == expected


@pytest.mark.parametrize("content_type", [None, "application/json", "application/xml", "text/plain", FORM, "image/png"])
def test_an_empty_body_is_none_whatever_the_type(content_type):
    assert parse_body(content_type, b"") is None


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream", "multipart/form-data; boundary=x",
                                          "json", "text/html"])
def test_unsupported_types_are_415(content_type):
    assert error_of(content_type, b"\x89PNG") == (415, "unsupported-media-type")


def test_accept_raw_gives_a_queryable_base64_object():
    value = parse_body("Image/PNG; x=1", b"\x89PNG\x00", accept_raw=True)
    assert value == {"content_type": "image/png", "size": 5, "base64": base64.b64encode(b"\x89PNG\x00").decode()}
    assert jmespath.search("size", value) == 5


def test_accept_raw_does_not_change_known_types():
    assert parse_body("application/json", b"[1]", accept_raw=True) == [1]


# --- charsets --------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type, raw", [
    ("application/json; charset=utf-16", '{"a": "é€"}'.encode("utf-16")),
    ("application/json; charset=UTF-16LE", '{"a": "é€"}'.encode("utf-16-le")),
    ("application/json; charset=utf-32", '{"a": "é€"}'.encode("utf-32")),
    ("application/json; charset=iso-8859-15", '{"a": "é€"}'.encode("iso-8859-15")),
    ("application/json", codecs.BOM_UTF8 + '{"a": "é€"}'.encode()),
    ("application/json; charset=utf-8", codecs.BOM_UTF8 + '{"a": "é€"}'.encode()),
    ("application/json", '{"a": "é€"}'.encode("utf-16")),          # BOM, no charset
    ("application/json", '{"a": "é€"}'.encode("utf-16-be")),       # RFC 4627 zero pattern
    ("application/json", '{"a": "é€"}'.encode("utf-32-le")),
])
def test_json_charsets(content_type, raw):
    assert parse_body(content_type, raw) == {"a": "é€"}


def test_xml_charset_parameter_wins_over_the_declaration():
    raw = '<?xml version="1.0" encoding="utf-8"?><a>café</a>'.encode("latin-1")
    assert parse_body("application/xml; charset=iso-8859-1", raw) == {"a": "café"}
    assert parse_body("application/xml", '<?xml version="1.0" encoding="ISO-8859-1"?><a>café</a>'.encode("latin-1")) \
        == {"a": "café"}
    assert parse_body("application/xml", "<a>café</a>".encode("utf-16")) == {"a": "café"}


@pytest.mark.parametrize("content_type, raw", [
    ("text/plain; charset=klingon", b"x"),
    ("application/json; charset=base64", b"e30="),               # a codec, but not a text encoding
    ("text/plain", b"caf\xe9"),                                   # latin-1 bytes sent as utf-8
    ("text/plain; charset=utf-8", b"\xff\xfe\xfd"),
    ("application/json; charset=utf-16", b'{"a":1}'),             # odd length: not UTF-16
    ("application/json; charset=ascii", '{"a": "é"}'.encode()),
    (FORM, b"name=Jos%E9"),                                       # %-escape not utf-8
    (FORM + "; charset=nope", b"a=1"),
    ("application/xml; charset=nope", b"<a/>"),
    ("text/plain; charset=utf-7", b"+2AA-"),                     # would give a lone surrogate
    ("text/plain; charset=unicode_escape", b"\\ud800"),
    ("text/plain; charset=undefined", b"x"),
    ("text/plain; charset=idna", b"x"),
])
def test_bad_charsets_are_400(content_type, raw):
    assert error_of(content_type, raw) == (400, "bad-charset")


# --- JSON errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"{", b"{'a': 1}", b"[1,]", b"nul", b"NaN", b"\x00\x00",
                                 b"\xff\xfe{\x00"])
def test_malformed_json_is_400(raw):
    assert error_of("application/json", raw) == (400, "bad-json")


def test_body_error_problem_document():
    with pytest.raises(BodyError) as info:
        parse_body("application/json", b"{")
    status, body = info.value.problem()
    doc = orjson.loads(body)
    assert status == 400 and doc["type"].endswith("/bad-json") and doc["title"] == "Malformed JSON"
    assert "pointer" not in doc
    assert orjson.loads(BodyError(422, "x", "X", "d", "#/items/0").problem()[1])["pointer"] == "#/items/0"


# --- XML: the mapping ------------------------------------------------------------------------

@pytest.mark.parametrize("xml, expected", [
    ("<a/>", {"a": ""}),
    ("<a>  x  </a>", {"a": "  x  "}),
    ("<a><b>1</b><c>2</c><b>3</b></a>", {"a": {"b": ["1", "3"], "c": "2"}}),
    ('<a id="7">x</a>', {"a": {"@id": "7", "#text": "x"}}),
    ('<a id="7"/>', {"a": {"@id": "7"}}),
    ('<a id="7"> </a>', {"a": {"@id": "7", "#text": " "}}),
    ("<a>\n  <b>1</b>\n</a>", {"a": {"b": "1"}}),
    ("<p>Hello <b>x</b> world </p>", {"p": {"b": "x", "#text": "Hello  world"}}),
    ("<a>x &amp; y &lt; &#233;<![CDATA[<z>]]></a>", {"a": "x & y < é<z>"}),
    ("<a><!-- note --><?pi data?><b/></a>", {"a": {"b": ""}}),
    ("<a>1\r\n2</a>", {"a": "1\n2"}),
    ('<x:a xmlns:x="urn:x"><x:b>1</x:b></x:a>', {"a": {"@xmlns": {"x": "urn:x"}, "b": "1"}}),
    ('<a xmlns="urn:d"><b xmlns:y="urn:y" y:k="1">t</b></a>',
     {"a": {"@xmlns": {"": "urn:d"}, "b": {"@xmlns": {"y": "urn:y"}, "@k": "1", "#text": "t"}}}),
    ('<a xmlns:p="urn:p" p:k="1" k="2"/>', {"a": {"@xmlns": {"p": "urn:p"}, "@k": "1", "@{}k": "2"}}),
    ('<a xmlns:p="urn:p" k="2" p:k="1"/>', {"a": {"@xmlns": {"p": "urn:p"}, "@k": "2", "@{urn:p}k": "1"}}),
    ('<a xmlns:p="urn:p" xmlns:q="urn:q"><p:b>1</p:b><q:b>2</q:b></a>',
     {"a": {"@xmlns": {"p": "urn:p", "q": "urn:q"}, "b": ["1", "2"]}}),
], ids=lambda v: v if isinstance(v, str) else None)
def test_xml_mapping(xml, expected):
    assert parse_body("application/xml", xml.encode()) == expected


def test_ubl_invoice_is_queryable_with_local_names():
    invoice = parse_body("application/xml", UBL.read_bytes())
    q = lambda expression: jmespath.search(expression, invoice)   # noqa: E731
    assert q("Invoice.ID") == "12115118"
    assert q("Invoice.IssueDate") == "2015-01-09"
    assert q("length(Invoice.InvoiceLine)") == 20
    amounts = q("Invoice.InvoiceLine[].LineExtensionAmount")
    assert amounts[0] == {"@currencyID": "EUR", "#text": "19.90"} and len(amounts) == 20
    assert q('Invoice.InvoiceLine[0].Item.Name') == "PATAT FRITES 10MM 10KG"
    total = q('sum(Invoice.InvoiceLine[].to_number(LineExtensionAmount."#text"))')
    assert math.isclose(total, float(q('Invoice.LegalMonetaryTotal.LineExtensionAmount."#text"')))
    assert q('Invoice.LegalMonetaryTotal.PayableAmount') == {"@currencyID": "EUR", "#text": "250.33"}
    assert q('Invoice.AccountingSupplierParty.Party.PostalAddress.Country.IdentificationCode') == "NL"
    assert q('Invoice."@xmlns".cbc') == "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
    assert q('Invoice."@xmlns".""') == "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
    assert q('Invoice."@schemaLocation"').startswith("urn:oasis:names:specification:ubl:schema:xsd:Invoice-2 ")
    assert q("Invoice.PaymentMeans[].PayeeFinancialAccount.ID") == ["NL57 RABO 0107307510", "NL03 INGB 0004489902"]


def test_ubl_invoice_round_trips_through_serialise():
    invoice = parse_body("application/xml", UBL.read_bytes())
    body, content_type = serialise(invoice, "xml")
    assert content_type == "application/xml; charset=utf-8"
    assert parse_body(content_type, body) == invoice
    assert parse_body("application/json", serialise(invoice, "json")[0]) == invoice


# --- XML: attacks and malformed documents ----------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol9;</lolz>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ELEMENT foo ANY><!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<foo>&xxe;</foo>"""


@pytest.mark.parametrize("raw", [
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',                              # DTD with an entity
    b'<!DOCTYPE a [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><a/>',  # parameter entity
    b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/a.dtd"><a/>',                     # external DTD
    b"<!DOCTYPE a><a/>",                                                        # any DTD at all
    b'<!DOCTYPE a [<!ENTITY img SYSTEM "x.png" NDATA png>]><a/>',              # unparsed entity
], ids=["billion-laughs", "external-entity", "dtd-entity", "parameter-entity", "external-dtd", "bare-doctype",
        "unparsed-entity"])
def test_xml_attacks_are_refused(raw):
    assert error_of("application/xml", raw) == (400, "xml-forbidden")


@pytest.mark.parametrize("raw", [b"<a>", b"<a></b>", b"<a/><b/>", b"text", b"<a>&nope;</a>", b"<a x='1' x='2'/>",
                                 b"<p:a/>", b"\x00", b"<a>\x01</a>", b"<?xml version='1.0'?>"])
def test_malformed_xml_is_400(raw):
    assert error_of("text/xml", raw) == (400, "bad-xml")


def test_xml_nesting_is_bounded():
    n = MAX_XML_DEPTH - 1                                     # n elements, each with two <b/>
    ok = b"<a><b/>" * n + b"<b/></a>" * n
    value = parse_body("application/xml", ok)
    for fmt in ("json", "xml"):
        assert parse_body(*reversed(serialise(value, fmt))) == value
    deep = b"<a>" * (MAX_XML_DEPTH + 1) + b"</a>" * (MAX_XML_DEPTH + 1)
    assert error_of("application/xml", deep) == (400, "bad-xml")


# --- serialising -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_too_deep_or_not_json_is_a_type_error(fmt):
    deep = []
    for _ in range(300):
        deep = [deep]
    for value in (deep, {"a": deep}, {"a": {1, 2}}):
        with pytest.raises(TypeError):
            serialise(value, fmt)


def test_json_and_text():
    assert serialise({"a": [1, None]}, "json") == (b'{"a":[1,null]}', "application/json")
    assert serialise("héllo\n", "text") == ("héllo\n".encode(), "text/plain; charset=utf-8")
    assert serialise({"a": 1}, "text") == (b'{"a":1}', "text/plain; charset=utf-8")
    assert serialise(None, "text")[0] == b"null"


@pytest.mark.parametrize("value, xml", [
    ({"order": {"id": 1, "ok": True, "note": None, "tags": ["a", "b"]}},
     "<order><id>1</id><ok>true</ok><note/><tags>a</tags><tags>b</tags></order>"),
    ({"a": 1, "b": 2}, "<response><a>1</a><b>2</b></response>"),
    ([1, [2, 3]], "<response><item>1</item><item><item>2</item><item>3</item></item></response>"),
    ("x", "<response>x</response>"),
    ({"a": [1, 2]}, "<response><a>1</a><a>2</a></response>"),
    ({}, "<response/>"),
    ({"amount": {"@currency": "EUR", "#text": 9.5}}, '<amount currency="EUR">9.5</amount>'),
    ({"doc": {"@xmlns": {"": "urn:d", "p": "urn:p", "xml": "urn:bad", "q": ""}, "b": "1"}},
     '<doc xmlns="urn:d" xmlns:p="urn:p"><b>1</b></doc>'),
    ({"r": {"bad key": 1, "1st": 2, "ok.name-x": 3, "Größe": 4}},
     '<r><item key="bad key">1</item><item key="1st">2</item><ok.name-x>3</ok.name-x><Größe>4</Größe></r>'),
    ({"r": {"t": "a<b & \"c\" ]]> \r\x00", "@q": "x\"y\n"}},
     '<r q="x&quot;y&#10;"><t>a&lt;b &amp; "c" ]]&gt; &#13;\ufffd</t></r>'),
    ({"r": {"@obj": {"k": 1}, "@": "v", "#text": [1]}}, '<r obj="{&quot;k&quot;:1}">[1]<item key="@">v</item></r>'),
])
def test_xml_serialisation(value, xml):
    body, content_type = serialise(value, "xml")
    assert body.decode() == '<?xml version="1.0" encoding="utf-8"?>\n' + xml
    parse_body(content_type, body)      # and it is well-formed


@pytest.mark.parametrize("value, csv", [
    ([{"a": 1, "b": "x,y"}, {"c": None, "a": True}], 'a,b,c\r\n1,"x,y",\r\ntrue,,\r\n'),
    ([{"q": 'say "hi"', "n": "line\nbreak", "f": 1.5}], 'q,n,f\r\n"say ""hi""","line\nbreak",1.5\r\n'),
    ([], ""),
    ([{}, {}], ""),
    ({"id": "A-1", "total": 9.5, "paid": True, "note": None}, "id,total,paid,note\r\nA-1,9.5,true,\r\n"),
    ({}, ""),
])
def test_csv(value, csv):
    assert serialise(value, "csv") == (csv.encode(), "text/csv; charset=utf-8")


@pytest.mark.parametrize("value", [{"a": {"b": 1}}, {"a": [1]}, "x", None, [1, 2], [{"a": {"b": 1}}], [{"a": [1]}],
                                   [{"a": 1}, 2]])
def test_csv_not_possible(value):
    with pytest.raises(NotAcceptable) as info:
        serialise(value, "csv")
    assert info.value.status == 406 and isinstance(info.value, BodyError)


def test_formats_and_offered_agree():
    assert set(FORMATS.values()) == {"json", "xml", "text", "csv"}
    assert OFFERED[0] == "application/json" and set(OFFERED) == set(FORMATS)
    for media, fmt in FORMATS.items():
        assert serialise([{"a": "1"}], fmt)[1].split(";")[0] == media


def test_order_json_round_trips_in_every_format_that_can_hold_it():
    order = orjson.loads(ORDER.read_bytes())
    assert parse_body("application/json", serialise(order, "json")[0]) == order
    xml = parse_body("application/xml", serialise(order, "xml")[0])
    assert jmespath.search("response.line_items[0].sku", xml) == order["line_items"][0]["sku"]
    flat = [{k: v for k, v in line.items() if not isinstance(v, (dict, list))} for line in order["line_items"]]
    assert serialise(flat, "csv")[0].count(b"\r\n") == len(flat) + 1


# --- negotiation -----------------------------------------------------------------------------

TEXTS = ("application/json", "text/plain", "text/csv")


@pytest.mark.parametrize("accept, offered, expected", [
    ("application/xml;q=0.9, application/json;q=0.8", OFFERED, "application/xml"),
    ("*/*;q=0", OFFERED, None),
    ("text/*", TEXTS, "text/plain"),
    ("text/*", ("application/json", "text/csv", "text/plain"), "text/csv"),
    ("application/*;q=0.5, application/json;q=0", OFFERED, "application/xml"),
    ("application/*;q=0.5, application/json;q=0", ("application/json", "text/csv"), None),
    (None, OFFERED, "application/json"),
    ("", OFFERED, "application/json"),
    ("*/*", OFFERED, "application/json"),
    ("*", OFFERED, "application/json"),
    ("text/html", OFFERED, None),
    ("TEXT/CSV", OFFERED, "text/csv"),
    ("text/csv;charset=utf-8;q=0.4, */*;q=0.3", OFFERED, "text/csv"),
    ("text/*;q=0.3, text/plain;q=0.7, */*;q=0.5", TEXTS, "text/plain"),      # RFC 9110 §12.5.1 example
    ("text/*;q=0.3, text/plain;q=0.7, */*;q=0.5", ("text/csv", "application/json"), "application/json"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", OFFERED, "application/xml"),
    ("application/json;q=0.001", OFFERED, "application/json"),
    ("application/json;q=2, text/csv", OFFERED, "text/csv"),                 # bad q: that range is ignored
    ("application/json;q=x", OFFERED, "application/json"),                   # no valid range: as if absent
    ("*/json, text/plain", OFFERED, "text/plain"),
    ("text/plain;format=flowed;q=0.5, text/csv;q=0.5", TEXTS, "text/plain"),
    ("application/json", (), None),
])
def test_negotiate(accept, offered, expected):
    assert negotiate(accept, offered) == expected


def test_negotiate_long_headers_are_not_cached_but_still_work():
    accept = "text/csv;q=0.9, " + ", ".join(f"x/y{i};q=0.1" for i in range(200))
    assert len(accept) > 512 and negotiate(accept, OFFERED) == "text/csv"


# --- properties ------------------------------------------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
JSON_VALUES = st.recursive(JSON_SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
                           max_leaves=25)


@SETTINGS
@given(JSON_VALUES)
def test_json_round_trips_exactly(value):
    body, content_type = serialise(value, "json")
    assert parse_body(content_type, body) == value


XML_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Cn")) | st.sampled_from("\t\n\r")
XML_TEXT = st.text(XML_CHARS, max_size=8)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,5}", fullmatch=True)
ATTRIBUTES = st.dictionaries(NAMES.map("@".__add__), XML_TEXT, max_size=2)
INNER_TEXT = st.text(XML_CHARS, min_size=1, max_size=8).map(str.strip).filter(bool)


def _lossless_object(children):
    members = st.dictionaries(NAMES, children | st.lists(children, min_size=2, max_size=3), max_size=3)
    text = st.none() | INNER_TEXT
    return st.builds(_merge, ATTRIBUTES, members, text).filter(lambda o: set(o) - {"#text"})


def _merge(attributes, members, text):
    out = {**attributes, **members}
    return out if text is None else {**out, "#text": text}


LOSSLESS = st.dictionaries(NAMES, st.recursive(XML_TEXT, _lossless_object, max_leaves=12), min_size=1, max_size=1)


@SETTINGS
@given(LOSSLESS)
def test_xml_round_trips_on_its_lossless_subset(value):
    body, content_type = serialise(value, "xml")
    assert parse_body(content_type, body) == value


ODD_KEYS = st.text(max_size=5) | st.sampled_from(["@xmlns", "#text", "@id", "item", "@", "#", "a:b", "xml",
                                                  "@xmlns:x", "xmlns", "@xml:lang", "@1"])
ANY_VALUES = st.recursive(JSON_SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(ODD_KEYS, c, max_size=4),
                          max_leaves=20)


@SETTINGS
@given(ANY_VALUES)
def test_any_value_serialises_to_xml_that_parses(value):
    body, content_type = serialise(value, "xml")
    parse_body(content_type, body)


@SETTINGS
@given(ANY_VALUES)
def test_csv_and_text_never_fail_but_with_not_acceptable(value):
    serialise(value, "text")
    try:
        serialise(value, "csv")
    except NotAcceptable:
        pass


CHARSETS = ["utf-8", "utf-16", "utf-32-be", "latin-1", "shift_jis", "utf-7", "unicode_escape", "undefined", "idna",
            "punycode", "rot13", "nope"]
CONTENT_TYPES = (st.sampled_from([None, "application/json", "application/xml", "text/plain", FORM, "x/y"])
                 | st.builds("{}; charset={}".format, st.sampled_from(["application/json", "text/xml", "text/plain", FORM]),
                             st.sampled_from(CHARSETS))
                 | st.text(max_size=40))


@SETTINGS
@given(CONTENT_TYPES, st.binary(max_size=200) | JSON_VALUES.map(orjson.dumps), st.booleans())
def test_parse_body_raises_only_body_error(content_type, raw, accept_raw):
    try:
        value = parse_body(content_type, raw, accept_raw=accept_raw)
    except BodyError as exc:
        assert exc.status in (400, 415) and exc.slug
    else:
        orjson.dumps(value)         # whatever parses can be written back: no lone surrogates


@SETTINGS
@given(st.text(max_size=120) | st.lists(st.sampled_from(["text/*", "*/*", "application/json", ";q=0", ";q=0.5",
                                                          ",", " ", "q=", "*", "/", ";"]), max_size=12).map("".join))
def test_negotiate_never_raises(accept):
    assert negotiate(accept, OFFERED) in (*OFFERED, None)


# --- docs/http.md shows what the code does -----------------------------------------------------

HTTP_DOC = Path(__file__).resolve().parent.parent / "docs" / "http.md"


def _doc_section(title: str) -> str:
    text = HTTP_DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _fenced(section: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", section, flags=re.M | re.S)


def _table(section: str, after: str) -> list[tuple[str, str]]:
    """The first backquoted text of the two cells of each row of the table after ``after``."""
    lines = section[section.index(after):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = []
    for line in lines[start + 2:end]:
        cells = [re.search(r"`([^`]*)`", cell) for cell in line.strip("|").split("|")]
        rows.append(tuple(m.group(1) if m else None for m in cells[:2]))
    return rows


def test_docs_xml_example_is_what_parse_body_gives():
    section = _doc_section("The XML mapping")
    xml, value = _fenced(section, "xml")[0], orjson.loads(_fenced(section, "json")[0])
    assert parse_body("application/xml", xml.encode()) == value
    rows = _table(section, "and these expressions work on it")
    assert len(rows) >= 6
    for expression, result in rows:
        assert jmespath.search(expression, value) == orjson.loads(result), expression
    assert jmespath.search("to_array(Invoice.InvoiceLine[0])[].ID", value) == ["1"]


def test_docs_serialised_xml_example():
    section = _doc_section("Responses")
    example = {"order": {"id": 1, "ok": True, "note": None, "tags": ["a", "b"]}}
    assert serialise(example, "xml")[0].decode() + "\n" == _fenced(section, "xml")[0]


def test_docs_negotiation_table():
    rows = _table(_doc_section("Content negotiation"), "| Accept | chosen |")
    assert len(rows) >= 6
    for accept, chosen in rows:
        assert negotiate(accept, OFFERED) == chosen, accept
