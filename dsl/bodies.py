"""Request bodies for ``call`` steps: a JSON-like value written as JSON, XML, a form or text.

``WRITERS[format](value) -> bytes``; ``CONTENT_TYPES[format]`` is the Content-Type sent with it;
``fits(format, media)`` says whether an author's own Content-Type agrees with the format.

    >>> write_xml({"order": {"@id": "A-1", "line": [{"sku": "X"}, {"sku": "Y"}]}})
    b'<?xml version="1.0" encoding="utf-8"?>\\n<order id="A-1"><line><sku>X</sku></line><line><sku>Y</sku></line></order>'
    >>> write_form({"a": 1, "b": ["x", "y z"], "c": None})
    b'a=1&b=x&b=y+z'
    >>> write_xml({"a": 1, "b": 2})
    Traceback (most recent call last):
    ...
    dsl.bodies.Unwritable: /: an XML document has one root element: the body must be an object with one key, not an object with 2 keys

XML is the inverse of the inbound mapping (engine/formats.py, docs/http.md), strictly: a value
that cannot be XML raises :class:`Unwritable` with the JSON pointer of the offending value
instead of being bent into shape:

* the document is an object with one key, the root element's name;
* an object is an element: ``"@name"`` keys are attributes, ``"@xmlns": {prefix: uri}``
  declares namespaces (``""`` the default one), ``"#text"`` is its text (written first), any
  other key a child element; a list under a key repeats that element, in order;
* a string is text; a number or boolean its JSON text; ``null`` an empty element (an
  attribute with an empty value); a list directly inside a list has no name: Unwritable;
* names are XML 1.0 names (in every edition: expat's older tables too), optionally with a prefix (``soap:Envelope``, ``@xsi:type``) that an
  ``@xmlns`` on the element or an ancestor declares (``xml:`` is always declared);
* characters XML 1.0 cannot carry are Unwritable; a carriage return is written ``&#13;``.

Reading the XML back with the inbound mapping gives the value with local names, for values
whose leaves are strings (see ``tests/test_bodies.py`` for the exact class, property-tested).
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import urlencode
from xml.parsers.expat import ExpatError, ParserCreate

from .errors import HooklineDslError
from .runtime import dumps_json

__all__ = ["Unwritable", "WRITERS", "CONTENT_TYPES", "FORMATS", "fits", "is_name",
           "write_xml", "write_form", "write_text", "MAX_DEPTH"]

FORMATS = ("json", "xml", "form", "text")
MAX_DEPTH = 200            # elements nested deeper than this are refused, whatever the receiver takes
XML_NS = "http://www.w3.org/XML/1998/namespace"
_XMLNS_NS = "http://www.w3.org/2000/xmlns/"


class Unwritable(HooklineDslError):
    """A value with no form in a body format; ``pointer`` (RFC 6901) says which part of it."""

    def __init__(self, pointer: str, message: str):
        super().__init__(f"{pointer or '/'}: {message}")
        self.pointer, self.message = pointer, message


# --- XML -------------------------------------------------------------------------------

def write_xml(value) -> bytes:
    """``value`` as an XML document (UTF-8, with a declaration); raises Unwritable."""
    if type(value) is not dict or len(value) != 1:
        raise Unwritable("", "an XML document has one root element: the body must be an object "
                             f"with one key, not {_describe(value)}")
    (name, content), = value.items()
    if type(content) is list:
        raise Unwritable(_step("", name), "a list here would repeat the root element; a document has one root")
    out = ['<?xml version="1.0" encoding="utf-8"?>\n']
    _element(out, name, content, _step("", name), _ROOT_SCOPE, 0)
    return "".join(out).encode("utf-8")


def _element(out: list, name: str, value, at: str, scope, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise Unwritable(at, f"elements nest deeper than {MAX_DEPTH}")
    if type(value) is dict:
        _object(out, name, value, at, scope, depth)
        return
    _check_name(name, at, scope, "element")
    if type(value) is list:
        raise Unwritable(at, "a list directly inside a list has no element name; wrap each item in an object")
    text = _text(value, at)
    out.append(f"<{name}>{text}</{name}>" if text else f"<{name}/>")


def _object(out: list, name: str, obj: dict, at: str, scope, depth: int) -> None:
    if "@xmlns" in obj:
        scope = _declare(obj["@xmlns"], _step(at, "@xmlns"), scope)
    _check_name(name, at, scope, "element")
    head, body, seen = [f"<{name}"], [], {}
    for key, value in obj.items():
        where = _step(at, key)
        if key == "@xmlns":
            head.extend(_xmlns_attributes(value))
        elif key[:1] == "@":
            head.append(_attribute(key[1:], value, where, scope, seen))
        elif key == "#text":
            body.insert(0, _text(value, where))
        elif type(value) is list:
            for i, item in enumerate(value):
                _element(body, key, item, f"{where}/{i}", scope, depth + 1)
        else:
            _element(body, key, value, where, scope, depth + 1)
    out.append("".join(head))
    out.append(f">{''.join(body)}</{name}>" if body else "/>")


def _attribute(name: str, value, at: str, scope, seen: dict) -> str:
    prefix = _check_name(name, at, scope, "attribute")
    if type(value) in (dict, list):
        raise Unwritable(at, "an attribute holds text, a number, a boolean or null, not "
                             f"{_describe(value)}")
    expanded = (scope[prefix] if prefix else "", name.rpartition(":")[2])
    if expanded in seen:
        raise Unwritable(at, f"attribute {name!r} names the same attribute as {seen[expanded]!r}")
    seen[expanded] = name
    text = _escape(_scalar(value, at), _ATTR_SPECIAL, at)
    return f' {name}="{text}"'


def _check_name(name: str, at: str, scope, what: str) -> str:
    """The prefix of a valid (qualified) name, "" for none; Unwritable otherwise."""
    if not is_name(name):
        hint = "; only \"#text\" starts with '#'" if name[:1] == "#" else ""
        raise Unwritable(at, f"{name!r} is not an XML {what} name{hint}")
    prefix = name.partition(":")[0] if ":" in name else ""
    if prefix == "xmlns" or (not prefix and name == "xmlns"):
        raise Unwritable(at, 'namespaces are declared with "@xmlns": {prefix: uri}')
    if prefix and prefix not in scope:
        raise Unwritable(at, f"prefix {prefix!r} is not declared; add \"@xmlns\": {{\"{prefix}\": \"<uri>\"}} "
                             "to this element or an ancestor")
    return prefix


@lru_cache(maxsize=4096)
def is_name(name: str) -> bool:
    """A (qualified) name in every edition of XML 1.0: the 5th edition's rules, and the older
    character tables expat (and many destinations' parsers) still apply; bodies repeat their
    names, so the answer is cached."""
    if not _QNAME.match(name):
        return False
    try:
        for part in name.split(":"):       # the local part of a QName must start like a name
            ParserCreate().Parse(f"<{part}/>", True)
    except ExpatError:
        return False
    return True


def _declare(declared, at: str, scope):
    """The prefixes in scope once ``declared`` (an ``@xmlns`` value) is added."""
    if type(declared) is not dict:
        raise Unwritable(at, '"@xmlns" takes an object {prefix: uri}; the default namespace has the prefix ""')
    scope = dict(scope)
    for prefix, uri in declared.items():
        where = _step(at, prefix)
        if type(uri) is not str:
            raise Unwritable(where, f"a namespace URI is a string, not {_describe(uri)}")
        _escape(uri, _ATTR_SPECIAL, where)
        if prefix and (not _NCNAME.match(prefix) or not is_name(prefix) or prefix == "xmlns"):
            raise Unwritable(where, f"{prefix!r} cannot be a namespace prefix")
        if (prefix == "xml") != (uri == XML_NS) or uri == _XMLNS_NS:
            raise Unwritable(where, f"the prefix xml and the URI {uri} belong to XML itself")
        if prefix and not uri:
            raise Unwritable(where, f"prefix {prefix!r} needs a non-empty URI")
        scope[prefix] = uri
    return scope


def _xmlns_attributes(declared: dict):
    for prefix, uri in declared.items():
        if prefix != "xml":
            yield f' xmlns:{prefix}="{_escape(uri, _ATTR_SPECIAL, "")}"' if prefix \
                else f' xmlns="{_escape(uri, _ATTR_SPECIAL, "")}"'


def _text(value, at: str) -> str:
    if type(value) in (dict, list):
        raise Unwritable(at, f"text is a string, a number, a boolean or null, not {_describe(value)}")
    return _escape(_scalar(value, at), _TEXT_SPECIAL, at)


def _escape(text: str, special: re.Pattern, at: str) -> str:
    if not special.search(text):
        return text
    bad = _INVALID.search(text)
    if bad:
        raise Unwritable(at, f"U+{ord(bad.group()):04X} at character {bad.start()} cannot be written in XML 1.0")
    return special.sub(lambda m: _ENTITIES[m.group()], text)


_ROOT_SCOPE = MappingProxyType({"xml": XML_NS})
# XML 1.0 (5th edition) NameStartChar and NameChar, without ':' (an NCName); a QName is one or two
_START = ("A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c\u200d"
          "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff")
_CHAR = _START + "\\-.0-9\u00b7\u0300-\u036f\u203f-\u2040"
_NCNAME = re.compile(f"[{_START}][{_CHAR}]*\\Z")
_QNAME = re.compile(f"(?:[{_START}][{_CHAR}]*:)?[{_START}][{_CHAR}]*\\Z")
_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TEXT_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTR_SPECIAL = re.compile("[&<>\"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ENTITIES = MappingProxyType({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                              "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})


# --- form and text ---------------------------------------------------------------------

def write_form(value) -> bytes:
    """An object as ``application/x-www-form-urlencoded``: a list repeats the field, null
    leaves it out (as the inbound form mapping reads it back, values as text)."""
    if type(value) is not dict:
        raise Unwritable("", f"a form is an object of fields, not {_describe(value)}")
    pairs = []
    for name, field in value.items():
        at = _step("", name)
        items = field if type(field) is list else (field,)
        for i, item in enumerate(items):
            if type(item) in (dict, list):
                where = f"{at}/{i}" if type(field) is list else at
                raise Unwritable(where, f"a form field holds text, a number, a boolean or a list of them, "
                                        f"not {_describe(item)}")
            if item is not None:
                pairs.append((_unicode(name, at), _unicode(_scalar(item, at), at)))
    return urlencode(pairs).encode("ascii")


def write_text(value) -> bytes:
    """A string as it is (UTF-8); a number or boolean as its JSON text; null as no body."""
    if type(value) in (dict, list):
        raise Unwritable("", f"call.format text sends a string, not {_describe(value)}; "
                             "use json, xml or form for structured values")
    return _unicode(_scalar(value, ""), "").encode("utf-8")


def _unicode(text: str, at: str) -> str:
    bad = _SURROGATE.search(text)
    if bad:
        raise Unwritable(at, f"character {bad.start()} is a lone surrogate, which UTF-8 cannot carry")
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


# --- shared ----------------------------------------------------------------------------

def _scalar(value, at: str) -> str:
    """The text of a JSON scalar: strings as they are, null empty, others their JSON text."""
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is float and not math.isfinite(value):
        raise Unwritable(at, f"{value} is not a JSON number")
    return str(value) if kind is int else dumps_json(value).decode()


def _describe(value) -> str:
    if type(value) is dict:
        return f"an object with {len(value)} keys" if len(value) > 1 else \
            "an object with 1 key" if value else "an empty object"
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _step(pointer: str, key) -> str:
    """``pointer`` extended by one RFC 6901 reference token."""
    return f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _json(value) -> bytes:
    return dumps_json(value)


WRITERS = MappingProxyType({"json": _json, "xml": write_xml, "form": write_form, "text": write_text})
CONTENT_TYPES = MappingProxyType({
    "json": "application/json", "xml": "application/xml; charset=utf-8",
    "form": "application/x-www-form-urlencoded", "text": "text/plain; charset=utf-8"})


def fits(fmt: str, content_type: str) -> bool:
    """Whether an author's Content-Type agrees with ``fmt``; any type fits ``text`` (the string
    is sent as it is: CSV, EDI, a pre-built document).

        >>> fits("xml", "text/xml; charset=utf-8"), fits("xml", "application/soap+xml"), fits("json", "text/xml")
        (True, True, False)
    """
    media = content_type.partition(";")[0].strip().lower()
    suffix = media.rpartition("+")[2] if "+" in media else None
    return {"json": media == "application/json" or suffix == "json",
            "xml": media in ("application/xml", "text/xml") or suffix == "xml",
            "form": media == "application/x-www-form-urlencoded"}.get(fmt, True)
