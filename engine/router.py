"""Route a request path to the pipelines that serve it.

Static paths are one dict lookup; templated paths (``/orders/{shop}``) are
tried in order, the most literal first.

    >>> r = Router([("/a/{x}", "P")])
    >>> r.match("/a/b%20c")
    ('P', {'x': 'b c'})
"""
from __future__ import annotations

import re
from urllib.parse import unquote

_PARAM = re.compile(r"\{([^{}]*)\}")


def _regex(template: str):
    out, pos = [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out) + r"\Z")


class Router:
    """Maps a path to ``(target, params)``; targets are opaque to the router."""

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
            return target, {}
        for rx, target in self.dynamic:
            m = rx.match(path)
            if m:
                return target, {k: unquote(v) for k, v in m.groupdict().items()}
        return None, None
