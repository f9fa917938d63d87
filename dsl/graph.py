"""The compiled, immutable form of a pipeline, shared by concurrent requests.

    >>> Respond(200, (), None).status
    200
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from .runtime import evaluate


@dataclass(frozen=True, slots=True)
class Respond:
    """A prepared response: status, header expressions and a body expression."""

    status: int
    headers: tuple          # ((name, Expression), ...)
    body: object            # Expression or None
    where: str = ""

    def render(self, ctx):
        """Evaluate headers and body for this request: (status, headers, body value)."""
        headers = [(name, _text(evaluate(expr, ctx, self.where))) for name, expr in self.headers]
        body = evaluate(self.body, ctx, self.where) if self.body is not None else _NO_BODY
        return self.status, headers, body


_NO_BODY = object()
NO_BODY = _NO_BODY


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    import orjson
    return orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class Check:
    """A compiled JSON Schema for one part of the request (body, query, ...)."""

    part: str
    validator: object       # jsonschema_rs validator

    def errors(self, value) -> list[dict]:
        """``[]`` when valid, else ``[{pointer, message}]`` into the request."""
        if self.validator.is_valid(value):
            return []
        return [{"pointer": _pointer(self.part, e.instance_path), "message": e.message}
                for e in self.validator.iter_errors(value)]


def _pointer(part: str, path) -> str:
    tokens = [str(t).replace("~", "~0").replace("/", "~1") for t in path]
    return "/" + "/".join([part, *tokens])


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


def frozen_map(d: dict) -> MappingProxyType:
    return MappingProxyType(dict(d))
