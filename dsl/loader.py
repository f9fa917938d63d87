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
    spans: MappingProxyType = field(repr=False)   # scalar path -> (start index, end index, style)
    text: str = field(repr=False, default="")

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

    def diag(self, path, code: str, message: str, *, key=False, offset=None, severity="error") -> Diagnostic:
        """A diagnostic at the key, the value, or ``offset`` characters into a string value."""
        if offset is not None and not key:
            line, col = self.locate(tuple(path), offset)
        else:
            line, col = self.key_pos(path) if key else self.pos(path)
        return Diagnostic(self.file, line, col, code, message, severity)

    def locate(self, path, offset: int) -> tuple[int, int]:
        """Line and column in the file of character ``offset`` of the string at
        ``path`` (the decoded value), through quotes, escapes and folded lines."""
        span, value = self.spans.get(path), self._value(path)
        if span is None or not isinstance(value, str):
            line, col = self.pos(path)
            return line, col + offset
        start, end, style = span
        raw = self.text[start:end]
        where = _char_indices(raw, style)
        if len(where) == len(value):
            index = where[offset] if offset < len(where) else (where[-1] + 1 if where else 0)
        else:   # a construct the scanner does not model: match characters instead
            first = raw.find("\n") + 1 if style in ("|", ">") else (1 if style in ("'", '"') else 0)
            index = _align(value, raw, first, offset)
        return self._line_col(start + index)

    def _value(self, path):
        value = self.data
        try:
            for key in path:
                value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
        return value

    def _line_col(self, index: int) -> tuple[int, int]:
        line_start = self.text.rfind("\n", 0, index) + 1
        return self.text.count("\n", 0, index) + 1, index - line_start + 1


_ESCAPE_WIDTH = {"x": 4, "u": 6, "U": 10}


def _char_indices(raw: str, style: str) -> list[int]:
    """For each character of a scalar's value, its index in the raw source:
    quotes, escapes, line continuations, folding and block indentation."""
    out, i, n = [], 0, len(raw)
    if style in ("'", '"'):
        i, n = 1, len(raw) - 1
    elif style in ("|", ">"):
        i = raw.find("\n") + 1
        indent = len(raw[i:]) - len(raw[i:].lstrip(" "))
        i += indent
    while i < n:
        c = raw[i]
        if style == '"' and c == "\\":
            if raw[i + 1:i + 2] == "\n":
                i = _skip_blanks(raw, i + 2, n)
                continue
            out.append(i)
            i += _ESCAPE_WIDTH.get(raw[i + 1:i + 2], 2)
        elif style == "'" and raw.startswith("''", i):
            out.append(i)
            i += 2
        elif c == "\n":
            out.append(i)
            i = i + 1 + indent if style in ("|", ">") else _skip_blanks(raw, i + 1, n)
        else:
            out.append(i)
            i += 1
    return out


def _skip_blanks(raw: str, i: int, n: int) -> int:
    while i < n and raw[i] in " \t":
        i += 1
    return i


def _align(decoded: str, raw: str, j: int, target: int) -> int:
    """Index in ``raw`` of ``decoded[target]``: walk both, letting raw skip
    what decoding removed (quotes, escapes, line breaks and indentation)."""
    for ch in decoded[:target]:
        k = raw.find(ch, j, j + 24)
        j = k + 1 if k != -1 else j + 1
    if target < len(decoded):
        k = raw.find(decoded[target], j, j + 24)
        if k != -1:
            return k
    return min(j, max(len(raw) - 1, 0))


class _Builder:
    def __init__(self, file: str):
        self.file, self.values, self.keys, self.spans = file, {}, {}, {}
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
            self._tag(node, "map")
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            self._tag(node, "seq")
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _tag(self, node, kind):
        if node.tag != _TAG + kind:
            self.diag(node, "bad-yaml", f"unsupported YAML tag {node.tag}")

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
        self.spans[path] = (node.start_mark.index, node.end_mark.index, node.style or "")
        if node.tag in _SCALAR_TAGS:
            try:
                return _constructor.construct_object(node)
            except (ValueError, KeyError, IndexError, TypeError, yaml.YAMLError):
                self.diag(node, "bad-yaml", f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}")
                return None
        if node.tag in (_TAG + "timestamp", _TAG + "binary"):
            return node.value  # keep the text the author wrote
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
    except yaml.reader.ReaderError as exc:
        line, col = _index_line_col(text, exc.position)
        col = min(col, len(text.splitlines()[line - 1]) + 1 if text.splitlines()[line - 1:] else 1)
        return None, [Diagnostic(file, line, col, "bad-yaml",
                                 f"character {exc.character!r} is not allowed in YAML")]
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
                   MappingProxyType(builder.spans), text)
    return doc, builder.diagnostics


def _index_line_col(text: str, index: int) -> tuple[int, int]:
    index = max(0, min(index, len(text)))
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
