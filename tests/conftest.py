"""Shared fixtures: real processes on real loopback ports.

``hookline_server(paths, env=...)`` starts ``hookline serve`` as a subprocess
and returns its base URL once it listens; ``demo_destination`` starts the
demo destination (pipelines/demo_destination.py) the example pipelines call.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, Phase, settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOOKLINE = [str(BIN / "hookline")] if (BIN / "hookline").exists() else [sys.executable, "-m", "engine"]
CORPUS = ROOT / "tests" / "data" / "corpus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc=None, timeout: float = 15.0) -> None:
    """Wait until ``url`` answers anything over HTTP (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"process exited with {proc.returncode}:\n{out}")
        try:
            requests.get(url, timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):   # not up yet, or the machine is busy
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class Proc:
    """A started process with its base URL; stopped with SIGTERM, then killed."""

    def __init__(self, args, env, url, cwd=ROOT):
        self.url = url
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=cwd, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_http(url + "/", self.proc, timeout=30)
        except BaseException:
            self.proc.kill()        # never leave a server behind when it did not come up
            self.proc.wait()
            raise

    def stop(self, timeout=10) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.proc.stdout.read() if self.proc.stdout else ""


class LogTail:
    """Drains a server's merged stdout/stderr in a thread (a full pipe would block the server
    mid-request); ``text(wait)`` after the process ended is all of it."""

    def __init__(self, proc):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._drain, args=(proc.proc.stdout,), daemon=True)
        self._thread.start()

    def _drain(self, stream):
        for line in iter(stream.readline, ""):
            self.lines.append(line)

    def text(self, wait: float = 0.0) -> str:
        self._thread.join(wait)
        return "".join(self.lines)


# Properties tested over HTTP: no shrink phase (shrinking one failure costs ~1,000 requests);
# the failure message carries the whole request, which is enough to write a plain test.
HTTP_PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, database=None,
                                  phases=(Phase.explicit, Phase.reuse, Phase.generate),
                                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                         HealthCheck.filter_too_much])


def refused(url: str) -> bool:
    """True when a new connection is not accepted: refused, or reset while connecting (the
    listening socket was closed with this connection still in its accept queue)."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


@dataclass
class Answer:
    line: bytes              # the first line that came back: never "HTTP/1.1 100 ..." for a refusal
    status: int
    headers: dict            # lower-case names
    body: bytes

    def problem(self, status: int, slug: str) -> dict:
        assert self.status == status, (self.line, self.body)
        assert self.headers["content-type"] == "application/problem+json" and "date" in self.headers, self.headers
        doc = json.loads(self.body)
        assert doc["type"] == "https://hookline.dev/problems/" + slug and doc["status"] == status, doc
        return doc


def read_answer(reader) -> Answer:
    """One response read as it comes (http.client would skip a 100 Continue silently)."""
    line = reader.readline()
    assert line.startswith(b"HTTP/1.1 "), line
    headers = {}
    for raw in iter(reader.readline, b"\r\n"):
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(line, int(line.split()[1]), headers, reader.read(int(headers.get("content-length", 0))))


def start_hookline(paths, env=None, workers=1, extra=(), tail=True) -> Proc:
    """``hookline serve PATHS`` on a free port, its output drained into ``.log`` (a LogTail:
    an access line per request would fill the pipe and block the server); ``tail=False``
    when the caller reads ``proc.proc.stdout`` itself."""
    port = free_port()
    if "--store" not in extra:   # never leave a hookline.db in the checkout
        extra = (*extra, "--store", f"sqlite:{tempfile.mkdtemp(prefix='hookline-test-')}/hookline.db")
    args = [*HOOKLINE, "serve", *map(str, paths), "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), *extra]
    proc = Proc(args, env or {}, f"http://127.0.0.1:{port}")
    if tail:
        proc.log = LogTail(proc)
    return proc


def serving(paths, env=None):
    """A module fixture's body: ``hookline serve PATHS`` with a ``session`` (keep-alive
    ``requests.Session``) and its output drained; stopped afterwards.

        @pytest.fixture(scope="module")
        def server():
            yield from serving([PIPELINES])
    """
    proc = start_hookline(paths, env=env, tail=True)
    proc.session = requests.Session()
    try:
        yield proc
    finally:
        proc.session.close()
        proc.stop()


def start_demo_destination() -> Proc:
    port = free_port()
    args = [sys.executable, str(ROOT / "pipelines" / "demo_destination.py"), "--port", str(port)]
    return Proc(args, {}, f"http://127.0.0.1:{port}")


def demo_env(demo_url: str) -> dict:
    """The environment the example pipelines read (as `make run` sets it)."""
    return {"ERP_URL": f"{demo_url}/erp", "ERP_TOKEN": "demo-erp-token",
            "PRICING_URL": f"{demo_url}/pricing",
            "BACKOFFICE_URL": f"{demo_url}/backoffice", "BACKOFFICE_TOKEN": "demo-bo-token",
            "STRIPE_WEBHOOK_SECRET": "whsec_demo_stripe_signing_secret"}


@pytest.fixture(scope="module")
def demo_destination():
    proc = start_demo_destination()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def examples_server(demo_destination):
    """`hookline serve pipelines` wired to the demo destination."""
    proc = start_hookline([ROOT / "pipelines"], env=demo_env(demo_destination.url))
    yield proc
    proc.stop()
