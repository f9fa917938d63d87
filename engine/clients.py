"""Who is calling: the client address, from the socket or — behind trusted
proxies — from ``X-Forwarded-For`` / ``Forwarded`` (RFC 7239).

    >>> _node('[2001:db8:cafe::17]:4711'), _node('192.0.2.43:47011')
    ('2001:db8:cafe::17', '192.0.2.43')
"""
from __future__ import annotations

import ipaddress

from tornado.iostream import SSLIOStream

MAX_HOPS = 20     # X-Forwarded-For / Forwarded hops read, nearest first; a longer chain is cut



def client_address(conn, headers, trusted) -> str | None:
    """The socket peer, or — when it is a trusted proxy — the nearest untrusted
    address among the last MAX_HOPS in X-Forwarded-For / Forwarded (when all of
    those are trusted, the farthest of them): hops beyond are never parsed, so a
    header of thousands of hops costs what one of twenty does."""
    peer = getattr(getattr(conn, "context", None), "remote_ip", None)
    if not trusted or not _in(peer, trusted):
        return peer
    hops = _forwarded(headers)
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def https(conn, headers, trusted) -> bool:
    """Whether the client reached us over TLS: our own socket is TLS, or the peer is a trusted
    proxy that says so (``X-Forwarded-Proto: https``, or ``proto=https`` in ``Forwarded``)."""
    if isinstance(getattr(conn, "stream", None), SSLIOStream):
        return True
    peer = getattr(getattr(conn, "context", None), "remote_ip", None)
    if not trusted or not _in(peer, trusted):
        return False
    proto = headers.get("X-Forwarded-Proto")
    if proto is None:
        element = _last(headers.get_list("Forwarded"))[-1]
        proto = next((hop.partition("=")[2] for hop in element.split(";")
                      if hop.strip().lower().startswith("proto=")), "")
    return proto.split(",")[0].strip().strip('"').lower() == "https"


def _in(address, networks) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _forwarded(headers) -> list[str]:
    """Client addresses from X-Forwarded-For (or RFC 7239 Forwarded for=), nearest last;
    the last MAX_HOPS elements only.

        >>> from tornado.httputil import HTTPHeaders
        >>> _forwarded(HTTPHeaders({"X-Forwarded-For": ", ".join(f"10.0.0.{i}" for i in range(99))}))[0]
        '10.0.0.79'
    """
    xff = headers.get_list("X-Forwarded-For")
    if xff:
        return [h.strip() for h in _last(xff) if h.strip()]
    out = []
    for element in _last(headers.get_list("Forwarded")):
        for pair in element.split(";"):
            name, _, hop = pair.strip().partition("=")
            if name.lower() == "for":
                out.append(_node(hop.strip().strip('"')))
    return out


def _last(values: list[str]) -> list[str]:
    """The last MAX_HOPS comma-separated elements of a header's values (one C-speed pass)."""
    return ",".join(values).rsplit(",", MAX_HOPS)[-MAX_HOPS:]


def _node(hop: str) -> str:
    """An RFC 7239 node without its port: ``[2001:db8::1]:4711`` → ``2001:db8::1``."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    return hop.rsplit(":", 1)[0] if hop.count(":") == 1 else hop
