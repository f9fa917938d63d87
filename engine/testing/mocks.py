"""Outbound calls answered by a test's mocks instead of the network: the
transport a ``call`` step awaits as ``ctx.http`` (the same contract as
:class:`engine.outbound.Outbound`).

    >>> import asyncio
    >>> mocks = Mocks([{"match": {"url": "http://erp.test/stock"},
    ...                 "responses": [{"fail": "timeout"}, {"status": 201, "body": {"id": 7}}]}])
    >>> async def twice():
    ...     for _ in range(2):
    ...         try:
    ...             print(await mocks.request("POST", "http://erp.test/stock?x=1", {}, b"{}", 5, 1000))
    ...         except CallError as exc:
    ...             print(exc.kind)
    >>> asyncio.run(twice())
    timeout
    (201, {'content-type': 'application/json'}, b'{"id":7}')
    >>> [c["url"] for c in mocks.calls], mocks.unmatched
    (['http://erp.test/stock?x=1', 'http://erp.test/stock?x=1'], [])

A call no mock matches fails as ``unreachable`` and is kept in ``unmatched``:
the test fails, naming the call. :class:`Echo` answers every call with what
it was sent (``hookline run`` and ``hookline fuzz`` without mocks).
"""
from __future__ import annotations

import orjson

from dsl.runtime import CallError

from ..outbound import Outbound

_DETAIL = {"timeout": "no answer within {timeout:g} s (mocked)", "unreachable": "destination unreachable (mocked)"}


class _Transport:
    """What a ``call`` step needs of ``ctx.http`` besides ``request``: reading an
    answer's bytes (``parse``) exactly as the real client does."""

    parse = staticmethod(Outbound.parse)


class Mocks(_Transport):
    """``request(...)`` answers from the first mock whose ``match`` fits; every call is
    recorded in ``calls`` as ``{method, url, headers, body}``."""

    def __init__(self, mocks):
        self.mocks = [dict(m) for m in mocks]
        self.used = [0] * len(self.mocks)
        self.calls: list[dict] = []
        self.unmatched: list[str] = []

    async def request(self, method, url, headers, body, timeout_s, max_bytes, redirects=0):
        self.calls.append(call_record(method, url, headers, body))
        index = next((i for i, m in enumerate(self.mocks) if _matches(m["match"], method, url)), None)
        if index is None:
            self.unmatched.append(f"{method} {url}")
            raise CallError("unreachable", f"no mock matches {method} {url}")
        answer = self._next(index)
        if "fail" in answer:
            raise CallError(answer["fail"], _DETAIL[answer["fail"]].format(timeout=timeout_s))
        status, rheaders, raw = encoded(answer)
        if len(raw) > max_bytes:
            raise CallError("too-large", f"response larger than {max_bytes} bytes")
        return status, rheaders, raw

    def _next(self, index) -> dict:
        mock = self.mocks[index]
        self.used[index] += 1
        if "responses" in mock:
            return mock["responses"][min(self.used[index], len(mock["responses"])) - 1]
        return {"fail": mock["fail"]} if "fail" in mock else mock["respond"]


class Echo(_Transport):
    """Answers every call 200 with a JSON echo of it: ``{method, url, headers, body}``."""

    def __init__(self):
        self.calls: list[dict] = []
        self.unmatched: list[str] = []

    async def request(self, method, url, headers, body, timeout_s, max_bytes, redirects=0):
        record = call_record(method, url, headers, body)
        self.calls.append(record)
        return 200, {"content-type": "application/json"}, orjson.dumps(record)


def call_record(method, url, headers, body) -> dict:
    """A call as tests compare it: the body parsed when it is JSON, else text."""
    return {"method": method, "url": url, "headers": dict(headers), "body": _parsed(body)}


def _parsed(body):
    if body is None:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


def _matches(match, method, url) -> bool:
    if match.get("method", method).upper() != method.upper():
        return False
    want = match["url"]
    return url == want or ("?" not in want and url.partition("?")[0] == want)


def encoded(answer) -> tuple[int, dict, bytes]:
    """A mock's answer as a destination sends it: ``(status, lower-case headers, bytes)``."""
    headers = {k.lower(): v for k, v in answer.get("headers", {}).items()}
    if "raw" in answer:
        raw = answer["raw"].encode()
    else:
        raw = orjson.dumps(answer["body"]) if "body" in answer else b""
        if raw:
            headers.setdefault("content-type", "application/json")
    return answer.get("status", 200), headers, raw
