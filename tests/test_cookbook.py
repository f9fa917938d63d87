"""Every recipe of docs/cookbook.md, served and run over HTTP.

A recipe is a ``### `` section with three marked blocks: ``<!-- input -->``
(the JSON body; ``<!-- input: form -->`` posts it as a form,
``<!-- input: <corpus file> -->`` posts that whole file, of which the block
must be an excerpt), a ``<!-- fragment -->`` YAML block with ``steps`` (and
``tables``), and ``<!-- output -->`` (the last step's output). Each becomes a
pipeline on its own path, all served by one ``hookline serve``; tables files
come from docs/examples/tables.

A recipe whose steps ``call`` ``${env:ERP_URL}`` also has ``<!-- sent -->``
and ``<!-- answer -->`` XML blocks: a local ERP checks that it receives the
``sent`` document (compared canonically: the page may indent it) and
answers ``answer`` as ``text/xml``.
"""
from __future__ import annotations

import json
import re
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.etree.ElementTree import canonicalize

import pytest
import yaml

from conftest import ROOT, serving

COOKBOOK = ROOT / "docs" / "cookbook.md"
BLOCK = re.compile(r"<!-- (input|fragment|output|sent|answer)(?:: (\S+))? -->\n```(\w+)\n(.*?)```", re.S)


@dataclass(frozen=True)
class Recipe:
    index: int
    title: str
    source: str | None      # None: the block is the body; "form"; or a corpus file
    shown: object
    fragment: dict
    output: object
    sent: str = ""          # the XML the recipe's ERP must receive
    answer: str = ""        # what it answers

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
        assert {"input", "fragment", "output"} <= set(blocks) and len(blocks) in (3, 5), \
            f"recipe {i}: {section.splitlines()[0]}"
        found.append(Recipe(i, section.splitlines()[0], blocks["input"][0] or None,
                            json.loads(blocks["input"][1]), yaml.safe_load(blocks["fragment"][1]),
                            json.loads(blocks["output"][1]), blocks.get("sent", ("", ""))[1],
                            blocks.get("answer", ("", ""))[1]))
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


class Erp:
    """The recipes' ERP: answers each recipe's ``answer`` and keeps what it received."""

    def __init__(self):
        self.received: dict[str, list[bytes]] = {}
        erp = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                erp.received.setdefault(self.path, []).append(body)
                answer = erp.answers.get(self.path, "").encode()
                self.send_response(200 if answer else 404)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.answers: dict[str, str] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _erp_path(recipe: Recipe) -> str:
    url = next(s["call"]["url"] for s in recipe.fragment["steps"] if "call" in s)
    return url.replace("${env:ERP_URL}", "")


@pytest.fixture(scope="module")
def erp():
    server = Erp()
    server.answers = {_erp_path(r): r.answer for r in RECIPES if r.answer}
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, erp):
    folder = tmp_path_factory.mktemp("cookbook")
    shutil.copytree(ROOT / "docs" / "examples" / "tables", folder / "tables")
    for recipe in RECIPES:
        (folder / f"recipe-{recipe.index:02d}.yaml").write_text(recipe.pipeline())
    yield from serving([folder], env={"ERP_URL": erp.url})


def canonical(xml: bytes | str) -> str:
    text = xml.decode() if isinstance(xml, bytes) else xml
    return canonicalize(re.sub(r"^<\?xml[^>]*\?>\s*", "", text), strip_text=True)


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


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.sent], ids=lambda r: r.title)
def test_the_destination_receives_the_document_shown(server, erp, recipe):
    erp.received.clear()
    got = server.session.post(server.url + recipe.path, data=(ROOT / recipe.source).read_bytes(),
                              headers={"Content-Type": "application/json"}, timeout=30)
    assert got.status_code == 200, got.text
    (sent,) = erp.received[_erp_path(recipe)]
    assert sent.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    assert canonical(sent) == canonical(recipe.sent)
