"""The admin UI's request and response, as the pages see them, and the headers every answer carries."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs

from tornado.httputil import parse_cookie

from .session import COOKIE

HTML = "text/html; charset=utf-8"
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),      # a search URL can hold a header value
    ("Cache-Control", "no-store"),
)


@dataclass(frozen=True, slots=True)
class Request:
    """What the UI reads of one request; ``path`` is below the admin prefix (``/ui/...``)."""

    method: str
    path: str
    query: dict
    body: bytes = b""
    cookie_header: str | None = None
    secure: bool = False        # came over TLS, or from a trusted proxy saying https
    client: str | None = None   # the client address (engine/clients.py), for the log

    def arg(self, name: str, default: str = "") -> str:
        value = self.query.get(name, default)
        return value if isinstance(value, str) else value[0]

    def form(self) -> dict:
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            return {}
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def cookie(self) -> str | None:
        if not self.cookie_header:
            return None
        try:
            return parse_cookie(self.cookie_header).get(COOKIE)
        except Exception:       # any malformed Cookie header is no session
            return None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: list = field(default_factory=list)
    content_type: str = HTML


@dataclass(slots=True)
class Seen:
    """One request as a page sees it: the request, its session id, the console."""

    console: object       # engine.ui.Console
    request: Request
    sid: str | None = None
