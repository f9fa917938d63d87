"""Diagnostics and the one exception of the dsl package.

Exception tree::

    HooklineDslError
    ├── CompileError      one or more diagnostics; .diagnostics is sorted by position
    └── ExpressionError   (dsl.jmes) one bad JMESPath expression: code, message, offset

Every problem an author can make is a :class:`Diagnostic` that names the place
in the YAML (``file:line:col``, 1-based) and says what to do, GCC style::

    >>> str(Diagnostic("p.yaml", 14, 15, "unknown-function", "unknown function sum_by()"))
    'p.yaml:14:15: unknown-function: unknown function sum_by()'

Warnings print as ``file:line:col: warning: code: message``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """One author mistake at one place; ordering is by file, line, column."""

    file: str
    line: int
    col: int
    code: str
    message: str
    severity: str = "error"   # or "warning": reported, but the pipeline still compiles

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.file}:{self.line}:{self.col}: {tag}{self.code}: {self.message}"


class HooklineDslError(Exception):
    """Base of every exception raised on purpose by the dsl package."""


class CompileError(HooklineDslError):
    """Raised by the compile entry points when any diagnostic was found."""

    def __init__(self, diagnostics):
        self.diagnostics = tuple(sorted(set(diagnostics)))
        self.errors = tuple(d for d in self.diagnostics if d.severity == "error")
        super().__init__("\n".join(map(str, self.diagnostics)))
