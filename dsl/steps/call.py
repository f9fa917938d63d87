"""``call``: an outbound HTTP request to a destination app.

    - id: stock
      call:
        method: POST
        url: "${env:ERP_URL}/inventory/{request.params.shop}/reserve"
        headers: {Authorization: "Bearer ${env:ERP_TOKEN}"}
        body: steps.order
        timeout_s: 5

The output (``steps.stock``) is ``{status, headers, body}``: headers with
lower-case names, the body parsed when the destination answers JSON, else
text. A destination that cannot be reached, times out or answers 5xx ends the
request with 502/504, unless ``on_error: continue``: then the output has
``status`` 0 (or the 5xx), ``body`` null and ``error`` saying what happened,
for a later ``route`` to act on. 4xx answers are outputs, to route on.

In an async branch (a persisted job) every call carries
``Idempotency-Key: <job id>.<step id>``; unreachable, timeout, 429 and 5xx
are retried with backoff (honouring ``Retry-After``) and any other 4xx
dead-letters the job — unless ``on_error: continue``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

import orjson

from ..runtime import CallError, DeliveryFailed, StepFailed, dumps_json, evaluate
from ..spec import METHODS, doc, expression, strict
from ..templates import to_text

KEY = "call"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_RESPONSE = 10 * 1024 * 1024
SCHEMA = doc(strict({
    "method": doc({"type": "string", "enum": list(METHODS)},
                  "HTTP method; default POST when `body` is set, else GET."),
    "url": doc({"type": "string", "minLength": 1},
               "Destination URL. `${env:NAME}`/`${file:PATH}` are read at load time; "
               "`{expression}` inserts a percent-encoded value from the request into the path or query. "
               "Scheme, host and port can never come from the request.",
               examples=["${env:ERP_URL}/prices/{request.params.sku}"]),
    "query": doc({"type": "object", "additionalProperties": expression("Query parameter value.")},
                 "Query parameters: name → expression (a list value repeats the parameter)."),
    "headers": doc({"type": "object", "additionalProperties": {"type": "string"}},
                   "Request headers: name → text; `${env:…}`, `${file:…}` and `{expression}` allowed."),
    "body": expression("Request body, sent as JSON."),
    "timeout_s": doc({"type": "number", "exclusiveMinimum": 0, "default": DEFAULT_TIMEOUT_S},
                     "Total time allowed for the call, in seconds (default 10); then 504."),
    "on_error": doc({"type": "string", "enum": ["fail", "continue"], "default": "fail"},
                    "`fail` (default): unreachable/timeout/5xx ends the request with 502/504. "
                    "`continue`: the failure becomes the step's output, for a `route` to handle."),
    "follow_redirects": doc({"type": "integer", "minimum": 0, "maximum": 10, "default": 0},
                            "Redirects to follow (default 0: a 3xx is the output). Only to the same host "
                            "or a host in `serve --allow-hosts`."),
    "max_response_bytes": doc({"type": "integer", "minimum": 1, "default": DEFAULT_MAX_RESPONSE},
                              "Largest destination response accepted (default 10 MiB); larger is a 502."),
}, required=["url"]), "Call a destination app over HTTP.")
SNIPPET = {"label": "call step", "body": {"id": "${1:name}", "call": {
    "method": "POST", "url": "\\${env:${2:ERP_URL}}/${3:path}", "body": "${4:request.body}"}}}


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    method: str
    url: object            # Template
    query: tuple           # ((name, Expression), ...)
    headers: tuple         # ((name, Template), ...)
    body: object           # Expression or None
    timeout_s: float
    fail: bool
    max_bytes: int
    where: str
    redirects: int = 0
    is_async = True

    def run(self, ctx):  # pragma: no cover - the runner always awaits arun
        raise RuntimeError("call steps are asynchronous")

    async def arun(self, ctx) -> None:
        url, headers, body = self._request(ctx)
        try:
            status, rheaders, raw = await ctx.http.request(
                self.method, url, headers, body, self.timeout_s, self.max_bytes, self.redirects)
        except CallError as exc:
            ctx.steps[self.id] = self._failed(ctx, exc.kind, 0, exc.detail)
            return
        if status >= 500 or (ctx.job and status >= 400):
            ctx.steps[self.id] = self._failed(ctx, "status", status, f"destination answered {status}",
                                              rheaders.get("retry-after"))
            return
        ctx.steps[self.id] = {"status": status, "headers": rheaders, "body": _parse(rheaders, raw)}

    def _request(self, ctx):
        data = ctx.data
        url = self.url.render(data)
        query = [(k, v) for name, expr in self.query for k, v in _pairs(name, evaluate(expr, ctx, self.where))]
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        headers = {name: _one_line(t.render(data)) for name, t in self.headers}
        named = {name.lower() for name in headers}
        if ctx.job and "idempotency-key" not in named:
            headers["Idempotency-Key"] = f"{ctx.job}.{self.id}"
        body = None
        if self.body is not None:
            body = dumps_json(evaluate(self.body, ctx, self.where))
            if "content-type" not in named:
                headers["Content-Type"] = "application/json"
        return url, headers, body

    def _failed(self, ctx, kind, status, detail, retry_after=None):
        if ctx.job and self.fail:
            retryable = kind in ("timeout", "unreachable") or status == 429 or status >= 500
            raise DeliveryFailed(retryable, f"{self.where}: {detail}", _seconds(retry_after))
        if self.fail:
            code = 504 if kind == "timeout" else 502
            title = "Destination timed out" if kind == "timeout" else "Destination failed"
            raise StepFailed(code, title, f"{self.where}: {detail}")
        return {"status": status, "headers": {}, "body": None, "error": kind}


def _seconds(value) -> float | None:
    """A Retry-After value in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _pairs(name, value):
    if isinstance(value, list):
        return [(name, to_text(v)) for v in value]
    return [] if value is None else [(name, to_text(value))]


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _parse(headers, raw: bytes):
    ctype = headers.get("content-type", "")
    if "json" in ctype:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return raw.decode("utf-8", "replace") if raw else None


def compile(cc, path, step_id):
    spec = cc.get(path + (KEY,))
    base = path + (KEY,)
    body = cc.expr(base + ("body",)) if "body" in spec else None
    return Call(
        id=step_id,
        method=spec.get("method") or ("POST" if "body" in spec else "GET"),
        url=cc.template(base + ("url",), url=True),
        query=tuple((k, cc.expr(base + ("query", k))) for k in spec.get("query", {})),
        headers=tuple((k, cc.template(base + ("headers", k), url=False)) for k in spec.get("headers", {})),
        body=body,
        timeout_s=float(spec.get("timeout_s", DEFAULT_TIMEOUT_S)),
        fail=spec.get("on_error", "fail") == "fail",
        max_bytes=int(spec.get("max_response_bytes", DEFAULT_MAX_RESPONSE)),
        where=cc.where(path, step_id),
        redirects=int(spec.get("follow_redirects", 0)),
    )
