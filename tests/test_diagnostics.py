"""Golden diagnostics: every author mistake points at the YAML.

Each ``tests/diagnostics/<case>.yaml`` is a pipeline with mistakes (its first
comment says which); ``<case>.out`` holds exactly the lines ``hookline lint``
prints for it, ``file:line:col: code: message``, the file as given relative
to the repo root. The environment is the fixed :data:`ENV`, so results do not
depend on the machine.

Add a case: write ``<case>.yaml``, then regenerate the ``.out`` files::

    HOOKLINE_REGEN=1 .venv/bin/python -m pytest tests/test_diagnostics.py

Regenerating accepts whatever the compiler prints today, bugs included, so
check each line:col of a new ``.out`` by hand against the file, and review the
whole diff (``git diff tests/diagnostics``) before committing: a changed
position or message is a bug until proven otherwise. Some ``.out`` files hold
hand-checked positions the compiler does not produce yet (each a reported
bug, failing here on purpose): restore them with ``git checkout`` after a
regeneration rather than accept the compiler's version.
"""
from __future__ import annotations

import difflib
import os
import re
import subprocess
from pathlib import Path

import pytest

import dsl

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = ROOT / "tests" / "diagnostics"
CASES = sorted(p.stem for p in CASES_DIR.glob("*.yaml"))
HOOKLINE = ROOT / ".venv" / "bin" / "hookline"
REGEN = os.environ.get("HOOKLINE_REGEN") == "1"
ENV = {"ERP_URL": "http://erp.example.test", "ERP_TOKEN": "erp-token"}

# The codes the cases must keep covering, whatever else they grow into.
REQUIRED_CODES = {
    "bad-yaml", "duplicate-key", "unknown-key", "wrong-type", "missing-key", "bad-value",
    "unknown-function", "bad-arity", "bad-expression", "step-not-run", "unknown-step",
    "duplicate-step", "bad-step", "bad-branch", "url-authority-from-request", "bad-url",
    "missing-env", "substitution-not-allowed", "bad-schema", "bad-path", "empty-file",
    "unreadable", "content-type-mismatch",
}


def rel(case: str) -> str:
    return f"tests/diagnostics/{case}.yaml"


def lint_lines(case: str) -> list[str]:
    """What ``hookline lint tests/diagnostics/<case>.yaml`` prints (run from the repo root)."""
    try:
        _, problems = dsl.compile_paths([rel(case)], env=ENV, require_env=False)
    except Exception as exc:  # the compiler is total: this is the bug to report
        pytest.fail(f"compile_paths raised {type(exc).__name__}: {exc} on {rel(case)}; "
                    "it must return diagnostics instead")
    return [str(d) for d in problems]


def header(case: str) -> str:
    """The case's leading comment: what it is about."""
    try:
        lines = (CASES_DIR / f"{case}.yaml").read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        lines = (CASES_DIR / f"{case}.yaml").read_text(encoding="latin-1").splitlines()
    return "\n".join(line for line in lines[:3] if line.startswith("#"))


def mismatch(case: str, expected: list[str], actual: list[str]) -> str:
    diff = "\n".join(difflib.unified_diff(expected, actual, f"{case}.out (expected)", "compiler", lineterm=""))
    return f"{rel(case)} does not produce {case}.out\n{header(case)}\n{diff}"


@pytest.mark.parametrize("case", CASES)
def test_case(case, monkeypatch):
    monkeypatch.chdir(ROOT)
    actual = lint_lines(case)
    out = CASES_DIR / f"{case}.out"
    if REGEN:
        out.write_text("".join(line + "\n" for line in actual), encoding="utf-8")
        return
    expected = out.read_text(encoding="utf-8").splitlines()
    assert actual == expected, mismatch(case, expected, actual)


def test_every_case_has_an_out_file_and_no_out_file_is_orphaned():
    outs = sorted(p.stem for p in CASES_DIR.glob("*.out"))
    assert outs == CASES


def test_cases_cover_the_required_codes():
    found = set()
    for out in CASES_DIR.glob("*.out"):
        found |= set(re.findall(r"^\S+?:\d+:\d+: (?:warning: )?([a-z-]+):", out.read_text(), re.M))
    assert REQUIRED_CODES <= found, f"no case covers {sorted(REQUIRED_CODES - found)}"


def test_each_out_file_names_its_own_case():
    for case in CASES:
        for line in (CASES_DIR / f"{case}.out").read_text().splitlines():
            assert line.startswith(rel(case) + ":"), line


def test_hookline_lint_prints_what_compile_paths_returns(monkeypatch):
    """The CLI over the whole directory prints the in-process diagnostics, in order."""
    monkeypatch.chdir(ROOT)
    _, problems = dsl.compile_paths(["tests/diagnostics"], env=ENV, require_env=False)
    named = set(re.findall(r"\$\{env:([^}]*)\}", "".join(
        (CASES_DIR / f"{c}.yaml").read_text("latin-1") for c in CASES)))
    env = {k: v for k, v in os.environ.items() if k not in named} | ENV
    result = subprocess.run([str(HOOKLINE), "lint", "tests/diagnostics"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [str(d) for d in problems]
