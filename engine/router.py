"""Route a request path to the pipelines that serve it.

Static paths are one dict lookup; templated paths (``/orders/{shop}``) are
tried in order, the most literal first. Parameter values come back in path
order (decoded); each pipeline names them (``/a/{x}`` and ``/a/{y}`` are one
route, so a GET and a POST pipeline may name the segment differently).

    >>> r = Router([("/a/{x}", "P")])
    >>> r.match("/a/b%20c")
    ('P', ('b c',))
"""
from __future__ import annotations

import re
from urllib.parse import unquote

_PARAM = re.compile(r"\{([^{}]*)\}")


def _regex(template: str):
    out, pos = [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        out.append("([^/]+)")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out) + r"\Z")


class Router:
    """Maps a path to ``(target, parameter values)``; targets are opaque to the router."""

    def __init__(self, routes):
        self.static, dynamic = {}, []
        for template, target in routes:
            if _PARAM.search(template):
                literal = len(_PARAM.sub("", template))
                dynamic.append((-literal, template, _regex(template), target))
            else:
                self.static[template] = target
        self.dynamic = [(rx, target) for _, _, rx, target in sorted(dynamic, key=lambda d: d[:2])]

    def match(self, path: str):
        target = self.static.get(path)
        if target is not None:
            return target, ()
        for rx, target in self.dynamic:
            m = rx.match(path)
            if m:
                return target, tuple(unquote(v) for v in m.groups())
        return None, None


def shape(template: str) -> str:
    """The route a template serves: parameter names do not matter (``/a/{}``)."""
    return _PARAM.sub("{}", template)
