"""Hookline's own expression functions, on top of JMESPath's (``dsl.jmes_functions``).

Each module holds a ``FUNCTIONS`` tuple of :class:`~dsl.functions.base.Function`;
they are registered here, in one place, and join the expression registry
(``dsl.jmes_functions.registry``) through :func:`bound`: bound to one
pipeline's tables and body limit, each becomes a registry function whose
``prepare`` checks the literal arguments of a call site when the pipeline
loads (a problem is ``(argument, message, code)``) and compiles what they
fix (a regex, a table, a time zone) for that site. The reference table is
docs/functions.md.

    >>> sorted(FUNCTIONS)[:4]
    ['base64_decode', 'base64_encode', 'datetime_add', 'format_datetime']
    >>> from dsl.jmes import compile_expression
    >>> codes = bound_registry({"codes": {"paid": "P"}}, max_bytes=65536)
    >>> compile_expression("lookup('codes', status)", codes).search({"status": "paid"})
    'P'
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from . import dates, encodings, lookup, numeric, regex
from .base import NOT_LITERAL, ArgError, Env, Function, FunctionFailed, runtime

__all__ = ["FUNCTIONS", "NOT_LITERAL", "ArgError", "Env", "Function", "FunctionFailed", "bound",
           "bound_registry"]

FUNCTIONS: MappingProxyType[str, Function] = MappingProxyType({
    fn.name: fn for module in (dates, regex, encodings, numeric, lookup) for fn in module.FUNCTIONS})


def bound(env: Env = Env()) -> tuple:
    """Every Hookline function as a ``dsl.jmes_functions.Function`` for one pipeline."""
    return tuple(_registered(fn, env) for fn in FUNCTIONS.values())


def bound_registry(tables: Mapping[str, Mapping[str, Any]], max_bytes: int) -> Mapping:
    """The expression registry of a pipeline: JMESPath's functions and Hookline's, with its tables."""
    from ..jmes_functions import registry
    return registry(bound(Env(MappingProxyType(dict(tables)), max_bytes)))


def _registered(fn: Function, env: Env):
    """``fn`` as the registry knows functions. Call sites differ only in their literal-required
    arguments (a pattern, a table name), so what ``load`` prepares is kept by those values;
    every call site is prepared when its expression is checked, before it is compiled."""
    from ..jmes_functions import Function as Registered, Param as Slot
    fixed = tuple(i for i, p in enumerate(fn.params) if p.literal)
    sites: dict[tuple, Any] = {}

    def prepare(nodes):
        literals = tuple(n["value"] if n["type"] == "literal" else NOT_LITERAL for n in nodes)
        try:
            impl = fn.load(literals, env)
        except ArgError as exc:
            return exc.index, fn.describe(exc.index, exc.reason), exc.code
        sites.setdefault(tuple(literals[i] for i in fixed), runtime(fn, impl, env.max_bytes))
        return None

    def call(*values):
        if fn.null_in and values and values[0] is None:
            return None
        key = tuple(values[i] for i in fixed)
        site = sites.get(key)
        if site is None:     # compiled without its check (compile_tree alone): prepare it now
            try:
                site = runtime(fn, fn.load(tuple(values[i] if i in fixed else NOT_LITERAL
                                                 for i in range(len(values))), env), env.max_bytes)
            except ArgError as exc:
                raise FunctionFailed(fn.describe(exc.index, exc.reason)) from None
        return site(*values)

    return Registered(fn.name, tuple(Slot(optional=p.optional) for p in fn.params), call, prepare)
