"""The DSL's expression language: JMESPath, compiled once at load time.

Re-exports the compiler of :mod:`dsl.jmes` so the rest of the package has one
import; see there for static checks (unknown functions, arity) and offsets.
"""
from __future__ import annotations

from .jmes import Expression, ExpressionError, compile_expression

__all__ = ["Expression", "ExpressionError", "compile_expression"]
