"""Editors see schemas/pipeline.schema.json.

Drives the real ``yaml-language-server`` (the engine behind the Red Hat YAML
extension for VS Code and Neovim's ``yamlls``) over LSP stdio and checks the
diagnostics it publishes for the fixtures in ``tests/editor/``.  Each fixture
binds the schema with the modeline

    # yaml-language-server: $schema=../../schemas/pipeline.schema.json

so this proves that the modeline path, the schema, and the server agree.  A
third test checks the settings-based mapping recommended in docs/editors.md
(``yaml.schemas: {"./schemas/pipeline.schema.json": "pipelines/*.yaml"}``).

The server is installed by ``tools/install-yaml-ls.sh`` into ``.tools/yaml-ls/``
(needs node + npm; a no-op once installed).  When that is impossible the tests
are skipped, unless ``CI=true``, where they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "pipeline.schema.json"
FIXTURES = REPO / "tests" / "editor"
INSTALLER = REPO / "tools" / "install-yaml-ls.sh"
SERVER_JS = REPO / ".tools" / "yaml-ls" / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
MODELINE = "# yaml-language-server: $schema=../../schemas/pipeline.schema.json"

DIAG_TIMEOUT = 30.0  # seconds to wait for the first useful publishDiagnostics
SETTLE = 1.5  # seconds of quiet after which an (empty) diagnostics list is final

SETTINGS: dict[str, Any] = {
    "yaml": {
        "validate": True,
        "schemas": {},
        "schemaStore": {"enable": False},
    }
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"yaml-language-server unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"yaml-language-server unavailable: {reason}")


# --------------------------------------------------------------------------- #
# Minimal LSP client                                                          #
# --------------------------------------------------------------------------- #


class LspClient:
    """Just enough JSON-RPC over stdio (Content-Length framing) to open files
    and collect textDocument/publishDiagnostics."""

    def __init__(self, argv: list[str], cwd: Path, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.proc = subprocess.Popen(
            argv,
            cwd=str(cwd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._next_id = 0
        self._responses: dict[int, dict[str, Any]] = {}
        # uri -> list of (monotonic time, diagnostics) in arrival order
        self._diagnostics: dict[str, list[tuple[float, list[dict[str, Any]]]]] = {}
        self.server_requests: list[str] = []
        self.stderr_lines: list[str] = []
        self._closed = False
        threading.Thread(target=self._read_stdout, name="lsp-stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="lsp-stderr", daemon=True).start()

    # -- wire ---------------------------------------------------------------- #

    def _send(self, message: dict[str, Any]) -> None:
        message = {"jsonrpc": "2.0", **message}
        body = json.dumps(message).encode("utf-8")
        header = f"Content-Length: {len(body)}\r\n\r\n".encode("ascii")
        with self._write_lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(header + body)
            self.proc.stdin.flush()

    def _read_stdout(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        try:
            while True:
                length = None
                while True:  # headers
                    line = stream.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    continue
                body = stream.read(length)
                if len(body) < length:
                    return
                self._dispatch(json.loads(body))
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip())

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "method" in msg and "id" in msg:  # server -> client request
            self.server_requests.append(msg["method"])
            self._send({"id": msg["id"], "result": self._answer(msg["method"], msg.get("params"))})
        elif "method" in msg:  # notification
            if msg["method"] == "textDocument/publishDiagnostics":
                params = msg["params"]
                with self._cond:
                    self._diagnostics.setdefault(params["uri"], []).append(
                        (time.monotonic(), params["diagnostics"])
                    )
                    self._cond.notify_all()
        else:  # response to one of our requests
            with self._cond:
                self._responses[msg["id"]] = msg
                self._cond.notify_all()

    def _answer(self, method: str, params: Any) -> Any:
        if method == "workspace/configuration":
            return [self.settings.get(item.get("section", ""), {}) for item in params["items"]]
        # client/registerCapability, window/workDoneProgress/create, ... -> null
        return None

    # -- API ----------------------------------------------------------------- #

    def request(self, method: str, params: Any, timeout: float = DIAG_TIMEOUT) -> Any:
        self._next_id += 1
        rid = self._next_id
        self._send({"id": rid, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._responses:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise TimeoutError(f"no response to {method}; server stderr:\n{self.stderr()}")
                self._cond.wait(remaining)
            msg = self._responses.pop(rid)
        if "error" in msg:
            raise RuntimeError(f"{method} failed: {msg['error']}")
        return msg.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})

    def publishes(self, uri: str) -> list[tuple[float, list[dict[str, Any]]]]:
        with self._cond:
            return list(self._diagnostics.get(uri, []))

    def wait_diagnostics(
        self,
        uri: str,
        done: Callable[[list[dict[str, Any]]], bool],
        *,
        after: int = 0,
        timeout: float = DIAG_TIMEOUT,
        settle: float = SETTLE,
    ) -> list[dict[str, Any]]:
        """Return the latest diagnostics for ``uri`` (ignoring the first
        ``after`` publishes) once ``done(latest)`` holds and no newer publish
        has arrived for ``settle`` seconds.  Raises on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                seen = self._diagnostics.get(uri, [])[after:]
                now = time.monotonic()
                if seen:
                    stamp, latest = seen[-1]
                    if done(latest) and now - stamp >= settle:
                        return latest
                if now >= deadline:
                    got = [d for _, d in seen]
                    raise TimeoutError(
                        f"diagnostics for {uri} did not settle within {timeout}s; "
                        f"publishes so far: {json.dumps(got, indent=1)}\nserver stderr:\n{self.stderr()}"
                    )
                if self._closed:
                    raise RuntimeError(f"language server exited early; stderr:\n{self.stderr()}")
                self._cond.wait(min(0.1, deadline - now))

    def stderr(self) -> str:
        return "\n".join(self.stderr_lines[-50:])

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.request("shutdown", None, timeout=5)
                self.notify("exit", None)
                self.proc.wait(timeout=5)
        except Exception:
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    if stream:
                        stream.close()
                except Exception:
                    pass


# --------------------------------------------------------------------------- #
# Fixtures                                                                    #
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="session")
def yaml_ls_argv() -> list[str]:
    node = shutil.which("node")
    if node is None:
        _unavailable("`node` is not on PATH (Node.js 20+ is needed)")
    if shutil.which("npm") is None and not SERVER_JS.exists():
        _unavailable("`npm` is not on PATH and .tools/yaml-ls/ is not installed")
    bash = shutil.which("bash")
    if bash is None:
        _unavailable("`bash` is not on PATH (needed for tools/install-yaml-ls.sh)")
    try:
        run = subprocess.run(
            [bash, str(INSTALLER)], cwd=REPO, capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        _unavailable("tools/install-yaml-ls.sh timed out after 300 s")
    if run.returncode != 0 or not SERVER_JS.exists():
        _unavailable(
            f"tools/install-yaml-ls.sh exited {run.returncode}:\n{run.stdout}\n{run.stderr}".rstrip()
        )
    return [node, str(SERVER_JS), "--stdio"]


@contextlib.contextmanager
def running_server(argv: list[str], settings: dict[str, Any]) -> Iterator[LspClient]:
    """Start yaml-language-server, do the initialize handshake, push ``settings``."""
    assert SCHEMA.is_file(), f"{SCHEMA.relative_to(REPO)} is missing; editors have nothing to load"
    client = LspClient(argv, REPO, settings)
    try:
        client.request(
            "initialize",
            {
                "processId": os.getpid(),
                "clientInfo": {"name": "hookline-pytest"},
                "rootUri": REPO.as_uri(),
                "rootPath": str(REPO),
                "workspaceFolders": [{"uri": REPO.as_uri(), "name": REPO.name}],
                "capabilities": {
                    "workspace": {
                        "configuration": True,
                        "workspaceFolders": True,
                        "didChangeConfiguration": {"dynamicRegistration": True},
                    },
                    "textDocument": {
                        "synchronization": {"dynamicRegistration": True, "didSave": True},
                        "publishDiagnostics": {"relatedInformation": True},
                    },
                },
                "initializationOptions": {},
            },
        )
        client.notify("initialized", {})
        client.notify("workspace/didChangeConfiguration", {"settings": settings})
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def lsp(yaml_ls_argv: list[str]) -> Iterator[LspClient]:
    with running_server(yaml_ls_argv, SETTINGS) as client:
        yield client


_versions: dict[str, int] = {}


def open_fixture(lsp: LspClient, name: str) -> tuple[str, str]:
    path = FIXTURES / name
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == MODELINE, f"{name} must start with the schema modeline"
    uri = path.as_uri()
    _versions[uri] = 1
    lsp.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}},
    )
    return uri, text


def line_of(text: str, needle: str) -> int:
    """0-based line number of the first line containing ``needle``."""
    for number, line in enumerate(text.splitlines()):
        if needle in line:
            return number
    raise AssertionError(f"fixture has no line containing {needle!r}")


def first_content_line(text: str) -> int:
    """0-based line of the first non-blank, non-comment line (root mapping)."""
    for number, line in enumerate(text.splitlines()):
        if line.strip() and not line.lstrip().startswith("#"):
            return number
    raise AssertionError("fixture has no content")


def describe(diags: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {d['range']['start']['line']}:{d['range']['start']['character']} "
        f"[{d.get('source', '?')}] {d['message']}"
        for d in diags
    ) or "  (none)"


# --------------------------------------------------------------------------- #
# Tests                                                                       #
# --------------------------------------------------------------------------- #


def test_bad_pipeline_has_diagnostics_on_the_expected_lines(lsp: LspClient) -> None:
    uri, text = open_fixture(lsp, "bad.yaml")

    expected = {
        # 0-based LSP line -> substring the message must contain
        "missing pipeline": (first_content_line(text), 'Missing property "pipeline"'),
        "wrong type": (line_of(text, "max_body_bytes:"), "Incorrect type"),
        "unknown key": (line_of(text, "recieve_typo:"), "Property recieve_typo is not allowed"),
    }

    def all_present(diags: list[dict[str, Any]]) -> bool:
        return all(
            any(d["range"]["start"]["line"] == line and needle in d["message"] for d in diags)
            for line, needle in expected.values()
        )

    try:
        diags = lsp.wait_diagnostics(uri, all_present, settle=0.3)
    except TimeoutError:
        diags = None
    if diags is None:
        latest = lsp.publishes(uri)
        got = latest[-1][1] if latest else []
        pytest.fail(
            f"expected (line, message) {list(expected.values())} in bad.yaml within "
            f"{DIAG_TIMEOUT:.0f}s; the server published:\n{describe(got)}",
            pytrace=False,
        )

    # Everything the server said comes from checking against *our* schema file,
    # not from a YAML syntax error or some other schema.
    for d in diags:
        assert d.get("source", "").startswith("yaml-schema"), describe([d])
        assert d.get("data", {}).get("schemaUri", [SCHEMA.as_uri()]) == [SCHEMA.as_uri()], d
    # Exactly the three planted mistakes, nothing more.
    assert len(diags) == len(expected), f"unexpected extra diagnostics:\n{describe(diags)}"
    wrong_type = next(d for d in diags if "Incorrect type" in d["message"])
    assert "integer" in wrong_type["message"], describe([wrong_type])


def test_good_pipeline_has_no_diagnostics(lsp: LspClient) -> None:
    uri, text = open_fixture(lsp, "good.yaml")
    diags = lsp.wait_diagnostics(uri, lambda d: True, settle=SETTLE)
    assert diags == [], f"good.yaml should be clean; the server published:\n{describe(diags)}"
    # (An error arriving after the settle period would still be caught below:
    # the next publish must contain exactly the one planted problem.)

    # Clean must mean "checked against the schema", not "no schema attached":
    # introduce an unknown key and the same server must flag it.
    before = len(lsp.publishes(uri))
    _versions[uri] += 1
    lsp.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": uri, "version": _versions[uri]},
            "contentChanges": [{"text": text + "not_a_key: true\n"}],
        },
    )
    typo_line = len(text.splitlines())
    try:
        diags = lsp.wait_diagnostics(
            uri,
            lambda ds: any(
                d["range"]["start"]["line"] == typo_line and "not_a_key is not allowed" in d["message"]
                for d in ds
            ),
            after=before,
            settle=0.3,
        )
    except TimeoutError:
        diags = None
    if diags is None:
        latest = lsp.publishes(uri)[before:]
        got = latest[-1][1] if latest else []
        pytest.fail(
            f"good.yaml + 'not_a_key: true' on line {typo_line} was not flagged, so the schema is "
            f"not attached to good.yaml; the server published:\n{describe(got)}",
            pytrace=False,
        )
    assert len(diags) == 1, describe(diags)


def test_yaml_schemas_setting_maps_pipelines_dir(yaml_ls_argv: list[str]) -> None:
    """The editor setting recommended in docs/editors.md (no modeline needed):
    "yaml.schemas": {"./schemas/pipeline.schema.json": "pipelines/*.yaml"}."""
    settings = {
        "yaml": {
            **SETTINGS["yaml"],
            "schemas": {"./schemas/pipeline.schema.json": "pipelines/*.yaml"},
        }
    }
    # bad.yaml without its modeline, opened as in-memory documents (nothing is
    # written to disk): one inside pipelines/, one outside it.
    body = "\n".join((FIXTURES / "bad.yaml").read_text(encoding="utf-8").splitlines()[1:]) + "\n"
    inside = (REPO / "pipelines" / "zz-editor-test-unsaved.yaml").as_uri()
    outside = (REPO / "tests" / "editor" / "zz-editor-test-unsaved.yaml").as_uri()
    with running_server(yaml_ls_argv, settings) as client:
        for uri in (inside, outside):
            client.notify(
                "textDocument/didOpen",
                {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": body}},
            )
        try:
            diags = client.wait_diagnostics(
                inside, lambda ds: any("recieve_typo is not allowed" in d["message"] for d in ds), settle=0.3
            )
        except TimeoutError:
            diags = None
        if diags is None:
            latest = client.publishes(inside)
            pytest.fail(
                "yaml.schemas mapping did not apply the schema to pipelines/*.yaml; the server published:\n"
                + describe(latest[-1][1] if latest else []),
                pytrace=False,
            )
        messages = sorted(d["message"] for d in diags)
        assert len(messages) == 3, describe(diags)
        assert client.wait_diagnostics(outside, lambda d: True) == [], "schema leaked outside pipelines/"
