"""Request bodies in, response bodies out: parse by Content-Type, serialise by format, negotiate Accept.

Three pure functions, no per-call compilation (lookups and patterns are built at import):

    >>> parse_body("application/json", b'{"id": 1}')
    {'id': 1}
    >>> parse_body("application/x-www-form-urlencoded", b"a=1&b=2&b=3")
    {'a': '1', 'b': ['2', '3']}
    >>> serialise({"id": 1}, "xml")[0]
    b'<?xml version="1.0" encoding="utf-8"?>\\n<id>1</id>'
    >>> negotiate("application/xml;q=0.9, application/json;q=0.8", OFFERED)
    'application/xml'

Exceptions (client text only; nothing here is for the log):

    BodyError(status, slug, title, detail, pointer=None, *, headers=())
     │    a request body cannot be read: 400 malformed, 413 too large (engine.compression),
     │    415 unsupported type or coding; ``.problem()`` → ``(status, body)`` via engine.problems
     └── NotAcceptable   406: a value has no form in the chosen format (only CSV has shape limits)

Parsing (media type and parameter names are case-insensitive; parameters other than
``charset`` are ignored; an empty body is ``None`` whatever the type):

    ============================================  ==========================================
    application/json, */*+json, no Content-Type   read_json: charset utf-8 by default (a UTF-8,
                                                  UTF-16 or UTF-32 BOM is honoured and dropped,
                                                  with a charset too), another charset is
                                                  decoded first; then dsl.strict_json
    application/xml, text/xml, */*+xml            defusedxml; mapping below
    application/x-www-form-urlencoded             {name: str | [str, ...]} (repeats → list)
    text/plain                                    str (default charset utf-8)
    anything else, with accept_raw                {"content_type": media, "size": n,
                                                   "base64": standard base64 of the body}
    anything else                                 415 unsupported-media-type
    ============================================  ==========================================

Problem slugs: bad-json, too-deep and number-too-large (dsl.strict_json), bad-xml, xml-forbidden (DTD, entity declaration or external
reference), bad-charset (unknown charset — also Python-only codecs and UTF-7 — or bytes that do
not decode), unsupported-media-type.

The XML mapping (element → JSON-like value, chosen so JMESPath needs no quoting):

* the document is ``{root-local-name: value}``;
* names are *local* names: ``<cbc:ID>`` is ``ID``, ``xsi:schemaLocation="…"`` is
  ``@schemaLocation`` (should two attributes share a local name, the later one is keyed
  ``@{uri}local``, or ``@{}local`` without a namespace); namespace declarations are kept where they appear as
  ``"@xmlns": {prefix: uri}`` (``""`` is the default namespace);
* attributes are ``"@name": "value"``;
* an element with neither attributes nor children is its text, verbatim (``""`` when empty);
* otherwise it is an object; its text is ``"#text"`` when not blank (verbatim with
  attributes only; with children, the direct text pieces joined and stripped);
* repeated children with one local name become a list, in document order; comments and
  processing instructions are dropped; values stay strings (no number guessing);
* nesting deeper than MAX_XML_DEPTH elements is refused (400 bad-xml).

So the UBL invoice ``<Invoice xmlns="…Invoice-2" xmlns:cbc="…"><cbc:ID>12115118</cbc:ID>
<cac:InvoiceLine>…<cbc:LineExtensionAmount currencyID="EUR">9.95</…>`` reads as
``Invoice.ID`` → ``"12115118"``, ``Invoice.InvoiceLine[].LineExtensionAmount."#text"`` and
``Invoice."@xmlns".cbc`` → the CommonBasicComponents URI. See docs/http.md.

Serialising is the inverse: a single-key object whose value is not a list names the root,
anything else goes under ``<response>``; a list under a key repeats that key's element, a
list anywhere else repeats ``<item>``; ``@k`` keys are attributes, ``#text`` is text,
``@xmlns`` declares namespaces; scalars are written as their JSON text (``null`` as an empty
element); a key that is not a plain XML name (ASCII/Latin-1 letters, digits, ``_ . -``)
becomes ``<item key="the key">``; characters XML cannot carry become U+FFFD.
``parse(serialise(v)) == v`` holds when v is a single-key object whose leaves are strings
without such characters, whose names are plain, with no empty objects or lists, no lists of
fewer than two items, no list directly inside a list, and ``#text`` only beside attributes
(non-empty) or children (non-empty and already stripped).
"""
from __future__ import annotations

import base64
import codecs
import csv
import io
import re
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import parse_qsl
from xml.etree.ElementTree import ParseError

import orjson
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from dsl import strict_json

from .problems import problem

__all__ = ["BodyError", "NotAcceptable", "parse_body", "parse_answer", "read_json", "serialise", "negotiate",
           "FORMATS", "OFFERED", "MAX_XML_DEPTH"]

FORMATS = MappingProxyType({"application/json": "json", "application/xml": "xml",
                            "text/plain": "text", "text/csv": "csv"})
OFFERED = tuple(FORMATS)          # what a response can be; the order breaks Accept ties
MAX_XML_DEPTH = 100               # even with a list at every level, orjson can write it back (254)
_CACHE_LIMIT = 512                # longer header values are parsed but not cached


class BodyError(Exception):
    """A request body Hookline cannot read; the fields are client text for a problem document."""

    def __init__(self, status: int, slug: str, title: str, detail: str, pointer: str | None = None,
                 *, headers: tuple = ()):
        super().__init__(f"{status} {slug}: {detail}")
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.pointer, self.headers = pointer, headers

    def problem(self) -> tuple[int, bytes]:
        """``(status, body)`` for ``_Exchange.send(*err.problem(), CONTENT_TYPE, err.headers)``."""
        extra = {"pointer": self.pointer} if self.pointer else {}
        return problem(self.status, self.slug, self.title, self.detail, **extra)


class NotAcceptable(BodyError):
    """The value has no form in the chosen format (e.g. CSV of a nested object)."""

    def __init__(self, detail: str):
        super().__init__(406, "not-acceptable", "Not Acceptable", detail)


# --- parsing -------------------------------------------------------------------------

def parse_body(content_type: str | None, raw: bytes, accept_raw: bool = False):
    """Decode ``raw`` by its Content-Type into a JSON-like value; raises BodyError."""
    if not raw:
        return None
    if content_type is None or content_type == "application/json":    # the common case, no lookup
        return read_json(raw)
    media, kind, charset = _media_of(content_type)
    if kind is None:
        if accept_raw:
            return {"content_type": media, "size": len(raw), "base64": base64.b64encode(raw).decode()}
        raise BodyError(415, "unsupported-media-type", "Unsupported Media Type",
                        f"cannot read a {media[:100] or 'typeless'} body; send JSON, XML, "
                        "a form (application/x-www-form-urlencoded) or text/plain")
    return _PARSERS[kind](raw, charset)


def parse_answer(content_type: str | None, raw: bytes, kind: str | None = None):
    """A destination's answer, read as a request body is; ``kind`` (json, xml, form, text)
    forces a parser. Without a Content-Type, or with one no parser takes, it is text
    (undecodable bytes become U+FFFD). Raises BodyError for a malformed answer.

        >>> parse_answer("application/soap+xml", b"<a><b>1</b></a>")
        {'a': {'b': '1'}}
        >>> parse_answer("text/html", b"<p>hi</p>"), parse_answer(None, b"OK"), parse_answer("text/html", b"[]", "json")
        ('<p>hi</p>', 'OK', [])
    """
    if not raw:
        return None
    media, found, charset = _media_of(content_type) if content_type else ("", None, None)
    kind = kind or found
    if kind is None:
        return raw.decode("utf-8", "replace")
    return _PARSERS[kind](raw, charset)


def _media_of(content_type: str | None) -> tuple[str, str | None, str | None]:
    if not content_type:
        return "application/json", "json", None
    return _media(content_type) if len(content_type) <= _CACHE_LIMIT else _media.__wrapped__(content_type)


@lru_cache(maxsize=256)
def _media(content_type: str) -> tuple[str, str | None, str | None]:
    """``"Application/JSON; charset=UTF-16"`` → ``("application/json", "json", "utf-16")``."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    kind = _KINDS.get(media) or _SUFFIXES.get(media.rpartition("+")[2]) if "/" in media else None
    return media, kind, _charset(params)


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').strip().lower() or None
    return None


@lru_cache(maxsize=64)
def _codec(charset: str) -> str:
    """The Python codec for a charset label, or 400 bad-charset (binary and Python-only codecs too)."""
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):     # ValueError: a NUL in the label
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        raise BodyError(400, "bad-charset", "Unknown charset", f"unknown charset {charset[:60]!r}")
    return info.name


def _decode(raw: bytes, charset: str | None) -> str:
    codec = _codec(charset) if charset else "utf-8"
    try:
        text = raw.decode(codec)
    except UnicodeError as exc:
        raise BodyError(400, "bad-charset", "Undecodable body",
                        f"the body is not valid {codec} (byte {getattr(exc, 'start', '?')})") from None
    return text[1:] if text[:1] == "\ufeff" else text


def read_json(raw: bytes, charset: str | None = None):
    """The one reader of JSON request bodies, whatever the charset: UTF-8 unless ``charset``
    or a BOM says otherwise (a BOM is dropped, with or without ``charset``), then
    dsl.strict_json (strict RFC 8259, integers exact, depth bounded); raises BodyError.

        >>> read_json(codecs.BOM_UTF8 + b'[18446744073709551616]', "utf-8")
        [18446744073709551616]
    """
    codec = _codec(charset) if charset else _sniffed(raw)
    if codec == "utf-8":
        data = raw[3:] if raw[:3] == codecs.BOM_UTF8 else raw
    else:
        data = _decode(raw, codec).encode("utf-8")    # a strict decode gives no lone surrogate
    try:
        return strict_json.loads(data, "the request body")
    except strict_json.JSONRefused as exc:
        raise BodyError(exc.status, exc.slug, exc.title, exc.detail) from None


def _sniffed(raw: bytes) -> str:
    """UTF-8, or the UTF-16/32 a BOM (or RFC 4627's pattern of zero bytes) marks."""
    if raw[:1] not in _BOM_LEADS and raw[1:2] != b"\x00":
        return "utf-8"
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return codec
    head = raw[:4]
    if len(head) == 4 and head.count(0) in (2, 3):
        return _ZERO_PATTERNS.get(tuple(b == 0 for b in head), "utf-8")
    return "utf-8"


def _form(raw: bytes, charset: str | None) -> dict:
    text, codec = _decode(raw, charset), _codec(charset or "utf-8")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding=codec, errors="strict")
    except UnicodeError:
        raise BodyError(400, "bad-charset", "Undecodable body",
                        f"a %-escape in the form is not valid {codec}") from None
    out: dict = {}
    for name, value in pairs:
        _add(out, name, value)
    return out


def _add(obj: dict, key: str, value) -> None:
    """Set ``key``; a repeated key turns into a list (values here are never lists)."""
    if key not in obj:
        obj[key] = value
    elif type(obj[key]) is list:
        obj[key].append(value)
    else:
        obj[key] = [obj[key], value]


def _xml(raw: bytes, charset: str | None):
    tree = _Tree()
    parser = DefusedXMLParser(target=tree, forbid_dtd=True)
    expat = parser.parser
    # Element events go straight to the tree, skipping ElementTree's per-event name fixing
    # (~40% of the parse); defusedxml's DTD, entity and external-reference guards stay.
    expat.StartElementHandler, expat.EndElementHandler = tree.start, tree.end
    try:
        parser.feed(_xml_input(raw, charset))
        return parser.close()
    except DefusedXmlException as exc:
        raise BodyError(400, "xml-forbidden", "Forbidden XML",
                        f"DTDs, entity declarations and external references are refused "
                        f"({type(exc).__name__})") from None
    except ParseError as exc:
        raise BodyError(400, "bad-xml", "Malformed XML",
                        f"the request body is not well-formed XML: {str(exc)[:200]}") from None


def _xml_input(raw: bytes, charset: str | None):
    """What expat reads: the bytes when they are UTF-8 (expat's own), else the text, decoded by
    the ``charset`` parameter (which wins, RFC 7303), a UTF-16/32 BOM, or the encoding the XML
    declaration names, with the rules of a ``charset`` (an unknown, binary, Python-only or
    UTF-7 label is 400 bad-charset) — never by expat's fallback to Python's codecs, which
    knows no multi-byte encoding.

        >>> _xml_input('<?xml version="1.0" encoding="Shift_JIS"?><a>\u65e5</a>'.encode("shift_jis"), None)
        '<?xml version="1.0" encoding="Shift_JIS"?><a>\u65e5</a>'
    """
    if charset is None:
        charset = _sniffed(raw)
        if charset == "utf-8":
            declared = _DECLARED.match(raw)
            if declared is None or declared.group(1).lower() == b"utf-8":
                return raw
            charset = declared.group(1).decode("ascii")
    return _decode(raw, charset)


class _Tree:
    """Expat target that builds the JSON-like value directly (no Element objects).

    Names arrive as expat gives them with ``"}"`` as namespace separator: ``uri}local``.
    """

    __slots__ = ("stack", "ns")

    def __init__(self):
        self.stack = [("", {}, [], 0)]    # a sentinel frame whose object receives the root
        self.ns = None

    def start_ns(self, prefix: str, uri: str) -> None:
        if self.ns is None:
            self.ns = {}
        self.ns[prefix] = uri

    def start(self, tag: str, attributes: list) -> None:
        if len(self.stack) > MAX_XML_DEPTH:
            raise ParseError(f"elements nested deeper than {MAX_XML_DEPTH}")
        node = {}
        if self.ns is not None:
            node["@xmlns"], self.ns = self.ns, None
        for i in range(0, len(attributes), 2):
            name = attributes[i]
            key = "@" + name.rpartition("}")[2]
            node[key if key not in node else "@{" + name if "}" in name else "@{}" + name] = attributes[i + 1]
        self.stack.append((tag.rpartition("}")[2], node, [], len(node)))

    def data(self, text: str) -> None:
        self.stack[-1][2].append(text)

    def end(self, tag: str) -> None:
        key, node, pieces, attributes = self.stack.pop()
        text = "".join(pieces) if pieces else ""
        if node:
            if len(node) > attributes:
                text = text.strip()
            if text:
                node["#text"] = text
        _add(self.stack[-1][1], key, node or text)

    def close(self):
        return self.stack[0][1]


_KINDS = MappingProxyType({
    "application/json": "json", "application/xml": "xml", "text/xml": "xml",
    "application/x-www-form-urlencoded": "form", "text/plain": "text"})
_SUFFIXES = MappingProxyType({"json": "json", "xml": "xml"})
_PARSERS = MappingProxyType({"json": read_json, "xml": _xml, "form": _form, "text": _decode})
# Python's own codecs that are no charset (and can yield lone surrogates); UTF-7 is refused
# as the WHATWG Encoding Standard does: it smuggles markup past filters.
_NOT_CHARSETS = frozenset({"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode", "utf-7"})
# The encoding an XML declaration names, when the document starts in an ASCII-compatible way
_DECLARED = re.compile(rb"""(?:\xef\xbb\xbf)?<\?xml[ \t\r\n][^>]{0,200}?\bencoding[ \t\r\n]*=[ \t\r\n]*["']([^"'>]{0,60})["']""")
_BOM_LEADS = frozenset((b"\x00", b"\xef", b"\xfe", b"\xff"))
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_ZERO_PATTERNS = {(True, True, True, False): "utf-32-be", (False, True, True, True): "utf-32-le",
                  (True, False, True, False): "utf-16-be", (False, True, False, True): "utf-16-le"}


# --- serialising ---------------------------------------------------------------------

def serialise(value, fmt: str) -> tuple[bytes, str]:
    """``value`` as ``fmt`` (a FORMATS value) → ``(body, content_type)``.

    Raises NotAcceptable when the value has no CSV form, and TypeError (as orjson does)
    for a value that is not JSON-like or nests deeper than about 250 levels.
    """
    return _WRITERS[fmt](value)


def _json_out(value) -> tuple[bytes, str]:
    return orjson.dumps(value), "application/json"


def _text_out(value) -> tuple[bytes, str]:
    body = value.encode("utf-8", "replace") if type(value) is str else orjson.dumps(value)
    return body, "text/plain; charset=utf-8"


def _csv_out(value) -> tuple[bytes, str]:
    if type(value) is dict:
        value = [value]               # one record: one row under its header line
    if type(value) is not list or any(type(row) is not dict for row in value):
        raise NotAcceptable("only a flat object or a list of flat objects has a CSV form")
    header = list(dict.fromkeys(key for row in value for key in row))
    if not header:
        return b"", "text/csv; charset=utf-8"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_cell(row.get(key)) for key in header] for row in value)
    return out.getvalue().encode("utf-8", "replace"), "text/csv; charset=utf-8"


def _cell(value) -> str:
    text = _scalar(value)
    if text is None:
        raise NotAcceptable("a CSV cell cannot hold an object or a list")
    return text


def _scalar(value) -> str | None:
    """The text of a JSON scalar (``null`` → ``""``); None for objects and lists."""
    kind = type(value)
    if kind is str:
        return value
    write = _SCALARS.get(kind)
    if write is not None:
        return write(value)
    return None if kind is dict or kind is list else orjson.dumps(value).decode()


def _xml_out(value) -> tuple[bytes, str]:
    out = ['<?xml version="1.0" encoding="utf-8"?>\n']
    root = next(iter(value)) if type(value) is dict and len(value) == 1 else None
    if root is None or not _NAME.match(root) or type(value[root]) is list:
        _element(out, "response", "", value, 0)
    else:
        _element(out, root, "", value[root], 0)
    return "".join(out).encode("utf-8"), "application/xml; charset=utf-8"


def _element(out: list, name: str, attrs: str, value, depth: int) -> None:
    if depth > 250:
        raise TypeError("value nested too deeply for XML")
    kind = type(value)
    if kind is dict:
        _object(out, name, attrs, value, depth)
    elif kind is list:
        out.append(f"<{name}{attrs}>")
        for item in value:
            _element(out, "item", "", item, depth + 1)
        out.append(f"</{name}>")
    else:
        text = value if kind is str else _scalar(value)
        if _TEXT_SPECIAL.search(text):
            text = _TEXT_SPECIAL.sub(_entity, text)
        out.append(f"<{name}{attrs}>{text}</{name}>" if text else f"<{name}{attrs}/>")


def _object(out: list, name: str, attrs: str, obj: dict, depth: int) -> None:
    head = [f"<{name}{attrs}"]
    body: list = []
    for key, value in obj.items():
        if key[:1] == "@" and _NAME.match(key, 1) and key != "@xmlns":
            head.append(f' {key[1:]}="{_escape_attr(_json_text(value))}"')
        elif key == "#text":
            body.insert(0, _escape(_json_text(value)))
        elif key == "@xmlns" and type(value) is dict:
            head.extend(_xmlns(value))
        elif type(value) is str and _NAME.match(key):      # the common case, inlined
            if _TEXT_SPECIAL.search(value):
                value = _TEXT_SPECIAL.sub(_entity, value)
            body.append(f"<{key}>{value}</{key}>" if value else f"<{key}/>")
        else:
            name_, attrs_ = (key, "") if _NAME.match(key) else ("item", f' key="{_escape_attr(key)}"')
            for item in value if type(value) is list else (value,):
                _element(body, name_, attrs_, item, depth + 1)
    out.append("".join(head))
    out.append(f">{''.join(body)}</{name}>" if body else "/>")


def _json_text(value) -> str:
    text = _scalar(value)
    return orjson.dumps(value).decode() if text is None else text


def _xmlns(declarations: dict):
    """``xmlns`` attributes for a ``@xmlns`` object; declarations XML would reject are skipped."""
    for prefix, uri in declarations.items():
        if type(uri) is not str or uri in _RESERVED_NS:
            continue
        if prefix == "":
            yield f' xmlns="{_escape_attr(uri)}"'
        elif uri and _NAME.match(prefix) and prefix[:3].lower() != "xml":
            yield f' xmlns:{prefix}="{_escape_attr(uri)}"'


def _escape(text: str) -> str:
    return _TEXT_SPECIAL.sub(_entity, text) if _TEXT_SPECIAL.search(text) else text


def _escape_attr(text: str) -> str:
    return _ATTR_SPECIAL.sub(_entity, text) if _ATTR_SPECIAL.search(text) else text


def _entity(match: re.Match) -> str:
    return _ENTITIES.get(match.group(), "\ufffd")


_SCALARS = MappingProxyType({int: int.__repr__, bool: lambda v: "true" if v else "false",
                             type(None): lambda v: "", float: lambda v: orjson.dumps(v).decode()})
_WRITERS = MappingProxyType({"json": _json_out, "xml": _xml_out, "text": _text_out, "csv": _csv_out})
_LATIN = "A-Za-z_\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
_NAME = re.compile(f"[{_LATIN}][{_LATIN}0-9.\\-\u00b7]*\\Z")
_INVALID = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_TEXT_SPECIAL = re.compile(f"[&<>\r{_INVALID}]")
_ATTR_SPECIAL = re.compile(f"[&<>\"\t\n\r{_INVALID}]")
_ENTITIES = MappingProxyType({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                              "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})
_RESERVED_NS = frozenset({"http://www.w3.org/XML/1998/namespace", "http://www.w3.org/2000/xmlns/"})


# --- negotiation ---------------------------------------------------------------------

def negotiate(accept: str | None, offered: tuple[str, ...]) -> str | None:
    """The offered media type the Accept header ranks highest, or None when none is acceptable.

    No header, an empty one, or one without a single valid media range accepts anything,
    so the first offered type wins. Precedence is RFC 9110 §12.5.1: ``type/subtype`` over
    ``type/*`` over ``*/*``; ``q=0`` excludes; ties go to the earlier offered type.

        >>> negotiate("text/*, application/json;q=0.5", ("application/json", "text/csv"))
        'text/csv'
    """
    if accept and len(accept) > _CACHE_LIMIT:
        return _choose.__wrapped__(accept, offered)
    return _choose(accept or "", offered)


@lru_cache(maxsize=256)
def _choose(accept: str, offered: tuple[str, ...]) -> str | None:
    ranges = _ranges(accept) if len(accept) <= _CACHE_LIMIT else _ranges.__wrapped__(accept)
    if not ranges:
        return offered[0] if offered else None
    best, best_q = None, 0.0
    for media in offered:
        q = _quality(media, ranges)
        if q > best_q:
            best, best_q = media, q
    return best


def _quality(media: str, ranges: tuple) -> float:
    kind, _, sub = media.partition("/")
    best_rank, best_q = -1, 0.0
    for range_kind, range_sub, q in ranges:
        rank = _rank(kind, sub, range_kind, range_sub)
        if rank > best_rank or (rank == best_rank and rank >= 0 and q > best_q):
            best_rank, best_q = rank, q
    return best_q if best_rank >= 0 else 0.0


def _rank(kind: str, sub: str, range_kind: str, range_sub: str) -> int:
    """2 for an exact match, 1 for ``type/*``, 0 for ``*/*``, -1 for no match."""
    if range_kind == "*":
        return 0
    if range_kind != kind:
        return -1
    return 1 if range_sub == "*" else 2 if range_sub == sub else -1


@lru_cache(maxsize=256)
def _ranges(accept: str) -> tuple[tuple[str, str, float], ...]:
    """``"text/*;q=0.5, application/json"`` → ``(("text", "*", 0.5), ("application", "json", 1.0))``."""
    out = []
    for part in accept.split(","):
        media, _, params = part.partition(";")
        kind, slash, sub = media.strip().lower().partition("/")
        if kind == "*" and not slash:
            slash, sub = "/", "*"
        q = q_value(params)
        if slash and kind and sub and (kind != "*" or sub == "*") and q is not None:
            out.append((kind, sub, q))
    return tuple(out)


def q_value(params: str) -> float | None:
    """The ``q`` parameter (1.0 when absent), or None when it is not a number in [0, 1]."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return None
            return q if 0.0 <= q <= 1.0 else None
    return 1.0
