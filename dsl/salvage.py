"""Keep compiling around structural mistakes, so that lint reports every mistake at once.

A file whose shape is wrong (an unknown key, a wrong type, a value out of its enum) cannot
become a pipeline, but the rest of it can still be compiled for its diagnostics: expression
errors, unknown functions, duplicate step ids. :func:`salvage` returns a copy of the data in
which every part the shape check refused is replaced by a neutral stand-in, keeping list
indices (and so every position of the source map) as they were:

- a refused key of a mapping is dropped (a required one goes with its mapping);
- a refused step, route branch or async branch becomes a step/branch that does nothing, with
  the same id, so references to it stay valid;
- a refused item of any other list drops the whole list;
- ``pipeline`` and ``receive.path``, which everything needs, get placeholders.

    >>> salvage({"pipeline": "x", "receive": {"path": "/a", "methods": ["PUTT"]}},
    ...         [("receive", "methods", 0)], lambda data: [])
    {'pipeline': 'x', 'receive': {'path': '/a'}}

The stand-ins produce no diagnostics of their own; diagnostics of the compile that runs on
the salvaged data are reported next to the shape's, and no pipeline is built.
"""
from __future__ import annotations

import copy
import re

from .spec import BRANCH_ID, STEP_ID

__all__ = ["salvage"]

MAX_ROUNDS = 8
_PLACEHOLDERS = {("pipeline",): "unnamed", ("receive",): {"path": "/"}, ("receive", "path"): "/"}
_NOOP = "`null`"


def salvage(data, bad_paths, shape_paths, rounds: int = MAX_ROUNDS):
    """``data`` with the parts at ``bad_paths`` neutralised, or None when nothing is left.

    ``shape_paths(data)`` gives the paths the shape check still refuses; it is asked again
    after each round until the data fits (or ``rounds`` ran out: then None).
    """
    if not isinstance(data, dict):
        return None
    data = copy.deepcopy(data)
    paths = list(bad_paths)
    for _ in range(rounds):
        for path in sorted(set(paths), key=len, reverse=True):
            _neutralise(data, tuple(path))
        paths = shape_paths(data)
        if not paths:
            return data
    return None


def _neutralise(data, path):
    if not path:
        for key, value in _PLACEHOLDERS.items():
            if len(key) == 1 and not isinstance(data.get(key[0]), type(value)):
                data[key[0]] = copy.deepcopy(value)
        return
    parent = _get(data, path[:-1])
    if parent is _MISSING:
        return
    key = path[-1]
    if isinstance(parent, list):
        _neutralise_item(data, path, parent, key)
    elif isinstance(parent, dict) and key in parent:
        if path in _PLACEHOLDERS:
            parent[key] = copy.deepcopy(_PLACEHOLDERS[path])
        else:
            del parent[key]
    elif isinstance(parent, dict) and path in _PLACEHOLDERS:   # a required key that is missing
        parent[key] = copy.deepcopy(_PLACEHOLDERS[path])
    elif isinstance(parent, dict):
        _neutralise(data, path[:-1])


def _neutralise_item(data, path, items, index):
    if not isinstance(index, int) or index >= len(items):
        return
    kind = path[-2] if len(path) >= 2 else None
    old = items[index] if isinstance(items[index], dict) else {}
    if kind == "steps":
        items[index] = {"id": _id(old, path, STEP_ID), "transform": _NOOP}
    elif kind == "route":
        items[index] = {"when": "`false`"}
    elif kind == "async":
        items[index] = {"id": _id(old, path, BRANCH_ID),
                        "steps": [{"id": _id({}, path + ("steps", 0), STEP_ID), "transform": _NOOP}]}
    else:
        _neutralise(data, path[:-1])


def _id(old, path, pattern) -> str:
    """The part's own id when it is a valid one (references to it stay right), else a made-up one."""
    ident = old.get("id")
    if isinstance(ident, str) and re.match(pattern, ident):
        return ident
    return "salvaged_" + "_".join(map(str, path)).lower()


_MISSING = object()


def _get(data, path):
    node = data
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node
