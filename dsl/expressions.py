"""The DSL's expression language: JMESPath Community Edition, compiled once at load time.

Re-exports the compiler of :mod:`dsl.jmes` so the rest of the package has one
import; see there for static checks (unknown functions, arity) and offsets.
"""
from __future__ import annotations

from .jmes import Expression, ExpressionError, compile_expression
from .jmes_lexer import SyntaxProblem, tokenize

__all__ = ["Expression", "ExpressionError", "compile_expression", "bare_literals", "function_names"]
_LITERAL_WORDS = ("null", "true", "false")


def bare_literals(text: str) -> list[tuple[str, int]]:
    """Unquoted ``null``/``true``/``false`` used as values: JMESPath reads them
    as field names, almost never what the author meant.

    >>> bare_literals("a != null && b == `true`")
    [('null', 5)]
    """
    try:
        tokens = tokenize(text)
    except SyntaxProblem:
        return []
    return [(t["value"], t["start"]) for i, t in enumerate(tokens)
            if t["type"] == "unquoted_identifier" and t["value"] in _LITERAL_WORDS
            and (i == 0 or tokens[i - 1]["type"] != "dot")]


def function_names() -> tuple[str, ...]:
    """Every function an expression may call (for "did you mean")."""
    from . import jmes_functions
    table = getattr(jmes_functions, "FUNCTIONS", None) or jmes_functions._TABLE
    return tuple(sorted(table))
