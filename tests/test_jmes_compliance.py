"""dsl.jmes against the JMESPath compliance suite, jmespath itself, and its own contract.

The compliance cases live in ``tests/data/jmespath-compliance/`` (see its README);
each case is one test id, ``<file>-<n>``.
"""
from __future__ import annotations

import doctest
import json
import math
from dataclasses import FrozenInstanceError
from pathlib import Path

import jmespath
import jmespath.functions
import jmespath.visitor
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jmespath.exceptions import JMESPathError, JMESPathTypeError
from jmespath.parser import Parser

import dsl.jmes
from dsl.jmes import Expression, ExpressionError, compile_expression
import dsl.jmes_functions
from dsl.jmes_lexer import tokenize
from dsl.jmes_parser import SyntaxProblem, parse, strip_offsets
from dsl.jmes_functions import InvalidTypeError, InvalidValueError, NotANumberError

# The suite still has a few legacy literals (`foo` meaning "foo"); jmespath warns on them.
pytestmark = pytest.mark.filterwarnings("ignore:deprecated string literal syntax")

JEP_CHANGED_PARSES = {"'\\\\'"}
SUITE = Path(__file__).parent / "data" / "jmespath-compliance"
COMPILE_TIME = {"syntax": "bad-expression", "unknown-function": "unknown-function",
                "invalid-arity": "bad-arity"}
RUNTIME = {"invalid-type": JMESPathTypeError, "invalid-value": InvalidValueError}


# Cases whose result a Community Edition JEP deliberately changes (docs/expressions.md lists them):
# the test asserts the new result for exactly these.
JEP_CHANGES = {change["case"]: change for change in
               json.loads((Path(__file__).parent / "data" / "jmespath-ce-changes.json").read_text())}


def load_cases() -> list:
    """``pytest.param(given, case)`` for every case outside benchmarks.json; a case a JEP
    changes carries the new expectation instead (and ``standard``: the one it replaces)."""
    params = []
    for path in sorted(SUITE.glob("*.json")):
        if path.name == "benchmarks.json":
            continue
        cases = [(suite["given"], case) for suite in json.loads(path.read_text())
                 for case in suite["cases"]]
        params += [pytest.param(given, _changed(f"{path.stem}-{n}", case), id=f"{path.stem}-{n}")
                   for n, (given, case) in enumerate(cases)]
    return params


def _changed(case_id: str, case: dict) -> dict:
    change = JEP_CHANGES.get(case_id)
    if change is None:
        return case
    assert change["expression"] == case["expression"], case_id
    return {"expression": case["expression"], "result": change["result"], "standard": case}


CASES = load_cases()


def same_json(actual, expected) -> bool:
    """JSON equality: key order ignored, 1 == 1.0, but true != 1 and NaN == NaN."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return actual == expected or (math.isnan(actual) and math.isnan(expected))
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(map(same_json, actual, expected))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(
            same_json(actual[key], expected[key]) for key in expected)
    return type(actual) is type(expected) and actual == expected


# --- the compliance suite -----------------------------------------------------

def test_suite_has_all_892_cases():
    assert len(CASES) == 892
    assert sum("standard" in case.values[1] for case in CASES) == len(JEP_CHANGES)


@pytest.mark.parametrize("given_doc, case", [c for c in CASES if "standard" in c.values[1]])
def test_jep_changed_cases_differ_from_the_standard(given_doc, case):
    actual = compile_expression(case["expression"]).search(given_doc)
    assert not same_json(actual, case["standard"]["result"])


def check_case(given_doc, case: dict, compile_time: dict, runtime: dict) -> None:
    """A suite case: its result, its load-time diagnostic code or its runtime error class."""
    expression = case["expression"]
    if "result" in case:
        actual = compile_expression(expression).search(given_doc)
        assert same_json(actual, case["result"]), (expression, actual, case["result"])
    elif case["error"] in compile_time:
        with pytest.raises(ExpressionError) as caught:
            compile_expression(expression)
        assert caught.value.code == compile_time[case["error"]], caught.value
    else:
        compiled = compile_expression(expression)
        with pytest.raises(runtime[case["error"]]):
            compiled.search(given_doc)


@pytest.mark.parametrize("given_doc, case", CASES)
def test_compliance(given_doc, case):
    check_case(given_doc, case, COMPILE_TIME, RUNTIME)


def test_named_nodes_line_up_with_identifier_tokens():
    """A field, key or function name node's offset is its identifier token's, one node per token."""
    for expression in {case.values[1]["expression"] for case in CASES}:
        try:
            tree = parse(expression)
        except SyntaxProblem:
            continue
        tokens = {t["start"]: t["value"] for t in tokenize(expression)
                  if t["type"].endswith("identifier")}
        named = [n for n in dsl.jmes._walk(tree) if n["type"] in dsl.jmes._NAMED]
        assert sorted(n["offset"] for n in named) == sorted(tokens), expression
        for node in named:
            assert tokens[node["offset"]] == node["value"], expression


def test_trees_are_jmespaths_for_the_standard_grammar():
    """Code written for jmespath's AST reads ours: same tree for every suite expression
    jmespath parses, except the raw string JEP-12a reads differently."""
    compared = 0
    for expression in {case.values[1]["expression"] for case in CASES}:
        try:
            expected = Parser().parse(expression).parsed
        except JMESPathError:
            continue
        if expression in JEP_CHANGED_PARSES:
            assert strip_offsets(parse(expression)) != expected
            continue
        assert strip_offsets(parse(expression)) == expected, expression
        compared += 1
    assert compared > 700


# --- the Community Edition features: Hookline's own cases ------------------------------

CE_SUITE = Path(__file__).parent / "data" / "jmespath-ce"
CE_COMPILE_TIME = COMPILE_TIME | {"undefined-variable": "unknown-variable", "invalid-argument": "bad-argument"}
CE_RUNTIME = RUNTIME | {"not-a-number": NotANumberError}
CE_CASES = [pytest.param(suite["given"], case, id=f"{path.stem}-{n}")
            for path in sorted(CE_SUITE.glob("*.json"))
            for suite in json.loads(path.read_text())
            for n, case in enumerate(suite["cases"])]


def test_every_community_feature_has_cases():
    assert {p.stem for p in CE_SUITE.glob("*.json")} == {
        "arithmetic", "let", "root", "ternary", "string_slices", "string_functions", "object_functions"}
    errors = {case.values[1].get("error") for case in CE_CASES}
    assert {"syntax", "invalid-arity", "undefined-variable", "invalid-type", "invalid-value",
            "not-a-number", "unknown-function"} <= errors
    assert len(CE_CASES) >= 150


@pytest.mark.parametrize("given_doc, case", CE_CASES)
def test_community_case(given_doc, case):
    check_case(given_doc, case, CE_COMPILE_TIME, CE_RUNTIME)


# --- properties -----------------------------------------------------------------

JMESPATH_ALPHABET = "abfoxyz_@$.*[]?{}()|&!<>=,:`'\" 0123456789-+/%×÷−"
TOKENS = ["foo", "bar", "steps", "length", "sum_by", "sort_by", "not_null", "@", ".", "*",
          "[", "]", "[?", "[]", "{", "}", "(", ")", "|", "||", "&&", "&", "!", "<", "==",
          ",", ":", "`1`", "'s'", '"q"', "0", "-1", " ", "+", "-", "*", "/", "//", "%", "×", "÷",
          "−", "?", "$", "$x", "let", "in", "=", "let $x = a in ", "pad_left", "split", "items"]
EXPRESSION_TEXT = (st.text()
                   | st.text(alphabet=JMESPATH_ALPHABET)
                   | st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map("".join))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSION_TEXT)
def test_any_text_compiles_or_raises_expression_error(text):
    try:
        compiled = compile_expression(text)
    except ExpressionError as exc:
        assert exc.code in ("bad-expression", "unknown-function", "bad-arity", "unknown-variable",
                            "bad-argument")
        assert 0 <= exc.offset <= len(text)
        assert "\n" not in exc.message
    else:
        assert isinstance(compiled, Expression)
        assert all(0 <= offset < len(text) for _, offset in compiled.step_refs())


def nodes(expression: str) -> list[dict]:
    return list(dsl.jmes._walk(parse(expression)))


def sample_expressions(count: int = 50) -> list[str]:
    """``count`` distinct result-case expressions of 3+ AST nodes, spread across the suite."""
    seen = dict.fromkeys(c.values[1]["expression"] for c in CASES if "result" in c.values[1])
    rich = [expression for expression in seen if len(nodes(expression)) >= 3]
    return rich[:: len(rich) // count][:count]


# Plus paths the suite's samples miss: builtins on arbitrary input, string ordering.
EXTRA = ["sort_by(people, &age)", "min_by(people, &name)", "contains(foo, bar)",
         "foo[?a < b]", "sum(foo)", "length(foo) > `1`", "not_null(a, b)", "join(',', foo)",
         "to_string(foo)", "keys(foo)", "!foo", "foo[::-1] | [0]", "avg(foo)", "merge(foo, bar)",
         "sort(foo)", "max(foo)", "reverse(foo)", "type(foo)", "to_number(foo)", "abs(foo)"]
SAMPLES = sample_expressions() + EXTRA
# Data keyed by the names the samples use, so that fields and filters find something.
KEYS = sorted({n["value"] for e in SAMPLES for n in nodes(e) if n["type"] in dsl.jmes._NAMED})
SCALARS = (st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3)
           | st.floats(allow_nan=False, allow_infinity=False, width=32))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=2), inner, max_size=4),
    max_leaves=20)


def test_there_are_50_samples_from_the_suite():
    assert len(set(sample_expressions())) == 50


class SpecFunctions(jmespath.functions.Functions):
    """jmespath.py type-checks only as many arguments as a signature lists, so a variadic
    function's later ones went unchecked (``merge(`{}`, `[]`)`` gave ``{}``). The
    specification types every one of them: ``merge(object *argument, [, object $...])``."""

    def _type_check(self, actual, signature, function_name):
        super()._type_check(actual, signature, function_name)
        if signature and signature[-1].get("variadic") and signature[-1]["types"]:
            for extra in actual[len(signature):]:
                self._type_check_single(extra, signature[-1]["types"], function_name)


class CommunityReference(jmespath.visitor.TreeInterpreter):
    """The oracle: jmespath's interpreter plus the JEP changes docs/expressions.md lists."""

    def visit_subexpression(self, node, value):       # JEP-19: null ends a sub-expression
        for child in node["children"]:
            value = self.visit(child, value)
            if value is None:
                return None
        return value

    def visit_multi_select_list(self, node, value):   # JEP-19: `null | [@]` is [null]
        return [self.visit(child, value) for child in node["children"]]

    def visit_multi_select_dict(self, node, value):
        return {child["value"]: self.visit(child["children"][0], value) for child in node["children"]}

    def visit_slice(self, node, value):               # JEP-15: strings slice too
        if isinstance(value, str):
            if node["children"][2] == 0:
                raise InvalidValueError("slice step cannot be 0")
            return value[slice(*node["children"])]
        return super().visit_slice(node, value)

    def visit_projection(self, node, value):
        base = self.visit(node["children"][0], value)
        if isinstance(base, str) and node["children"][0]["type"] == "index_expression":
            return self.visit(node["children"][1], base)
        return super().visit_projection(node, value)


def reference_search(expression: str, data):
    return CommunityReference(jmespath.Options(custom_functions=SpecFunctions())).visit(
        jmespath.compile(expression).parsed, data)


@pytest.mark.parametrize("expression", SAMPLES)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=JSON)
def test_search_matches_jmespath(expression, data):
    compiled = compile_expression(expression)
    try:
        expected = reference_search(expression, data)
    except JMESPathError:
        with pytest.raises(JMESPathError):
            compiled.search(data)
    except (TypeError, ValueError):
        # The reference leaks a bare Python error here: ours must be a JMESPathError.
        with pytest.raises(JMESPathError):
            compiled.search(data)
    else:
        assert same_json(compiled.search(data), expected)


def grammar_expressions():
    """Valid expressions built from the grammar (parenthesised, so precedence is moot)."""
    name = st.sampled_from(KEYS[:12] + ["people", "age", "name"]).map(
        lambda key: key if key.isidentifier() else json.dumps(key))
    atom = name | st.just("@") | st.sampled_from(
        ["`1`", "`0`", "'s'", "`[1, 2]`", '`{"a": 1}`', "`null`", "`true`", "`1.5`"])
    unary = ["length", "max", "min", "sum", "avg", "abs", "ceil", "floor", "keys", "values",
             "sort", "reverse", "type", "to_string", "to_number", "to_array", "not_null"]
    binary = ["contains", "starts_with", "ends_with", "join", "merge", "not_null"]

    def extend(inner):
        p = inner.map("({})".format)
        return st.one_of(
            st.tuples(p, name).map("{0[0]}.{0[1]}".format),
            st.tuples(p, st.sampled_from(["==", "!=", "<", ">=", "||", "&&", "|"]), p)
            .map(" ".join),
            st.tuples(p, p).map("{0[0]}[?{0[1]}]".format),
            st.tuples(p, name).map("{0[0]}[*].{0[1]}".format),
            st.tuples(p, name).map("{0[0]}.*.{0[1]}".format),
            st.tuples(p, st.sampled_from(["[]", "[0]", "[-1]", "[1:]", "[::-1]", "[::0]"]))
            .map("".join),
            st.tuples(name, p, p).map("{{{0[0]}: {0[1]}, k: {0[2]}}}".format),
            st.tuples(p, p).map("[{0[0]}, {0[1]}]".format),
            p.map("!{}".format),
            st.tuples(st.sampled_from(unary), p).map("{0[0]}({0[1]})".format),
            st.tuples(st.sampled_from(binary), p, p).map("{0[0]}({0[1]}, {0[2]})".format),
            st.tuples(st.sampled_from(["sort_by", "max_by", "min_by"]), p, p)
            .map("{0[0]}({0[1]}, &{0[2]})".format),
            st.tuples(p, p).map("map(&{0[0]}, {0[1]})".format))
    return st.recursive(atom, extend, max_leaves=8)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(grammar_expressions(), JSON)
def test_generated_expressions_match_jmespath(expression, data):
    test_search_matches_jmespath.hypothesis.inner_test(expression, data)


def community_expressions():
    """Expressions using the Community Edition's additions, built from its grammar."""
    name = st.sampled_from(["a", "b", "s", "n", "items", "@", "$", "$.a", "$x"])
    atom = name | st.sampled_from(["`1`", "`0`", "`-2.5`", "'s'", "''", "`[1, \"x\"]`", "`null`",
                                   "`1e308`", "`{\"k\": 1}`"])
    unary = ["upper", "lower", "trim", "trim_left", "items", "length", "to_number", "to_string",
             "from_items", "zip", "reverse"]
    binary = ["split", "find_first", "find_last", "pad_left", "pad_right", "trim", "zip", "join"]

    def extend(inner):
        p = inner.map("({})".format)
        return st.one_of(
            st.tuples(p, st.sampled_from(["+", "-", "*", "/", "%", "//", "×", "÷", "−"]), p).map(" ".join),
            p.map("-{}".format),
            st.tuples(p, p, p).map("{0[0]} ? {0[1]} : {0[2]}".format),
            st.tuples(p, p).map("let $x = {0[0]} in {0[1]}".format),
            st.tuples(p, st.sampled_from(["[1:]", "[::-1]", "[:2]", "[::0]", "[0]"])).map("".join),
            st.tuples(st.sampled_from(unary), p).map("{0[0]}({0[1]})".format),
            st.tuples(st.sampled_from(binary), p, p).map("{0[0]}({0[1]}, {0[2]})".format),
            st.tuples(p, p, p).map("replace({0[0]}, {0[1]}, {0[2]})".format),
            st.tuples(p, p).map("group_by({0[0]}, &{0[1]})".format),
            st.tuples(p, p).map("{0[0]}[*].{{v: {0[1]}}}".format))
    return st.recursive(atom, extend, max_leaves=6).map("let $x = a in {}".format)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(community_expressions(), JSON)
def test_community_expressions_give_a_value_or_a_jmespath_error(expression, data):
    """Whatever the data, an expression of the extended grammar compiles (the generator only
    builds valid text; a literal argument no call accepts is a bad-argument) and either gives
    a JSON value or raises a JMESPathError: never a bare Python exception (a 500)."""
    try:
        compiled = compile_expression(expression)
    except ExpressionError as exc:
        assert exc.code == "bad-argument", exc
        return
    try:
        result = compiled.search(data)
    except JMESPathError:
        return
    json.dumps(result)


@given(st.one_of(SCALARS, st.lists(SCALARS, max_size=2)),
       st.one_of(SCALARS, st.lists(SCALARS, max_size=2)))
def test_equality_and_truth_match_the_reference(x, y):
    assert dsl.jmes_functions.equals(x, y) == jmespath.visitor._equals(x, y)
    assert dsl.jmes_functions.is_false(x) == jmespath.visitor.TreeInterpreter()._is_false(x)


# --- compile-time errors and their offsets ------------------------------------------

@pytest.mark.parametrize("text, code, offset, message", [
    ("foo(@)", "unknown-function", 0, "unknown function foo()"),
    ("a.b | sum_by(@)", "unknown-function", 6, "unknown function sum_by()"),
    ("length(a, b)", "bad-arity", 0, "function length() takes 1 argument, got 2"),
    ("not_null()", "bad-arity", 0, "function not_null() takes at least 1 argument, got 0"),
    ("merge()", "bad-arity", 0, "function merge() takes at least 1 argument, got 0"),
    ("sort_by(@)", "bad-arity", 0, "function sort_by() takes 2 arguments, got 1"),
    ("length(nope(@))", "unknown-function", 7, "unknown function nope()"),
    ('{"k": x, y: foo(@)}', "unknown-function", 12, "unknown function foo()"),
    # The filter condition comes before the projected part in the text.
    ("a[?nope(@)].length(@, @)", "unknown-function", 3, "unknown function nope()"),
    ("a[?length(@, @)].nope(@)", "bad-arity", 3,
     "function length() takes 1 argument, got 2"),
    ("foo.", "bad-expression", 4, "expected identifier or '[' or '{', got end of expression"),
    ("foo[", "bad-expression", 4, "unexpected end of expression"),
    ("foo]", "bad-expression", 3, "unexpected ']'"),
    ("{a b}", "bad-expression", 3, "expected ':', got 'b'"),
    ("a = b", "bad-expression", 2, "unexpected '='"),
    ("let $x = a in $y", "unknown-variable", 14,
     "$y is not bound by an enclosing let (write let $y = … in …)"),
    ("[let $x = a in $x, $x]", "unknown-variable", 19,
     "$x is not bound by an enclosing let (write let $x = … in …)"),
    ("a.$b", "bad-expression", 2, "expected identifier or '[' or '{', got '$b'"),
    ("pad_left(id, `5`, '--')", "bad-argument", 18, "pad_left(): the pad must be one character, got '--'"),
    ("split(id, ',', `1.5`)", "bad-argument", 15, "split(): count must be an integer, got 1.5"),
    ("a ? b", "bad-expression", 5, "unexpected end of expression"),
    ("pad_left('a')", "bad-arity", 0, "function pad_left() takes 2 to 3 arguments, got 1"),
    ("a + upper(b, c)", "bad-arity", 4, "function upper() takes 1 argument, got 2"),
    ('`"a`', "bad-expression", 0, 'bad token "a'),
    ('a."b"(x)', "bad-expression", 2, "quoted identifier not allowed for function names"),
    ("", "bad-expression", 0, "expression is empty"),
])
def test_compile_errors(text, code, offset, message):
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert (caught.value.code, caught.value.offset, caught.value.message) == (code, offset, message)


@pytest.mark.parametrize("text", ["`{\"a\": \n 1", "foo[?a ==\n]", '"\\q"'])
def test_syntax_messages_are_one_line(text):
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert caught.value.code == "bad-expression"
    assert "\n" not in caught.value.message and "^" not in caught.value.message


def test_deep_nesting_is_a_bad_expression():
    with pytest.raises(ExpressionError) as caught:
        compile_expression("(" * 3000 + "a" + ")" * 3000)
    assert caught.value.code == "bad-expression"


# --- step references ------------------------------------------------------------

@pytest.mark.parametrize("text, refs", [
    ("steps.order.id", [("order", 6)]),
    ("{a: steps.stock.body}", [("stock", 10)]),
    ("length(steps.x)", [("x", 13)]),
    ("steps.x || steps.y", [("x", 6), ("y", 17)]),
    ('steps."quoted-id".a', [("quoted-id", 6)]),
    ("@.steps.x", [("x", 8)]),
    ("steps | order", [("order", 8)]),
    ("steps.[a, b]", [("a", 7), ("b", 10)]),
    ("steps.a[?steps.b == @].c", [("a", 6)]),
    ("sort_by(steps.a, &steps.b)", [("a", 14)]),
    ("steps.x.steps.y", [("x", 6)]),
    ("items[].steps.x", []),
    ("[?steps.x]", []),
    ("request.steps.x", []),
    ("steps", []),
    ("steps.*", []),
    ("keys(steps)", []),
])
def test_step_refs(text, refs):
    assert list(compile_expression(text).step_refs()) == refs
    for step_id, offset in refs:
        assert text[offset:].startswith((step_id, json.dumps(step_id)))


# --- runtime behaviour ------------------------------------------------------------

def test_runtime_type_error_is_jmespaths():
    with pytest.raises(JMESPathTypeError):
        compile_expression("length(foo)").search({"foo": 1})


def test_zero_step_slice_fails_only_on_arrays_and_strings():
    compiled = compile_expression("foo[::0]")
    assert compiled.search({"foo": 12}) is None
    with pytest.raises(InvalidValueError):
        compiled.search({"foo": [1, 2]})
    with pytest.raises(InvalidValueError):      # strings slice too (JEP-15)
        compiled.search({"foo": "abc"})


@pytest.mark.parametrize("text, data", [
    ("contains('abc', `1`)", {}),          # reference: TypeError from `1 in 'abc'`
    ("a < b", {"a": "x", "b": 1}),         # reference: TypeError from 'x' < 1
    ("max_by(@, &@)", [1, "a"]),           # reference: TypeError inside max()
])
def test_bare_python_errors_become_jmespath_errors(text, data):
    with pytest.raises(InvalidTypeError):
        compile_expression(text).search(data)


def test_every_variadic_argument_is_type_checked():
    # The reference checks only the first argument and leaks a ValueError from dict.update.
    with pytest.raises(JMESPathTypeError) as caught:
        compile_expression("merge(`{}`, a)").search({"a": "xy"})
    assert caught.value.actual_type == "string"


def test_literals_are_not_shared_between_calls():
    compiled = compile_expression("`[1, {\"a\": []}]`")
    compiled.search(None)[1]["a"].append(2)
    assert compiled.search(None) == [1, {"a": []}]


def test_expression_is_frozen():
    compiled = compile_expression("a")
    with pytest.raises(FrozenInstanceError):
        compiled.source = "b"


@pytest.mark.parametrize("module", [dsl.jmes, dsl.jmes_functions])
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0
