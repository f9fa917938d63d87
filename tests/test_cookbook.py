"""Every recipe of docs/cookbook.md, served and run over HTTP.

A recipe is a ``### `` section with three marked blocks: ``<!-- input -->``
(the JSON body; ``<!-- input: form -->`` posts it as a form,
``<!-- input: <corpus file> -->`` posts that whole file, of which the block
must be an excerpt), a ``<!-- fragment -->`` YAML block with ``steps`` (and
``tables``), and ``<!-- output -->`` (the last step's output). Each becomes a
pipeline on its own path, all served by one ``hookline serve``; tables files
come from docs/examples/tables.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, serving

COOKBOOK = ROOT / "docs" / "cookbook.md"
BLOCK = re.compile(r"<!-- (input|fragment|output)(?:: (\S+))? -->\n```(\w+)\n(.*?)```", re.S)


@dataclass(frozen=True)
class Recipe:
    index: int
    title: str
    source: str | None      # None: the block is the body; "form"; or a corpus file
    shown: object
    fragment: dict
    output: object

    @property
    def path(self) -> str:
        return f"/cookbook/{self.index}"

    def pipeline(self) -> str:
        steps = self.fragment["steps"]
        doc = {"pipeline": f"recipe-{self.index}", "receive": {"path": self.path}, **self.fragment,
               "respond": {"body": f"steps.{steps[-1]['id']}"}}
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def recipes() -> list[Recipe]:
    found = []
    for i, section in enumerate(re.split(r"^### ", COOKBOOK.read_text(), flags=re.M)[1:], start=1):
        blocks = {kind: (arg, text) for kind, arg, _, text in BLOCK.findall(section)}
        assert set(blocks) == {"input", "fragment", "output"}, f"recipe {i}: {section.splitlines()[0]}"
        found.append(Recipe(i, section.splitlines()[0], blocks["input"][0] or None,
                            json.loads(blocks["input"][1]), yaml.safe_load(blocks["fragment"][1]),
                            json.loads(blocks["output"][1])))
    return found


RECIPES = recipes()


def test_there_are_at_least_fifteen_recipes():
    assert len(RECIPES) >= 15, [r.title for r in RECIPES]


def is_excerpt(part, whole) -> bool:
    """Every key of ``part`` is in ``whole`` with an excerpt of its value; a list's items in order."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and is_excerpt(v, whole[k]) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(part) <= len(whole) and all(map(is_excerpt, part, whole))
    return part == whole


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.source not in (None, "form")], ids=lambda r: r.title)
def test_the_shown_input_is_an_excerpt_of_the_posted_payload(recipe):
    assert is_excerpt(recipe.shown, json.loads((ROOT / recipe.source).read_text()))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cookbook")
    shutil.copytree(ROOT / "docs" / "examples" / "tables", folder / "tables")
    for recipe in RECIPES:
        (folder / f"recipe-{recipe.index:02d}.yaml").write_text(recipe.pipeline())
    yield from serving([folder])


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.title)
def test_recipe(server, recipe):
    url = server.url + recipe.path
    if recipe.source == "form":
        got = server.session.post(url, data=recipe.shown, timeout=30)
    elif recipe.source:
        got = server.session.post(url, data=(ROOT / recipe.source).read_bytes(),
                                  headers={"Content-Type": "application/json"}, timeout=30)
    else:
        got = server.session.post(url, json=recipe.shown, timeout=30)
    assert got.status_code == 200, got.text
    assert got.json() == recipe.output
