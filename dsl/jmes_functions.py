"""The function registry and the runtime of :mod:`dsl.jmes`: functions, operators, truth.

A function is a :class:`Function`: its name, its parameters (each with the
JMESPath types it accepts, optional or variadic) and an implementation taking
the evaluated arguments. :func:`registry` builds the table every expression
is checked and compiled against, from the lists of its sources, in one place:

* the standard functions, jmespath's own implementations (``jmespath.functions``),
  so results match ``jmespath.search``;
* the Community Edition's additions (:mod:`dsl.jmes_community`);
* Hookline's own (:mod:`dsl.functions`: dates, regex, encodings, lookup…), which
  a pipeline binds to its tables (``dsl.functions.bound_registry``).

To add functions, write ``FUNCTIONS = (Function("name", (Param(("string",)),), impl), ...)``
in a module and add it to :func:`registry`'s list. Arity is checked once at
load time (:func:`arity_problem`); each argument's types are resolved once
into a small checker, not looked up per call. A function needing a load-time
check of its arguments (a literal that must be valid) gives ``prepare``: it
receives the argument AST nodes (dicts with ``type``, ``value``, ``offset``)
and returns ``(argument position, message)`` — reported as ``bad-argument``
at that argument; a third item is another code — or None.

Runtime errors, all catchable as ``jmespath.exceptions.JMESPathError`` (the
server answers them with ``422 expression-failed``)::

    JMESPathError
    ├── JMESPathTypeError        an argument or operand of the wrong type
    │   └── InvalidTypeError     where the reference leaks a bare Python
    │                            TypeError/ValueError (``contains('abc', `1`)``,
    │                            ``min_by`` over mixed keys, ``"a" < `1```)
    ├── InvalidValueError        a slice step of 0, ``pad_left`` with a bad width…
    │   └── TooLargeError        a result over MAX_RESULT_CHARS
    └── NotANumberError          division by zero, an overflowing result (JEP-16)

    >>> arity_problem("length", 2)
    'function length() takes 1 argument, got 2'
    >>> arity_problem("pad_left", 4)
    'function pad_left() takes 2 to 3 arguments, got 4'
    >>> arity_problem("not_null", 1) is None
    True
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from numbers import Number
from types import MappingProxyType
from typing import Any, Callable, Mapping

from jmespath.exceptions import JMESPathError, JMESPathTypeError
from jmespath.functions import Functions

Search = Callable[[Any, tuple], Any]
"""A compiled expression part: ``search(current value, scope)``; scope[0] is the root."""

MAX_RESULT_CHARS = 16 * 1024 * 1024
"""No string function builds a string longer than this (16 Mi characters)."""


class InvalidTypeError(JMESPathTypeError):
    """A type mismatch the reference reports as a bare Python exception."""

    def __init__(self, message: str):
        ValueError.__init__(self, message)
        self.message = message
        self.function_name = self.current_value = None
        self.actual_type = self.expected_types = None

    def __str__(self) -> str:
        return self.message


class InvalidValueError(JMESPathError):
    """JMESPath's ``invalid-value`` error, e.g. ``foo[::0]`` on an array."""


class TooLargeError(InvalidValueError):
    """A function asked to build a result over :data:`MAX_RESULT_CHARS`."""


class NotANumberError(JMESPathError):
    """JEP-16's ``not-a-number``: division by zero, or a result that is not finite."""


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: the JMESPath types it accepts (empty: any)."""

    types: tuple[str, ...] = ()
    optional: bool = False
    variadic: bool = False


@dataclass(frozen=True, slots=True)
class Function:
    """A function callable from expressions; ``impl(*args)`` gets evaluated arguments."""

    name: str
    params: tuple[Param, ...]
    impl: Callable[..., Any]
    prepare: Callable[[tuple], tuple[int, str] | None] | None = None
    """Load-time check of the argument nodes: ``(argument position, problem)``, or None."""

    @property
    def arity(self) -> tuple[int, int | None]:
        """``(minimum, maximum)`` argument count; maximum None: variadic."""
        required = sum(1 for p in self.params if not p.optional)
        variadic = bool(self.params) and self.params[-1].variadic
        return required, None if variadic else len(self.params)


class _Expression:
    """An ``&expr`` argument bound to the scope it was written in.

    Quacks like jmespath's ``visitor._Expression``: jmespath's functions call
    ``expref.visit(expref.expression, value)``, which here runs the closure.
    """

    __slots__ = ("expression", "search", "scope")

    def __init__(self, expression: dict, search: Search, scope: tuple):
        self.expression = expression
        self.search = search
        self.scope = scope

    def visit(self, node: dict, value: Any) -> Any:
        return self.search(value, self.scope)


# --- types --------------------------------------------------------------------------

_TYPE_NAMES = {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
               dict: "object", type(None): "null", _Expression: "expref"}


def type_of(value) -> str:
    """The JMESPath type name of ``value``."""
    name = _TYPE_NAMES.get(type(value))
    if name is None:
        name = "number" if is_number(value) else "object" if isinstance(value, Mapping) else "unknown"
    return name


def jmespath_type(python_type_name: str) -> str:
    """The JMESPath type name for a Python type name (``'dict'`` -> ``'object'``)."""
    return {t.__name__: n for t, n in _TYPE_NAMES.items()}.get(python_type_name, "unknown")


_PYTHON_TYPES = {"boolean": (bool,), "number": (int, float), "string": (str,), "array": (list,),
                 "object": (dict,), "null": (type(None),), "expref": (_Expression,)}


def _checker(name: str, types: tuple[str, ...]):
    """A function raising JMESPathTypeError when a value is not one of ``types``.

    ``array-number`` and the like accept an array whose elements are all of
    that type (an empty array fits any of them). The common case, a value of
    an exact Python type the signature allows, costs one set lookup.
    """
    if not types:
        return None
    plain = frozenset(t for t in types if "-" not in t)
    fast = frozenset(kind for t in plain for kind in _PYTHON_TYPES.get(t, ()))
    element_types = tuple(t.split("-", 1)[1] for t in types if t.startswith("array-"))
    element_fast = tuple(frozenset(_PYTHON_TYPES.get(t, ())) for t in element_types)

    def check(current):
        kind = type(current)
        if kind in fast or (kind is list and element_fast and any(
                all(type(item) in allowed for item in current) for allowed in element_fast)):
            return
        actual = type_of(current)
        if actual in plain:
            return
        if actual == "array" and element_types and any(
                all(type_of(item) == kind for item in current) for kind in element_types):
            return
        raise JMESPathTypeError(name, current, actual, list(types))
    return check


# --- the registry -------------------------------------------------------------------

def _standard() -> tuple[Function, ...]:
    """jmespath's builtins, with their signatures as :class:`Param` tuples."""
    funcs = Functions()
    table = []
    for name, entry in Functions.FUNCTION_TABLE.items():
        params = tuple(Param(tuple(spec["types"]), variadic=spec.get("variadic", False))
                       for spec in entry["signature"])
        table.append(Function(name, params, entry["function"].__get__(funcs)))
    return tuple(table)


def is_known(name: str, functions: Mapping[str, Function] | None = None) -> bool:
    """True when ``name`` is a function of ``functions``."""
    return name in (functions or FUNCTIONS)


def arity_problem(name: str, count: int, functions: Mapping[str, Function] | None = None) -> str | None:
    """The arity error message for ``name`` called with ``count`` args, or None."""
    low, high = (functions or FUNCTIONS)[name].arity
    if low <= count and (high is None or count <= high):
        return None
    if high is None:
        wanted = f"at least {low}"
    elif low == high:
        wanted = str(low)
    else:
        wanted = f"{low} to {high}"
    plural = "argument" if wanted.endswith(" 1") or wanted == "1" else "arguments"
    return f"function {name}() takes {wanted} {plural}, got {count}"


def compile_call(name: str, args: tuple[Search, ...],
                 functions: Mapping[str, Function] | None = None) -> Search:
    """A closure evaluating function ``name`` on the compiled ``args``.

    The caller has already checked that the name exists and the arity fits.
    Every argument is evaluated before any is checked, as the reference does.
    """
    function = (functions or FUNCTIONS)[name]
    checks = _checks(function, len(args))
    impl = function.impl
    if len(args) == 1:
        (arg,), (check,) = args, checks
        return _unary_call(name, impl, arg, check)
    if len(args) == 2:
        return _binary_call(name, impl, args, checks)
    checked = tuple((i, c) for i, c in enumerate(checks) if c is not None)

    def search(value, scope):
        resolved = [arg(value, scope) for arg in args]
        for i, check in checked:
            check(resolved[i])
        return _invoke(name, impl, resolved)
    return search


def _binary_call(name, impl, args, checks) -> Search:
    (first, second), (check_first, check_second) = args, [c or _any for c in checks]

    def search(value, scope):
        x, y = first(value, scope), second(value, scope)
        check_first(x)
        check_second(y)
        try:
            return impl(x, y)
        except JMESPathError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise InvalidTypeError(f"In function {name}(): {exc}") from exc
    return search


def _any(value) -> None:
    """The checker of a parameter of any type."""


def _unary_call(name, impl, arg: Search, check) -> Search:
    check = check or _any

    def search(value, scope):
        current = arg(value, scope)
        check(current)
        try:
            return impl(current)
        except JMESPathError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise InvalidTypeError(f"In function {name}(): {exc}") from exc
    return search


def _checks(function: Function, count: int) -> list:
    """One checker (or None: any type) per argument position."""
    params = list(function.params)
    while len(params) < count:          # the variadic parameter repeats
        params.append(params[-1])
    return [_checker(function.name, p.types) for p in params[:count]]


def _invoke(name: str, impl, resolved) -> Any:
    try:
        return impl(*resolved)
    except JMESPathError:
        raise
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidTypeError(f"In function {name}(): {exc}") from exc


# --- operators and truthiness, as jmespath.visitor.TreeInterpreter has them ---

def is_false(value) -> bool:
    """JMESPath falsiness: null, false, "", [] and {} (but not 0)."""
    return value is None or value is False or value == "" or value == [] or value == {}


def is_number(value) -> bool:
    """A number that is not a boolean (``True`` is an ``int`` to Python)."""
    kind = type(value)
    return kind is int or kind is float or (kind is not bool and isinstance(value, Number))


def equals(x, y) -> bool:
    """The reference's ``==``: Python's, except a boolean never equals a number."""
    if (type(x) is bool) is not (type(y) is bool) and (is_number(x) or is_number(y)):
        return False
    return x == y


def _ordering(op: Callable, symbol: str) -> Callable:
    """An ordering comparison: null unless both sides are numbers or strings."""
    def compare(x, y):
        if not ((is_number(x) or isinstance(x, str)) and (is_number(y) or isinstance(y, str))):
            return None
        try:
            return op(x, y)
        except TypeError:
            raise InvalidTypeError(f"cannot compare {type_of(x)} {symbol} {type_of(y)}") from None
    return compare


COMPARISONS = {
    "eq": equals,
    "ne": lambda x, y: not equals(x, y),
    "lt": _ordering(operator.lt, "<"), "lte": _ordering(operator.le, "<="),
    "gt": _ordering(operator.gt, ">"), "gte": _ordering(operator.ge, ">="),
}


def get_field(value, name: str):
    """The reference's field lookup: anything with ``.get``, else null."""
    try:
        return value.get(name)
    except AttributeError:
        return None


def copy_json(value):
    """A deep copy of a JSON value (literals must not leak shared lists)."""
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    return value


def bounded(length: int, name: str) -> None:
    """Raise TooLargeError when a result of ``length`` characters would be too large."""
    if length > MAX_RESULT_CHARS:
        raise TooLargeError(f"In function {name}(): the result would be {length} characters, "
                            f"over the limit of {MAX_RESULT_CHARS}")


# --- the registry (last: dsl.jmes_community imports from this module) -------------

def registry(*extra: tuple[Function, ...]) -> Mapping[str, Function]:
    """Every function by name: the standard ones, the Community Edition's, Hookline's, then ``extra``.

    A later list replaces an earlier function of the same name.
    """
    from .functions import bound    # Hookline's own (dsl/functions), here without tables
    from .jmes_community import FUNCTIONS as COMMUNITY
    table: dict[str, Function] = {}
    for source in (_standard(), COMMUNITY, bound(), *extra):
        table.update((function.name, function) for function in source)
    return MappingProxyType(table)


FUNCTIONS = registry()
