"""Every ``curl`` command in README.md works as written against the `make run` set-up.

The commands are taken from the ```sh / ```console blocks; only ``localhost:8080``
is rewritten to the test server's address. Each runs with the real ``curl``
from the repository root (so ``@tests/data/...`` resolves as in the README)
against ``hookline serve pipelines`` wired to the demo destination, and must
exit 0 with a 2xx status and a JSON body.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

README = ROOT / "README.md"
BLOCK = re.compile(r"^```(?:sh|console)[ \t]*\n(.*?)^```", re.M | re.S)


def curl_commands(text: str) -> list[str]:
    """The ``curl`` lines of the shell blocks (a ``$ `` prompt and ``\\`` continuations allowed)."""
    commands = []
    for block in BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("curl "):
                commands.append(line)
    return commands


COMMANDS = curl_commands(README.read_text())


def test_readme_has_a_curl_example_per_example_pipeline():
    for file in sorted((ROOT / "pipelines").glob("*.yaml")):
        pattern = url_pattern(yaml.safe_load(file.read_text())["receive"]["path"])
        assert any(pattern.search(c + " ") for c in COMMANDS), f"README has no curl example for {file.name}"


def url_pattern(path: str) -> re.Pattern:
    """``/prices/{sku}`` → a regex for ``localhost:8080/prices/<anything>`` then ``?``, quote or space."""
    return re.compile("localhost:8080" + re.sub(r"\\\{\w+\\\}", "[^/?' ]+", re.escape(path)) + "[?' ]")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("command", COMMANDS, ids=[c.split("localhost:8080", 1)[-1][:40] for c in COMMANDS])
def test_readme_curl_works(examples_server, command):
    assert "localhost:8080" in command, "README examples address the `make run` server"
    address = examples_server.url.removeprefix("http://")
    args = shlex.split(command.replace("localhost:8080", address)) + ["-w", r"\n%{http_code}"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    output, _, status = done.stdout.rpartition("\n")
    assert status.startswith("2"), f"HTTP {status}: {output}"
    json.loads(output.splitlines()[-1])
