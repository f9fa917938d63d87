"""The fix for the common slips, added to the diagnostics that find them.

Each hint reads the expression's text (and the YAML scalar's quoting) and returns text to add
to a message, or a warning of its own:

    >>> error_hint("steps.notify.status == 409", "bad-expression", 23)
    '; a number is a literal in backticks: write `409`'
    >>> error_hint("request.headers.x-github-event", "bad-expression", 17)
    '; a name with \\'-\\' must be quoted: request.headers."x-github-event"'
    >>> error_hint("env:TOKEN", "bad-expression", 3)
    '; to substitute an environment variable write ${env:TOKEN}'
    >>> error_hint("lenght(a)", "unknown-function", 0, ("length", "keys"))
    "; did you mean 'length()'?"
    >>> did_you_mean("notfy", ("notify", "check"))
    "; did you mean 'notify'?"
"""
from __future__ import annotations

import difflib
import re

__all__ = ["error_hint", "did_you_mean", "dashed_names", "quoted_text"]

_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORD = re.compile(r"true|false|null")
_SUBSTITUTION = re.compile(r"\s*(env|file):\s*([^\s}]+)")
_DASHED = re.compile(r"(?<![\w\"'`$])((?:[A-Za-z_][A-Za-z0-9_]*\.)*)([A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)+)")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.65)
    return f"; did you mean '{close[0]}'?" if close else ""


def error_hint(text: str, code: str, offset: int, functions=()) -> str:
    """Text to add to an expression error's message: the fix, when the slip is a known one."""
    if code == "unknown-function":
        name = _IDENT.match(text, offset)
        close = difflib.get_close_matches(name.group(), list(functions), n=1, cutoff=0.65) if name else []
        return f"; did you mean '{close[0]}()'?" if close else ""
    if code != "bad-expression":
        return ""
    substitution = _SUBSTITUTION.match(text)
    if substitution:
        return f"; to substitute an environment variable write ${{{substitution[1]}:{substitution[2]}}}"
    dashed = _dashed_at(text, offset)
    if dashed:
        return f"; a name with '-' must be quoted: {dashed}"
    number = _NUMBER.match(text, offset)
    if number:
        return f"; a number is a literal in backticks: write `{number.group()}`"
    word = _WORD.match(text, offset)
    if word:
        return f"; a {word.group()} is a literal in backticks: write `{word.group()}`"
    return ""


def _blank_quotes(text: str) -> str:
    """``text`` with every quoted part blanked out (same length), so names inside are not seen."""
    return _QUOTED.sub(lambda m: " " * len(m.group()), text)


def _dashed_at(text: str, offset: int) -> str:
    for m in _DASHED.finditer(_blank_quotes(text)):
        if m.start() <= offset <= m.end():
            return f'{m[1]}"{m[2]}"'
    return ""


def dashed_names(text: str) -> list[tuple[str, int]]:
    """``a.x-y`` read as ``a.x - y`` (arithmetic): the quoted spelling and the offset of each.

    >>> dashed_names("request.headers.x-github-event")
    [('request.headers."x-github-event"', 16)]
    >>> dashed_names("a - b"), dashed_names("'x-y'")
    ([], [])
    """
    return [(f'{m[1]}"{m[2]}"', m.start(2)) for m in _DASHED.finditer(_blank_quotes(text))]


def quoted_text(text: str, style: str | None) -> str | None:
    """A YAML-quoted scalar that is one bare name: the author most likely meant the text.

    >>> quoted_text("duplicate", "'")
    'YAML\\'s quotes are not part of the expression: this reads the field \\'duplicate\\'; for the text \\'duplicate\\' write "\\'duplicate\\'"'
    >>> quoted_text("request", "'"), quoted_text("duplicate", None)
    (None, None)
    """
    if style not in ("'", '"') or not _IDENT.fullmatch(text) or text in ("request", "steps"):
        return None
    return (f"YAML's quotes are not part of the expression: this reads the field '{text}'; "
            f"for the text '{text}' write \"'{text}'\"")
