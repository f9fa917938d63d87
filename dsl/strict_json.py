"""The one JSON reader: every JSON text Hookline reads from outside (request bodies
whatever their charset, stored jobs, destination answers) goes through :func:`loads`.

Strict RFC 8259 — no ``NaN``/``Infinity``, no lone surrogates (``"\\ud800"``), no number
that overflows a double (``1e999``), UTF-8 only (decode other charsets first) — exact for
integers beyond 64 bits, and bounded in depth:

    >>> loads(b'{"id": 123456789012345678901234567890}')
    {'id': 123456789012345678901234567890}
    >>> loads(b'[NaN]')
    Traceback (most recent call last):
    ...
    dsl.strict_json.JSONRefused: bad-json: the JSON text is not valid JSON: unexpected character, expected a JSON value: line 1 column 2 (char 1)
    >>> loads(b'[' * 200 + b']' * 200)
    Traceback (most recent call last):
    ...
    dsl.strict_json.JSONRefused: too-deep: the JSON text nests deeper than 128 levels

orjson reads (and checks) every text. It reads integers beyond 64 bits as floats, so a text
with a run of 19 digits or more (possibly such an integer, or only a long string of digits)
is read again by the standard library, which keeps them exact: by then orjson has refused
everything the standard library would let through (NaN, lone surrogates, overflow) and the
depth is known to be small enough for its recursion.
"""
from __future__ import annotations

import json

import orjson

__all__ = ["JSONRefused", "loads", "MAX_DEPTH", "MAX_DIGITS", "MAX_STORED_DEPTH"]

MAX_DEPTH = 128        # nesting of arrays and objects; deeper → too-deep
MAX_DIGITS = 64        # digits of an integer; more → number-too-large
MAX_STORED_DEPTH = 500  # the standard library's reading recurses this deep at most (its limit is ~1,000)


class JSONRefused(ValueError):
    """A JSON text Hookline does not read: ``slug`` is bad-json, too-deep or number-too-large,
    ``status`` (400) what a request body gets for it; ``title`` and ``detail`` are client
    text (``detail`` names the text, as the caller of :func:`loads` says)."""

    def __init__(self, status: int, slug: str, title: str, detail: str):
        super().__init__(f"{slug}: {detail}")
        self.status, self.slug, self.title, self.detail = status, slug, title, detail


def loads(raw: bytes, what: str = "the JSON text", max_depth: int = MAX_DEPTH):
    """The value of the UTF-8 JSON text ``raw``; raises JSONRefused, whose detail names
    ``what`` was read. ``max_depth`` may be raised up to MAX_STORED_DEPTH (a stored job
    holds a request body a few levels down)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _refused(str(exc), what, max_depth) from None
    shape = raw.translate(_SHAPE)
    if not _shallow(shape, max_depth) and _depth(value) > max_depth:
        raise _too_deep(what, max_depth)
    if _LONG_RUN not in shape:
        return value
    try:
        return json.loads(raw.decode("utf-8"), parse_int=_bounded_int)
    except _TooManyDigits:
        raise JSONRefused(400, "number-too-large", "Number too large",
                          f"an integer in {what} has more than {MAX_DIGITS} digits") from None


def _refused(message: str, what: str, max_depth: int) -> JSONRefused:
    if message.startswith("depth limit exceeded"):          # orjson's own limit (1024) is deeper than ours
        return _too_deep(what, max_depth)
    if message.startswith("number is infinity"):
        return JSONRefused(400, "number-too-large", "Number too large",
                           f"a number in {what} is beyond the range of a double (about 1.8e308)")
    return JSONRefused(400, "bad-json", "Malformed JSON", f"{what} is not valid JSON: {message[:200]}")


def _too_deep(what: str, max_depth: int) -> JSONRefused:
    return JSONRefused(400, "too-deep", "Body nests too deeply", f"{what} nests deeper than {max_depth} levels")


class _TooManyDigits(Exception):
    pass


def _bounded_int(text: str) -> int:
    if len(text) > MAX_DIGITS + (text[0] == "-"):
        raise _TooManyDigits
    return int(text)


_SHAPE = bytes(c if c in b"[]{}" else 48 if c in b"0123456789" else 120 for c in range(256))
_LONG_RUN = b"0" * 19        # 19 digits in a row: possibly an integer beyond 64 bits (-2**63 - 1 has 19)


def _shallow(shape: bytes, max_depth: int) -> bool:
    """True when the brackets of a text surely nest at most ``max_depth`` deep: peel innermost
    pairs, one level a pass (bytes methods, ~10 µs for 15 KB). False means "not sure" (too
    deep, or brackets inside strings): walk the value instead."""
    s = shape.translate(None, b"0x")
    for _ in range(max_depth):
        if not s:
            return True
        peeled = s.replace(b"[]", b"").replace(b"{}", b"")
        if peeled == s:
            return False
        s = peeled
    return not s


def _depth(value) -> int:
    """Nesting depth of a JSON-like value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node if isinstance(child, (dict, list)))
    return deepest
