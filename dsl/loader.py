"""YAML text → JSON-like data plus a source map of 1-based line and column.

    >>> doc, problems = load_yaml("a:\\n  b: [1, x]\\n", "p.yaml")
    >>> doc.data, doc.pos(("a", "b", 1)), doc.key_pos(("a", "b"))
    ({'a': {'b': [1, 'x']}}, (2, 10), (2, 3))

Problems (syntax errors, duplicate keys, tags the DSL does not know, alias
bombs, nesting too deep) come back as diagnostics, never as exceptions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import yaml

from .errors import Diagnostic

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

MAX_NODES = 200_000
MAX_DEPTH = 100
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null")}
_constructor = yaml.SafeLoader("")


@dataclass(frozen=True, slots=True)
class Document:
    """Loaded data, where each value and each key stands, and scalar styles."""

    file: str
    data: object
    values: MappingProxyType = field(repr=False)
    keys: MappingProxyType = field(repr=False)
    quoted: frozenset = field(repr=False)

    def pos(self, path) -> tuple[int, int]:
        """Line and column of the value at ``path``, or of its nearest parent."""
        path = tuple(path)
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def key_pos(self, path) -> tuple[int, int]:
        """Line and column of the key that holds the value at ``path``."""
        path = tuple(path)
        return self.keys.get(path) or self.pos(path)

    def diag(self, path, code: str, message: str, *, key=False, offset=0, severity="error") -> Diagnostic:
        line, col = self.key_pos(path) if key else self.pos(path)
        return Diagnostic(self.file, line, col + offset, code, message, severity)


class _Builder:
    def __init__(self, file: str):
        self.file, self.values, self.keys, self.quoted = file, {}, {}, set()
        self.diagnostics: list[Diagnostic] = []
        self.count = 0

    def diag(self, node, code, message):
        mark = node.start_mark
        self.diagnostics.append(Diagnostic(self.file, mark.line + 1, mark.column + 1, code, message))

    def build(self, node, path=(), depth=0):
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            raise _TooBig(node)
        self.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node, path, depth):
        out = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.diag(key_node, "bad-yaml", "mapping keys must be plain strings")
                continue
            key = key_node.value
            if key in out:
                first = self.keys[path + (key,)]
                self.diag(key_node, "duplicate-key", f"duplicate key '{key}' (first at line {first[0]})")
                continue
            self.keys[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, path + (key,), depth + 1)
        return out

    def _scalar(self, node, path):
        if node.style in ("'", '"'):
            self.quoted.add(path)
        if node.tag in _SCALAR_TAGS:
            return _constructor.construct_object(node)
        if node.tag.startswith(_TAG):
            return node.value  # timestamps, binary: keep the text the author wrote
        self.diag(node, "bad-yaml", f"unsupported YAML tag {node.tag}")
        return None


class _TooBig(Exception):
    def __init__(self, node):
        self.node = node


def load_yaml(text: str, file: str) -> tuple[Document | None, list[Diagnostic]]:
    """Parse one YAML document; return it (or None) and the diagnostics found."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [Diagnostic(file, line, col, "bad-yaml", problem)]
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        return None, [Diagnostic(file, 1, 1, "bad-yaml", _first_line(exc))]
    if root is None:
        return None, [Diagnostic(file, 1, 1, "empty-file", "the file holds no YAML document")]
    builder = _Builder(file)
    try:
        data = builder.build(root)
    except (_TooBig, RecursionError) as exc:
        node = getattr(exc, "node", root)
        builder.diag(node, "too-large", f"document nests deeper than {MAX_DEPTH} or has over {MAX_NODES} nodes")
        return None, builder.diagnostics
    doc = Document(file, data, MappingProxyType(builder.values), MappingProxyType(builder.keys),
                   frozenset(builder.quoted))
    return doc, builder.diagnostics


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
