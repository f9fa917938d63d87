"""Hookline's functions (dsl/functions/): the examples table of docs/functions.md,
run row by row, then each function's edges, hostile inputs and properties.

Expressions are compiled as a pipeline compiles them (``compile_expression``
with the pipeline's tables and body limit) and run on a request-like value,
so a failure here is what a client would get as ``422 expression-failed``.
The served, over-HTTP side is tests/test_functions_http.py.
"""
from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.functions import FUNCTIONS, Env, FunctionFailed, bound_registry
from dsl.jmes import ExpressionError, compile_expression

DOCS = Path(__file__).resolve().parent.parent / "docs" / "functions.md"
TABLES = {"erp_status": {"paid": "P", "refunded": "R", "404": "NF"}}
ENV = bound_registry(TABLES, 1_048_576)        # as a pipeline with these tables compiles
SMALL = bound_registry(TABLES, 1000)           # ... and a body limit of 1000 bytes


def run(expression: str, value=None, env=ENV):
    """``expression``'s value on ``value`` (the examples run on ``{}``)."""
    return compile_expression(expression, env).search(value)


def failure(expression: str, value=None, env=ENV) -> str:
    """The client's text when ``expression`` fails on ``value``."""
    with pytest.raises(FunctionFailed) as caught:
        run(expression, value, env)
    return caught.value.public


def load_problem(expression: str, env=ENV) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(expression, env)
    return caught.value


# --- the reference table of docs/functions.md -----------------------------------

CODE = r"(`+)\s?(.+?)\s?\1"
EXAMPLE = re.compile(CODE + r" → " + r"(`+)\s?(.+?)\s?\3")
WRONG = re.compile(CODE + r": \*(.+?)\*")
SHAPES = {"now": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z"),
          "uuid": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")}


def reference_rows() -> list[tuple[str, list[str]]]:
    rows = []
    for line in DOCS.read_text().split("## Examples", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        name = re.match(r"`(\w+)\(", cells[0])
        if line.startswith("| `") and name:
            rows.append((name[1], cells))
    return rows


ROWS = reference_rows()


def test_the_table_lists_every_function_once():
    assert sorted(name for name, _ in ROWS) == sorted(FUNCTIONS)


def split_arguments(call: str) -> list[str]:
    """The top-level arguments of ``name(a, b, c)``, as written."""
    args, depth, quote, current = [], 0, None, ""
    for char in call[call.index("(") + 1:-1]:
        if quote:
            quote = None if char == quote else quote
        elif char in "'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            args, current = args + [current.strip()], ""
            continue
        current += char
    return args + [current.strip()]


def literal_value(text: str):
    return json.loads(text[1:-1]) if text.startswith("`") else text[1:-1]


@pytest.mark.parametrize("name,cells", ROWS, ids=[name for name, _ in ROWS])
def test_reference_row(name, cells):
    """Each example gives its result; the wrong type is a load-time problem as a
    literal, and the same words in a 422 when the value comes from the request."""
    signature, examples, null, wrong = cells
    pairs = EXAMPLE.findall(examples) + EXAMPLE.findall(null)
    assert pairs, f"no `expression` → `result` in the row of {name}"
    for _, expression, _, result in pairs:
        got = run(expression, {})
        if name in SHAPES and expression == f"{name}()":
            assert SHAPES[name].fullmatch(got), got
        else:
            assert got == json.loads(result), expression
    assert wrong.startswith("—") or WRONG.search(wrong), wrong
    for _, expression, message in WRONG.findall(wrong):
        assert load_problem(expression).message == f"{name}(): {message}"
        index = int(re.match(r"argument (\d+)", message)[1]) - 1
        args = split_arguments(expression)
        value, args[index] = literal_value(args[index]), "@"
        assert failure(f"{name}({', '.join(args)})", value) == f"{name}(): {message}"


# --- dates and times ----------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("2026-12-04T10:15:00+01:00", "2026-12-04T10:15:00+01:00"),
    ("2026-12-04T10:15:00.5Z", "2026-12-04T10:15:00.500Z"),
    ("2026-12-04T10:15:00.000001+00:00", "2026-12-04T10:15:00.000001Z"),
    ("2026-12-04", "2026-12-04T00:00:00Z"),
    ("  2026-12-04 10:15  ", "2026-12-04T10:15:00Z"),
    ("Fri, 04 Dec 2026 10:15:00 GMT", "2026-12-04T10:15:00Z"),
    ("Fri, 04 Dec 2026 10:15:00 -0000", "2026-12-04T10:15:00Z"),
    (0, "1970-01-01T00:00:00Z"),
    (-86400, "1969-12-31T00:00:00Z"),
    ("1764843300", "2025-12-04T10:15:00Z"),
    ("1355517523.000005", "2012-12-14T20:38:43.000005Z"),   # Slack's message ts
    (99_999_999_999, "5138-11-16T09:46:39Z"),               # the largest seconds
    (100_000_000_000, "1973-03-03T09:46:40Z"),              # the smallest milliseconds
])
def test_to_datetime_reads(value, expected):
    assert run("to_datetime(@)", value) == expected


def test_a_value_without_offset_is_in_tz_and_the_result_in_tz():
    assert run("to_datetime(@, `null`, 'America/New_York')", "2026-07-04 12:00") == "2026-07-04T12:00:00-04:00"
    assert run("to_datetime(@, `null`, 'America/New_York')", "2026-12-04 12:00") == "2026-12-04T12:00:00-05:00"
    assert run("to_datetime(@, `null`, 'Asia/Kolkata')", 1764843300) == "2025-12-04T15:45:00+05:30"
    assert run("to_datetime(@, '%d/%m/%Y')", "04/12/2026") == "2026-12-04T00:00:00Z"
    assert run("to_datetime(@, '%d/%m/%Y %z')", "04/12/2026 +0200") == "2026-12-04T00:00:00+02:00"


def test_tz_and_format_may_come_from_the_request():
    doc = {"at": "2026-12-04 08:00", "tz": "Australia/Sydney", "fmt": "%H:%M on %d %b %Y"}
    assert run("format_datetime(at, fmt, tz)", doc) == "08:00 on 04 Dec 2026"
    assert run("to_datetime(at, `null`, tz)", doc) == "2026-12-04T08:00:00+11:00"
    assert failure("to_datetime(at, `null`, tz)", doc | {"tz": "../../etc/passwd"}) == \
        "to_datetime(): argument 3 (tz) is not an IANA time zone name (like Europe/Paris or UTC)"
    assert "argument 2 (format) has %-" in failure("format_datetime(at, fmt)", doc | {"fmt": "%-d"})


def test_now_is_now_in_utc():
    before = datetime.now(timezone.utc)
    got = datetime.fromisoformat(run("now()"))
    assert before <= got <= datetime.now(timezone.utc) and got.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("value,duration,expected", [
    ("2026-01-31", "P1M", "2026-02-28T00:00:00Z"),
    ("2024-01-31", "P1M", "2024-02-29T00:00:00Z"),
    ("2024-02-29", "P1Y", "2025-02-28T00:00:00Z"),
    ("2026-12-04T23:00:00+01:00", "PT90M", "2026-12-05T00:30:00+01:00"),
    ("2026-12-04", "P1Y2M3W4DT5H6M7.5S", "2028-02-29T05:06:07.500Z"),
    ("2026-12-04", "-P1D", "2026-12-03T00:00:00Z"),
    ("2026-12-04", "PT0,25S", "2026-12-04T00:00:00.250Z"),
])
def test_datetime_add(value, duration, expected):
    assert run("datetime_add(@[0], @[1])", [value, duration]) == expected


@pytest.mark.parametrize("value,reason", [
    ("next tuesday", "is not a date or time it can read"),
    ("2026-13-01", "is not a date or time it can read"),
    ("9" * 200, "is longer than 100 characters"),
    (10 ** 30, "is outside the years 1 to 9999"),
    (1e300, "is outside the years 1 to 9999"),
    ("-99999999999999999999", "is outside the years 1 to 9999"),
])
def test_bad_dates_fail_naming_the_argument(value, reason):
    assert failure("to_datetime(@)", value).startswith(f"to_datetime(): argument 1 (value) {reason}")


@pytest.mark.parametrize("duration", ["P", "PT", "P1H", "1D", "P1.5D", "PT1S1M", "P" + "9" * 10 + "D", "P1D" * 30])
def test_bad_durations(duration):
    assert "argument 2 (duration) is not an ISO 8601 duration" in failure("datetime_add('2026-12-04', @)", duration)


def test_durations_beyond_the_calendar_fail_not_crash():
    assert "outside the years 1 to 9999" in failure("datetime_add('9999-12-31', @)", "P1D")
    assert "outside the years 1 to 9999" in failure("datetime_add('2026-12-04', @)", "-P999999999Y")
    assert "argument 2 (duration)" in failure("datetime_add('2026-12-04', @)", "P999999999W")


@pytest.mark.parametrize("fmt", ["%1000000000Y", "%-d", "%_H", "%E", "%", "%Q", "%" * 300])
def test_formats_with_widths_flags_or_unknown_directives_are_refused(fmt):
    text = failure("format_datetime('2026-12-04', @)", fmt)
    assert text.startswith("format_datetime(): argument 2 (format)")


def test_to_datetime_with_a_format_that_does_not_match():
    assert failure("to_datetime(@, '%d.%m.%Y')", "2026-12-04") == \
        "to_datetime(): argument 1 (value) does not match the format"
    assert "does not match" in failure("to_datetime(@[0], @[1])", ["4", "%d%d%d%d"])


# --- regular expressions ----------------------------------------------------------

def test_regex_functions_take_unicode_subjects():
    assert run("regex_extract(@, 'é(.)')", "caféx") == "x"
    assert run("regex_replace(@, '(.)é', '[\\1]')", "aébé") == "[a][b]"
    assert run("regex_match(@, '^.{4}$')", "café") is True


def test_regex_replace_groups_and_escapes():
    assert run("regex_replace(@, '(?P<y>\\d{4})-(?P<m>\\d\\d)', '\\g<m>/\\g<y>')", "2026-12") == "12/2026"
    assert run("regex_replace(@, 'b', '\\\\\\\\')", "abc") == "a\\c"   # '\\\\' is \\ (JEP-12a)
    assert run("regex_replace(@, 'x*', '-')", "ab") == "-a-b-"
    assert run("regex_replace(@, '(a)|(b)', '[\\2]')", "ab") == "[][b]"   # a group not taking part is empty


def test_the_replacement_may_come_from_the_request_and_is_checked():
    assert run("regex_replace(s, '(\\w+)@', r)", {"s": "ada@x", "r": "<\\1>"}) == "<ada>x"
    assert failure("regex_replace(s, '(\\w+)@', r)", {"s": "a@", "r": "\\2"}) == \
        "regex_replace(): argument 3 (replacement) refers to group 2, which the pattern does not have"
    assert "backslash" in failure("regex_replace(s, 'a', r)", {"s": "a", "r": "\\n"})


@pytest.mark.parametrize("pattern,reason", [
    ("(a)\\1", "invalid escape sequence"),
    ("(?=a)", "invalid perl operator"),
    ("(?<!a)b", "invalid perl operator"),
    ("a{1001}", "invalid repetition size"),
    ("(", "missing )"),
])
def test_patterns_re2_refuses_are_load_time_problems(pattern, reason):
    problem = load_problem(f"regex_match(a, '{pattern}')")
    assert problem.code == "bad-argument" and reason in problem.message
    assert problem.offset == len("regex_match(a, ")


def test_a_pattern_that_is_not_a_literal_is_refused_at_its_offset():
    problem = load_problem("regex_match(a, request.body.pattern)")
    assert (problem.code, problem.offset) == ("literal-required", 15)
    assert load_problem("lookup(request.body.t, a)").code == "literal-required"


def test_pathological_subjects_take_linear_time():
    subject = "a" * 100_000 + "!"
    started = time.perf_counter()
    assert run("regex_match(@, '^(a+)+$')", subject) is False
    assert run("regex_extract(@, '(a|aa)*b')", subject) is None
    assert run("regex_match(@, '(x+x+)+y')", "x" * 100_000) is False
    assert time.perf_counter() - started < 2    # a backtracking engine needs longer than the universe


def test_regex_replace_cannot_build_more_than_the_body_limit():
    assert failure("regex_replace(@, '', 'xxxxxxxxxx')", "a" * 200, SMALL) == \
        "regex_replace(): argument 1 (subject) would give a result longer than the body limit (1000 bytes)"
    assert "more than 100000 matches" in failure("regex_replace(@, 'a', '')", "a" * 100_001)
    assert len(run("regex_replace(@, 'a', 'bb')", "a" * 400, SMALL)) == 800


# --- encodings, identifiers, JSON ---------------------------------------------------

@pytest.mark.parametrize("text", ["", "a", "café ☕", "\x00\uffff", "line\nbreak"])
def test_base64_and_url_round_trip(text):
    assert run("base64_decode(base64_encode(@))", text) == text
    assert run("url_decode(url_encode(@))", text) == text


def test_base64_decode_alphabets_padding_and_failures():
    raw = "ÿþ?>".encode()
    assert run("base64_decode(@)", base64.urlsafe_b64encode(raw).decode().rstrip("=")) == "ÿþ?>"
    assert failure("base64_decode(@)", "/w==") == \
        "base64_decode(): argument 1 (text) decodes to bytes that are not UTF-8 text"
    assert failure("base64_decode(@)", "a") == "base64_decode(): argument 1 (text) is not valid base64"


def test_url_decode_of_bytes_that_are_not_utf8():
    assert failure("url_decode(@)", "%FF") == \
        "url_decode(): argument 1 (text) holds percent-escapes that are not UTF-8 text"


def test_sha256_and_uuids():
    assert run("sha256(@)", "") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    ids = {run("uuid()") for _ in range(50)}
    assert len(ids) == 50 and all(uuid.UUID(i).version == 4 for i in ids)
    namespace = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"   # the DNS namespace of RFC 4122
    assert run("uuid5(@[0], @[1])", [namespace, "python.org"]) == str(uuid.uuid5(uuid.NAMESPACE_DNS, "python.org"))
    assert failure("uuid5(@[0], @[1])", ["not-a-uuid", "x"]).startswith("uuid5(): argument 1 (namespace) is not a UUID")


def test_json_parse_is_strict_and_depth_bounded():
    assert run("json_parse(@).a[1]", '{"a": [1, 2]}') == 2
    for text in ['{"a": 1,}', "NaN", "[1] [2]", "", "{'a': 1}"]:
        assert failure("json_parse(@)", text).startswith("json_parse(): argument 1 (text) is not JSON")
    deep = "[" * 100_000 + "]" * 100_000
    assert "depth limit" in failure("json_parse(@)", deep)
    assert run("length(json_parse(@))", "[" * 1000 + "]" * 1000) == 1


def test_json_encode_writes_compact_json_even_for_big_integers():
    assert run("json_encode(@)", {"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert run("json_encode(@)", 2 ** 70) == str(2 ** 70)
    assert json.loads(run("json_encode(@)", {"x": 1.5, "n": None})) == {"x": 1.5, "n": None}


def test_json_encode_grows_past_the_body_limit_only_into_a_422():
    text = "\\" * 300
    assert failure("json_encode(json_encode(json_encode(@)))", text, SMALL).startswith(
        "json_encode(): the result would be longer than the body limit")


# --- numbers ---------------------------------------------------------------------

@pytest.mark.parametrize("value,digits,expected", [
    (2.675, 2, 2.68), (1.005, 2, 1.01), (0.125, 2, 0.13), (-0.125, 2, -0.13), (2.5, 0, 3), (-2.5, 0, -3),
    (1234.5, -2, 1200), (1250, -2, 1300), (7, 2, 7), (19.999, 2, 20.0), (-0.001, 2, 0.0), (1e300, 2, 1e300),
    (123456789.123456789, 3, 123456789.123), (2 ** 70, 0, 2 ** 70), (0.1 + 0.2, 2, 0.3),
])
def test_round_half_up(value, digits, expected):
    got = run("round(@[0], @[1])", [value, digits])
    assert got == expected and type(got) is type(expected)
    assert str(got) != "-0.0"


def test_round_refuses_digits_it_cannot_mean():
    for digits in (16, -16, 10 ** 9, -(10 ** 9)):
        assert failure("round(`1.5`, @)", digits) == "round(): argument 2 (digits) must be between -15 and 15"
    assert failure("round(`1.5`, @)", 1.5) == "round(): argument 2 (digits) must be an integer, got number"
    assert run("round(`1.25`, @)", 1.0) == 1.3


@pytest.mark.parametrize("value,expected", [
    (42, 42), (42.9, 42), (-3.7, -3), ("42", 42), (" -7 ", -7), ("42.9", 42), ("1e3", 1000), (".5", 0),
    ("1e400", None), ("abc", None), ("", None), (True, None), ([1], None), ({}, None), ("1" * 500, None),
    ("9" * 300, int("9" * 300)),
])
def test_to_integer(value, expected):
    assert run("to_integer(@)", value) == expected


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=-10 ** 9, max_value=10 ** 9, places=4, allow_nan=False), st.integers(0, 3))
def test_round_agrees_with_decimal_half_up(value, digits):
    number = float(value)
    expected = Decimal(repr(number)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    got = run("round(@[0], @[1])", [number, digits])
    assert Decimal(repr(got)) == expected


# --- lookup --------------------------------------------------------------------------

def test_lookup_copies_what_it_returns():
    env = bound_registry({"t": {"a": {"bins": [1, 2]}}}, 1000)
    first = run("lookup('t', 'a')", None, env)
    first["bins"].append(3)
    assert run("lookup('t', 'a')", None, env) == {"bins": [1, 2]}


def test_lookup_of_an_unknown_table_names_the_known_ones():
    problem = load_problem("lookup('erp', a)")
    assert (problem.code, problem.offset) == ("unknown-table", 7)
    assert "known: erp_status" in problem.message


def test_lookup_keys_are_text():
    assert run("[lookup('erp_status', `404`), lookup('erp_status', `404.0`), lookup('erp_status', '404')]", {}) == \
        ["NF", "NF", "NF"]
    assert failure("lookup('erp_status', @)", True) == \
        "lookup(): argument 2 (key) must be a string or a number (or null), got boolean"


# --- every function, any input: a result or a FunctionFailed, nothing else -------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False,
                    allow_infinity=False) | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)
LITERAL_ARGS = {"regex_match": {1: "'^a(b+)'"}, "regex_extract": {1: "'(?P<x>\\d+)'"},
                "regex_replace": {1: "'(a)'"}, "lookup": {0: "'erp_status'"}}


def _call(name: str, count: int) -> str:
    args = [LITERAL_ARGS.get(name, {}).get(i, f"@[{i}]") for i in range(count)]
    return f"{name}({', '.join(args)})"


CALLS = [_call(name, count) for name, fn in sorted(FUNCTIONS.items())
         for count in range(sum(not p.optional for p in fn.params), len(fn.params) + 1)]


@pytest.mark.parametrize("expression", CALLS)
@settings(max_examples=60, deadline=None)
@given(args=st.lists(JSON | st.sampled_from(["2026-12-04", "P1D", "%Y", "UTC", "1764843300", "\\1", "e30="]),
                     min_size=3, max_size=3))
def test_any_arguments_give_a_result_or_a_function_failure(expression, args):
    try:
        result = run(expression, args, SMALL)
    except FunctionFailed as exc:
        assert exc.public.startswith(expression.split("(")[0] + "(): ")
        return
    json.dumps(result)   # a JSON value, whatever came in


@pytest.mark.parametrize("module", ["dsl.functions", "dsl.functions.base", "dsl.functions.dates",
                                    "dsl.functions.encodings", "dsl.functions.lookup", "dsl.functions.numeric",
                                    "dsl.functions.regex", "dsl.tables"])
def test_doctests(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
