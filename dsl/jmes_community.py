"""The functions JMESPath Community Edition adds to the standard ones.

String functions (JEP-14), ``items``/``from_items``/``zip`` (JEP-13) and
``group_by`` (JEP-18), written from the specification's function pages; and
``join``, which replaces the standard one only to bound the size of what it
builds. No function builds a string over ``MAX_RESULT_CHARS``: asked to, it
raises ``TooLargeError`` before allocating it.

    >>> pad_left("7", 3, "0"), replace("refs/heads/main", "refs/heads/", ""), split("a,b,c", ",", 1)
    ('007', 'main', ['a', 'b,c'])
    >>> group_by([{"w": "A", "n": 1}, {"w": "B", "n": 2}, {"w": "A", "n": 3}], _Key(lambda v: v["w"]))
    {'A': [{'w': 'A', 'n': 1}, {'w': 'A', 'n': 3}], 'B': [{'w': 'B', 'n': 2}]}
"""
from __future__ import annotations

import re

from jmespath.exceptions import JMESPathTypeError

from .jmes_functions import Function, InvalidValueError, Param, bounded, type_of

_STRING, _NUMBER = ("string",), ("number",)


def _integer(value, name: str, what: str) -> int:
    """``value`` as an int when it is a whole number; InvalidValueError otherwise."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    raise InvalidValueError(f"In function {name}(): {what} must be an integer, got {value}")


def _count(value, name: str) -> int:
    count = _integer(value, name, "count")
    if count < 0:
        raise InvalidValueError(f"In function {name}(): count must not be negative, got {count}")
    return count


# --- JEP-14: strings ---------------------------------------------------------------

def _find(method: str, name: str):
    def find(subject: str, sub: str, start=None, end=None):
        if not subject or not sub:
            return None
        bounds = [_integer(b, name, what) for b, what in ((start, "start"), (end, "end")) if b is not None]
        index = getattr(subject, method)(sub, *bounds)
        return None if index < 0 else index
    return find


def _pad(side: str, name: str):
    def pad(subject: str, width, fill: str = " "):
        width = _integer(width, name, "width")
        if len(fill) != 1:
            raise InvalidValueError(f"In function {name}(): the pad must be one character, got {fill!r}")
        bounded(width, name)
        return subject.rjust(width, fill) if side == "left" else subject.ljust(width, fill)
    return pad


pad_left = _pad("left", "pad_left")
pad_right = _pad("right", "pad_right")


def replace(subject: str, old: str, new: str, count=None):
    """Every ``old`` (or the first ``count``) replaced by ``new``."""
    limit = -1 if count is None else _count(count, "replace")
    found = len(subject) + 1 if not old else subject.count(old)
    if limit >= 0:
        found = min(found, limit)
    bounded(len(subject) + found * (len(new) - len(old)), "replace")
    return subject.replace(old, new, limit)


def split(subject: str, search: str, count=None):
    """``subject`` broken at ``search`` (at most ``count`` times); ``''`` splits characters."""
    limit = -1 if count is None else _count(count, "split")
    if search:
        return subject.split(search, limit)
    if limit < 0 or limit >= len(subject):
        return list(subject)
    return list(subject[:limit]) + [subject[limit:]]


def _trim(method: str):
    def trim(subject: str, chars: str = ""):
        return getattr(subject, method)(chars or None)
    return trim


def join(glue: str, strings: list):
    """The standard ``join``, refusing to build a string over the limit."""
    bounded(sum(map(len, strings)) + len(glue) * max(len(strings) - 1, 0), "join")
    return glue.join(strings)


def to_number(value):
    """The standard ``to_number``, without raising for the common ``"12.50"``.

    Results are jmespath's: ``int()`` of the text, else ``float()``, else null.
    """
    kind = type(value)
    if kind is int or kind is float:
        return value
    if kind is not str:
        return None if kind in (bool, list, dict, type(None)) else _slow_number(value)
    if _INTEGER.match(value):
        return int(value)
    if _DECIMAL.match(value):
        return float(value)
    return _slow_number(value)


_INTEGER = re.compile(r"-?[0-9]+\Z")
_DECIMAL = re.compile(r"-?[0-9]+\.[0-9]+\Z")


def _slow_number(value):
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return None


# --- JEP-13: objects ---------------------------------------------------------------

def items(obj: dict):
    return [[key, value] for key, value in obj.items()]


def from_items(pairs: list):
    result = {}
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise JMESPathTypeError("from_items", pair, type_of(pair), ["array[string, any]"])
        result[pair[0]] = pair[1]
    return result


def zip_arrays(*arrays: list):
    return [list(group) for group in zip(*arrays)]


# --- JEP-18: grouping ---------------------------------------------------------------

def group_by(elements: list, expref):
    """Objects grouped by the string ``expref`` gives for each (null: left out)."""
    groups: dict = {}
    for element in elements:
        key = expref.visit(expref.expression, element)
        if key is None:
            continue
        if not isinstance(key, str):
            raise JMESPathTypeError("group_by", key, type_of(key), ["string"])
        groups.setdefault(key, []).append(element)
    return groups


class _Key:
    """A stand-in for an ``&expr`` argument (for the examples above)."""

    expression = None

    def __init__(self, fn):
        self.fn = fn

    def visit(self, node, value):
        return self.fn(value)


# --- load-time checks of literal arguments --------------------------------------------

def _literal_checks(name: str, **checks):
    """A ``prepare`` running ``checks[position]`` on the arguments written as literals.

    ``pad_left(id, `5`, '--')`` fails on every request; say so at load time.
    """
    positions = {int(key[1:]): check for key, check in checks.items()}

    def prepare(nodes) -> tuple[int, str] | None:
        for position, check in positions.items():
            if position < len(nodes) and nodes[position]["type"] == "literal":
                try:
                    check(nodes[position]["value"], name)
                except (InvalidValueError, JMESPathTypeError) as exc:
                    return position, str(exc).replace(f"In function {name}(): ", f"{name}(): ")
        return None
    return prepare


def _one_character(fill, name: str) -> None:
    if isinstance(fill, str) and len(fill) != 1:
        raise InvalidValueError(f"In function {name}(): the pad must be one character, got {fill!r}")


def _whole(what: str):
    def check(value, name: str) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _count(value, name) if what == "count" else _integer(value, name, what)
    return check


_OPTIONAL_NUMBER = Param(_NUMBER, optional=True)
_OPTIONAL_STRING = Param(_STRING, optional=True)

FUNCTIONS = (
    Function("find_first", (Param(_STRING), Param(_STRING), _OPTIONAL_NUMBER, _OPTIONAL_NUMBER),
             _find("find", "find_first")),
    Function("find_last", (Param(_STRING), Param(_STRING), _OPTIONAL_NUMBER, _OPTIONAL_NUMBER),
             _find("rfind", "find_last")),
    Function("lower", (Param(_STRING),), str.lower),
    Function("upper", (Param(_STRING),), str.upper),
    Function("pad_left", (Param(_STRING), Param(_NUMBER), _OPTIONAL_STRING), pad_left,
             _literal_checks("pad_left", p1=_whole("width"), p2=_one_character)),
    Function("pad_right", (Param(_STRING), Param(_NUMBER), _OPTIONAL_STRING), pad_right,
             _literal_checks("pad_right", p1=_whole("width"), p2=_one_character)),
    Function("replace", (Param(_STRING), Param(_STRING), Param(_STRING), _OPTIONAL_NUMBER), replace,
             _literal_checks("replace", p3=_whole("count"))),
    Function("split", (Param(_STRING), Param(_STRING), _OPTIONAL_NUMBER), split,
             _literal_checks("split", p2=_whole("count"))),
    Function("trim", (Param(_STRING), _OPTIONAL_STRING), _trim("strip")),
    Function("trim_left", (Param(_STRING), _OPTIONAL_STRING), _trim("lstrip")),
    Function("trim_right", (Param(_STRING), _OPTIONAL_STRING), _trim("rstrip")),
    Function("join", (Param(_STRING), Param(("array-string",))), join),
    Function("to_number", (Param(),), to_number),
    Function("items", (Param(("object",)),), items),
    Function("from_items", (Param(("array",)),), from_items),
    Function("zip", (Param(("array",), variadic=True),), zip_arrays),
    Function("group_by", (Param(("array-object",)), Param(("expref",))), group_by),
)
