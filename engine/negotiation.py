"""Writing a response the client can take: the body format by ``Accept``
(406 when none fits), a forced content type, problem documents as XML when
only XML is acceptable, and header values made safe.
"""
from __future__ import annotations

import re

import orjson

from dsl.runtime import StepFailed, dumps_json

from .formats import FORMATS, NotAcceptable, negotiate, serialise
from .problems import CONTENT_TYPE

_JSON = "application/json"


def negotiated(value, accept, offered):
    """Serialise ``value`` as the best acceptable offered format; 406 when none fits."""
    offered = all_offered = tuple(offered)
    while offered:
        media = negotiate(accept, offered)
        if media is None:
            break
        try:
            return serialise(value, FORMATS[media]) if media != _JSON else (dumps_json(value), _JSON)
        except (NotAcceptable, TypeError):
            offered = tuple(m for m in offered if m != media)
    raise StepFailed(406, "Not Acceptable", "no acceptable format for this response; this endpoint "
                     "answers " + ", ".join(all_offered) + (" (CSV for a flat object or a list of them)"
                                                            if "text/csv" in all_offered else ""))


def forced(value, content_type: str) -> bytes:
    media = content_type.partition(";")[0].strip().lower()
    if media.endswith("xml"):
        return serialise(value, "xml")[0]
    if media.startswith("text/"):
        return serialise(value, "text")[0]
    return dumps_json(value)


_PROBLEM_TYPES = ("application/problem+json", "application/json", "application/problem+xml", "application/xml")


def problem_as(body: bytes, accept: str):
    """Problem documents follow negotiation too: problem+xml when only XML is acceptable."""
    media = negotiate(accept, _PROBLEM_TYPES)
    if media is None or "json" in media:
        return body, CONTENT_TYPE
    return serialise({"problem": orjson.loads(body)}, "xml")[0], "application/problem+xml"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def header_value(value: str) -> str:
    """A value a client may have chosen, made safe for a header line:
    control characters become spaces, ends are trimmed, non-Latin-1 text
    is sent as its UTF-8 bytes; text that is not Unicode (a lone surrogate)
    is a 422, as it has no bytes.

        >>> header_value(" a\\r\\nb é ")
        'a b é'
    """
    value = _CONTROL.sub(" ", value).strip()
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        try:
            value = value.encode("utf-8").decode("latin-1")
        except UnicodeEncodeError:
            raise StepFailed(422, "Invalid header value", "a response header value holds a lone surrogate, "
                             "which is not Unicode text") from None
    return value
