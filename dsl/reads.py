"""What an expression reads from the root context, and keeping only that.

An async branch's job is persisted before the acknowledgement. Persisting the
whole context (an 11 KB order) when the branch reads 246 B of it costs time on
every request: encoding, the store's write, the deliverer's read and decode.
So at load time each expression's AST is evaluated symbolically: which paths
from the root (``request.body``, ``steps.order``) does its value depend on?
Anything used as a whole — a function argument, a comparison, a projection's
list, the result — is read entirely; ``@`` at the root means the whole context.

    >>> from dsl.jmes import compile_expression
    >>> compile_expression("steps.order.lines[*].sku").reads
    (('steps', 'order', 'lines'),)
    >>> compile_expression("length(@)").reads is None    # the whole context
    True
    >>> keep = Selection.of([("steps", "order"), ("request", "headers", "x-id")])
    >>> keep.select({"request": {"body": "big", "headers": {"x-id": "7", "host": "h"}},
    ...              "steps": {"order": {"n": 1}, "other": 2}})
    {'request': {'headers': {'x-id': '7'}}, 'steps': {'order': {'n': 1}}}

The contract this rests on: every expression evaluated on the selection gives
what it gives on the whole context (checked against the 892 JMESPath
compliance cases in tests/test_reads.py, at the root and one level down). A
field missing from an object reads as null, so keys the expression cannot see
are dropped from objects; any other value is kept whole.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

Path = tuple[str, ...]
_OTHER = None   # the current value is not a plain path of the root


def expression_reads(tree: dict) -> tuple[Path, ...] | None:
    """Root paths ``tree`` reads (sorted), or None when it reads the whole root."""
    found: set[Path] = set()
    _use(_flow(tree, (), found.add), found.add)
    if () in found:
        return None
    return tuple(sorted(found))


def _use(state, note) -> None:
    """The value in ``state`` is used as a whole."""
    if state is not _OTHER:
        note(state)


def _flow(node: dict, state, note: Callable):
    """The state after ``node`` evaluated on a current value described by ``state``."""
    kind = node["type"]
    if kind == "field":
        return _OTHER if state is _OTHER else state + (node["value"],)
    if kind in _CHAINS:            # each child runs on the value the one before produced
        for child in node["children"]:
            state = _flow(child, state, note)
        return state
    if kind in ("current", "identity"):
        return state
    if kind == "root":             # ``$`` is the root wherever it is written
        return ()
    if kind in ("index", "slice"):
        _use(state, note)
        return _OTHER
    if kind in _PER_ELEMENT:       # the left side as a whole; the rest runs per element
        left, *rest = node["children"]
        _use(_flow(left, state, note), note)
        for child in rest:
            _flow(child, _OTHER, note)
        return _OTHER
    if kind == "expref":           # evaluated later on elements of another argument
        for child in node["children"]:
            _flow(child, _OTHER, note)
        return _OTHER
    if kind in ("literal", "variable_ref"):   # a variable's value was read where it was bound
        return _OTHER
    if kind == "let_expression":
        *bindings, body = node["children"]
        for binding in bindings:
            _use(_flow(binding["children"][0], state, note), note)
        return _flow(body, state, note)
    if kind in _WHOLE:             # every child is read as a whole from the current value
        for child in node["children"]:
            _use(_flow(child, state, note), note)
        return _OTHER
    note(())                       # a node this analysis does not know: keep everything
    return _OTHER


_CHAINS = frozenset({"subexpression", "pipe", "index_expression"})
_WHOLE = frozenset({"flatten", "function_expression", "comparator", "or_expression", "and_expression",
                    "not_expression", "multi_select_list", "multi_select_dict", "key_val_pair",
                    "arithmetic", "arithmetic_unary", "ternary"})
_PER_ELEMENT = frozenset({"projection", "value_projection", "filter_projection"})


@dataclass(frozen=True, slots=True)
class Selection:
    """The parts of the context to keep: a trie of field names, or everything.

    ``tree`` is ``((name, subtree), ...)``; a subtree of ``()`` means the whole
    value under that name. ``everything`` keeps the context as it is.
    """

    tree: tuple = ()
    everything: bool = False
    paths: tuple = ()       # the kept paths as given (sorted), stored with a job

    @classmethod
    def of(cls, paths) -> Selection:
        """The selection of ``paths`` (an iterable of name tuples; None in it: everything)."""
        trie: dict = {}
        paths = list(paths)
        for path in paths:
            if path is None or path == ():
                return cls(everything=True)
            node = trie
            for name in path[:-1]:
                child = node.setdefault(name, {})
                if child is _ALL:
                    break
                node = child
            else:
                node[path[-1]] = _ALL
        return cls(_freeze(trie), paths=tuple(sorted(set(paths))))

    def select(self, data):
        """A copy of ``data`` holding only the selected paths (shared, not deep-copied)."""
        return data if self.everything else _pick(data, self.tree)


_ALL = "all"


def _freeze(trie: dict) -> tuple:
    return tuple((name, () if sub is _ALL else _freeze(sub)) for name, sub in sorted(trie.items()))


def _pick(value, tree: tuple):
    """``value`` with only the fields in ``tree`` kept. Anything but an object is kept
    whole: a multiselect such as ``body.{id: id}`` tells null from a list by it."""
    if not isinstance(value, dict):
        return value
    return {name: value[name] if not sub else _pick(value[name], sub)
            for name, sub in tree if name in value}


def reads_of(node) -> set | None:
    """Every root path the expressions inside a compiled step (or branch, or
    tuple of them) read; None when one of them reads the whole context.

    Steps hold what they evaluate in their fields: Expressions (``.reads``),
    Templates (``.parts``), and nested dataclasses or tuples of them. Anything
    else that is not plain data makes the answer None (keep everything).
    """
    found: set = set()
    return found if _collect(node, found) else None


def _collect(node, found: set) -> bool:
    if node is None or isinstance(node, (str, int, float, bool, bytes, frozenset)):
        return True
    if isinstance(node, tuple):
        return all(_collect(item, found) for item in node)
    reads = getattr(node, "reads", _MISSING)
    if reads is not _MISSING and hasattr(node, "search"):       # a compiled Expression
        if reads is None:
            return False
        found.update(reads)
        return True
    if dataclasses.is_dataclass(node):
        return all(_collect(getattr(node, f.name), found) for f in dataclasses.fields(node))
    return False


_MISSING = object()


def branch_needs(steps) -> tuple | None:
    """What a branch's steps read from a stored job (sorted): their reads, less the outputs
    of the branch's own steps (``steps.<own id>…``, made while the job runs); None: everything."""
    reads = reads_of(steps)
    if reads is None:
        return None
    own = set(_step_ids(steps))
    return tuple(sorted(r for r in reads if not (len(r) > 1 and r[0] == "steps" and r[1] in own)))


def _step_ids(node):
    if isinstance(node, tuple):
        for item in node:
            yield from _step_ids(item)
    elif dataclasses.is_dataclass(node):
        if hasattr(node, "run") and isinstance(getattr(node, "id", None), str):
            yield node.id
        for f in dataclasses.fields(node):
            yield from _step_ids(getattr(node, f.name))


def missing(needs: tuple | None, kept) -> tuple | None:
    """The first path in ``needs`` that no path in ``kept`` (what a job stored) covers,
    ``()`` when ``needs`` is the whole context, or None when everything needed is there.

    >>> missing((("request", "body", "id"),), [["request", "body"]]) is None
    True
    >>> missing((("request", "body"),), [["request", "body", "id"]])
    ('request', 'body')
    """
    if needs is None:
        return ()
    kept = [tuple(k) for k in kept]
    for need in needs:
        if not any(need[:len(k)] == k for k in kept):
            return need
    return None
