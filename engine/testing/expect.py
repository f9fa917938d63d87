"""What a test expected against what happened, as one line per differing field.

    >>> diff({"order": 1, "lines": [{"qty": 2}]}, {"order": 1, "lines": [{"qty": 3}], "x": 0}, "body")
    ['body.lines[0].qty: expected 2, got 3', 'body.x: not expected, got 0']
    >>> diff({"lines": [{"qty": 2}]}, {"lines": [{"qty": 2, "sku": "A"}], "x": 0}, "body", subset=True)
    []

Numbers compare by value (``1`` equals ``1.0``), but ``true`` is not ``1``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

MAX_SHOWN = 200     # characters of a value shown in a difference


@dataclass(slots=True)
class Outcome:
    """What one test's request did."""

    status: int
    headers: object              # tornado HTTPHeaders: case-insensitive
    body: object                 # JSON value, or text when the response is not JSON
    calls: list = field(default_factory=list)
    unmatched: list = field(default_factory=list)
    jobs: list = field(default_factory=list)              # branch of each job enqueued, in order
    states: dict = field(default_factory=dict)            # branch -> [job state, ...] after delivery
    errors: dict = field(default_factory=dict)            # branch -> [last error, ...]


def differences(expect: dict, got: Outcome) -> list[str]:
    """Every way ``got`` differs from ``expect`` (empty: the test passed)."""
    out = [f"unmatched call: {call}: no mock matches it" for call in got.unmatched]
    if "status" in expect and expect["status"] != got.status:
        out.append(f"status: expected {expect['status']}, got {got.status}")
    for name, value in expect.get("headers", {}).items():
        have = got.headers.get_list(name)
        if ", ".join(have) != value:
            out.append(f"headers.{name}: expected {show(value)}, got {show(', '.join(have)) if have else 'none'}")
    if "body" in expect:
        out += diff(expect["body"], got.body, "body")
    if "body_contains" in expect:
        out += diff(expect["body_contains"], got.body, "body", subset=True)
    if "calls" in expect:
        out += _calls(expect["calls"], got.calls)
    if "jobs" in expect:
        want = [j["branch"] for j in expect["jobs"]]
        if want != got.jobs:
            out.append(f"jobs: expected branches {show(want)}, got {show(got.jobs)}")
    for branch, state in expect.get("deliveries", {}).items():
        out += _delivered(branch, state, got)
    return out


def diff(want, have, path: str, subset: bool = False) -> list[str]:
    """Per-field differences between two JSON values; ``subset``: extra keys in
    ``have`` are fine, at every level, and a string needs only contain ``want``."""
    if isinstance(want, dict) and isinstance(have, dict):
        out = []
        for key, value in want.items():
            if key not in have:
                out.append(f"{_at(path, key)}: missing, expected {show(value)}")
            else:
                out += diff(value, have[key], _at(path, key), subset)
        if not subset:
            out += [f"{_at(path, key)}: not expected, got {show(have[key])}" for key in have if key not in want]
        return out
    if isinstance(want, list) and isinstance(have, list):
        if len(want) != len(have):
            return [f"{path}: expected {len(want)} items, got {len(have)}: {show(have)}"]
        return [line for i, (w, h) in enumerate(zip(want, have)) for line in diff(w, h, f"{path}[{i}]", subset)]
    if subset and isinstance(want, str) and isinstance(have, str):
        return [] if want in have else [f"{path}: expected text containing {show(want)}, got {show(have)}"]
    return [] if same(want, have) else [f"{path}: expected {show(want)}, got {show(have)}"]


def same(a, b) -> bool:
    """JSON equality: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def show(value) -> str:
    """A value as JSON, cut to MAX_SHOWN characters."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def _at(path: str, key) -> str:
    return f"{path}.{key}" if isinstance(key, str) and key.isidentifier() else f"{path}[{show(key)}]"


def _calls(want: list, have: list) -> list[str]:
    if len(want) != len(have):
        made = ", ".join(f"{c['method']} {c['url']}" for c in have) or "none"
        return [f"calls: expected {len(want)}, got {len(have)} ({made})"]
    out = []
    for i, (w, h) in enumerate(zip(want, have)):
        at = f"calls[{i}]"
        if "method" in w and w["method"].upper() != h["method"].upper():
            out.append(f"{at}.method: expected {w['method']}, got {h['method']}")
        if "url" in w and w["url"] != h["url"]:
            out.append(f"{at}.url: expected {w['url']}, got {h['url']}")
        lower = {k.lower(): v for k, v in h["headers"].items()}
        for name, value in w.get("headers", {}).items():
            if lower.get(name.lower()) != value:
                out.append(f"{at}.headers.{name}: expected {show(value)}, got {show(lower.get(name.lower()))}")
        if "body" in w:
            out += diff(w["body"], h["body"], f"{at}.body")
        if "body_contains" in w:
            out += diff(w["body_contains"], h["body"], f"{at}.body", subset=True)
    return out


def _delivered(branch: str, state: str, got: Outcome) -> list[str]:
    states = got.states.get(branch, [])
    if not states:
        return [f"deliveries.{branch}: no job was enqueued for branch '{branch}'"]
    wrong = [(s, e) for s, e in zip(states, got.errors.get(branch, [])) if s != state]
    return [f"deliveries.{branch}: expected {state}, got {s}" + (f" ({e})" if e else "") for s, e in wrong]


def parsed_body(headers, raw: bytes):
    """A response body as tests see it: JSON parsed when the Content-Type says JSON, else text."""
    if not raw:
        return None
    if "json" in (headers.get("Content-Type") or ""):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return raw.decode("utf-8", "replace")
