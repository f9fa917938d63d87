"""The admin UI: server-rendered HTML at ``<admin prefix>/ui/`` (docs/operations.md#admin-ui).

    GET  /ui/login, POST /ui/login     the admin token in a form → a session cookie
    GET  /ui/                          pipelines: route, methods, last hour's requests, errors, p50/p99
    GET  /ui/pipelines/<name>          its source with diagnostics, and its recent runs
    GET  /ui/runs/<run id>             a run step by step; GET /ui/search?q=… runs and jobs matching
    GET  /ui/deliveries[/<id>], /ui/dlq
    POST /ui/dlq/<job id>/replay, /ui/dlq/replay, /ui/dlq/purge, /ui/logout   (CSRF token required)

Every page but the login form and the stylesheet needs a valid session cookie
(else 303 to the login form); every POST but the login needs the session's CSRF
token (else a 403 page). Templates are Jinja2 with autoescape on, so every value
from a request is HTML-escaped; the Content-Security-Policy allows no script at all.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import quote

import jinja2

from ..queue import StoreUnavailable
from . import pages
from .session import COOKIE, Sessions
from .web import SECURITY_HEADERS, Request, Response, Seen

log = logging.getLogger("hookline")
HERE = Path(__file__).parent


def owns(admin_path: str) -> bool:
    return admin_path == "/ui" or admin_path.startswith("/ui/")


class Console:
    """The UI of one HTTP worker: templates compiled once, the routes, the sessions."""

    def __init__(self, prefix: str, token: str, store, pipelines):
        self.prefix, self.base = prefix, prefix + "/ui"
        self.store = store
        self.pipelines = pipelines          # () -> the pipelines served now (a reload swaps them)
        self.sessions = Sessions(token)
        self.token = token
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                      autoescape=True, undefined=jinja2.StrictUndefined)
        self.env.filters.update(pages.FILTERS)
        self.css = (HERE / "static" / "ui.css").read_bytes()

    async def handle(self, request: Request) -> Response:
        """Any request below ``/ui``: a page, a redirect or an error page; never an exception."""
        seen = Seen(self, request)
        try:
            return await self._route(seen)
        except StoreUnavailable:
            return self.error(seen, 503, "Store unavailable", "The store cannot be reached; retry later.")
        except Exception:
            log.exception("admin ui: %s %s failed", request.method, request.path[:200])
        try:
            return self.error(seen, 500, "Something failed",
                              "This page failed unexpectedly; the server log has the details.")
        except Exception:
            log.exception("admin ui: the error page failed too")
            return Response(500, b"This page failed unexpectedly; the server log has the details.\n",
                            list(SECURITY_HEADERS), content_type="text/plain; charset=utf-8")

    async def _route(self, seen: Seen) -> Response:
        req = seen.request
        if req.path in ("/ui", "/ui/index.html"):
            return self.redirect(self.base + "/")
        for method, pattern, page, open_ in ROUTES:
            m = pattern.fullmatch(req.path)
            if m is None or method != (req.method if req.method != "HEAD" else "GET"):
                continue
            if not open_:
                seen.sid = self.sessions.check(req.cookie())
                if seen.sid is None:
                    return self.to_login(req)
                if method == "POST" and not self.sessions.csrf_ok(seen.sid, req.form().get("csrf")):
                    return self.error(seen, 403, "Forbidden", "The form's CSRF token is missing or wrong: "
                                      "reload the page and submit it again.")
            return await page(seen, *m.groups())
        if any(p.fullmatch(req.path) for _, p, _, _ in ROUTES):
            return self.error(seen, 405, "Method Not Allowed", f"{req.method[:20]} is not allowed here.")
        return self.error(seen, 404, "Not Found", "There is no such page.")

    def render(self, seen: Seen, template: str, status: int = 200, headers=(), **data) -> Response:
        notice = pages.NOTICES.get(seen.request.arg("done"), "")
        html = self.env.get_template(template).render(
            base=self.base, sid=seen.sid, csrf=self.sessions.csrf(seen.sid) if seen.sid else "",
            notice=notice.format(n=_int(seen.request.arg("n", "0"))), **{"nav": "", **data})
        return Response(status, html.encode("utf-8"), [*SECURITY_HEADERS, *headers])

    def error(self, seen: Seen, status: int, title: str, detail: str) -> Response:
        return self.render(seen, "error.html", status, title=title, detail=detail)

    def redirect(self, location: str, headers=()) -> Response:
        return Response(303, b"", [*SECURITY_HEADERS, ("Location", location), *headers], content_type="")

    def to_login(self, req: Request) -> Response:
        back = req.path + ("?" + "&".join(f"{quote(k)}={quote(req.arg(k))}" for k in req.query) if req.query else "")
        target = back if req.method in ("GET", "HEAD") else "/ui/"
        return self.redirect(f"{self.base}/login?next={quote(target, safe='')}")

    def cookie(self, value: str, secure: bool, max_age: int) -> tuple:
        flags = f"; Path={self.base}/; Max-Age={max_age}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
        return ("Set-Cookie", f"{COOKIE}={value}{flags}")


def _int(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


_ID = r"([A-Za-z0-9_-]{1,64})"
_NAME = r"([^/]{1,200})"
ROUTES = [      # (method, path pattern, page, open without a session)
    ("GET", re.compile(r"/ui/static/ui\.css"), pages.stylesheet, True),
    ("GET", re.compile(r"/ui/login"), pages.login_form, True),
    ("POST", re.compile(r"/ui/login"), pages.login, True),
    ("POST", re.compile(r"/ui/logout"), pages.logout, False),
    ("GET", re.compile(r"/ui/"), pages.pipelines, False),
    ("GET", re.compile(r"/ui/pipelines/" + _NAME), pages.pipeline, False),
    ("GET", re.compile(r"/ui/runs/" + _ID), pages.run, False),
    ("GET", re.compile(r"/ui/search"), pages.search, False),
    ("GET", re.compile(r"/ui/deliveries"), pages.deliveries, False),
    ("GET", re.compile(r"/ui/deliveries/" + _ID), pages.delivery, False),
    ("GET", re.compile(r"/ui/dlq"), pages.dlq, False),
    ("POST", re.compile(r"/ui/dlq/replay"), pages.replay_all, False),
    ("POST", re.compile(r"/ui/dlq/purge"), pages.purge, False),
    ("POST", re.compile(r"/ui/dlq/" + _ID + "/replay"), pages.replay, False),
]
