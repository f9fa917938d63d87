"""``call``: an outbound HTTP request to a destination app.

    - id: stock
      call:
        method: POST
        url: "${env:ERP_URL}/inventory/{request.params.shop}/reserve"
        headers: {Authorization: "Bearer ${env:ERP_TOKEN}"}
        body: steps.order
        timeout_s: 5

``format`` (json, xml, form, text; default json) says how ``body`` is written
(``dsl.bodies``) and sets the Content-Type; a ``headers`` Content-Type that
contradicts it is a load-time error (``content-type-mismatch``).

The output (``steps.stock``) is ``{status, headers, body}``: headers with
lower-case names, the body read by its Content-Type as a request body is (JSON,
XML, form, text; ``response_format`` forces one), other types as text; an answer
that does not parse fails like a 5xx (``error: "bad-response"``). A destination that cannot be reached, times out or answers 5xx ends the
request with 502/504, unless ``on_error: continue``: then the output has
``status`` 0 (or the 5xx), ``body`` null and ``error`` saying what happened,
for a later ``route`` to act on. 4xx answers are outputs, to route on.

In an async branch (a persisted job) every call carries
``Idempotency-Key: <job id>.<step id>``; unreachable, timeout, 429 and 5xx
are retried with backoff (honouring ``Retry-After``) and any other 4xx
dead-letters the job — unless ``on_error: continue``.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

from ..bodies import CONTENT_TYPES, FORMATS, WRITERS, Unwritable, fits
from ..kinds import body_problem
from ..runtime import CallError, DeliveryFailed, StepFailed, evaluate
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
    "body": expression("Request body, written as `format` says."),
    "format": doc({"type": "string", "enum": list(FORMATS), "default": "json"},
                  "How `body` is written, with its Content-Type: `json` (default), `xml` (the inverse of "
                  "the inbound XML mapping), `form` (application/x-www-form-urlencoded) or `text` "
                  "(a string as it is)."),
    "response_format": doc({"type": "string", "enum": list(FORMATS)},
                           "Read the answer as this format whatever its Content-Type (default: by "
                           "its Content-Type, other types as text)."),
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
    format: str = "json"
    content_type: str | None = CONTENT_TYPES["json"]   # None: call.headers sets it
    parse_as: str | None = None                         # call.response_format
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
        try:
            body = ctx.http.parse(rheaders.get("content-type"), raw, self.parse_as)
        except CallError as exc:
            ctx.steps[self.id] = self._failed(ctx, exc.kind, status, exc.detail)
            return
        ctx.steps[self.id] = {"status": status, "headers": rheaders, "body": body}

    def _request(self, ctx):
        data = ctx.data
        url = self.url.render(data)
        query = [(k, v) for name, expr in self.query for k, v in _pairs(name, evaluate(expr, ctx, self.where))]
        if query:
            url += ("&" if "?" in url else "?") + self._encoded(query)
        headers = {name: self._header(name, t.render(data)) for name, t in self.headers}
        if ctx.job and not any(name.lower() == "idempotency-key" for name in headers):
            headers["Idempotency-Key"] = f"{ctx.job}.{self.id}"
        body = None
        if self.body is not None:
            body = self._write(evaluate(self.body, ctx, self.where))
            if self.content_type:
                headers["Content-Type"] = self.content_type
        return url, headers, body

    def _write(self, value) -> bytes:
        try:
            return WRITERS[self.format](value)
        except Unwritable as exc:
            at = f" at {exc.pointer}" if exc.pointer else ""
            raise StepFailed(422, "Not serialisable",
                             f"{self.where}: call.body cannot be written as {self.format}{at}: {exc.message}") from None

    def _encoded(self, query) -> str:
        try:
            return urlencode(query)
        except UnicodeEncodeError:
            raise StepFailed(422, "Invalid value in URL", f"{self.where}: a query value holds a lone "
                             "surrogate, which is not Unicode text") from None

    def _header(self, name: str, text: str) -> str:
        """One line of text for header ``name``; 422 for what no header can carry (a request
        value holding NUL, VT, DEL or another control character, or a lone surrogate)."""
        text = _one_line(text)
        if _CONTROL.search(text) or not _encodable(text):
            raise StepFailed(422, "Invalid header value", f"{self.where}: the value for header {name} holds "
                             "a control character or a lone surrogate, which no header can carry")
        return text

    def _failed(self, ctx, kind, status, detail, retry_after=None):
        if ctx.job and self.fail:
            retryable = kind in ("timeout", "unreachable") or status == 429 or status >= 500
            raise DeliveryFailed(retryable, f"{self.where}: {detail}", _seconds(retry_after))
        if self.fail:
            code = 504 if kind == "timeout" else 502
            title = _TITLES.get(kind, "Destination failed")
            raise StepFailed(code, title, f"{self.where}: {detail}")
        return {"status": status, "headers": {}, "body": None, "error": kind}


_TITLES = {"timeout": "Destination timed out", "bad-response": "Unreadable destination answer"}


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


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")      # HTAB, and CR/LF (made spaces), are fine


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def compile(cc, path, step_id):
    spec = cc.get(path + (KEY,))
    base = path + (KEY,)
    body = cc.expr(base + ("body",)) if "body" in spec else None
    headers = tuple((k, cc.template(base + ("headers", k), url=False)) for k in spec.get("headers", {}))
    fmt = spec.get("format", "json")
    typed = [(name, t) for name, t in headers if name.lower() == "content-type"]
    for name, template in typed:
        _check_content_type(cc, base + ("headers", name), template, fmt, "format" in spec)
    if body is not None:
        _check_body(cc, base + ("body",), body, fmt)
    return Call(
        id=step_id,
        method=spec.get("method") or ("POST" if "body" in spec else "GET"),
        url=cc.template(base + ("url",), url=True),
        query=tuple((k, cc.expr(base + ("query", k))) for k in spec.get("query", {})),
        headers=headers,
        body=body,
        timeout_s=float(spec.get("timeout_s", DEFAULT_TIMEOUT_S)),
        fail=spec.get("on_error", "fail") == "fail",
        max_bytes=int(spec.get("max_response_bytes", DEFAULT_MAX_RESPONSE)),
        where=cc.where(path, step_id),
        redirects=int(spec.get("follow_redirects", 0)),
        format=fmt,
        content_type=None if typed else CONTENT_TYPES[fmt],
        parse_as=spec.get("response_format"),
    )


def _check_content_type(cc, path, template, fmt: str, explicit: bool) -> None:
    """A fixed Content-Type must agree with call.format (one with {expression} is the author's)."""
    if template is None or not template.is_static:
        return
    value = template.render({})
    if not fits(fmt, value):
        which = f"call.format {fmt}" + ("" if explicit else " (the default)")
        better = next(f for f in ("json", "xml", "form", "text") if fits(f, value))
        cc.error(path, "content-type-mismatch",
                 f"Content-Type {value!r} contradicts {which}, which writes {_WRITES[fmt]}; "
                 f"set format: {better} to send {_WRITES[better]}, or drop the header")


def _check_body(cc, path, body, fmt: str) -> None:
    """A body whose own structure can never be written as ``fmt`` would be a 422 on every request."""
    problem = body_problem(fmt, body.source)
    if problem:
        cc.error(path, "unwritable-body", f"call.body can never be written as {fmt}: {problem}; every "
                 "request would get 422", severity="warning")


_WRITES = {"json": "JSON", "xml": "XML", "form": "a form", "text": "a string as it is"}
