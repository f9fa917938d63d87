"""The tokens of JMESPath Community Edition, with their offsets.

Tokens are dicts ``{"type", "value", "start", "end"}`` (the shape jmespath's
lexer yields, so code that reads tokens reads these the same way). Beyond the
standard tokens there are the arithmetic operators of JEP-16 (with their
Unicode spellings), ``?`` of the ternary (JEP-21), ``$`` the root (JEP-17),
``$name`` a variable and ``=`` of ``let`` (JEP-11a).

    >>> [t["type"] for t in tokenize("let $x = a[-1] in $x × `2`")]
    ['unquoted_identifier', 'variable', 'assign', 'unquoted_identifier', 'lbracket', 'number', 'rbracket', \
'unquoted_identifier', 'variable', 'multiply', 'literal', 'eof']
    >>> tokenize("a ~ b")
    Traceback (most recent call last):
    ...
    dsl.jmes_lexer.SyntaxProblem: unknown token '~' (at offset 2)
"""
from __future__ import annotations

import json
import string

__all__ = ["SyntaxProblem", "tokenize"]

_START = frozenset(string.ascii_letters + "_")
_PART = frozenset(string.ascii_letters + string.digits + "_")
_DIGITS = frozenset(string.digits)
_WHITESPACE = frozenset(" \t\n\r")

_SIMPLE = {
    ".": "dot", "*": "star", "]": "rbracket", ",": "comma", ":": "colon", "@": "current",
    "(": "lparen", ")": "rparen", "{": "lbrace", "}": "rbrace", "+": "plus", "%": "modulo",
    "?": "question", "×": "multiply", "÷": "divide", "−": "minus", "–": "minus",
}
# A first character, what may follow it, and the token types without and with it.
_PAIRS = {
    "|": ("|", "pipe", "or"), "&": ("&", "expref", "and"), "<": ("=", "lt", "lte"),
    ">": ("=", "gt", "gte"), "!": ("=", "not", "ne"), "=": ("=", "assign", "eq"),
    "/": ("/", "divide", "div"), "[": ("]", "lbracket", "flatten"),
}


class SyntaxProblem(Exception):
    """Text that is not an expression: ``message`` and a 0-based ``offset``."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} (at offset {offset})")
        self.message = message
        self.offset = offset


def tokenize(text: str) -> list[dict]:
    """Every token of ``text``, ending with an ``eof`` token; SyntaxProblem if one is bad."""
    if not text:
        raise SyntaxProblem("expression is empty", 0)
    tokens, at = [], 0
    while at < len(text):
        char = text[at]
        if char in _WHITESPACE:
            at += 1
            continue
        token = _token(text, at, char)
        tokens.append(token)
        at = token["end"]
    tokens.append(_make("eof", "", len(text), len(text)))
    return tokens


def _make(kind: str, value, start: int, end: int) -> dict:
    return {"type": kind, "value": value, "start": start, "end": end}


def _token(text: str, at: int, char: str) -> dict:
    if char in _SIMPLE:
        return _make(_SIMPLE[char], char, at, at + 1)
    if char in _START:
        end = _run(text, at + 1, _PART)
        return _make("unquoted_identifier", text[at:end], at, end)
    if char in _DIGITS or (char == "-" and text[at + 1:at + 2] in _DIGITS):
        return _number(text, at)
    if char == "-":
        return _make("minus", "-", at, at + 1)
    if char == "[" and text[at + 1:at + 2] == "?":
        return _make("filter", "[?", at, at + 2)
    if char in _PAIRS:
        follow, single, double = _PAIRS[char]
        if text[at + 1:at + 2] == follow:
            return _make(double, char + follow, at, at + 2)
        return _make(single, char, at, at + 1)
    if char == "$":
        return _dollar(text, at)
    if char in _QUOTED:
        return _QUOTED[char](text, at)
    raise SyntaxProblem(f"unknown token {char!r}", at)


def _run(text: str, at: int, allowed: frozenset) -> int:
    """The end of the run of ``allowed`` characters starting at ``at``."""
    while at < len(text) and text[at] in allowed:
        at += 1
    return at


def _number(text: str, at: int) -> dict:
    end = _run(text, at + 1, _DIGITS)
    if end - at > 1000:     # Python refuses to read ints of over 4300 digits
        raise SyntaxProblem("number is too large", at)
    return _make("number", int(text[at:end]), at, end)


def _dollar(text: str, at: int) -> dict:
    """``$`` alone is the root (JEP-17); ``$name`` a variable (JEP-11a)."""
    if text[at + 1:at + 2] and text[at + 1] in _START:
        end = _run(text, at + 2, _PART)
        return _make("variable", text[at + 1:end], at, end)
    return _make("root", "$", at, at + 1)


def _delimited(text: str, at: int, delimiter: str) -> tuple[str, int]:
    """The raw text between ``text[at]`` and the next unescaped ``delimiter``, and the end."""
    i = at + 1
    while i < len(text) and text[i] != delimiter:
        i += 2 if text[i] == "\\" else 1
    if i >= len(text):
        raise SyntaxProblem(f"unclosed {delimiter} delimiter", at)
    return text[at + 1:i], i + 1


def _raw_string(text: str, at: int) -> dict:
    r"""``'…'``: ``\'`` is a quote and ``\\`` a backslash; any other backslash stays (JEP-12a)."""
    lexeme, end = _delimited(text, at, "'")
    value, i = [], 0
    while i < len(lexeme):
        if lexeme[i] == "\\" and lexeme[i + 1:i + 2] in ("'", "\\"):
            value.append(lexeme[i + 1])
            i += 2
        else:
            value.append(lexeme[i])
            i += 1
    return _make("literal", "".join(value), at, end)


def _json_literal(text: str, at: int) -> dict:
    """```…```: JSON text (an escaped backtick inside it is a backtick).

    Text that is not JSON is read as a string if it can be, as jmespath
    still does for old pipelines (```foo``` is ``"foo"``).
    """
    lexeme, end = _delimited(text, at, "`")
    lexeme = lexeme.replace("\\`", "`")
    try:
        return _make("literal", json.loads(lexeme), at, end)
    except ValueError:
        pass
    try:
        return _make("literal", json.loads(f'"{lexeme.lstrip()}"'), at, end)
    except ValueError:
        raise SyntaxProblem(f"bad token {lexeme}", at) from None


def _quoted_identifier(text: str, at: int) -> dict:
    lexeme, end = _delimited(text, at, '"')
    try:
        return _make("quoted_identifier", json.loads(f'"{lexeme}"'), at, end)
    except ValueError as exc:
        raise SyntaxProblem(str(exc).split(":")[0].lower(), at) from None


_QUOTED = {"'": _raw_string, "`": _json_literal, '"': _quoted_identifier}
