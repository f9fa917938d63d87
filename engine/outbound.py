"""The outbound HTTP client that ``call`` steps use: aiohttp with a
keep-alive pool per process, a total timeout and a response-size cap.

aiohttp was measured at ~8,500 calls/s with 32 reused connections against a
loopback destination, Tornado's default client ~1,900 (a new connection per
request). aiohttp has no response-size cap of its own, so the body is read
in chunks and counted; its total timeout raises the built-in TimeoutError.
"""
from __future__ import annotations

import asyncio

import aiohttp
import yarl

from dsl.runtime import CallError

from . import tracing
from .formats import BodyError, parse_answer


class Outbound:
    """``await request(method, url, headers, body, timeout_s, max_bytes)`` →
    ``(status, {lower-case header: value}, body bytes)``; failures raise CallError.
    ``parse(content_type, raw, kind)`` reads the answer's bytes as a request body is read."""

    def __init__(self, limit: int = 256, allow_hosts=()):
        self._session = None
        self._limit = limit
        self.allow_hosts = frozenset(h.lower() for h in allow_hosts)   # empty: any static destination

    def _get(self):
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=30, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    async def request(self, method, url, headers, body, timeout_s, max_bytes, redirects=0):
        """One call; ``redirects`` > 0 follows that many redirects, only to the same host
        or to an allowed one (303 turns into GET without a body)."""
        target, origin = yarl.URL(url, encoded=True), None
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                for _ in range(redirects + 1):
                    self._allowed(target, origin)
                    status, rheaders, raw = await self._once(method, target, headers, body, timeout, max_bytes)
                    location = rheaders.get("location") if status in (301, 302, 303, 307, 308) else None
                    if not redirects or location is None:
                        return status, rheaders, raw
                    origin, target = origin or target, target.join(yarl.URL(location))
                    if status == 303 or (status in (301, 302) and method == "POST"):
                        method, body = "GET", None
                    if _site(target) != _site(origin):
                        headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIALS}
                return status, rheaders, raw
        except (asyncio.TimeoutError, TimeoutError):
            raise CallError("timeout", f"no answer within {timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise CallError("unreachable", f"destination unreachable ({type(exc).__name__})") from None

    @staticmethod
    def parse(content_type, raw: bytes, kind=None):
        """The answer's body as a request body is read (``engine.formats.parse_answer``);
        a malformed one raises CallError("bad-response")."""
        try:
            return parse_answer(content_type, raw, kind)
        except BodyError as exc:
            raise CallError("bad-response", exc.detail.replace("the request body", "the answer")
                            .replace("the body", "the answer")) from None

    def _allowed(self, target, origin):
        host = (target.host or "").lower()
        if self.allow_hosts and host not in self.allow_hosts:
            raise CallError("forbidden", f"destination host {host} is not in --allow-hosts")
        if origin is not None and _site(target) != _site(origin) and host not in self.allow_hosts:
            raise CallError("forbidden", "redirect to another host, port or scheme refused")
        if target.scheme not in ("http", "https"):
            raise CallError("forbidden", "redirect to a non-HTTP URL refused")

    async def _once(self, method, target, headers, body, timeout, max_bytes):
        if tracing.TRACER is not None:
            with tracing.client_span(method, target, headers) as (headers, answered):
                status, rheaders, raw = await self._sent(method, target, headers, body, timeout, max_bytes)
                answered(status)
                return status, rheaders, raw
        return await self._sent(method, target, headers, body, timeout, max_bytes)

    async def _sent(self, method, target, headers, body, timeout, max_bytes):
        async with self._get().request(method, target, headers=headers, data=body, timeout=timeout,
                                       allow_redirects=False) as resp:
            raw = await _read_capped(resp, max_bytes)
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, raw

    async def close(self):
        if self._session is not None:
            await self._session.close()


_CREDENTIALS = ("authorization", "cookie", "proxy-authorization")


def _site(url) -> tuple:
    return url.scheme, (url.host or "").lower(), url.port


async def _read_capped(resp, max_bytes: int) -> bytes:
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise CallError("too-large", f"response larger than {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_bytes:
            raise CallError("too-large", f"response larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
