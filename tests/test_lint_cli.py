"""The real ``hookline`` command: lint, serve's refusal to start, schema.

Every test runs ``.venv/bin/hookline`` (or ``python -m engine``) as a
subprocess, with an environment where the variables the example pipelines
read are either all unset or all set, so results do not depend on the
machine. Exit codes: 0 success, 1 the pipelines have errors, 2 wrong usage.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dsl

ROOT = Path(__file__).resolve().parent.parent
HOOKLINE = str(ROOT / ".venv" / "bin" / "hookline")
PIPELINES = ROOT / "pipelines"
DIAG = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<warning>warning: )?(?P<code>[a-z-]+): .+$")

# Six kinds of mistake, none of which stops the compiler before the others.
MISTAKES = """\
pipeline: many-mistakes
receive:
  path: /many
steps:
  - id: order
    transform: "request.body | sum_by(@)"
  - id: count
    transform: length(request.body, request.query)
  - id: early
    transform: "steps.late.total"
  - id: late
    transform: "steps.ghost"
  - id: order
    transform: "a.[b"
  - id: decide
    route:
      - otherwise: {respond: {status: 200}}
      - when: request.body.ok
  - id: send
    call:
      url: "${env:HOOKLINE_TEST_UNSET}/x"
"""
# (line, col, code) of every diagnostic above, in the order lint must print them.
EXPECTED = [
    (6, 32, "unknown-function"),
    (8, 16, "bad-arity"),
    (10, 23, "step-not-run"),
    (12, 23, "unknown-step"),
    (13, 9, "duplicate-step"),
    (14, 21, "bad-expression"),
    (17, 9, "bad-branch"),
    (21, 13, "missing-env"),
]


def shipped() -> list[Path]:
    return [p for p in sorted(PIPELINES.glob("*.y*ml")) if not dsl.is_test_file(p)]


def env_names() -> set[str]:
    """Every ${env:NAME} the shipped pipelines read."""
    text = "".join(p.read_text() for p in shipped())
    return set(re.findall(r"\$\{env:([^}]*)\}", text))


def clean_env(**extra) -> dict:
    """os.environ without any variable a test pipeline reads, plus ``extra``."""
    unset = env_names() | {"HOOKLINE_TEST_UNSET"}
    return {k: v for k, v in os.environ.items() if k not in unset} | extra


def run(*args, cwd=ROOT, env=None, cmd=(HOOKLINE,), timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def parsed(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    bad = [line for line in lines if not DIAG.match(line)]
    assert not bad, f"not file:line:col: code: message lines: {bad}"
    return [DIAG.match(line).groupdict() for line in lines]


@pytest.fixture
def mistakes(tmp_path) -> Path:
    (tmp_path / "many.yaml").write_text(MISTAKES)
    return tmp_path


def test_lint_reports_every_mistake_sorted_with_exit_1(mistakes):
    result = run("lint", "many.yaml", cwd=mistakes)
    got = [(int(d["line"]), int(d["col"]), d["code"]) for d in parsed(result.stdout)]
    assert got == EXPECTED, result.stdout
    assert got == sorted(got)
    assert result.returncode == 1
    errors = len(EXPECTED) - 1   # missing-env is a warning for lint
    assert f"hookline lint: {errors} error(s) in 1 file(s)" in result.stderr


def test_lint_prints_missing_env_as_a_warning_line(mistakes):
    result = run("lint", "many.yaml", cwd=mistakes)
    assert "many.yaml:21:13: warning: missing-env: environment variable HOOKLINE_TEST_UNSET is not set" \
        in result.stdout.splitlines()


YAML_1_1 = """\
pipeline: legacy
receive:
  path: /legacy
validate:
  formats: on
  body: {properties: {mode: {const: 0755}, at: {const: 1:30}, n: {multipleOf: 1e-8}}}
"""


def test_lint_warns_about_yaml_1_1_spellings_and_still_reports_what_they_cause(tmp_path):
    """`on` is a string now, so `formats: on` is also a wrong-type error; the warning says why."""
    (tmp_path / "legacy.yaml").write_text(YAML_1_1)
    result = run("lint", "legacy.yaml", cwd=tmp_path)
    got = [(int(d["line"]), int(d["col"]), bool(d["warning"]), d["code"]) for d in parsed(result.stdout)]
    assert got == [(5, 12, True, "legacy-yaml"), (5, 12, False, "wrong-type"),
                   (6, 37, True, "legacy-yaml"), (6, 56, True, "legacy-yaml")], result.stdout
    assert "write true for the boolean" in result.stdout and "write 0o755 for octal" in result.stdout
    assert result.returncode == 1


def test_lint_exits_0_when_the_yaml_1_1_spellings_are_the_only_problems(tmp_path):
    (tmp_path / "legacy.yaml").write_text(YAML_1_1.replace("formats: on", "formats: true"))
    result = run("lint", "legacy.yaml", cwd=tmp_path)
    assert result.stdout.splitlines() == [
        "legacy.yaml:6:37: warning: legacy-yaml: '0755' is the decimal number 755 (YAML 1.2); "
        "YAML 1.1 read it as octal 493: write 0o755 for octal, or 755 without the leading zero",
        "legacy.yaml:6:56: warning: legacy-yaml: '1:30' is the string \"1:30\" (YAML 1.2); "
        "YAML 1.1 read it as 90: write 90 for the number, or quote it ('1:30') for the string"]
    assert result.returncode == 0


BRANCH_MISTAKE = """\
pipeline: branch-mistake
receive:
  path: /branch
steps:
  - id: decide
    route:
      - when: request.body.urgent
        steps:
          - id: inner
            transform: "sum_by(@)"
"""


def test_lint_reports_a_mistake_inside_a_route_branch_without_a_traceback(tmp_path):
    (tmp_path / "branch.yaml").write_text(BRANCH_MISTAKE)
    result = run("lint", "branch.yaml", cwd=tmp_path)
    assert "Traceback" not in result.stderr, f"hookline lint crashed:\n{result.stderr[-600:]}"
    assert result.stdout.splitlines() == ["branch.yaml:10:25: unknown-function: unknown function sum_by(); did you mean 'sum()'?"]
    assert result.returncode == 1


def test_lint_shipped_pipelines_without_env_warns_and_exits_0():
    result = run("lint", "pipelines")
    diags = parsed(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert diags, "the example env vars are unset, so each ${env:...} must be reported"
    assert {d["code"] for d in diags} == {"missing-env"}
    assert all(d["warning"] for d in diags), result.stdout
    assert {line.split("variable ")[1].split()[0] for line in result.stdout.splitlines()} == env_names()
    n = len(shipped())
    assert f"hookline lint: {n} file(s), {n} pipeline(s), no errors" in result.stderr


def test_lint_shipped_pipelines_with_env_is_silent():
    env = clean_env(**{name: f"http://{name.lower()}.example.test" for name in env_names()})
    result = run("lint", "pipelines", env=env)
    assert (result.returncode, result.stdout) == (0, "")
    assert "no errors" in result.stderr


def test_require_env_makes_missing_env_an_error():
    result = run("lint", "--require-env", "pipelines")
    diags = parsed(result.stdout)
    assert result.returncode == 1
    assert diags and all(d["code"] == "missing-env" and not d["warning"] for d in diags), result.stdout
    assert f"hookline lint: {len(diags)} error(s)" in result.stderr


def test_lint_missing_path_is_not_found_exit_1():
    result = run("lint", "no/such/pipeline.yaml")
    assert result.returncode == 1
    assert "no/such/pipeline.yaml:1:1: not-found: no such file or directory" in result.stdout.splitlines()


def test_lint_missing_path_next_to_a_good_one_still_fails():
    env = clean_env(**{name: "http://x.example.test" for name in env_names()})
    result = run("lint", "pipelines", "nope.yaml", env=env)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["nope.yaml:1:1: not-found: no such file or directory"]


@pytest.mark.parametrize("args", [(), ("lint",), ("frobnicate",), ("lint", "--bogus", "pipelines")])
def test_bad_usage_exits_2(args):
    result = run(*args)
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert "usage:" in result.stderr


def test_serve_refuses_to_start_and_prints_every_diagnostic(mistakes):
    (mistakes / "second.yaml").write_text("pipeline: second\nreceive: {path: /second, methods: [FETCH]}\n")
    result = run("serve", ".", "--host", "127.0.0.1", "--port", "0", cwd=mistakes, timeout=30)
    assert result.returncode == 1
    got = [(d["file"], int(d["line"]), int(d["col"]), d["code"]) for d in parsed(result.stdout)]
    # serve needs every ${env:...}: missing-env is an error here, not a warning
    assert got == [("many.yaml", *e) for e in EXPECTED] + [("second.yaml", 2, 36, "bad-value")]
    assert not any(d["warning"] for d in parsed(result.stdout))
    assert "not starting" in result.stderr


def test_serve_refuses_shipped_pipelines_when_env_is_missing():
    result = run("serve", "pipelines", "--host", "127.0.0.1", "--port", "0", timeout=30)
    assert result.returncode == 1
    diags = parsed(result.stdout)
    assert diags and all(d["code"] == "missing-env" and not d["warning"] for d in diags)


def test_schema_prints_the_committed_schema():
    result = run("schema")
    committed = (ROOT / "schemas" / "pipeline.schema.json").read_text()
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(committed)
    assert result.stdout == committed


def test_python_m_engine_lint_works_too(mistakes):
    result = run("lint", "many.yaml", cwd=mistakes, cmd=(sys.executable, "-m", "engine"),
                 env=clean_env(PYTHONPATH=str(ROOT)))
    assert result.returncode == 1
    assert result.stdout == run("lint", "many.yaml", cwd=mistakes).stdout
    assert result.stdout.count("\n") == len(EXPECTED)


@pytest.mark.parametrize("option, value", [("--store", "kafka://127.0.0.1:9092"), ("--trusted-proxies", "10.0.0.0/33")])
def test_serve_usage_errors_exit_2_with_one_line_naming_the_option(option, value):
    result = run("serve", "tests/pipelines/async", "--port", "0", option, value,
                 env=clean_env(DEST_URL="http://127.0.0.1:9"), timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"hookline serve: {option}"), result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "serving" not in result.stderr
