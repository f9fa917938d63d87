"""Fuzz targets for the parsers a request reaches before any pipeline step:
``engine.formats.parse_body`` and ``engine.compression.Decoder``.

The contract of each is that any input gives a value or the module's own error
(``BodyError``, whose fields make a problem document), never anything else:

* parse_body(any content type, any bytes) → a JSON-serialisable value, or BodyError
  400/415 with a known slug; plus differential checks where another parser is the
  reference (orjson for JSON, ``bytes.decode`` for text, ``parse_qsl`` for forms, the
  raw-body envelope) and the XML guards (DTDs refused, depth bounded).
* Decoder(any coding, any max_bytes), fed any bytes in any chunking → bytes no longer
  than max_bytes, or BodyError 400/413/415 (415 only from the constructor); valid
  streams decode to their payload whatever the chunking, and damaged ones fail cleanly.

The third parser on that path, ``dsl.verify`` (every preset, near-valid and arbitrary
headers, bodies, URLs and clocks → only VerifyError), is fuzzed in tests/test_verify.py
(``test_fuzz_check_raises_only_verify_error``); it is not repeated here. The
hand-picked cases for both modules are in tests/test_formats.py and
tests/test_compression.py.
"""
from __future__ import annotations

import base64
import codecs
import zlib
from urllib.parse import parse_qsl

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.compression import CODINGS, Decoder, brotli
from engine.formats import MAX_XML_DEPTH, BodyError, NotAcceptable, parse_body

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
BODY_SLUGS = {400: {"bad-json", "bad-xml", "xml-forbidden", "bad-charset"}, 415: {"unsupported-media-type"}}
DECODE_SLUGS = {400: {"bad-encoding"}, 413: {"body-too-large"}, 415: {"unsupported-encoding"}}
FORM = "application/x-www-form-urlencoded"


def assert_body_error(exc: BodyError, slugs: dict) -> None:
    """A well-formed error: a known (status, slug) and a problem document that is JSON."""
    assert not isinstance(exc, NotAcceptable)
    assert exc.slug in slugs.get(exc.status, ()), (exc.status, exc.slug)
    assert isinstance(exc.title, str) and isinstance(exc.detail, str) and len(exc.detail) < 400
    status, body = exc.problem()
    doc = orjson.loads(body)
    assert status == exc.status == doc["status"] and doc["type"].endswith("/" + exc.slug)


# --- parse_body -----------------------------------------------------------------------------------

MEDIA = ["application/json", "application/problem+json", "application/vnd.api+json", "text/json",
         "application/xml", "text/xml", "application/atom+xml", "image/svg+xml", FORM, "text/plain",
         "text/csv", "application/octet-stream", "multipart/form-data", "*/*", "application/*",
         "application/json+xml", "application/xml+json", "+json", "json", "/", "", " ", ";", "a/b/c",
         "APPLICATION/JSON", "Text/Plain", "application/x-www-form-urlencoded ", "\x00/\x00", "ä/ö"]
CHARSETS = ["utf-8", "UTF-8", "utf8", "utf-16", "utf-16le", "utf-16-be", "utf-32", "latin-1", "iso-8859-1",
            "windows-1252", "cp1252", "ascii", "us-ascii", "shift_jis", "euc-jp", "gb18030", "koi8-r",
            "utf-7", "unicode_escape", "raw_unicode_escape", "undefined", "idna", "punycode", "rot13",
            "base64", "hex", "zlib", "bz2", "uu", "quopri", "mbcs", "", "\"utf-8\"", "'utf-8'", "utf-8;",
            "nope", "x" * 300, "ütf-8"]
PARAMS = st.sampled_from(["charset", "Charset", "CHARSET", " charset ", "boundary", "q", "", "charset=x"])
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(MEDIA),
    st.builds(lambda m, params: m + "".join(f";{k}={v}" for k, v in params), st.sampled_from(MEDIA),
              st.lists(st.tuples(PARAMS, st.sampled_from(CHARSETS) | st.text(max_size=12)), max_size=3)),
    st.text(max_size=60),
    st.text(max_size=700),                  # past the media-type cache limit
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
BOMS = [b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE]
XML_JUNK = [b"<?xml version='1.0'?>", b"<!DOCTYPE a [<!ENTITY e 'x'>]>", b"<!ENTITY x SYSTEM 'file:///etc/passwd'>",
            b"&e;", b"&amp;", b"&#0;", b"&#x110000;", b"<a>", b"</a>", b"<a/>", b"<b x='1' x='2'/>", b"<![CDATA[",
            b"]]>", b"<!-- c -->", b"<?pi x?>", b"<x:a xmlns:x='urn:x'>", b"</x:a>", b"\xff\xfe", b"\x00",
            b"text", b"<a xmlns:y='urn:y' y:b='1' b='2'>"]
FORM_JUNK = [b"a=1", b"&", b"=", b"a", b"%", b"%zz", b"%C3%A9", b"%FF", b"+", b"a=%", b";", b"b=\xff", b"\xc3\xa9=1"]


@st.composite
def bodies(draw):
    """Arbitrary bytes, or bytes shaped like one of the formats (and then damaged a little)."""
    kind = draw(st.sampled_from(["bytes", "json", "xml", "form", "text"]))
    if kind == "bytes":
        raw = draw(st.binary(max_size=300))
    elif kind == "json":
        raw = draw(st.sampled_from(BOMS)) + orjson.dumps(draw(JSON_VALUES))
    elif kind == "xml":
        raw = b"".join(draw(st.lists(st.sampled_from(XML_JUNK) | st.binary(max_size=6), max_size=12)))
    elif kind == "form":
        raw = b"&".join(draw(st.lists(st.sampled_from(FORM_JUNK) | st.binary(max_size=4), max_size=8)))
    else:
        text = draw(st.text(max_size=80))
        raw = text.encode(draw(st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1"])), "replace")
    if raw and draw(st.integers(0, 3)) == 0:       # damage: one byte changed, cut or added
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + draw(st.sampled_from([b"", b"\x00", b"\xff", b"<", b"{", b"%"])) + raw[i + 1:]
    return raw


def test_a_nul_in_the_charset_parameter_is_a_body_error():
    # Found by the target below: codecs.lookup() raises ValueError (not LookupError) for a name
    # holding NUL, and engine/formats.py _codec() lets it escape. Tornado refuses NUL in header
    # values today (400 before the app), so the server is not reachable this way; parse_body's
    # contract is still "BodyError or a value".
    for content_type in ("application/json; charset=\x00", "text/plain; charset=utf\x00-8",
                         "application/x-www-form-urlencoded; charset=\x00", "text/xml; charset=\x00"):
        with pytest.raises(BodyError) as info:
            parse_body(content_type, b"{}")
        assert (info.value.status, info.value.slug) == (400, "bad-charset")


@FUZZ
@given(content_type=CONTENT_TYPES.filter(lambda t: t is None or "\x00" not in t), raw=bodies(),
       accept_raw=st.booleans())
def test_parse_body_gives_a_value_or_a_body_error(content_type, raw, accept_raw):
    # NUL in the content type is pinned by the test above (a known failure), so that this target
    # keeps looking for other ones.
    try:
        value = parse_body(content_type, raw, accept_raw)
    except BodyError as exc:
        assert_body_error(exc, BODY_SLUGS)
        if exc.status == 415:
            assert not accept_raw
        return
    orjson.dumps(value)           # a value the runtime can carry and write back: no lone surrogates
    assert value == parse_body(content_type, raw, accept_raw)      # deterministic (and cache-safe)
    if not raw:
        assert value is None


@FUZZ
@given(media=st.sampled_from(["application/json", "application/vnd.x+json", "APPLICATION/JSON; charset=utf-8"]),
       raw=JSON_VALUES.map(orjson.dumps) | bodies())
def test_json_agrees_with_orjson(media, raw):
    try:
        expected = orjson.loads(raw)
    except orjson.JSONDecodeError:
        assume(False)
    assert parse_body(media, raw) == expected


@FUZZ
@given(media=st.sampled_from(["application/octet-stream", "application/pdf", "x/y", "text/csv"]),
       raw=st.binary(min_size=1, max_size=300))
def test_raw_bodies_are_wrapped_losslessly_or_refused(media, raw):
    wrapped = parse_body(media, raw, accept_raw=True)
    assert wrapped["content_type"] == media and wrapped["size"] == len(raw)
    assert base64.b64decode(wrapped["base64"]) == raw
    with pytest.raises(BodyError) as info:
        parse_body(media, raw)
    assert (info.value.status, info.value.slug) == (415, "unsupported-media-type")


@FUZZ
@given(data=st.data(), charset=st.sampled_from([None, "utf-8", "utf-16", "latin-1", "utf-32-le"]))
def test_text_is_the_decoded_body(data, charset):
    alphabet = st.characters(max_codepoint=255 if charset == "latin-1" else None, exclude_categories=("Cs",))
    text = data.draw(st.text(alphabet, min_size=1, max_size=200))
    content_type = "text/plain" + (f"; charset={charset}" if charset else "")
    assert parse_body(content_type, text.encode(charset or "utf-8")) == text.removeprefix("\ufeff")


@FUZZ
@given(raw=bodies())
def test_forms_have_the_names_parse_qsl_finds(raw):
    try:
        value = parse_body(FORM, raw)
    except BodyError as exc:
        assert exc.slug == "bad-charset"
        return
    if not raw:
        return
    pairs = parse_qsl(raw.decode("utf-8").removeprefix("\ufeff"), keep_blank_values=True)
    assert set(value) == {name for name, _ in pairs}
    for name, _ in pairs:
        expected = [v for n, v in pairs if n == name]
        assert value[name] == (expected[0] if len(expected) == 1 else expected)


NAMES = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,8}\Z")
TEXTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)


@st.composite
def xml_documents(draw, depth=0):
    name = draw(NAMES)
    if depth < 3 and draw(st.booleans()):
        children = draw(st.lists(xml_documents(depth=depth + 1), max_size=3))
        inner = "".join(children)
    else:
        inner = draw(TEXTS).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<{name}>{inner}</{name}>"


@FUZZ
@given(doc=xml_documents(), media=st.sampled_from(["application/xml", "text/xml", "application/atom+xml"]))
def test_well_formed_xml_is_one_root_object(doc, media):
    value = parse_body(media, doc.encode())
    root = doc[1:doc.index(">")]
    assert list(value) == [root]
    orjson.dumps(value)


@FUZZ
@given(doc=xml_documents(), decl=st.sampled_from([
    "<!DOCTYPE a>", "<!DOCTYPE a [<!ENTITY e 'x'>]>", "<!DOCTYPE a SYSTEM 'http://127.0.0.1:9/x.dtd'>",
    "<!DOCTYPE a [<!ENTITY % p SYSTEM 'file:///etc/passwd'> %p;]>"]))
def test_any_document_type_declaration_is_refused(doc, decl):
    with pytest.raises(BodyError) as info:
        parse_body("application/xml", (decl + doc).encode())
    assert (info.value.status, info.value.slug) in ((400, "xml-forbidden"), (400, "bad-xml"))


@settings(max_examples=50, deadline=None)
@given(depth=st.integers(MAX_XML_DEPTH + 1, 5 * MAX_XML_DEPTH), name=NAMES)
def test_xml_nesting_past_the_limit_is_bad_xml(depth, name):
    doc = f"<{name}>" * depth + f"</{name}>" * depth
    with pytest.raises(BodyError) as info:
        parse_body("application/xml", doc.encode())
    assert info.value.slug == "bad-xml"


# --- Decoder --------------------------------------------------------------------------------------

SUPPORTED = ["gzip", "x-gzip", "GZIP", " gzip ", "deflate", "Deflate", "identity", "", "identity, gzip",
             *(["br", "BR"] if brotli else [])]
CODING_NAMES = st.one_of(st.none(), st.sampled_from(SUPPORTED + [
    "compress", "zstd", "x-compress", "gzip, br", "deflate, gzip", "gzip,gzip", "*", "x-deflate", "br;q=1",
    "gzip;q=0", ",", " , ", "ｇｚｉｐ", "gzip\x00"]), st.text(max_size=20))


def compressor(coding: str):
    return {"gzip": lambda b, level: zlib.compress(b, level, wbits=31),
            "deflate": lambda b, level: zlib.compress(b, level),
            "raw-deflate": lambda b, level: zlib.compress(b, level, wbits=-15),
            "br": lambda b, level: brotli.compress(b, quality=level),
            "identity": lambda b, level: b}[coding]


STREAM_CODINGS = ["gzip", "deflate", "raw-deflate", "identity", *(["br"] if brotli else [])]
PAYLOADS = st.binary(max_size=3000) | st.integers(0, 20_000).map(lambda n: b"ab" * (n // 2))


def header_of(coding: str) -> str:
    return "deflate" if coding == "raw-deflate" else coding


def split(data: bytes, cuts) -> list[bytes]:
    """``data`` cut at the given offsets (sorted, deduplicated), empty chunks included."""
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def decode(coding, chunks, max_bytes):
    """``("ok", bytes)`` or ``("error", status, slug)``; anything else propagates."""
    try:
        decoder = Decoder(coding, max_bytes)
    except BodyError as exc:
        assert_body_error(exc, DECODE_SLUGS)
        assert exc.status == 415 and exc.headers == (("Accept-Encoding", ", ".join(CODINGS)),)
        return ("error", exc.status, exc.slug)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
        out = decoder.finish()
    except BodyError as exc:
        assert_body_error(exc, DECODE_SLUGS)
        assert exc.status in (400, 413)
        return ("error", exc.status, exc.slug)
    assert isinstance(out, bytes) and len(out) <= max_bytes
    return ("ok", out)


@FUZZ
@given(coding=CODING_NAMES, data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=6),
       max_bytes=st.integers(1, 5000))
def test_any_bytes_in_any_coding_decode_or_raise_body_error(coding, data, cuts, max_bytes):
    decode(coding, split(data, cuts), max_bytes)


@FUZZ
@given(coding=st.sampled_from(STREAM_CODINGS), payload=PAYLOADS, level=st.integers(1, 9),
       cuts=st.lists(st.integers(0, 4000), max_size=8), max_bytes=st.integers(1, 25_000))
def test_a_valid_stream_decodes_to_its_payload_in_any_chunking(coding, payload, level, cuts, max_bytes):
    data = compressor(coding)(payload, level)
    got = decode(header_of(coding), split(data, cuts), max_bytes)
    if len(payload) <= max_bytes:
        assert got == ("ok", payload)
    else:
        assert got == ("error", 413, "body-too-large")


@FUZZ
@given(coding=st.sampled_from([c for c in STREAM_CODINGS if c != "identity"]), payload=PAYLOADS,
       damage=st.sampled_from(["flip", "cut", "append", "insert", "repeat"]), where=st.integers(0, 10**6),
       byte=st.integers(0, 255), cuts=st.lists(st.integers(0, 4000), max_size=4), max_bytes=st.integers(1, 25_000))
def test_a_damaged_stream_fails_cleanly(coding, payload, damage, where, byte, cuts, max_bytes):
    data = compressor(coding)(payload, 6)
    i = where % len(data)
    data = {"flip": lambda: data[:i] + bytes([data[i] ^ (byte or 1)]) + data[i + 1:],
            "cut": lambda: data[:i],
            "append": lambda: data + bytes([byte]),
            "insert": lambda: data[:i] + bytes([byte]) + data[i:],
            "repeat": lambda: data + data}[damage]()
    got = decode(header_of(coding), split(data, cuts), max_bytes)
    if got[0] == "ok":        # some damage leaves a valid stream (a flipped bit in a gzip header's mtime)
        assert len(got[1]) <= max_bytes


@FUZZ
@given(coding=CODING_NAMES, data=st.binary(max_size=1500) | st.sampled_from(STREAM_CODINGS).flatmap(
    lambda c: PAYLOADS.map(lambda p: compressor(c)(p, 6))), cuts=st.lists(st.integers(0, 1500), min_size=1,
                                                                       max_size=8), max_bytes=st.integers(1, 25_000))
def test_chunking_never_changes_the_outcome(coding, data, cuts, max_bytes):
    whole = decode(coding, [data], max_bytes)
    assert decode(coding, split(data, cuts), max_bytes) == whole
    if len(data) <= 600:
        assert decode(coding, [data[i:i + 1] for i in range(len(data))], max_bytes) == whole


@FUZZ
@given(coding=st.sampled_from(SUPPORTED), max_bytes=st.integers(1, 100))
def test_an_empty_body_decodes_to_empty_bytes(coding, max_bytes):
    assert decode(coding, [], max_bytes) == ("ok", b"")
    assert decode(coding, [b""], max_bytes) == ("ok", b"")
