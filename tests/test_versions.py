"""Every compiled pipeline has a version: a short hash of its text and every file it reads (issue 16)."""
from __future__ import annotations

import re

import dsl
from test_lint_cli import run

PIPELINE = """\
pipeline: versioned
receive: {path: /v}
validate:
  body: {$ref: schemas/body.json}
steps:
  - id: c
    call:
      url: "http://erp.test/x"
      headers: {Authorization: "Bearer ${file:secrets/token}"}
"""


def setup(tmp_path):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "schemas" / "body.json").write_text('{"type": "object"}')
    (tmp_path / "secrets" / "token").write_text("s3cret-token-value")
    (tmp_path / "v.yaml").write_text(PIPELINE)


def version(tmp_path) -> str:
    pipelines, problems = dsl.compile_paths([tmp_path])
    assert [d for d in problems if d.severity == "error"] == []
    return pipelines[0].version


def test_the_version_is_stable_and_changes_with_every_file_the_pipeline_reads(tmp_path):
    setup(tmp_path)
    first = version(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert version(tmp_path) == first
    (tmp_path / "schemas" / "body.json").write_text('{"type": "object", "required": ["id"]}')
    second = version(tmp_path)
    assert second != first
    (tmp_path / "secrets" / "token").write_text("another-token-value")
    third = version(tmp_path)
    assert third not in (first, second)
    (tmp_path / "v.yaml").write_text(PIPELINE.replace("/v}", "/w}"))
    assert version(tmp_path) not in (first, second, third)


def test_lint_versions_prints_name_version_file(tmp_path):
    setup(tmp_path)
    result = run("lint", "--versions", ".", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"versioned\t{version(tmp_path)}\tv.yaml"]
    assert "s3cret" not in result.stdout + result.stderr
