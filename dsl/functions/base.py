"""What every Hookline function is made of: parameters, load-time preparation, runtime checks.

A :class:`Function` declares its parameters and a ``prepare(literals, env)``
that runs once per call site, when the pipeline loads. ``literals`` holds, per argument,
its value when the argument is written as a literal (``'…'`` or a backtick
literal) and :data:`NOT_LITERAL` otherwise; ``prepare`` compiles what it can
(a regex, a table, a time zone) and returns the implementation called per
request with the evaluated arguments.

An implementation refuses an argument by raising :class:`ArgError`; at load
time that is a diagnostic at the argument, per request a
:class:`FunctionFailed` (``422 expression-failed``) that names the function
and the argument, never the value::

    >>> fn = Function("shout", (Param("text", ("string",)),), lambda lits, env: str.upper)
    >>> call = runtime(fn, fn.load((NOT_LITERAL,), Env()), limit=100)
    >>> call("hi"), call(None)
    ('HI', None)
    >>> call(1)
    Traceback (most recent call last):
    ...
    dsl.functions.base.FunctionFailed: shout(): argument 1 (text) must be a string, got number

Exceptions::

    ArgError                    raised by an implementation or prepare(): .index, .reason, .code
    jmespath JMESPathError
    └── JMESPathTypeError
        └── FunctionFailed      per request; .public is safe to show to the client
"""
from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Number
from types import MappingProxyType
from typing import Any, Callable, Mapping

from jmespath.exceptions import JMESPathTypeError

from ..spec import DEFAULT_MAX_BODY

NOT_LITERAL = type("NotLiteral", (), {"__repr__": lambda self: "NOT_LITERAL"})()
"""Stands for an argument that is not written as a literal."""


class ArgError(Exception):
    """Argument ``index`` (0-based) cannot be used; ``reason`` completes "argument N (name) …"."""

    def __init__(self, index: int, reason: str, code: str = "bad-argument"):
        super().__init__(reason)
        self.index, self.reason, self.code = index, reason, code


class FunctionFailed(JMESPathTypeError):
    """A Hookline function failed on this request's values (``422 expression-failed``)."""

    def __init__(self, public: str):
        ValueError.__init__(self, public)
        self.public = public
        self.function_name = self.current_value = self.actual_type = self.expected_types = None

    def __str__(self) -> str:
        return self.public


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: ``types`` are JMESPath type names (empty: any), plus ``integer``."""

    name: str
    types: tuple[str, ...] = ()
    optional: bool = False
    literal: bool = False    # must be written as a literal: it is compiled when the pipeline loads


@dataclass(frozen=True, slots=True)
class Env:
    """What functions may know at load time: the pipeline's tables and its body limit."""

    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    max_bytes: int = DEFAULT_MAX_BODY


Prepare = Callable[[tuple, Env], Callable[..., Any]]


@dataclass(frozen=True, slots=True)
class Function:
    """A Hookline function. ``null_in`` false: a null first argument reaches the implementation
    (otherwise the result is null)."""

    name: str
    params: tuple[Param, ...]
    prepare: Prepare
    null_in: bool = True

    def arity_problem(self, count: int) -> str | None:
        """The load-time message for ``count`` arguments, or None when it fits."""
        most = len(self.params)
        least = sum(1 for p in self.params if not p.optional)
        if least <= count <= most:
            return None
        wanted = str(most) if least == most else f"{least} to {most}"
        return f"function {self.name}() takes {wanted} argument{'' if wanted == '1' else 's'}, got {count}"

    def describe(self, index: int, reason: str) -> str:
        """``to_datetime(): argument 1 (value) is not a date``."""
        return f"{self.name}(): argument {index + 1} ({self.params[index].name}) {reason}"

    def load(self, literals: tuple, env: Env):
        """Check the literal arguments and prepare the implementation; raises ArgError."""
        for i, (param, value) in enumerate(zip(self.params, literals)):
            if param.literal and value is NOT_LITERAL:
                raise ArgError(i, "must be written as a literal ('…' or `…`): it is compiled when "
                                  "the pipeline loads", "literal-required")
            if value is not NOT_LITERAL and not (value is None and i == 0 and self.null_in):
                check_type(i, param, value)
        return self.prepare(literals, env)


_PY_KINDS = {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
             dict: "object", type(None): "null"}


def kind(value) -> str:
    """The JMESPath type name of ``value`` (``'expref'`` for anything else)."""
    found = _PY_KINDS.get(type(value))
    if found is None:
        found = "number" if isinstance(value, Number) and not isinstance(value, bool) else "expref"
    return found


def is_integer(value) -> bool:
    """A JSON number with no fraction (``2`` or ``2.0``), not a boolean."""
    return type(value) is int or (type(value) is float and value.is_integer())


def check_type(index: int, param: Param, value) -> None:
    """Raise ArgError unless ``value`` fits ``param`` (null fits an optional parameter)."""
    if not param.types or (value is None and param.optional):
        return
    found = kind(value)
    if found in param.types or ("integer" in param.types and is_integer(value)):
        return
    names = ["an integer" if t == "integer" else f"a{'n' if t[0] in 'aeio' else ''} {t}"
             for t in param.types if t != "null"]
    wanted = " or ".join(names) + (" (or null)" if "null" in param.types else "")
    raise ArgError(index, f"must be {wanted}, got {found}")


def runtime(fn: Function, impl: Callable[..., Any], limit: int) -> Callable[..., Any]:
    """``impl`` as called per request: null in (when ``fn.null_in``), types checked, every
    refusal a :class:`FunctionFailed` naming the argument, no string result over ``limit``."""
    typed = tuple((i, p) for i, p in enumerate(fn.params) if p.types)

    def call(*values):
        if fn.null_in and values and values[0] is None:
            return None
        try:
            for i, param in typed[:len(values)]:
                check_type(i, param, values[i])
            result = impl(*values)
        except ArgError as exc:
            raise FunctionFailed(fn.describe(exc.index, exc.reason)) from None
        if type(result) is str and len(result) > limit:
            raise FunctionFailed(f"{fn.name}(): the result would be longer than the body limit "
                                 f"({limit} bytes)")
        return result
    return call


def simple(impl: Callable[..., Any]) -> Prepare:
    """A ``prepare`` for a function with nothing to compile at load time."""
    return lambda literals, env: impl
