"""dsl.loader: YAML text → data + a source map of 1-based line and column.

Problems come back as diagnostics, never as exceptions; positions are where
the author would put the cursor.
"""
from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import given, settings, strategies as st

from dsl.loader import MAX_DEPTH, MAX_NODES, load_yaml


def load(text: str):
    doc, problems = load_yaml(text, "p.yaml")
    return doc, [(d.line, d.col, d.code) for d in problems], problems


# --- the source map -----------------------------------------------------------

SOURCE = """\
pipeline: demo
receive:
  path: /a
  methods: [POST, GET]
steps:
  - id: one
    transform: "request.body"
  - {id: two, transform: 'x'}
respond:
  body: |
    text
"""


@pytest.mark.parametrize("path, where", [
    ((), (1, 1)),
    (("pipeline",), (1, 11)),
    (("receive",), (3, 3)),
    (("receive", "path"), (3, 9)),
    (("receive", "methods"), (4, 12)),
    (("receive", "methods", 1), (4, 19)),
    (("steps", 0), (6, 5)),
    (("steps", 0, "id"), (6, 9)),
    (("steps", 0, "transform"), (7, 16)),     # the opening quote
    (("steps", 1), (8, 5)),
    (("steps", 1, "id"), (8, 10)),
    (("steps", 1, "transform"), (8, 26)),
    (("respond", "body"), (10, 9)),           # the block indicator
])
def test_value_positions(path, where):
    doc, problems, _ = load(SOURCE)
    assert problems == []
    assert doc.pos(path) == where


@pytest.mark.parametrize("path, where", [
    (("pipeline",), (1, 1)),
    (("receive", "methods"), (4, 3)),
    (("steps", 0, "transform"), (7, 5)),
    (("steps", 1, "transform"), (8, 15)),
    (("respond", "body"), (10, 3)),
])
def test_key_positions(path, where):
    doc, _, _ = load(SOURCE)
    assert doc.key_pos(path) == where


def test_a_missing_path_falls_back_to_its_nearest_parent():
    doc, _, _ = load(SOURCE)
    assert doc.pos(("receive", "methods", 9)) == (4, 12)
    assert doc.pos(("nope", "deeper")) == (1, 1)
    assert doc.key_pos(("steps", 1)) == (8, 5)   # a list item has no key: its value


def test_scalar_styles_are_recorded():
    doc, _, _ = load(SOURCE)
    assert doc.spans[("steps", 0, "transform")][2] in ("'", '"')
    assert doc.spans[("steps", 1, "transform")][2] in ("'", '"')
    assert doc.spans[("pipeline",)][2] == ""


def test_diag_offset_is_counted_in_the_value_past_its_quote():
    doc, _, _ = load(SOURCE)
    d = doc.diag(("steps", 0, "transform"), "some-code", "msg", offset=3)
    assert str(d) == "p.yaml:7:20: some-code: msg"   # the quote is at 7:16, value char 3 ("u") at 7:20
    assert str(doc.diag(("receive", "methods"), "k", "m", key=True)) == "p.yaml:4:3: k: m"
    assert str(doc.diag((), "w", "m", severity="warning")) == "p.yaml:1:1: warning: w: m"


def test_crlf_and_bom_do_not_shift_positions():
    doc, problems, _ = load("\ufeffa: 1\r\nb:\r\n  c: [x, y]\r\n")
    assert problems == []
    assert doc.data == {"a": 1, "b": {"c": ["x", "y"]}}
    assert doc.pos(("b", "c", 1)) == (3, 10)


def test_document_is_frozen_and_its_maps_read_only():
    doc, _, _ = load(SOURCE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        doc.data = {}
    with pytest.raises(TypeError):
        doc.values[("x",)] = (1, 1)
    with pytest.raises(TypeError):
        doc.keys[("x",)] = (1, 1)


# --- keys -------------------------------------------------------------------

def test_duplicate_keys_are_reported_at_the_second_and_the_first_wins():
    doc, problems, found = load("a: 1\nb:\n  c: 2\n  c: 3\na: 4\n")
    assert problems == [(4, 3, "duplicate-key"), (5, 1, "duplicate-key")]
    assert found[0].message == "duplicate key 'c' (first at line 3)"
    assert found[1].message == "duplicate key 'a' (first at line 1)"
    assert doc.data == {"a": 1, "b": {"c": 2}}


def test_keys_are_the_text_as_written():
    doc, problems, _ = load("on: push\n1: one\nnull: n\ntrue: t\n")
    assert problems == []
    assert doc.data == {"on": "push", "1": "one", "null": "n", "true": "t"}


def test_a_key_that_is_not_a_scalar_is_reported():
    doc, problems, _ = load("? [a, b]\n: 1\nok: 2\n")
    assert problems == [(1, 3, "bad-yaml")]
    assert doc.data == {"ok": 2}


# --- tags and scalars -----------------------------------------------------------

def test_scalars_get_their_yaml_types():
    doc, problems, _ = load("i: 12\nf: 1.5\nb: true\nn: ~\ns: '12'\nx: !!str 7\n")
    assert problems == []
    assert doc.data == {"i": 12, "f": 1.5, "b": True, "n": None, "s": "12", "x": "7"}


def test_timestamps_and_binary_keep_the_text_written():
    doc, problems, _ = load("d: 2001-12-14\nb: !!binary aGk=\n")
    assert problems == []
    assert doc.data == {"d": "2001-12-14", "b": "aGk="}


def test_an_unknown_local_tag_on_a_scalar_is_reported_at_the_tag():
    doc, problems, found = load("a: 1\nb: !custom 1\n")
    assert problems == [(2, 4, "bad-yaml")]
    assert found[0].message == "unsupported YAML tag !custom"


@pytest.mark.parametrize("text", ["a: !custom {b: 1}\n", "a: !custom [1]\n"])
def test_an_unknown_local_tag_on_a_collection_is_reported(text):
    _, problems, _ = load(text)
    assert problems == [(1, 4, "bad-yaml")], "a tag the DSL does not know must be a diagnostic"


def test_a_python_tag_is_reported_not_silently_accepted():
    _, problems, _ = load("a: !!python/object:os.system x\n")
    assert problems == [(1, 4, "bad-yaml")], "!!python/... is not a tag the DSL knows"


@pytest.mark.parametrize("text", [
    "a: !!int abc\n", "a: !!float x\n", "a: !!bool maybe\n", "a: !!int\n", "a: !!bool\n",
])
def test_a_standard_tag_on_a_bad_value_is_a_diagnostic_not_a_crash(text):
    try:
        _, problems, _ = load(text)
    except Exception as exc:
        pytest.fail(f"load_yaml({text!r}) raised {type(exc).__name__}: {exc}; "
                    "it must return a bad-yaml diagnostic at 1:4")
    assert problems == [(1, 4, "bad-yaml")]


# --- YAML 1.2 core schema ----------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("1e3", 1000.0), ("1e-8", 1e-8), ("-2.5E+3", -2500.0), ("1.5", 1.5), (".5", 0.5), ("1.", 1.0),
    ("12", 12), ("+12", 12), ("-0", 0), ("0777", 777), ("0o777", 511), ("0x1F", 31),
    (".inf", float("inf")), ("-.Inf", float("-inf")),
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("FALSE", False),
    ("null", None), ("Null", None), ("~", None), ("", None),
    ("yes", "yes"), ("No", "No"), ("on", "on"), ("OFF", "OFF"), ("y", "y"),
    ("1:30", "1:30"), ("190:20:30.15", "190:20:30.15"), ("1_000", "1_000"), ("0b11", "0b11"),
    ("-0x1F", "-0x1F"), ("0o8", "0o8"), ("2026-04-02", "2026-04-02"), ("=", "="), ("<<", "<<"),
    ("0x_", "0x_"), ("0b_", "0b_"),
])
def test_plain_scalars_mean_what_the_yaml_1_2_core_schema_says(text, value):
    doc, problems, _ = load(f"a: {text}\n")
    assert [p for p in problems if p[2] != "legacy-yaml"] == []
    assert type(doc.data["a"]) is type(value) and doc.data["a"] == value


def test_nan_is_a_float():
    doc, _, _ = load("a: .NaN\n")
    assert doc.data["a"] != doc.data["a"]


@pytest.mark.parametrize("text, fix", [
    ("on", "write true for the boolean, or quote it ('on') for the string"),
    ("Off", "write false for the boolean, or quote it ('Off') for the string"),
    ("yes", "write true for the boolean"), ("NO", "write false for the boolean"),
    ("0777", "'0777' is the decimal number 777 (YAML 1.2); YAML 1.1 read it as octal 511: write 0o777 for octal"),
    ("1:30", "'1:30' is the string \"1:30\" (YAML 1.2); YAML 1.1 read it as 90: write 90 for the number"),
    ("1_000", "write 1000 for the number"), ("0b11", "write 3 for the number"), ("-0x1F", "write -31"),
    ("-0777", "YAML 1.1 read it as -511: write -511"),
])
def test_a_spelling_yaml_1_1_read_otherwise_is_a_warning_with_the_fix(text, fix):
    _, problems, found = load(f"pipeline: p\nmode:  {text}\n")
    assert problems == [(2, 8, "legacy-yaml")]
    assert found[0].severity == "warning" and fix in found[0].message
    assert str(found[0]).startswith("p.yaml:2:8: warning: legacy-yaml: ")


@pytest.mark.parametrize("text", [
    "a: 'on'\n", 'a: "0777"\n', "a: |\n  yes\n", "on: 1\n", "a: 1e3\n", "a: 0o17\n", "a: true\n",
    "a: 2026-04-02\n", "a: !!str on\n", "a: &x !!str on\nb: *x\n", "a: !!float 1\n", "a: 12\n", "a: ~\n", "a: .nan\n", "a: 0x1F\n",
])
def test_spellings_that_mean_the_same_or_are_quoted_get_no_warning(text):
    _, problems, _ = load(text)
    assert problems == []


def test_every_legacy_spelling_in_a_list_is_reported_at_its_place():
    _, problems, _ = load("a: [on, 'off', 0777, x]\nb:\n  - yes\n")
    assert problems == [(1, 5, "legacy-yaml"), (1, 16, "legacy-yaml"), (3, 5, "legacy-yaml")]


@given(st.text(alphabet="0123456789_:.+-eExXobBaFfnNyYsS~", max_size=12))
@settings(max_examples=300)
def test_any_number_like_plain_scalar_loads_without_raising(text):
    doc, problems, _ = load(f"a: {text}\n")
    assert doc is not None or problems


@pytest.mark.parametrize("text, value", [
    ("!!int 0777", 777), ("!!int 0o17", 15), ("!!float 1", 1.0), ("!!bool true", True), ("!!null ~", None),
])
def test_explicit_standard_tags_use_the_core_schema_too(text, value):
    doc, problems, _ = load(f"a: {text}\n")
    assert type(doc.data["a"]) is type(value) and doc.data["a"] == value
    assert all(p[2] == "legacy-yaml" for p in problems)


@pytest.mark.parametrize("text", ["a: !!bool yes\n", "a: !!int 1:30\n", "a: !!int 1_000\n"])
def test_an_explicit_tag_on_a_yaml_1_1_only_spelling_is_bad_yaml(text):
    _, problems, found = load(text)
    assert problems == [(1, 4, "bad-yaml")]
    assert "YAML 1.2 core schema" in found[0].message


def test_small_aliases_are_expanded():
    doc, problems, _ = load("a: &x [1, 2]\nb: *x\n")
    assert problems == []
    assert doc.data == {"a": [1, 2], "b": [1, 2]}
    assert doc.data["a"] is not doc.data["b"]


# --- syntax and size ------------------------------------------------------------

@pytest.mark.parametrize("text, where", [
    ("a: 1\nb:\n  c: 1\n    d: 2\n", (4, 6)),
    ("a: 1\n\tb: 2\n", (2, 1)),
    ("a: [1, 2\nb: 3\n", (2, 2)),
    ("a: 1\n---\nb: 2\n", (2, 1)),
])
def test_syntax_errors_are_bad_yaml_at_the_problem(text, where):
    doc, problems, _ = load(text)
    assert doc is None
    assert problems == [(*where, "bad-yaml")]


def test_a_control_character_is_reported_on_its_line():
    doc, problems, found = load("a: 1\nb: 2\nc: x\x00y\n")
    assert doc is None
    assert [p[2] for p in problems] == ["bad-yaml"]
    assert problems[0][:2] == (3, 5), f"{found[0]}: the NUL is at line 3, column 5"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_no_document_is_an_empty_file(text):
    doc, problems, _ = load(text)
    assert doc is None
    assert problems == [(1, 1, "empty-file")]


def billion_laughs(levels: int = 9) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_too_large_and_stops_quickly():
    start = time.monotonic()
    doc, problems, found = load(billion_laughs())
    assert time.monotonic() - start < 10
    assert doc is None
    assert [p[2] for p in problems] == ["too-large"]
    assert str(MAX_NODES) in found[0].message


def test_nesting_up_to_the_limit_is_fine():
    n = MAX_DEPTH
    doc, problems, _ = load("a: " + "[" * n + "]" * n + "\n")
    assert problems == [] and doc is not None


def test_nesting_deeper_than_the_limit_is_too_large_at_the_first_node_too_deep():
    n = MAX_DEPTH + 50
    doc, problems, _ = load("a: " + "[" * n + "]" * n + "\n")
    assert doc is None
    assert problems == [(1, 3 + MAX_DEPTH + 1, "too-large")]


def test_deep_block_mappings_are_too_large():
    text = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 20))
    doc, problems, _ = load(text)
    assert doc is None
    assert [p[2] for p in problems] == ["too-large"]


def test_absurd_nesting_never_raises():
    doc, problems, _ = load("a: " + "[" * 20000 + "]" * 20000 + "\n")
    assert doc is None
    assert len(problems) == 1 and problems[0][2] in ("bad-yaml", "too-large")
