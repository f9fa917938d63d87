"""``hookline test``: pipeline test files (NAME.test.yaml) run offline, end to end.

The shipped pipelines' own test files must pass (this is how ``make test``
runs them); a test that fails must fail the command with a per-field diff; a
broken test file exits 2 naming file:line:col; ``--junit`` writes XML a CI
reads. Most tests run the real ``hookline`` command as a subprocess; the ones
about what a run must not touch (sockets, files) call the runner in process.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml

import dsl
from conftest import HOOKLINE, ROOT
from engine.testing import spec

PIPELINES = ROOT / "pipelines"
SCHEMA_FILE = ROOT / "schemas" / "pipeline-test.schema.json"
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")
STALE = ("schemas/pipeline-test.schema.json is stale; run: make schema "
         "(or .venv/bin/hookline schema --tests > schemas/pipeline-test.schema.json)")


def hookline(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*HOOKLINE, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def summary(stdout: str) -> tuple[int, int]:
    m = SUMMARY.match(stdout.strip().splitlines()[-1])
    assert m, f"no closing 'N passed, M failed' line:\n{stdout}"
    return int(m.group(1)), int(m.group(2))


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the shipped pipelines (with their schemas and test files) to break."""
    shutil.copytree(PIPELINES, tmp_path / "pipelines", ignore=shutil.ignore_patterns("*.py"))
    shutil.copytree(ROOT / "tests" / "data", tmp_path / "tests" / "data")
    return tmp_path


# --- the shipped pipelines are tested -------------------------------------------------------

def test_every_shipped_pipeline_has_a_test_file():
    pipelines = dsl.pipeline_files([PIPELINES])
    assert len(pipelines) >= 6
    missing = [p.name for p in pipelines if not p.with_name(p.stem + ".test.yaml").exists()]
    assert missing == []


def test_the_shipped_pipelines_pass_their_tests():
    result = hookline("test", "pipelines")
    passed, failed = summary(result.stdout)
    assert (result.returncode, failed) == (0, 0), result.stdout
    assert passed >= 20
    assert result.stdout.splitlines()[0] == "." * passed


def test_a_pipeline_file_stands_for_its_test_file():
    result = hookline("test", "pipelines/order-to-erp.yaml")
    assert result.returncode == 0, result.stdout
    assert summary(result.stdout) == (5, 0)


# --- failures ---------------------------------------------------------------------------------

def test_a_failing_test_fails_the_command_with_a_diff_per_field(project):
    file = project / "pipelines" / "order-to-erp.test.yaml"
    text = file.read_text()
    text = text.replace("reservation: res-1, reserved", "reservation: res-2, reserved", 1)
    file.write_text(text.replace("status: 504", "status: 503", 1))
    result = hookline("test", "pipelines/order-to-erp.test.yaml", cwd=project)
    assert result.returncode == 1, result.stdout
    assert summary(result.stdout) == (3, 2)
    lines = result.stdout.splitlines()
    assert lines[0] == "F..F."
    assert "FAIL pipelines/order-to-erp.test.yaml:5:5: reserves stock for every line of Shopify's example order" in lines
    assert '  body.reservation: expected "res-2", got "res-1"' in lines
    assert "  status: expected 503, got 504" in lines
    assert any(ln.startswith("  response: 504 {") for ln in lines)


def test_an_unmatched_outbound_call_fails_the_test_and_names_it(project):
    file = project / "pipelines" / "price-lookup.test.yaml"
    file.write_text(file.read_text().replace("http://pricing.test/prices/NOPE-1", "http://pricing.test/prices/X"))
    result = hookline("test", "pipelines/price-lookup.test.yaml", cwd=project)
    assert result.returncode == 1
    assert "  unmatched call: GET http://pricing.test/prices/NOPE-1?currency=EUR: no mock matches it" \
        in result.stdout.splitlines()


def test_a_pipeline_that_does_not_compile_fails_its_tests(project):
    file = project / "pipelines" / "pos-sale.yaml"
    file.write_text(file.read_text().replace("sum(request.body.payments[].amount)", "sum_by(request.body)"))
    result = hookline("test", "pipelines/pos-sale.test.yaml", cwd=project)
    assert result.returncode == 1
    assert summary(result.stdout) == (0, 3)
    assert "unknown-function: unknown function sum_by()" in result.stdout


# --- broken test files: exit 2 at file:line:col ----------------------------------------------------

BROKEN = {
    "unknown key": ("tests:\n  - name: a\n    request: {}\n    expect: {}\n    expct: {status: 200}\n",
                    "t.test.yaml:6:5: unknown-key: unknown key 'expct' in 'tests[0]'; did you mean 'expect'?"),
    "wrong type": ("tests:\n  - name: a\n    request: {}\n    expect: {status: two hundred}\n",
                   "t.test.yaml:5:22: wrong-type: 'tests[0].expect.status' must be an integer, not a string"),
    "bad yaml": ("tests:\n  - name: a\n    request: {\n",
                 "t.test.yaml:5:1: bad-yaml: did not find expected node content"),
    "two bodies": ("tests:\n  - name: a\n    request: {body: {}, raw: x}\n    expect: {}\n",
                   "t.test.yaml:4:25: bad-test: give one of body, body_file, raw, not body and raw"),
    "mock without answer": ("tests:\n  - name: a\n    request: {}\n    mocks: [{match: {url: 'http://x'}}]\n"
                            "    expect: {}\n",
                            "t.test.yaml:5:13: bad-test: a mock needs exactly one of respond, fail, responses"),
    "unknown pipeline": ("tests:\n  - name: a\n    request: {}\n    expect: {}\n",
                         "t.test.yaml:1:11: unknown-pipeline: no pipeline named 'nope' in ./ (found: hi)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_test_file_exits_2_at_its_place(tmp_path, case):
    text, expected = BROKEN[case]
    (tmp_path / "hi.yaml").write_text("pipeline: hi\nreceive: {path: /hi}\n")
    name = "nope" if case == "unknown pipeline" else "hi"
    (tmp_path / "t.test.yaml").write_text(f"pipeline: {name}\n" + text)
    result = hookline("test", "t.test.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert expected in result.stdout.splitlines(), result.stdout


def test_no_test_file_is_a_usage_error(tmp_path):
    (tmp_path / "hi.yaml").write_text("pipeline: hi\nreceive: {path: /hi}\n")
    result = hookline("test", ".", cwd=tmp_path)
    assert result.returncode == 2
    assert "no test files found" in result.stdout


# --- JUnit XML ---------------------------------------------------------------------------------

def test_junit_xml_lists_every_test_with_its_failures(project):
    file = project / "pipelines" / "pos-sale.test.yaml"
    file.write_text(file.read_text().replace("status: 201\n", "status: 200\n", 1))
    result = hookline("test", "pipelines", "--junit", "report.xml", cwd=project)
    assert result.returncode == 1
    root = ET.parse(project / "report.xml").getroot()
    passed, failed = summary(result.stdout)
    assert root.tag == "testsuites" and int(root.get("tests")) == passed + failed and root.get("failures") == "1"
    cases = root.findall("testsuite/testcase")
    assert len(cases) == passed + failed
    failures = [c for c in cases if c.find("failure") is not None]
    assert [c.get("classname") for c in failures] == ["pipelines/pos-sale.test.yaml"]
    assert "status: expected 200, got 201" in failures[0].find("failure").text


# --- offline: no socket, no file ---------------------------------------------------------------------

def test_a_run_opens_no_socket_and_writes_no_file(tmp_path, monkeypatch, capsys):
    """(The event loop's own self-pipe is a socket pair; nothing binds, listens or connects.)"""
    from engine.testing.runner import run_paths

    def no_network(*args, **kwargs):
        raise AssertionError("hookline test used the network")
    shutil.copytree(PIPELINES, tmp_path / "pipelines", ignore=shutil.ignore_patterns("*.py"))
    shutil.copytree(ROOT / "tests" / "data", tmp_path / "tests" / "data")
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    for method in ("bind", "connect", "connect_ex", "listen"):
        monkeypatch.setattr(socket.socket, method, no_network)
    run = run_paths(["pipelines"])
    out = capsys.readouterr().out
    assert run.exit_code == 0 and run.failed == 0 and len(run.results) >= 20, out
    assert sorted(tmp_path.rglob("*")) == before


# --- lint and serve leave test files alone ---------------------------------------------------------------

def test_lint_leaves_test_files_alone(tmp_path):
    (tmp_path / "hi.yaml").write_text("pipeline: hi\nreceive: {path: /hi}\n")
    (tmp_path / "hi.test.yaml").write_text("pipeline: hi\ntests:\n  - {name: a, request: {}, expect: {status: 204}}\n")
    result = hookline("lint", ".", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "")
    assert "1 file(s), 1 pipeline(s)" in result.stderr
    assert hookline("test", ".", cwd=tmp_path).returncode == 0


def test_serve_finds_no_pipeline_in_test_files():
    names = [p.name for p in dsl.pipeline_files([PIPELINES])]
    assert names and not [n for n in names if ".test." in n]


# --- the test files' editor schema ---------------------------------------------------------------------

def test_committed_tests_schema_is_not_stale():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == spec.tests_schema_text(), STALE


def test_schema_tests_prints_it():
    assert hookline("schema", "--tests").stdout == SCHEMA_FILE.read_text(encoding="utf-8")


def test_tests_schema_is_draft_07_and_documents_every_key():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    undocumented, stack = [], [("", schema)]
    while stack:
        path, node = stack.pop()
        for name, sub in node.get("properties", {}).items():
            if not (sub.get("description") and sub.get("markdownDescription")):
                undocumented.append(f"{path}/{name}")
            stack.append((f"{path}/{name}", sub))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                stack.append((f"{path}/{key}", node[key]))
    assert undocumented == []


@pytest.mark.parametrize("file", sorted(PIPELINES.glob("*.test.yaml")), ids=lambda p: p.name)
def test_shipped_test_files_fit_the_schema_and_name_it(file):
    text = file.read_text()
    assert text.startswith("# yaml-language-server: $schema=../schemas/pipeline-test.schema.json\n")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(text))] == []


# --- the examples in docs/testing.md run ------------------------------------------------------------

def test_the_docs_examples_pass(tmp_path):
    from test_docs import read_blocks
    blocks = [b for b in read_blocks(ROOT / "docs" / "testing.md") if b.lang == "yaml"]
    pipelines, tests = [b for b in blocks if b.is_pipeline], [b for b in blocks if b.is_tests]
    assert pipelines and tests
    (tmp_path / "pipelines").mkdir()
    for block in pipelines:
        name = yaml.safe_load(block.text)["pipeline"]
        (tmp_path / "pipelines" / f"{name}.yaml").write_text(block.text)
    cases = 0
    for i, block in enumerate(tests):
        (tmp_path / "pipelines" / f"example-{i}.test.yaml").write_text(block.text)
        cases += len(yaml.safe_load(block.text)["tests"])
    result = hookline("test", "pipelines", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert summary(result.stdout) == (cases, 0)


def test_the_docs_table_has_every_key_of_the_test_format():
    table, keys, stack = set(), set(), [spec.tests_schema()]
    section = (ROOT / "docs" / "testing.md").read_text().split("## The test file\n", 1)[1].split("\n## ")[0]
    assert section.count("\n|---|") == 1, "one table of keys"
    for line in section.splitlines():
        if line.startswith("| `"):
            for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
                table.update(re.split(r"[.\s\[\]]+", token))
    while stack:
        node = stack.pop()
        keys.update(node.get("properties", {}))
        stack += [v for v in node.get("properties", {}).values()]
        stack += [node[k] for k in ("items", "additionalProperties") if isinstance(node.get(k), dict)]
    assert len(keys) > 20 and sorted(keys - table) == []


# --- the comparisons, and the modules' examples ----------------------------------------------------

def test_body_contains_compares_text_as_a_substring_and_objects_as_subsets():
    from engine.testing.expect import diff
    assert diff("<a>1</a>", "<x><a>1</a></x>", "calls[0].body", subset=True) == []
    assert diff("<a>2</a>", "<x><a>1</a></x>", "calls[0].body", subset=True) == [
        'calls[0].body: expected text containing "<a>2</a>", got "<x><a>1</a></x>"']
    assert diff({"a": [1, {"b": True}]}, {"a": [1, {"b": 1, "c": 2}]}, "body", subset=True) == [
        "body.a[1].b: expected true, got 1"]
    assert diff({"a": 1}, {"a": 1.0, "b": None}, "body") == ["body.b: not expected, got null"]


@pytest.mark.parametrize("module", ["engine.testing.spec", "engine.testing.load", "engine.testing.mocks",
                                    "engine.testing.inprocess", "engine.testing.expect", "dsl.signing",
                                    "dsl.project"])
def test_doctests(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
