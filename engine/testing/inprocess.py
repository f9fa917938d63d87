"""A request through the server's own request path, without a socket.

:class:`engine.server.App` is the Tornado ``HTTPServerConnectionDelegate``
that ``hookline serve`` runs; :func:`send` plays Tornado's part — it opens an
exchange with ``app.start_request``, hands it the start line and headers, the
body, then ``finish()`` — over :class:`_Connection`, a stand-in for Tornado's
``HTTP1Connection`` that keeps the response instead of writing it. Routing,
the size and content-type checks, signature checks, parsing, validation, the
steps, the response and the commit of async branches' jobs are the server's
code, unchanged.

    >>> import asyncio, dsl
    >>> p, _ = dsl.compile_text("pipeline: hi\\nreceive: {path: /hi}\\nrespond: {body: request.body.a}\\n", "hi.yaml")
    >>> async def hello():
    ...     return await send(App([p]), "POST", "/hi", {"Content-Type": "application/json"}, b'{"a": 1}')
    >>> r = asyncio.run(hello())
    >>> r.status, r.headers["Content-Type"], r.body
    (200, 'application/json', b'1')
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tornado import httputil

from ..server import App

__all__ = ["App", "Response", "send", "settle"]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: httputil.HTTPHeaders
    body: bytes


class _Peer:
    remote_ip = "127.0.0.1"


class _Connection:
    """What the server's exchange calls on Tornado's connection, keeping the response."""

    context = _Peer()

    def __init__(self):
        self.answered = asyncio.get_running_loop().create_future()
        self.start = self.headers = None
        self.chunks: list[bytes] = []

    def set_max_body_size(self, size: int) -> None:
        pass        # the exchange counts the body against the pipeline's limit itself

    def write_headers(self, start_line, headers, chunk=None) -> None:
        self.start, self.headers = start_line, headers
        if chunk:
            self.chunks.append(chunk)

    def write(self, chunk) -> None:
        self.chunks.append(chunk)

    def finish(self) -> None:
        if not self.answered.done():
            self.answered.set_result(Response(self.start.code, self.headers, b"".join(self.chunks)))


async def send(app: App, method: str, target: str, headers, body: bytes = b"") -> Response:
    """One request to ``app``; returns once the server has answered it. ``Host`` and
    ``Content-Length`` are added when missing, as an HTTP client would."""
    fields = httputil.HTTPHeaders()
    for name, value in (headers.items() if hasattr(headers, "items") else headers):
        fields.add(name, value)
    fields.setdefault("Host", "localhost")
    if body and "Content-Length" not in fields:
        fields["Content-Length"] = str(len(body))
    conn = _Connection()
    exchange = app.start_request(None, conn)
    exchange.headers_received(httputil.RequestStartLine(method, target, "HTTP/1.1"), fields)
    if body:
        exchange.data_received(body)
    exchange.finish()
    return await conn.answered


async def settle(app: App) -> None:
    """Wait for the tasks the server still runs after answering (none, usually)."""
    while app.tasks:
        await asyncio.gather(*app.tasks, return_exceptions=True)
