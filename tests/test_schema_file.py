"""schemas/pipeline.schema.json: generated from the DSL spec, committed, guarded.

The committed file must equal ``dsl.schema_text()``; when the spec changes,
regenerate it with ``make schema`` (or
``.venv/bin/hookline schema > schemas/pipeline.schema.json``). Editors read
the file, so it must also be a well-formed draft-07 schema that documents
every key, accepts the shipped pipelines and rejects the golden cases whose
only mistakes are shape mistakes.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import dsl

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schemas" / "pipeline.schema.json"
DIAGNOSTICS = ROOT / "tests" / "diagnostics"
STALE = ("schemas/pipeline.schema.json is stale; run: make schema "
         "(or .venv/bin/hookline schema > schemas/pipeline.schema.json)")
# Codes only the shape check (the schema) emits.
SHAPE_CODES = {"unknown-key", "missing-key", "wrong-type", "bad-value", "bad-step"}


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def walk(node, path=""):
    """Every dict in the schema with its JSON pointer, parents first."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def deref(schema: dict, node: dict) -> dict:
    """Follow local ``$ref``s (``#/definitions/x``) to their target."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 10:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node, seen = target, seen + 1
    return node


def properties(schema: dict):
    """``(pointer, subschema)`` of every property at every level, refs followed."""
    for path, node in walk(schema):
        if {"defaultSnippets", "examples", "default", "enum"} & set(path.split("/")):
            continue  # data, not schema
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict):
                yield f"{path}/properties/{name}", deref(schema, sub)


def test_committed_schema_is_not_stale():
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed == dsl.schema_text(), STALE


def test_declares_draft_07(schema):
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_is_a_valid_draft_07_schema(schema):
    jsonschema.Draft7Validator.check_schema(schema)


def test_every_property_has_description_and_markdown_description(schema):
    found = list(properties(schema))
    assert len(found) > 20, "the walk found too few properties to mean anything"
    undocumented = [path for path, sub in found
                    if not (sub.get("description") and sub.get("markdownDescription"))]
    assert undocumented == []


def test_every_enum_is_non_empty_and_unique(schema):
    enums = [(path, node["enum"]) for path, node in walk(schema) if "enum" in node]
    assert enums, "the schema has enums (methods, on_error)"
    for path, values in enums:
        assert isinstance(values, list) and values, f"{path}: empty enum"
        assert len(values) == len({json.dumps(v) for v in values}), f"{path}: repeated values"


def test_defaults_and_examples_fit_their_own_schema(schema):
    for path, node in walk(schema):
        if "$ref" in json.dumps(node) or path.endswith("/defaultSnippets"):
            continue
        validator = jsonschema.Draft7Validator(node)
        for value in ([node["default"]] if "default" in node else []) + node.get("examples", []):
            assert validator.is_valid(value), f"{path}: {value!r} does not fit"


SHIPPED = dsl.pipeline_files([ROOT / "pipelines"])     # not the NAME.test.yaml beside them


def test_there_are_shipped_pipelines():
    assert SHIPPED


@pytest.mark.parametrize("pipeline", SHIPPED, ids=lambda p: p.name)
def test_shipped_pipelines_validate(schema, pipeline):
    data = yaml.safe_load(pipeline.read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(data)]
    assert errors == []


def shape_only_cases() -> list[str]:
    """Golden cases whose expected diagnostics all come from the shape check."""
    cases = []
    for out in sorted(DIAGNOSTICS.glob("*.out")):
        codes = re.findall(r"^\S+?:\d+:\d+: (?:warning: )?([a-z-]+):", out.read_text(), re.M)
        if codes and set(codes) <= SHAPE_CODES:
            cases.append(out.stem)
    return cases


def test_there_are_shape_only_cases():
    assert len(shape_only_cases()) >= 4, shape_only_cases()


@pytest.mark.parametrize("case", shape_only_cases())
def test_shape_only_golden_cases_are_rejected(schema, case):
    data = yaml.safe_load((DIAGNOSTICS / f"{case}.yaml").read_text(encoding="utf-8"))
    assert not jsonschema.Draft7Validator(schema).is_valid(data), f"the schema accepts {case}.yaml"
