"""The compiled, immutable form of a pipeline, shared by concurrent requests.

    >>> Respond(200, (), None).status
    200
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType

from .runtime import evaluate
from .templates import to_text


@dataclass(frozen=True, slots=True)
class Respond:
    """A prepared response: status, header expressions and a body expression."""

    status: int
    headers: tuple          # ((name, Expression), ...)
    body: object            # Expression or None
    where: str = ""
    offered: tuple = ("application/json", "application/xml", "text/plain", "text/csv")
    content_type: str | None = None

    def render(self, ctx):
        """Evaluate headers and body for this request: (status, headers, body value)."""
        headers = [(name, to_text(evaluate(expr, ctx, self.where))) for name, expr in self.headers]
        body = evaluate(self.body, ctx, self.where) if self.body is not None else _NO_BODY
        return self.status, headers, body


_NO_BODY = object()
NO_BODY = _NO_BODY


@dataclass(frozen=True, slots=True)
class Check:
    """A compiled JSON Schema for one part of the request (body, query, ...)."""

    part: str
    validator: object       # jsonschema_rs validator
    coerce: tuple = ()      # ((name, ("integer", ...), is_array), ...): text to convert first
    source: str = ""        # the schema as JSON text (engine.openapi describes the request with it)

    def prepare(self, value):
        """Convert numeric/boolean text where the schema asks for those types (in place)."""
        if self.coerce and isinstance(value, dict):
            for name, types, is_array in self.coerce:
                item = value.get(name)
                if is_array and isinstance(item, str):
                    item = [item]
                if isinstance(item, str):
                    value[name] = coerce_text(item, types)
                elif isinstance(item, list):
                    value[name] = [coerce_text(v, types) if isinstance(v, str) else v for v in item]
        return value

    def errors(self, value) -> list[dict]:
        """``[]`` when valid, else ``[{pointer, message}]`` into the request."""
        try:
            if self.validator.is_valid(value):
                return []
            return [{"pointer": _pointer(self.part, e.instance_path), "message": e.message}
                    for e in self.validator.iter_errors(value)]
        except ValueError:   # jsonschema-rs: "Recursion limit reached" on very deep values
            return [{"pointer": "/" + self.part, "message": "the value nests too deeply to be validated"}]


_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_NUM = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")


def coerce_text(text: str, types):
    """``"42"`` → 42 for integer/number, ``"true"`` → True for boolean; else unchanged.

    >>> coerce_text("42", ("integer",)), coerce_text("4.5", ("number",)), coerce_text("x", ("integer",))
    (42, 4.5, 'x')
    """
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    if _INT.match(text) and ("integer" in types or "number" in types):
        return int(text)
    if "number" in types and _NUM.match(text):
        return float(text)
    return text


def _pointer(part: str, path) -> str:
    tokens = [str(t).replace("~", "~0").replace("/", "~1") for t in path]
    return "/" + "/".join([part, *tokens])


@dataclass(frozen=True, slots=True)
class Retry:
    """Exponential backoff with full jitter, bounded by attempts and age."""

    max_attempts: int
    initial_s: float
    max_s: float
    max_age_s: float

    def next_delay(self, attempt: int, random) -> float:
        """Delay after failed attempt number ``attempt`` (1-based): uniform in [0, cap].

        >>> Retry(12, 1, 3600, 86400).next_delay(3, lambda a, b: b)
        4.0
        """
        try:          # initial_s × 2^(attempt-1) without building the power: no overflow at any attempt
            cap = math.ldexp(self.initial_s, min(attempt - 1, 2100))   # 2^2100 × the least float > any float
        except OverflowError:
            cap = math.inf
        return random(0, self.max_s if cap >= self.max_s else cap)

    def gives_up(self, attempt: int, age_s: float) -> bool:
        return attempt >= self.max_attempts or age_s >= self.max_age_s

    def why_dead(self, attempt: int, age_s: float) -> str:
        """Which limit ``gives_up`` hit, for the job's last error."""
        if attempt >= self.max_attempts:
            return f"gave up after {attempt} attempts (max_attempts {self.max_attempts})"
        return f"gave up after {attempt} attempts: older than max_age_s ({_seconds(self.max_age_s)} s)"


def _seconds(value: float) -> str:
    """``259200`` for 259200.0, ``0.5`` for 0.5: never an exponent."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True, slots=True)
class AsyncBranch:
    """Steps run after the response from a persisted job, with retries."""

    id: str
    when: object            # Expression or None
    steps: tuple
    retry: Retry
    needs: tuple | None = None       # dsl.reads.branch_needs: what a stored job must hold; None: all


@dataclass(frozen=True, slots=True)
class Dedupe:
    key: object             # Expression: the delivery id; None: the verify preset's delivery id
    ttl_s: int


@dataclass(frozen=True, slots=True)
class History:
    """``receive.history``: how this pipeline's runs are recorded (engine/history.py).
    ``redact``: lower-case request header names whose values are never recorded;
    ``secrets``: the ``${env:}``/``${file:}`` values the pipeline was compiled with, masked
    wherever they would appear in a record; ``plain``: no secret to mask and no API key in
    the query string, so a run may be stored as a plain row (engine/history.py)."""

    keep: int
    max_age_s: int
    body_bytes: int
    redact: frozenset
    secrets: tuple = field(default=(), repr=False)
    plain: bool = False


@dataclass(frozen=True, slots=True)
class Cors:
    """Cross-origin access for browsers; headers prepared at load time."""

    origins: frozenset      # lower-case origins, or {"*"}
    methods: str            # "GET, POST"
    headers: str            # "Content-Type"
    max_age: str

    def allow(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None."""
        if origin is None:
            return None
        if "*" in self.origins:
            return "*"
        return origin if origin.lower() in self.origins else None


@dataclass(frozen=True, slots=True)
class Pipeline:
    """One compiled pipeline: what the runtime serves at one path."""

    name: str
    file: str
    description: str
    path: str
    methods: frozenset
    max_body_bytes: int
    checks: tuple           # (Check, ...) in order params, query, headers, body
    steps: tuple
    respond: Respond | None
    is_async: bool
    param_names: tuple = ()
    branches: tuple = ()    # (AsyncBranch, ...)
    dedupe: Dedupe | None = None
    verifier: object = None  # dsl.verify.Verifier, checked over the raw body first
    content_types: frozenset = frozenset()   # accepted media types; empty = every parseable type
    accept_raw: bool = False
    cors: Cors | None = None
    auth: object = None          # dsl.access.Auth
    allow_ips: object = None     # dsl.access.AllowIps
    rate_limit: object = None    # dsl.access.RateLimit
    persist: object = None       # dsl.reads.Selection: what of the context a branch job keeps
    version: str = ""            # dsl.compiler.version_of: its text and every file it reads, hashed
    reads: tuple = ()            # the files besides its own it reads (schemas, ${file:} secrets)
    source: bytes = b""          # dsl.sources.capture: what compiles this version again (no secrets)
    history: History | None = None   # receive.history; None: runs are not recorded

    @property
    def durable(self) -> bool:
        """True when a request must be persisted before it is answered."""
        return bool(self.branches) or self.dedupe is not None


def frozen_map(d: dict) -> MappingProxyType:
    return MappingProxyType(dict(d))
