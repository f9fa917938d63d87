"""What a compiled graph needs while it runs one request.

The graph is frozen and shared; everything that belongs to one request lives
in a :class:`Context`. The engine builds the context, then calls
:func:`run_steps` (all steps synchronous) or :func:`arun_steps`.

    >>> ctx = Context({"request": {"body": {"a": 1}}, "steps": {}})
    >>> ctx.data["steps"]
    {}
"""
from __future__ import annotations

import json
import math

import jmespath.exceptions
import orjson


class StepFailed(Exception):
    """A step could not produce its output for this request.

    ``status`` and ``title`` are for the client; ``detail`` is safe to show
    (it never holds secrets or stack traces); ``log`` is for the log only.
    """

    def __init__(self, status: int, title: str, detail: str, log: str = ""):
        super().__init__(detail)
        self.status, self.title, self.detail, self.log = status, title, detail, log or detail


class DeliveryFailed(Exception):
    """An async branch attempt failed: retried later when ``retryable``
    (5xx, 429, timeout, unreachable), else dead-lettered with ``detail``."""

    def __init__(self, retryable: bool, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.retryable, self.detail, self.retry_after = retryable, detail, retry_after


class Context:
    """Per-request (or per-job) state: the expression document and the response, once chosen.

    ``job`` is set when an async branch runs from a persisted job: calls then
    carry ``Idempotency-Key: <job>.<step>`` and failures raise DeliveryFailed.
    ``trace`` is a list while the run history records this request: each step that ran
    and each outbound call add an entry (engine/history.py)."""

    __slots__ = ("data", "steps", "http", "response", "run_id", "job", "trace")

    def __init__(self, data: dict, http=None, run_id: str = "", job: str = ""):
        self.data, self.steps, self.http, self.run_id, self.job = data, data["steps"], http, run_id, job
        self.response = self.trace = None


def evaluate(expr, ctx: Context, where: str):
    """Evaluate a compiled expression; a type error becomes a StepFailed (422).

    An error with a ``public`` text (Hookline's functions: it names the
    function and the argument, never the value) shows it to the client."""
    try:
        return expr.search(ctx.data)
    except (jmespath.exceptions.JMESPathError, RecursionError) as exc:
        said = getattr(exc, "public", None) or "the expression could not be evaluated on this request"
        raise StepFailed(422, "Expression failed", f"{where}: {said}", f"{where}: {exc}") from None


def truthy(value) -> bool:
    """JMESPath truth: false, null, empty string, list and object are false."""
    return not (value is None or value is False or value == "" or value == [] or value == {})


def run_steps(steps, ctx: Context) -> None:
    """Run synchronous steps in order until one chooses the response."""
    for step in steps:
        step.run(ctx)
        if ctx.response is not None:
            return


async def arun_steps(steps, ctx: Context) -> None:
    """Run steps in order, awaiting the asynchronous ones."""
    for step in steps:
        if step.is_async:
            await step.arun(ctx)
        else:
            step.run(ctx)
        if ctx.response is not None:
            return


class CallError(Exception):
    """Raised by the engine's outbound client: ``kind`` is timeout, unreachable, too-large, forbidden
    or (from ``parse``, an answer that does not parse) bad-response."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def dumps_json(value) -> bytes:
    """JSON bytes: orjson, or the standard library where orjson refuses
    (over 255 levels, integers over 64 bits); too deep even for that → 422.
    A NaN or an infinity (only an expression can make one: ``to_number('NaN')``,
    a ``sum`` past 1.8e308) is written ``null`` either way, as JSON has no spelling for it.

        >>> dumps_json([2 ** 64, float("nan")])
        b'[18446744073709551616,null]'
    """
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return _stdlib_dumps(value)
    except UnicodeEncodeError:
        raise StepFailed(422, "Not serialisable", "a JSON value holds a lone surrogate, which is not "
                         "Unicode text and cannot be written") from None
    except ValueError as exc:
        if "float values" not in str(exc):      # "Out of range float values are not JSON compliant"
            raise _unwritable() from None
    try:
        return _stdlib_dumps(_finite(value))
    except (RecursionError, ValueError, TypeError):
        raise _unwritable() from None


def _stdlib_dumps(value) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (RecursionError, TypeError):
        raise _unwritable() from None


def _unwritable() -> StepFailed:
    return StepFailed(422, "Not serialisable", "a JSON value nests too deeply to be written")


def _finite(value):
    """``value`` with every NaN and infinity replaced by None (the standard library's path)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
