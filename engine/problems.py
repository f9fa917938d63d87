"""RFC 9457 problem documents: what a client sees when something is wrong.

Text for clients is built here and never holds a stack trace or a secret;
the log gets its own text (see ``engine.server``).

    >>> status, body = problem(404, "not-found", "Not Found", "no pipeline serves /x")
    >>> status, body[:30]
    (404, b'{"type":"https://hookline.dev/')
"""
from __future__ import annotations

import orjson

BASE = "https://hookline.dev/problems/"
CONTENT_TYPE = "application/problem+json"


def problem(status: int, slug: str, title: str, detail: str, **extra) -> tuple[int, bytes]:
    """Serialise a problem document; ``slug`` names its type (see docs/errors.md)."""
    doc = {"type": BASE + slug, "title": title, "status": status, "detail": detail}
    doc.update(extra)
    return status, orjson.dumps(doc)
