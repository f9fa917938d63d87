"""Compile a JMESPath Community Edition AST into nested Python closures.

Each node becomes ``search(value, scope)``: ``value`` is the current node
(``@``), ``scope`` a tuple holding the root (``$``, JEP-17) at 0 and then the
values of the ``let`` bindings in force (JEP-11a). Variables are resolved to
tuple positions here, once; a ``let`` extends the tuple for its body.

    >>> from dsl.jmes_parser import parse
    >>> search = compile_tree(parse("let $t = tax in lines[*].{net: price, gross: price * (`1` + $t)}"))
    >>> search({"tax": 0.5, "lines": [{"price": 10}, {"price": 4}]}, (None,))
    [{'net': 10, 'gross': 15.0}, {'net': 4, 'gross': 6.0}]
"""
from __future__ import annotations

import math
import operator
from typing import Callable, Mapping

from .jmes_functions import (
    COMPARISONS, FUNCTIONS, Function, InvalidTypeError, InvalidValueError, NotANumberError, Search, _Expression,
    compile_call, copy_json, get_field, is_false, is_number, type_of,
)

__all__ = ["compile_tree", "Env"]


class Env:
    """What the compiler knows where a node is: variable slots and the functions."""

    __slots__ = ("slots", "size", "functions")

    def __init__(self, slots: Mapping[str, int], size: int, functions: Mapping[str, Function]):
        self.slots, self.size, self.functions = slots, size, functions

    def bind(self, names: list[str]) -> Env:
        slots = dict(self.slots)
        for i, name in enumerate(names):
            slots[name] = self.size + i
        return Env(slots, self.size + len(names), self.functions)


def compile_tree(tree: dict, functions: Mapping[str, Function] = FUNCTIONS) -> Search:
    """The closure for ``tree`` at the top level (scope holds only the root)."""
    return _compile(tree, Env({}, 1, functions))


def _identity(value, scope):
    return value


def _compile(node: dict, env: Env) -> Search:
    return _COMPILERS[node["type"]](node, env)


def _children(node: dict, env: Env) -> list[Search]:
    return [_compile(child, env) for child in node["children"]]


def _compile_field(node, env):
    name = node["value"]

    def search(value, scope):
        if type(value) is dict:
            return value.get(name)
        return get_field(value, name)
    return search


def _compile_subexpression(node, env):
    """``a.b.c``: each child runs on the previous result; null stops the chain (JEP-19)."""
    if all(child["type"] == "field" for child in node["children"]):
        return _field_path(tuple(child["value"] for child in node["children"]))
    first, *rest = _children(node, env)

    def search(value, scope):
        value = first(value, scope)
        for step in rest:
            if value is None:
                return None
            value = step(value, scope)
        return value
    return search


def _compile_chain(node, env):
    """``a[0][1]``, ``a | b``: each child runs on the previous result."""
    steps = [fn for fn in _children(node, env) if fn is not _identity]
    if len(steps) == 1:
        return steps[0]
    if len(steps) == 2:
        first, second = steps
        return lambda value, scope: second(first(value, scope), scope)

    def search(value, scope):
        for step in steps:
            value = step(value, scope)
        return value
    return search if steps else _identity


def _field_path(names: tuple[str, ...]) -> Search:
    def search(value, scope):
        for name in names:
            if type(value) is dict:
                value = value.get(name)
            elif value is None:
                return None
            else:
                value = get_field(value, name)
        return value
    return search


def _compile_comparator(node, env):
    left, right = _children(node, env)
    compare = COMPARISONS[node["value"]]
    return lambda value, scope: compare(left(value, scope), right(value, scope))


def _compile_or(node, env):
    left, right = _children(node, env)

    def search(value, scope):
        matched = left(value, scope)
        return right(value, scope) if is_false(matched) else matched
    return search


def _compile_and(node, env):
    left, right = _children(node, env)

    def search(value, scope):
        matched = left(value, scope)
        return matched if is_false(matched) else right(value, scope)
    return search


def _compile_not(node, env):
    (child,) = _children(node, env)

    def search(value, scope):
        result = child(value, scope)
        if is_number(result) and result == 0:
            return False  # 0 is truthy in JMESPath, so !0 is false
        return not result
    return search


def _compile_ternary(node, env):
    """``cond ? then : else`` (JEP-21): only the branch chosen is evaluated."""
    condition, then, otherwise = _children(node, env)

    def search(value, scope):
        matched = condition(value, scope)
        return otherwise(value, scope) if is_false(matched) else then(value, scope)
    return search


def _compile_projection(node, env):
    """``a[*].b``, ``a[].b``, ``a[1:].b``: ``right`` over each item, nulls dropped.

    A slice of a string (JEP-15) is a string: ``right`` applies to it whole.
    """
    left, right = _children(node, env)
    sliced = _is_slice(node["children"][0])

    def search(value, scope):
        base = left(value, scope)
        if not isinstance(base, list):
            return right(base, scope) if sliced and isinstance(base, str) else None
        if right is _identity:
            return [item for item in base if item is not None]
        return [r for r in (right(item, scope) for item in base) if r is not None]
    return search


def _is_slice(node: dict) -> bool:
    return node["type"] == "index_expression" and node["children"][-1]["type"] == "slice"


def _compile_value_projection(node, env):
    """``a.*.b``: ``right`` over each value of an object, nulls dropped."""
    left, right = _children(node, env)

    def search(value, scope):
        base = left(value, scope)
        try:
            items = base.values()
        except AttributeError:
            return None
        return [r for r in (right(item, scope) for item in items) if r is not None]
    return search


def _compile_filter(node, env):
    """``a[?cond].b``: ``right`` over each item where ``cond`` is truthy."""
    left, right, condition = _children(node, env)

    def search(value, scope):
        base = left(value, scope)
        if not isinstance(base, list):
            return None
        collected = []
        for item in base:
            matched = condition(item, scope)
            if matched is True or not is_false(matched):
                current = right(item, scope)
                if current is not None:
                    collected.append(current)
        return collected
    return search


def _compile_flatten(node, env):
    (child,) = _children(node, env)

    def search(value, scope):
        base = child(value, scope)
        if not isinstance(base, list):
            return None
        merged = []
        for item in base:
            if isinstance(item, list):
                merged.extend(item)
            else:
                merged.append(item)
        return merged
    return search


def _compile_index(node, env):
    index = node["value"]

    def search(value, scope):
        if not isinstance(value, list):
            return None
        try:
            return value[index]
        except IndexError:
            return None
    return search


def _compile_slice(node, env):
    """``[start:stop:step]`` of an array, or of a string (JEP-15)."""
    start, stop, step = node["children"]
    if step == 0:
        return _zero_step_slice
    bounds = slice(start, stop, step)
    return lambda value, scope: value[bounds] if isinstance(value, (list, str)) else None


def _zero_step_slice(value, scope):
    if isinstance(value, (list, str)):
        raise InvalidValueError("slice step cannot be 0")
    return None


def _compile_literal(node, env):
    constant = node["value"]
    if isinstance(constant, (list, dict)):
        constant = copy_json(constant)
        return lambda value, scope: copy_json(constant)
    return lambda value, scope: constant


def _compile_list(node, env):
    """``[a, b]``: evaluated on null too (JEP-19: ``null | [@]`` is ``[null]``)."""
    items = _children(node, env)
    return lambda value, scope: [item(value, scope) for item in items]


def _compile_dict(node, env):
    pairs = tuple((pair["value"], _compile(pair["children"][0], env)) for pair in node["children"])
    return lambda value, scope: {key: fn(value, scope) for key, fn in pairs}


def _compile_function(node, env):
    return compile_call(node["value"], tuple(_children(node, env)), env.functions)


def _compile_expref(node, env):
    (child,) = node["children"]
    compiled = _compile(child, env)
    return lambda value, scope: _Expression(child, compiled, scope)


def _compile_root(node, env):
    return lambda value, scope: scope[0]


def _compile_variable(node, env):
    slot = env.slots[node["value"]]    # unknown names were reported before compiling
    return lambda value, scope: scope[slot]


def _compile_let(node, env):
    """``let $a = x, $b = y in body``: bindings see the outer scope, the body the new one."""
    *bindings, body = node["children"]
    values = tuple(_compile(binding["children"][0], env) for binding in bindings)
    inner = _compile(body, env.bind([binding["value"] for binding in bindings]))

    def search(value, scope):
        return inner(value, scope + tuple(fn(value, scope) for fn in values))
    return search


# --- arithmetic (JEP-16) -----------------------------------------------------------------

_SYMBOL = {"plus": "+", "minus": "-", "multiply": "*", "divide": "/", "modulo": "%", "div": "//"}
_OPERATORS = {"plus": operator.add, "minus": operator.sub, "multiply": operator.mul,
              "divide": operator.truediv, "modulo": operator.mod, "div": operator.floordiv}


_NUMBERS = frozenset({int, float})


def _operand(number, symbol: str, side: str):
    if not is_number(number):
        raise InvalidTypeError(f"operator {symbol} takes numbers, got {type_of(number)} as its {side}")
    return number


def _compile_arithmetic(node, env):
    left, right = _children(node, env)
    op, symbol = _OPERATORS[node["value"]], _SYMBOL[node["value"]]

    def search(value, scope):
        x, y = left(value, scope), right(value, scope)
        if type(x) not in _NUMBERS or type(y) not in _NUMBERS:
            x, y = _operand(x, symbol, "left operand"), _operand(y, symbol, "right operand")
        try:
            result = op(x, y)
        except ZeroDivisionError:
            raise NotANumberError(f"{symbol} by zero") from None
        except OverflowError:
            raise NotANumberError(f"the result of {symbol} is too large") from None
        if type(result) is float and not math.isfinite(result):
            raise NotANumberError(f"the result of {symbol} is not a finite number")
        return result
    return search


def _compile_unary(node, env):
    (operand,) = _children(node, env)
    symbol = _SYMBOL[node["value"]]
    if node["value"] == "plus":
        return lambda value, scope: _operand(operand(value, scope), symbol, "operand")
    return lambda value, scope: -_operand(operand(value, scope), "unary -", "operand")


_COMPILERS: dict[str, Callable[[dict, Env], Search]] = {
    "field": _compile_field,
    "subexpression": _compile_subexpression,
    "index_expression": _compile_chain,
    "pipe": _compile_chain,
    "current": lambda node, env: _identity,
    "identity": lambda node, env: _identity,
    "comparator": _compile_comparator,
    "or_expression": _compile_or,
    "and_expression": _compile_and,
    "not_expression": _compile_not,
    "ternary": _compile_ternary,
    "projection": _compile_projection,
    "value_projection": _compile_value_projection,
    "filter_projection": _compile_filter,
    "flatten": _compile_flatten,
    "index": _compile_index,
    "slice": _compile_slice,
    "literal": _compile_literal,
    "multi_select_list": _compile_list,
    "multi_select_dict": _compile_dict,
    "function_expression": _compile_function,
    "expref": _compile_expref,
    "root": _compile_root,
    "variable_ref": _compile_variable,
    "let_expression": _compile_let,
    "arithmetic": _compile_arithmetic,
    "arithmetic_unary": _compile_unary,
}
