"""Numbers: rounding as money expects, and integers from numbers or text.

``round`` rounds half up — away from zero on a tie — in decimal, on the
number as JSON writes it: ``2.675`` is the decimal 2.675, so it rounds to
2.68 (Python's ``round(2.675, 2)`` gives 2.67 because the float is a hair
below 2.675).

    >>> round_half_up(2.675, 2), round_half_up(-2.5, 0), round_half_up(1234, -2)
    (2.68, -3, 1200)
    >>> to_integer("42.9"), to_integer(-3.7), to_integer("abc")
    (42, -3, None)
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Context, Decimal

from .base import ArgError, Function, Param, simple

MAX_DIGITS = 15     # a float holds 15-17 significant digits: more cannot mean anything
_CONTEXT = Context(prec=400, rounding=ROUND_HALF_UP)   # room for 1e308 with 15 decimals
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


def _digits(digits) -> int:
    if not -MAX_DIGITS <= digits <= MAX_DIGITS:
        raise ArgError(1, f"must be between -{MAX_DIGITS} and {MAX_DIGITS}")
    return int(digits)


def _prepare_round(literals, env):
    if isinstance(literals[1], (int, float)):
        _digits(literals[1])          # a literal out of range is reported when the pipeline loads
    return round_half_up


def round_half_up(value, digits):
    """``value`` to ``digits`` decimals (negative: tens, hundreds…); an integer when ``digits`` ≤ 0."""
    digits = _digits(digits)
    exact = Decimal(repr(value)) if type(value) is float else Decimal(value)
    if exact.as_tuple().exponent >= -digits and (digits > 0 or type(value) is int):
        return value
    rounded = exact.quantize(Decimal(1).scaleb(-digits), context=_CONTEXT)
    return float(rounded) + 0.0 if digits > 0 else int(rounded)


def to_integer(value):
    """A number without its fraction (toward zero); a string holding a number likewise;
    anything else, or a number too large to be finite, is null (as ``to_number``)."""
    if type(value) is str:
        if len(value) > 400 or not _NUMBER.fullmatch(value):
            return None
        value = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
    if type(value) is int:
        return value
    if type(value) is float and value - value == 0:     # finite
        return int(value)
    return None


FUNCTIONS = (
    Function("round", (Param("value", ("number",)), Param("digits", ("integer",))), _prepare_round),
    Function("to_integer", (Param("value"),), simple(to_integer)),
)
