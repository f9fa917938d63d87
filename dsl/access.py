"""Who may call a pipeline: ``receive.auth``, ``receive.allow_ips`` and
``receive.rate_limit``, compiled once at load time.

    >>> a = Auth("bearer", (b"Bearer s3cret-token",), "", "orders")
    >>> a.check({"authorization": "Bearer s3cret-token"}, {}) is None
    True
"""
from __future__ import annotations

import base64
import hmac
import ipaddress
import math
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a request was refused: status, problem slug, safe detail, extra headers."""

    status: int
    slug: str
    title: str
    detail: str
    headers: tuple = ()


@dataclass(frozen=True, slots=True)
class Auth:
    """One scheme: bearer tokens, HTTP Basic pairs, or an API key in a header or query parameter.

    ``expected`` holds the exact credential strings a request may present; each is
    compared in constant time, and every candidate is tried (no early exit)."""

    scheme: str             # bearer | basic | header | query
    expected: tuple         # bytes: "Bearer <t>", "Basic <b64>", or the raw key
    name: str               # header or query parameter name for api keys (lower-case header)
    realm: str

    def check(self, headers, query) -> Denied | None:
        presented = self._presented(headers, query)
        if presented is not None and _any_equal(presented.encode("utf-8", "replace"), self.expected):
            return None
        what = "missing" if presented is None else "not accepted"
        return Denied(401, "unauthorized", "Unauthorized", f"credentials {what} ({self._hint()})",
                      self._challenge())

    def _presented(self, headers, query):
        if self.scheme in ("bearer", "basic"):
            value = headers.get("authorization")
            if isinstance(value, str):      # the scheme name is case-insensitive (RFC 9110 §11.1)
                scheme, _, rest = value.strip().partition(" ")
                value = f"{scheme.capitalize()} {rest.strip()}"
        elif self.scheme == "header":
            value = headers.get(self.name)
        else:
            value = query.get(self.name)
        return value if isinstance(value, str) else None

    def _hint(self) -> str:
        return {"bearer": "send Authorization: Bearer <token>", "basic": "send HTTP Basic credentials",
                "header": f"send the API key in the {self.name} header",
                "query": f"send the API key as the {self.name} query parameter"}[self.scheme]

    def _challenge(self) -> tuple:
        if self.scheme in ("bearer", "basic"):
            return (("WWW-Authenticate", f'{self.scheme.capitalize()} realm="{self.realm}"'),)
        return ()


def _any_equal(presented: bytes, expected) -> bool:
    ok = False
    for candidate in expected:
        ok |= hmac.compare_digest(presented, candidate)
    return ok


def basic_credential(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@dataclass(frozen=True, slots=True)
class AllowIps:
    """A CIDR allow-list; the client address comes from the socket, or from
    X-Forwarded-For when the socket peer is a trusted proxy."""

    networks: tuple

    def check(self, client: str | None) -> Denied | None:
        try:
            address = ipaddress.ip_address(client or "")
        except ValueError:
            address = None
        if address is not None and any(address in net for net in self.networks):
            return None
        return Denied(403, "forbidden", "Forbidden", "this client address may not call this endpoint")


def parse_networks(values) -> tuple[tuple, list[tuple[int, str]]]:
    """CIDR strings → networks, and ``(index, problem)`` for the bad ones."""
    nets, problems = [], []
    for i, value in enumerate(values):
        try:
            nets.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            problems.append((i, f"{value!r} is not an IP address or CIDR network"))
    return tuple(nets), problems


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Token bucket per pipeline and key (the client address, or an expression over the request).

    The buckets are per process (a mutable dict owned by this frozen rule, the one
    piece of shared state; Tornado runs one thread per process, so no lock)."""

    rate: float             # tokens per second
    burst: int
    key: object             # Expression or None (client address)
    buckets: dict = field(default_factory=dict, compare=False, repr=False)

    def take(self, key: str, now: float | None = None) -> Denied | None:
        now = time.monotonic() if now is None else now
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) > 100_000:
                self.buckets.clear()         # bounded memory under a flood of keys
            bucket = self.buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        wait = math.ceil((1 - bucket.tokens) / self.rate)
        return Denied(429, "rate-limited", "Too Many Requests",
                      f"more than {self.rate:g} requests per second; retry after {wait} s",
                      (("Retry-After", str(wait)),))
