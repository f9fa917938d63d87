"""Strings with load-time substitutions and request-time values.

Syntax, inside ``call.url`` and ``call.headers`` values:

* ``${env:NAME}`` – the environment variable NAME, read once at load time;
* ``${file:PATH}`` – the content of PATH (relative to the pipeline file,
  trailing newline dropped), read once at load time;
* ``{expression}`` – a JMESPath expression evaluated per request; in a URL
  its value is percent-encoded so that it can never change the URL's
  structure (``/``, ``?``, ``#``, ``@`` are encoded), and a value that would
  address another resource is refused (422): ``.`` or ``..`` anywhere, and an
  empty value (``""``, null, missing) in the path, where ``/orders/{id}``
  would become ``/orders/``;
* ``{{`` and ``}}`` – literal braces.

    >>> [p.kind for p in parse("${env:ERP}/stock/{request.params.sku}?x={{1}}")]
    ['env', 'lit', 'expr', 'lit']
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from jmespath.exceptions import JMESPathError

from .runtime import StepFailed, dumps_json

_TOKEN = re.compile(r"\$\{(env|file):([^}]*)\}|\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True, slots=True)
class Part:
    kind: str      # lit | env | file | expr | error
    text: str
    offset: int    # 0-based offset of the part in the raw string


def parse(raw: str) -> list[Part]:
    """Split a template into parts; an unbalanced brace is an ``error`` part."""
    parts, pos = [], 0
    for m in _TOKEN.finditer(raw):
        if m.start() > pos:
            parts.append(Part("lit", raw[pos:m.start()], pos))
        parts.append(_part(m))
        pos = m.end()
    if pos < len(raw):
        parts.append(Part("lit", raw[pos:], pos))
    return _merge(parts)


def _part(m) -> Part:
    token = m.group(0)
    if m.group(1):
        return Part(m.group(1), m.group(2), m.start())
    if token in ("{{", "}}"):
        return Part("lit", token[0], m.start())
    if m.group(3) is not None:
        return Part("expr", m.group(3), m.start() + 1)
    return Part("error", token, m.start())


def _merge(parts):
    out = []
    for p in parts:
        if out and p.kind == "lit" and out[-1].kind == "lit":
            out[-1] = Part("lit", out[-1].text + p.text, out[-1].offset)
        else:
            out.append(p)
    return out


def to_text(value) -> str:
    """A request value as text: strings as they are, null empty, others as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return dumps_json(value).decode()


def _segment(text: str, in_path: bool) -> str:
    """Percent-encode a value for a URL. ``.`` and ``..`` are refused: URL
    parsers resolve them as dot segments (``%2E`` spelling included), which
    would let the request climb the destination's path; so is an empty value
    in the path, which addresses the parent (``DELETE /orders/``); and text
    that is not Unicode (a lone surrogate) has no percent-encoding.

        >>> _segment("a b/c", True), _segment("", False)
        ('a%20b%2Fc', '')
    """
    if text in (".", "..") or (in_path and not text):
        raise StepFailed(422, "Invalid value in URL",
                         f"a value from the request cannot be {text!r} where it fills a URL"
                         + (" path" if not text else ""))
    try:
        return quote(text, safe="")
    except UnicodeEncodeError:
        raise StepFailed(422, "Invalid value in URL", "a value from the request that fills a URL holds a "
                         "lone surrogate, which is not Unicode text") from None


@dataclass(frozen=True, slots=True)
class Template:
    """A prepared template: literal strings and compiled expressions."""

    parts: tuple          # str or Expression
    url: bool             # percent-encode expression values

    def render(self, data) -> str:
        out, in_path = [], self.url
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                in_path = in_path and "?" not in part and "#" not in part
            else:
                try:
                    text = to_text(part.search(data))
                except JMESPathError as exc:
                    public = getattr(exc, "public", None)
                    said = f": {public}" if public else " could not be evaluated on this request"
                    raise StepFailed(422, "Expression failed", f"a {{expression}} in a call URL or header{said}") from None
                out.append(_segment(text, in_path) if self.url else text)
        return "".join(out)

    @property
    def is_static(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)
