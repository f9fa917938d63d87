"""The top-level ``tables:`` key (dsl/tables.py): tables inline or from JSON, YAML
and CSV files next to the pipeline, read by ``lookup``; every problem a
diagnostic at the table. Served over HTTP in tests/test_functions_http.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import dsl
from dsl import tables

ROOT = Path(__file__).resolve().parent.parent
HEAD = "pipeline: t\nreceive:\n  path: /t\n"


def compile_with(tmp_path: Path, tables_yaml: str, expression: str = "`null`", files=None):
    """Compile a pipeline with ``tables_yaml`` under ``tables:`` and one transform."""
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write = (tmp_path / name).write_bytes if isinstance(text, bytes) else (tmp_path / name).write_text
        write(text)
    source = f"{HEAD}tables:\n{tables_yaml}steps:\n  - id: out\n    transform: \"{expression}\"\n"
    file = tmp_path / "p.yaml"
    file.write_text(source)
    return dsl.compile_text(source, str(file))


def lookups(tmp_path, tables_yaml, calls: str, files=None):
    pipeline, problems = compile_with(tmp_path, tables_yaml, calls, files)
    assert [str(p) for p in problems] == []
    return pipeline.steps[0].expr.search({"request": {}, "steps": {}})


def problems_of(tmp_path, tables_yaml, files=None, expression="`null`"):
    _, problems = compile_with(tmp_path, tables_yaml, expression, files)
    return [(p.line, p.col, p.code, p.message) for p in problems]


def test_inline_object_and_records(tmp_path):
    yaml = ("  status:\n    values: {paid: P, 404: NF, 1.5: half}\n"
            "  bins:\n    values: [{sku: A-1, bin: B7}, {sku: 42, bin: B8}]\n    key: sku\n    value: bin\n"
            "  skus:\n    values: [{sku: A-1, bin: B7}]\n    key: sku\n")
    calls = ("[lookup('status', 'paid'), lookup('status', `404`), lookup('status', `1.5`), "
             "lookup('bins', 'A-1'), lookup('bins', `42`), lookup('skus', 'A-1'), lookup('bins', 'nope', 'X')]")
    assert lookups(tmp_path, yaml, calls) == ["P", "NF", "half", "B7", "B8", {"sku": "A-1", "bin": "B7"}, "X"]


def test_files_json_yaml_csv(tmp_path):
    files = {
        "tables/status.json": '{"paid": "P", "refunded": {"code": "R", "reverse": true}}',
        "tables/countries.yaml": "- {iso2: FR, name: France}\n- {iso2: DE, name: Germany}\n",
        "tables/erp.csv": "\ufeffstatus,erp_code\npaid,20\nrefunded,30\n",
        "tables/skus.csv": 'sku,bin,note\nA-1,B7,"fragile, glass"\nA-2,B8,\n',
    }
    yaml = ("  status: {file: tables/status.json}\n"
            "  countries: {file: tables/countries.yaml, key: iso2, value: name}\n"
            "  erp: {file: tables/erp.csv}\n"
            "  skus: {file: tables/skus.csv}\n"
            "  notes: {file: tables/skus.csv, value: note}\n"
            "  by_bin: {file: tables/skus.csv, key: bin, value: sku}\n")
    calls = ("[lookup('status', 'refunded').code, lookup('countries', 'DE'), lookup('erp', 'paid'), "
             "lookup('skus', 'A-1'), lookup('notes', 'A-1'), lookup('by_bin', 'B8')]")
    assert lookups(tmp_path, yaml, calls, files) == [
        "R", "Germany", "20", {"sku": "A-1", "bin": "B7", "note": "fragile, glass"}, "fragile, glass", "A-2"]


@pytest.mark.parametrize("tables_yaml,files,message", [
    ("  t: {file: tables/nope.csv}\n", {}, "table 't': cannot read tables/nope.csv: No such file or directory"),
    ("  t: {file: tables/t.json}\n", {"tables/t.json": '{"a": 1,}'}, "table 't': tables/t.json is not JSON: "),
    ("  t: {file: tables/t.json}\n", {"tables/t.json": '"text"'},
     "table 't': must be an object (key → value) or a list of records"),
    ("  t: {file: tables/t.yaml}\n", {"tables/t.yaml": "a: [1\n"}, "table 't': tables/t.yaml is not usable YAML: "),
    ("  t: {file: tables/t.csv}\n", {"tables/t.csv": ""}, "table 't': tables/t.csv has no header line"),
    ("  t: {file: tables/t.csv}\n", {"tables/t.csv": "a,b\n1,2\n3\n"},
     "table 't': tables/t.csv line 3 has 1 cells; the header has 2"),
    ("  t: {file: tables/t.csv}\n", {"tables/t.csv": "a,b\n1,2\n1,3\n"}, "table 't': line 3: key '1' is there twice"),
    ("  t: {file: tables/t.csv, value: c}\n", {"tables/t.csv": "a,b\n1,2\n"},
     "table 't': line 2 is not an object with 'a' and 'c'"),
    ("  t: {file: tables/t.csv}\n", {"tables/t.csv": b"a,b\n\xff,1\n"},
     "table 't': cannot read tables/t.csv: not UTF-8 text"),
    ("  t:\n    values: [{sku: A}, {bin: B}]\n    key: sku\n", {}, "table 't': record 2 is not an object with 'sku'"),
    ("  t:\n    values: [{sku: [1]}]\n    key: sku\n", {}, "table 't': record 1: a key must be a string or a number"),
    ("  t:\n    values: [{sku: A}]\n", {}, "table 't': a list of records needs key: the field that holds the key"),
    ("  t:\n    values: {a: 1}\n    key: a\n", {}, "table 't': key and value are for a list of records; this is an object"),
    ("  t: {file: tables/t.json, key: k}\n", {"tables/t.json": '[{"k": 1}, {"k": "1"}]'},
     "table 't': record 2: key '1' is there twice"),
])
def test_table_problems_are_bad_table_at_the_table(tmp_path, tables_yaml, files, message):
    found = problems_of(tmp_path, tables_yaml, files)
    assert [code for _, _, code, _ in found] == ["bad-table"]
    line, col, _, text = found[0]
    lines = tables_yaml.splitlines()
    at = next(i for i, ln in enumerate(lines) if re.search(r"\b(values|file):", ln))
    assert (line, col) == (5 + at, re.search(r"\b(values|file): ", lines[at]).end() + 1)
    assert text.startswith(message), text


def test_a_table_with_problems_is_reported_once_not_again_at_each_lookup(tmp_path):
    found = problems_of(tmp_path, "  t: {file: tables/none.json}\n", expression="lookup('t', 'a')")
    assert [code for *_, code, _ in found] == ["bad-table"]


def test_a_file_too_large_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "MAX_FILE_BYTES", 10)
    found = problems_of(tmp_path, "  t: {file: tables/t.json}\n", {"tables/t.json": '{"aaaaaaaaaa": 1}'})
    assert found[0][2:] == ("bad-table", "table 't': tables/t.json is larger than 10 bytes")


def test_shape_mistakes_point_at_the_table(tmp_path):
    found = problems_of(tmp_path, "  t: {values: {a: 1}, file: x.csv}\n  'two words': {values: {}}\n"
                                  "  u: {file: x.txt}\n  v: {key: a}\n")
    assert found == [
        (5, 6, "bad-value", "'tables.t' takes exactly one of values, file; this has values and file"),
        (6, 3, "bad-value", "'tables': the name 'two words' must match ^[A-Za-z_][A-Za-z0-9_-]*$"),
        (7, 13, "bad-value", "'tables.u.file' is 'x.txt'; it must match \\.(json|ya?ml|csv)$ (A `.json`, "
                             "`.yaml` or `.csv` file, relative to the pipeline file, read when the pipeline loads)"),
        (8, 6, "bad-value", "'tables.v' takes exactly one of values, file; this has none"),
    ]


def test_unknown_table_lists_the_known_ones(tmp_path):
    found = problems_of(tmp_path, "  status: {values: {a: 1}}\n", expression="lookup('statuses', 'a')")
    assert found == [(8, 24, "unknown-table",
                      "lookup(): argument 1 (table) names no table (known: status)")]


def test_yaml_tables_in_a_tables_folder_are_not_served_as_pipelines(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "codes.yaml").write_text("paid: P\n")
    (tmp_path / "p.yaml").write_text(HEAD + "tables:\n  codes: {file: tables/codes.yaml}\n"
                                     "respond:\n  body: \"lookup('codes', 'paid')\"\n")
    pipelines, problems = dsl.compile_paths([tmp_path])
    assert [p.name for p in pipelines] == ["t"] and problems == []


def test_the_csv_shown_in_the_docs_is_the_example_file():
    text = (ROOT / "docs" / "dsl.md").read_text()
    shown = re.search(r"With `tables/order-status.csv` next to the pipeline:\n\n```text\n(.*?)```", text, re.S)
    assert shown[1] == (ROOT / "docs" / "examples" / "tables" / "order-status.csv").read_text()


def test_a_table_file_is_part_of_the_pipelines_version(tmp_path):
    (tmp_path / "tables").mkdir()
    table = tmp_path / "tables" / "codes.csv"
    table.write_text("status,code\npaid,20\n")
    source = HEAD + "tables:\n  codes: {file: tables/codes.csv}\n"
    first, _ = dsl.compile_text(source, str(tmp_path / "p.yaml"))
    table.write_text("status,code\npaid,21\n")
    second, _ = dsl.compile_text(source, str(tmp_path / "p.yaml"))
    assert first.reads == second.reads == (str(table),)
    assert first.version != second.version
