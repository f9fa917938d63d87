"""Parse JMESPath Community Edition text into an AST of dicts.

A top-down operator precedence (Pratt) parser over :func:`dsl.jmes_lexer.tokenize`.
The tree has the shape jmespath.py's parser builds — ``{"type", "children",
"value"}``, the same node types, the same tree for every expression of the
standard grammar (tests/test_jmes_parser.py checks that against jmespath) — so
code that walks jmespath trees walks these. Every node also carries
``"offset"``, where its text starts (a function or field: its name), for
diagnostics.

Node types the Community Edition adds::

    arithmetic        value: plus | minus | multiply | divide | modulo | div; children [left, right]
    arithmetic_unary  value: plus | minus; children [operand]                          (JEP-16)
    ternary           children [condition, then, else]                                 (JEP-21)
    root              ``$``, the document the expression started on                    (JEP-17)
    variable_ref      value: the name without ``$``                                    (JEP-11a)
    let_expression    children [variable_binding, ..., body]
    variable_binding  value: the name; children [expression]

    >>> parse("a + b")["type"], parse("a + b")["value"]
    ('arithmetic', 'plus')
    >>> strip_offsets(parse("foo[0]"))
    {'type': 'index_expression', 'children': [{'type': 'field', 'children': [], 'value': 'foo'}, \
{'type': 'index', 'children': [], 'value': 0}]}
    >>> parse("foo.")
    Traceback (most recent call last):
    ...
    dsl.jmes_lexer.SyntaxProblem: expected identifier or '[' or '{', got end of expression (at offset 4)
"""
from __future__ import annotations

import json

from .jmes_lexer import SyntaxProblem, tokenize

__all__ = ["parse", "strip_offsets", "SyntaxProblem"]

# How tightly a token binds what is on its left (0: it ends an expression).
_LEFT_POWER = {
    "pipe": 1, "question": 2, "or": 3, "and": 4,
    "eq": 5, "ne": 5, "lt": 5, "lte": 5, "gt": 5, "gte": 5,
    "plus": 6, "minus": 6, "star": 7, "multiply": 7, "divide": 7, "modulo": 7, "div": 7,
    "flatten": 9, "filter": 21, "dot": 40, "lbracket": 55, "lparen": 60,
}
_PROJECTION_STOP = 10       # a token binding less than this ends a projection
_STAR, _FILTER, _DOT, _NOT, _UNARY = 20, 21, 40, 45, 7
_COMPARATORS = frozenset({"eq", "ne", "lt", "lte", "gt", "gte"})
_ARITHMETIC = {"plus": "plus", "minus": "minus", "star": "multiply", "multiply": "multiply",
               "divide": "divide", "modulo": "modulo", "div": "div"}
_SYMBOLS = {"rbracket": "']'", "rparen": "')'", "rbrace": "'}'", "colon": "':'", "comma": "','",
            "star": "'*'", "assign": "'='", "variable": "a $variable", "lbracket": "'['",
            "lbrace": "'{'"}
_NO_VALUE = object()


def parse(text: str) -> dict:
    """The AST of ``text``; :class:`SyntaxProblem` when it is not an expression."""
    return _Parser(text).parse()


def strip_offsets(node):
    """A copy of ``node`` without the ``offset`` keys: jmespath's tree for the same text."""
    if isinstance(node, dict):
        return {key: strip_offsets(value) for key, value in node.items() if key != "offset"}
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return [strip_offsets(child) for child in node]
    return node


def _node(kind: str, offset: int, children=None, value=_NO_VALUE) -> dict:
    node = {"type": kind, "children": [] if children is None else children}
    if value is not _NO_VALUE:
        node["value"] = value
    node["offset"] = offset
    return node


def describe(token: dict) -> str:
    """How a message names ``token``: ``end of expression``, ``'b'``, ``1``."""
    if token["type"] == "eof":
        return "end of expression"
    if token["type"] == "variable":
        return repr("$" + token["value"])
    value = token["value"]
    return repr(value) if isinstance(value, str) else json.dumps(value)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.at = 0

    def parse(self) -> dict:
        tree = self.expression(0)
        if self.kind() != "eof":
            self.unexpected()
        return tree

    # --- the token stream ---

    def token(self, ahead: int = 0) -> dict:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)]

    def kind(self, ahead: int = 0) -> str:
        return self.token(ahead)["type"]

    def advance(self) -> dict:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def match(self, *kinds: str) -> dict:
        if self.kind() not in kinds:
            if self.kind() == "eof":
                raise SyntaxProblem("unexpected end of expression", self.token()["start"])
            wanted = " or ".join(dict.fromkeys(_name(kind) for kind in kinds))
            raise SyntaxProblem(f"expected {wanted}, got {describe(self.token())}", self.token()["start"])
        return self.advance()

    def unexpected(self, token: dict | None = None):
        token = token or self.token()
        raise SyntaxProblem(f"unexpected {describe(token)}", token["start"])

    # --- the Pratt loop ---

    def expression(self, power: int) -> dict:
        token = self.advance()
        nud = _NUDS.get(token["type"])
        if nud is None:
            self.unexpected(token)
        left = nud(self, token)
        while power < _LEFT_POWER.get(self.kind(), 0):
            token = self.advance()
            left = _LEDS[token["type"]](self, left, token)
        return left

    # --- shared pieces ---

    def projection_rhs(self, power: int) -> dict:
        """What a projection applies to each element (identity if it stops here)."""
        kind = self.kind()
        if _LEFT_POWER.get(kind, 0) < _PROJECTION_STOP:
            return _node("identity", self.token()["start"])
        if kind in ("lbracket", "filter"):
            return self.expression(power)
        if kind == "dot":
            self.advance()
            return self.dot_rhs(power)
        self.unexpected()

    def dot_rhs(self, power: int) -> dict:
        """After ``.``: a name, a function call, ``*``, ``[a, b]`` or ``{k: v}``."""
        kind = self.kind()
        if kind == "unquoted_identifier" and self.token()["value"] == "let" and self.kind(1) == "variable":
            self.unexpected(self.token(1))
        if kind in ("quoted_identifier", "unquoted_identifier", "star"):
            return self.expression(power)
        if kind == "lbracket":
            return self.multi_select_list(self.advance())
        if kind == "lbrace":
            return self.multi_select_hash(self.advance())
        raise SyntaxProblem(f"expected identifier or '[' or '{{', got {describe(self.token())}",
                            self.token()["start"])

    def multi_select_list(self, opening: dict) -> dict:
        items = [self.expression(0)]
        while self.match("comma", "rbracket")["type"] == "comma":
            items.append(self.expression(0))
        return _node("multi_select_list", opening["start"], items)

    def multi_select_hash(self, opening: dict) -> dict:
        pairs = []
        while True:
            key = self.match("quoted_identifier", "unquoted_identifier")
            self.match("colon")
            pairs.append(_node("key_val_pair", key["start"], [self.expression(0)], key["value"]))
            if self.match("comma", "rbrace")["type"] == "rbrace":
                return _node("multi_select_dict", opening["start"], pairs)

    def index_or_slice(self, start: int) -> dict:
        """Inside ``[``: ``number]`` or a slice ``[start:stop:step]``."""
        if self.kind() != "colon" and self.kind(1) != "colon":
            number = self.match("number")
            self.match("rbracket")
            return _node("index", number["start"], value=number["value"])
        parts, part = [None, None, None], 0
        while self.kind() != "rbracket":
            token = self.match("colon", "number")
            if token["type"] == "colon" and part < 2:
                part += 1
            elif token["type"] == "number" and parts[part] is None:
                parts[part] = token["value"]
            else:
                self.unexpected(token)
        self.advance()
        return {"type": "slice", "children": parts, "offset": start}

    def project_if_slice(self, left: dict, right: dict) -> dict:
        indexed = _node("index_expression", left["offset"], [left, right])
        if right["type"] == "slice":
            return _node("projection", left["offset"], [indexed, self.projection_rhs(_STAR)])
        return indexed


def _name(kind: str) -> str:
    if kind.endswith("identifier"):
        return "identifier"
    return _SYMBOLS.get(kind, kind)


# --- nud: a token that starts an expression ---------------------------------------

def _nud_identifier(parser: _Parser, token: dict) -> dict:
    if token["type"] == "unquoted_identifier" and token["value"] == "let" and parser.kind() == "variable":
        return _let(parser, token)
    return _node("field", token["start"], value=token["value"])


def _let(parser: _Parser, token: dict) -> dict:
    """``let $a = x, $b = y in body`` (JEP-11a); ``let`` and ``in`` are not reserved."""
    bindings = []
    while True:
        variable = parser.match("variable")
        parser.match("assign")
        bindings.append(_node("variable_binding", variable["start"], [parser.expression(0)],
                              variable["value"]))
        if parser.kind() != "comma":
            break
        parser.advance()
    keyword = parser.token()
    if keyword["type"] != "unquoted_identifier" or keyword["value"] != "in":
        raise SyntaxProblem(f"expected 'in', got {describe(keyword)}", keyword["start"])
    parser.advance()
    return _node("let_expression", token["start"], bindings + [parser.expression(0)])


def _nud_star(parser: _Parser, token: dict) -> dict:
    at = token["start"]
    if parser.kind() == "rbracket":
        right = _node("identity", at)
    else:
        right = parser.projection_rhs(_STAR)
    return _node("value_projection", at, [_node("identity", at), right])


def _nud_lbracket(parser: _Parser, token: dict) -> dict:
    at = token["start"]
    if parser.kind() in ("number", "colon"):
        return parser.project_if_slice(_node("identity", at), parser.index_or_slice(at))
    if parser.kind() == "star" and parser.kind(1) == "rbracket":
        parser.advance()
        parser.advance()
        return _node("projection", at, [_node("identity", at), parser.projection_rhs(_STAR)])
    return parser.multi_select_list(token)


def _nud_flatten(parser: _Parser, token: dict) -> dict:
    return _led_flatten(parser, _node("identity", token["start"]), token)


def _nud_filter(parser: _Parser, token: dict) -> dict:
    return _led_filter(parser, _node("identity", token["start"]), token)


def _nud_paren(parser: _Parser, token: dict) -> dict:
    inner = parser.expression(0)
    parser.match("rparen")
    return inner


def _nud_unary(parser: _Parser, token: dict) -> dict:
    operand = parser.expression(_UNARY)
    return _node("arithmetic_unary", token["start"], [operand], _ARITHMETIC[token["type"]])


_NUDS = {
    "unquoted_identifier": _nud_identifier, "quoted_identifier": _nud_identifier,
    "literal": lambda p, t: _node("literal", t["start"], value=t["value"]),
    "current": lambda p, t: _node("current", t["start"]),
    "root": lambda p, t: _node("root", t["start"]),
    "variable": lambda p, t: _node("variable_ref", t["start"], value=t["value"]),
    "star": _nud_star, "lbracket": _nud_lbracket, "flatten": _nud_flatten, "filter": _nud_filter,
    "lbrace": lambda p, t: p.multi_select_hash(t), "lparen": _nud_paren,
    "not": lambda p, t: _node("not_expression", t["start"], [p.expression(_NOT)]),
    "expref": lambda p, t: _node("expref", t["start"], [p.expression(0)]),
    "minus": _nud_unary, "plus": _nud_unary,
}


# --- led: a token that continues the expression on its left -----------------------

def _led_dot(parser: _Parser, left: dict, token: dict) -> dict:
    if parser.kind() == "star":
        parser.advance()
        return _node("value_projection", left["offset"], [left, parser.projection_rhs(_DOT)])
    right = parser.dot_rhs(_DOT)
    if left["type"] == "subexpression":
        left["children"].append(right)
        return left
    return _node("subexpression", left["offset"], [left, right])


def _led_lbracket(parser: _Parser, left: dict, token: dict) -> dict:
    if parser.kind() in ("number", "colon"):
        right = parser.index_or_slice(token["start"])
        if left["type"] == "index_expression":
            left["children"].append(right)
            return left
        return parser.project_if_slice(left, right)
    parser.match("star")
    parser.match("rbracket")
    return _node("projection", left["offset"], [left, parser.projection_rhs(_STAR)])


def _led_flatten(parser: _Parser, left: dict, token: dict) -> dict:
    flat = _node("flatten", left["offset"], [left])
    return _node("projection", flat["offset"], [flat, parser.projection_rhs(_LEFT_POWER["flatten"])])


def _led_filter(parser: _Parser, left: dict, token: dict) -> dict:
    condition = parser.expression(0)
    parser.match("rbracket")
    if parser.kind() == "flatten":
        right = _node("identity", parser.token()["start"])
    else:
        right = parser.projection_rhs(_FILTER)
    return _node("filter_projection", left["offset"], [left, right, condition])


def _led_call(parser: _Parser, left: dict, token: dict) -> dict:
    """``name(args)``: only an unquoted name can be called."""
    if left["type"] != "field":
        parser.unexpected(token)
    if parser.text[left["offset"]] == '"':
        raise SyntaxProblem("quoted identifier not allowed for function names", left["offset"])
    args = []
    if parser.kind() != "rparen":
        args.append(parser.expression(0))
        while parser.match("comma", "rparen")["type"] == "comma":
            args.append(parser.expression(0))
    else:
        parser.advance()
    return _node("function_expression", left["offset"], args, left["value"])


def _led_ternary(parser: _Parser, left: dict, token: dict) -> dict:
    """``a ? b : c`` (JEP-21): right-associative, binding looser than ``||``."""
    then = parser.expression(0)
    parser.match("colon")
    otherwise = parser.expression(_LEFT_POWER["question"] - 1)
    return _node("ternary", left["offset"], [left, then, otherwise])


def _led_infix(node_type: str, value=None):
    """A left-associative infix operator making ``node_type`` (with ``value`` if given)."""
    def led(parser: _Parser, left: dict, token: dict) -> dict:
        right = parser.expression(_LEFT_POWER[token["type"]])
        extra = {} if value is None else {"value": value(token)}
        return _node(node_type, left["offset"], [left, right], **extra)
    return led


_LEDS = {
    "dot": _led_dot, "lbracket": _led_lbracket, "flatten": _led_flatten, "filter": _led_filter,
    "lparen": _led_call, "question": _led_ternary,
    "pipe": _led_infix("pipe"), "or": _led_infix("or_expression"), "and": _led_infix("and_expression"),
} | {kind: _led_infix("comparator", lambda t: t["type"]) for kind in _COMPARATORS} \
  | {kind: _led_infix("arithmetic", lambda t: _ARITHMETIC[t["type"]]) for kind in _ARITHMETIC}
