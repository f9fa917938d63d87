"""``hookline lint`` reports every mistake of a file in one run, each with its fix (issue 14, parts 1-2)."""
from __future__ import annotations

import pytest

from test_lint_cli import run

SEVEN = """\
pipeline: Bad_Name
receive:
  path: /orders
  methods: [POST, FETCH]
  max_body_bytes: lots
steps:
  - id: shape
    transform: "{id: request.body.id"
  - id: total
    transform: "lenght(request.body.items)"
  - id: shape
    transform: request.body
respond:
  status: 200
  colour: blue
"""


def lint(tmp_path, text, *options):
    (tmp_path / "p.yaml").write_text(text)
    return run("lint", *options, "p.yaml", cwd=tmp_path)


def codes_at(result) -> list[tuple[int, str]]:
    out = []
    for line in result.stdout.splitlines():
        _, number, _, rest = line.split(":", 3)
        out.append((int(number), rest.strip().removeprefix("warning: ").split(":")[0]))
    return out


def test_seven_mistakes_give_seven_diagnostics_in_line_order(tmp_path):
    result = lint(tmp_path, SEVEN)
    assert codes_at(result) == [(1, "bad-value"), (4, "bad-value"), (5, "wrong-type"), (8, "bad-expression"),
                                (10, "unknown-function"), (11, "duplicate-step"), (15, "unknown-key")]
    assert result.returncode == 1
    assert "hookline lint: 7 error(s) in 1 file(s)" in result.stderr


def test_a_broken_step_keeps_its_id_for_the_steps_that_read_it(tmp_path):
    text = ("pipeline: p\nreceive: {path: /p}\nsteps:\n  - id: stock\n    call: {url: 'http://erp.test/s', "
            "timeout_s: soon}\n  - id: use\n    transform: steps.stock.body\n  - id: bad\n"
            "    transform: steps.stok.body\n")
    result = lint(tmp_path, text)
    lines = result.stdout.splitlines()
    assert [code for _, code in codes_at(result)] == ["wrong-type", "unknown-step"], lines
    assert "did you mean 'stock'?" in lines[1]


def test_a_file_that_is_not_a_pipeline_at_all_still_reports_its_expressions(tmp_path):
    text = "steps:\n  - id: a\n    transform: 'length(@, @)'\n"
    assert codes_at(lint(tmp_path, text)) == [(1, "missing-key"), (1, "missing-key"), (3, "bad-arity")]


@pytest.mark.parametrize("expression, fix", [
    ("steps.notify.status == 409", "write `409`"),
    ("request.body.paid == true", "write `true`"),
    ("lenght(request.body)", "did you mean 'length()'?"),
])
def test_expression_errors_carry_the_fix(tmp_path, expression, fix):
    text = f"pipeline: p\nreceive: {{path: /p}}\nsteps:\n  - id: notify\n    transform: \"{expression}\"\n"
    result = lint(tmp_path, text)
    assert fix in result.stdout, result.stdout


def test_env_without_dollar_in_a_template_says_how_to_write_it(tmp_path):
    text = "pipeline: p\nreceive: {path: /p}\nsteps:\n  - id: c\n    call: {url: 'http://erp.test/{env:TOKEN}'}\n"
    result = lint(tmp_path, text)
    assert "write ${env:TOKEN}" in result.stdout, result.stdout
    assert result.stdout.startswith("p.yaml:5:38: bad-expression")


def test_a_yaml_quoted_name_is_a_warning_with_the_fix(tmp_path):
    result = lint(tmp_path, "pipeline: p\nreceive: {path: /p}\nrespond:\n  body: 'duplicate'\n")
    assert result.stdout.splitlines() == [
        "p.yaml:4:9: warning: quoted-text: YAML's quotes are not part of the expression: this reads the field "
        "'duplicate'; for the text 'duplicate' write \"'duplicate'\""]
    assert result.returncode == 0
    assert lint(tmp_path, "pipeline: p\nreceive: {path: /p}\nrespond:\n  body: \"'duplicate'\"\n").stdout == ""


def test_strict_turns_warnings_into_errors_but_not_missing_env(tmp_path):
    text = "pipeline: p\nreceive: {path: /p}\nrespond:\n  body: 'duplicate'\n"
    assert lint(tmp_path, text, "--strict").returncode == 1
    env_only = ("pipeline: p\nreceive: {path: /p}\nsteps:\n  - id: c\n"
                "    call: {url: '${env:NOT_SET_ANYWHERE}/x'}\n")
    result = lint(tmp_path, env_only, "--strict")
    assert "missing-env" in result.stdout and result.returncode == 0
