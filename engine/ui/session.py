"""The admin UI's login session and CSRF tokens, both stateless.

A session is a cookie signed with a key derived from ``HOOKLINE_ADMIN_TOKEN``
(Tornado's signed-value format: name, value and issue time under HMAC-SHA256),
so every worker of ``serve --workers N`` checks it without shared state, and a
new admin token ends every session at once. Its value is a random session id;
a form's CSRF token is an HMAC of that id, so it is valid for that session only.

    >>> s = Sessions("an-admin-token-of-16+-chars")
    >>> cookie, sid = s.issue()
    >>> s.check(cookie) == sid and s.csrf_ok(sid, s.csrf(sid)) and not s.csrf_ok(sid, "forged")
    True
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from tornado.web import create_signed_value, decode_signed_value

COOKIE = "hookline_ui"
MAX_AGE_S = 8 * 3600          # a login lasts a working day; the cookie's Max-Age and the signature's age


class Sessions:
    """Issue and check session cookies and CSRF tokens for one admin token."""

    def __init__(self, token: str, max_age_s: int = MAX_AGE_S, clock=time.time):
        # derived keys: the admin token itself never signs anything a browser holds
        self._cookie_key = _derive(token, b"hookline admin ui: session cookie")
        self._csrf_key = _derive(token, b"hookline admin ui: csrf")
        self.max_age_s, self._clock = max_age_s, clock

    def issue(self) -> tuple[str, str]:
        """A new session: ``(cookie value, session id)``."""
        sid = secrets.token_urlsafe(18)
        value = create_signed_value(self._cookie_key, COOKIE, sid, version=2, clock=self._clock)
        return value.decode("ascii"), sid

    def check(self, cookie: str | None) -> str | None:
        """The session id of a valid, unexpired cookie value, else None."""
        if not cookie or len(cookie) > 512:
            return None
        sid = decode_signed_value(self._cookie_key, COOKIE, cookie, max_age_days=self.max_age_s / 86400,
                                  clock=self._clock, min_version=2)
        return sid.decode("ascii", "replace") if sid else None

    def csrf(self, sid: str) -> str:
        return hmac.new(self._csrf_key, sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str, given: str | None) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given.encode("utf-8", "replace"),
                                                              self.csrf(sid).encode())


def _derive(token: str, purpose: bytes) -> bytes:
    return hmac.new(token.encode(), purpose, hashlib.sha256).digest()
