"""``hookline fuzz``: requests generated from a pipeline's validate schemas that
break it are found, shrunk, and printed as a test case that reproduces the
failure when pasted into a test file. Runs the real command (the search is
deterministic: Hypothesis's derandomize)."""
from __future__ import annotations

import re
import shutil
import subprocess

import yaml

from conftest import HOOKLINE, ROOT

FUZZ = ROOT / "tests" / "pipelines" / "fuzz"


def hookline(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*HOOKLINE, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def findings(stdout: str) -> list[dict]:
    """The printed test cases, parsed."""
    cases = []
    for block in re.split(r"\n(?=# )", stdout.split("\n\n", 1)[1]):
        body = [ln[2:] for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
        if body:
            cases += yaml.safe_load("\n".join(body))
    return cases


def test_sum_over_a_field_the_schema_lets_be_a_string_is_found_shrunk_and_reproduced(tmp_path):
    result = hookline("fuzz", "tests/pipelines/fuzz/cart-total.yaml", "--max-examples", "50")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "tests/pipelines/fuzz/cart-total.yaml: 1 request(s) the schema accepts break the pipeline"
    assert "# 422 expression-failed: step 'total': the expression could not be evaluated on this request" in lines
    assert any(ln.startswith("# log: run ") and "sum()" in ln for ln in lines)
    [case] = findings(result.stdout)
    assert case["request"] == {"method": "POST", "path": "/carts", "body": {"items": [{"qty": ""}]}}  # shrunk
    assert case["expect"] == {"status": 200}
    # pasted into a test file, it reproduces the failure
    shutil.copy(FUZZ / "cart-total.yaml", tmp_path)
    pasted = "pipeline: cart-total\ntests:\n" + result.stdout.split("\n\n", 1)[1]
    (tmp_path / "cart-total.test.yaml").write_text(pasted)
    test = hookline("test", ".", cwd=tmp_path)
    assert test.returncode == 1, test.stdout
    assert "  status: expected 200, got 422" in test.stdout.splitlines()


def test_a_5xx_the_pipeline_answers_is_found_at_its_boundary():
    result = hookline("fuzz", "tests/pipelines/fuzz/limit.yaml", "--max-examples", "50")
    assert result.returncode == 1, result.stdout
    assert '# 503: {"error":"too many"}' in result.stdout.splitlines()
    [case] = findings(result.stdout)
    assert case["request"]["body"] == {"n": 11} and case["request"]["path"].startswith("/limit/")
    assert case["expect"] == {"status": 201}


def test_a_schema_that_refuses_what_breaks_the_pipeline_leaves_nothing_to_find():
    result = hookline("fuzz", "tests/pipelines/fuzz/cart-total-fixed.yaml", "--max-examples", "30")
    assert (result.returncode, result.stdout) == (0, "tests/pipelines/fuzz/cart-total-fixed.yaml: nothing found\n")


def test_the_docs_example_is_what_it_prints():
    text = (ROOT / "docs" / "testing.md").read_text()
    block = text.split("## `hookline fuzz`", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    command, _, shown = block.partition("\n")
    shown = shown.split("\n$ echo $?")[0]
    result = hookline(*command.removeprefix("$ hookline ").split())
    strip = lambda out: [ln for ln in out.rstrip().splitlines() if not ln.startswith("# log: ")]  # run ids differ
    assert strip(result.stdout) == strip(shown)
    assert block.rstrip().endswith(f"$ echo $?\n{result.returncode}")


def test_bad_options_and_paths_exit_2(tmp_path):
    assert hookline("fuzz", "tests/pipelines/fuzz/limit.yaml", "--max-examples", "0").returncode == 2
    assert hookline("fuzz", "nope.yaml").returncode == 2
    assert hookline("fuzz", ".", cwd=tmp_path).returncode == 2


def test_a_pipeline_whose_body_is_not_json_is_skipped():
    result = hookline("fuzz", "pipelines/invoice-summary.yaml", "--max-examples", "5")
    assert result.returncode == 0
    assert "skipped: its body is not JSON" in result.stdout
