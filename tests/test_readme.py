"""Every ``curl`` command in README.md works as written against the `make run` set-up.

The commands are taken from the ```sh / ```console blocks; only ``localhost:8080``
is rewritten to the test server's address. Each runs in ``bash`` with the real
``curl`` from the repository root (so ``@tests/data/...`` resolves as in the
README), after the lines before it in its block (such as computing a Stripe
signature into ``$sig``), against ``hookline serve pipelines`` wired to the
demo destination, and must exit 0 with a 2xx status and a JSON body.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

import dsl

from conftest import ROOT

README = ROOT / "README.md"
BLOCK = re.compile(r"^```(?:sh|console)[ \t]*\n(.*?)^```", re.M | re.S)


def curl_commands(text: str) -> list[tuple[str, str]]:
    """``(set-up, curl line)`` for each ``curl`` line of the shell blocks: the set-up is the
    block's other lines before it (a ``$ `` prompt and ``\\`` continuations allowed)."""
    commands = []
    for block in BLOCK.findall(text):
        setup = []
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("curl "):
                commands.append(("\n".join(setup), line))
            elif line and not line.startswith("#"):
                setup.append(line)
    return commands


WRITE_STATUS = r" -w '\n%{http_code}'"     # curl's own escape: the status on a last line of its own
STEPS = curl_commands(README.read_text())
COMMANDS = [command for _, command in STEPS]


def test_readme_has_a_curl_example_per_example_pipeline():
    for file in dsl.pipeline_files([ROOT / "pipelines"]):
        pattern = url_pattern(yaml.safe_load(file.read_text())["receive"]["path"])
        assert any(pattern.search(c + " ") for c in COMMANDS), f"README has no curl example for {file.name}"


def url_pattern(path: str) -> re.Pattern:
    """``/prices/{sku}`` → a regex for ``localhost:8080/prices/<anything>`` then ``?``, quote or space."""
    return re.compile("localhost:8080" + re.sub(r"\\\{\w+\\\}", "[^/?' ]+", re.escape(path)) + "[?' ]")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("setup, command", STEPS, ids=[c.split("localhost:8080", 1)[-1][:40] for c in COMMANDS])
def test_readme_curl_works(examples_server, setup, command):
    assert "localhost:8080" in command, "README examples address the `make run` server"
    address = examples_server.url.removeprefix("http://")
    script = f"set -eo pipefail\n{setup}\n{command}{WRITE_STATUS}"
    done = subprocess.run(["bash", "-c", script.replace("localhost:8080", address)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    output, _, status = done.stdout.rpartition("\n")
    assert status.startswith("2"), f"HTTP {status}: {output}"
    json.loads(output.splitlines()[-1])
