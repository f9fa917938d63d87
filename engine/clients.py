"""Who is calling: the client address, from the socket or — behind trusted
proxies — from ``X-Forwarded-For`` / ``Forwarded`` (RFC 7239).

    >>> _node('[2001:db8:cafe::17]:4711'), _node('192.0.2.43:47011')
    ('2001:db8:cafe::17', '192.0.2.43')
"""
from __future__ import annotations

import ipaddress


def client_address(conn, headers, trusted) -> str | None:
    """The socket peer, or — when it is a trusted proxy — the nearest untrusted
    address in X-Forwarded-For / Forwarded."""
    peer = getattr(getattr(conn, "context", None), "remote_ip", None)
    if not trusted or not _in(peer, trusted):
        return peer
    hops = _forwarded(headers)
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _in(address, networks) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _forwarded(headers) -> list[str]:
    """Client addresses from X-Forwarded-For (or RFC 7239 Forwarded for=), nearest last."""
    xff = headers.get_list("X-Forwarded-For")
    if xff:
        return [h.strip() for value in xff for h in value.split(",") if h.strip()]
    out = []
    for value in headers.get_list("Forwarded"):
        for element in value.split(","):
            for pair in element.split(";"):
                name, _, hop = pair.strip().partition("=")
                if name.lower() == "for":
                    out.append(_node(hop.strip().strip('"')))
    return out


def _node(hop: str) -> str:
    """An RFC 7239 node without its port: ``[2001:db8::1]:4711`` → ``2001:db8::1``."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    return hop.rsplit(":", 1)[0] if hop.count(":") == 1 else hop
