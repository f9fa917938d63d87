"""YAML text → JSON-like data plus a source map of 1-based line and column.

    >>> doc, problems = load_yaml("a:\\n  b: [1, x]\\n", "p.yaml")
    >>> doc.data, doc.pos(("a", "b", 1)), doc.key_pos(("a", "b"))
    ({'a': {'b': [1, 'x']}}, (2, 10), (2, 3))

Files are read with the YAML 1.2 **core schema**, as JSON reads numbers:
``1e3`` is 1000.0, only ``true``/``false`` are booleans, ``0777`` is 777
(``0o777`` is octal), ``on`` and ``1:30`` are strings. A plain scalar that
YAML 1.1 read differently (``on`` was true, ``0777`` was 511, ``1:30`` was
90) gets a ``legacy-yaml`` warning saying what to write.

    >>> doc, problems = load_yaml("a: [1e3, on, 0o17]\\n", "p.yaml")
    >>> doc.data, [d.code for d in problems]
    ({'a': [1000.0, 'on', 15]}, ['legacy-yaml'])

Problems (syntax errors, duplicate keys, tags the DSL does not know, alias
bombs, nesting too deep) come back as diagnostics, never as exceptions.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType

import yaml

from .errors import Diagnostic

_TAG = "tag:yaml.org,2002:"

# YAML 1.2 core schema (spec 1.2.2, 10.3.2): what a plain scalar means.
_CORE = {
    "null": re.compile(r"(?:null|Null|NULL|~|)\Z"),
    "bool": re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z"),
    "int": re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z"),
    "float": re.compile(r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"),
}
_FIRST = {"null": ["n", "N", "~", ""], "bool": list("tTfF"), "int": list("-+0123456789"),
          "float": list("-+.0123456789")}


def _core_resolvers() -> dict:
    """PyYAML's implicit resolver table (first character → [(tag, regex)]) for the core schema."""
    table: dict = {}
    for kind, regex in _CORE.items():   # int before float: "12" is an int
        for first in _FIRST[kind]:
            table.setdefault(first, []).append((_TAG + kind, regex))
    return table


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when it is there


class _Loader(_Base):
    """Composes with the core schema's implicit tags instead of YAML 1.1's."""

    yaml_implicit_resolvers = _core_resolvers()


def core_value(kind: str, text: str):
    """The value of scalar ``text`` as core-schema type ``kind`` (str, null,
    bool, int, float); ValueError if it is not one (``!!int yes``).

    >>> core_value("int", "0777"), core_value("int", "0o777"), core_value("float", "1e-8")
    (777, 511, 1e-08)
    """
    if kind == "str":
        return text
    if not _CORE[kind].match(text) and not (kind == "float" and _CORE["int"].match(text)):
        raise ValueError(text)
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind == "int":
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        return int(text[2:] if base != 10 else text, base)
    special = text.lstrip("+-").lower()
    if special in (".inf", ".nan"):
        return float(text.lower().replace(".", ""))
    return float(text)


_YAML11 = yaml.resolver.Resolver()          # YAML 1.1's implicit tags, for the legacy-yaml warning
_YAML11_VALUES = yaml.SafeLoader("")


def _yaml11_value(text: str, tag: str | None = None):
    """What YAML 1.1 (PyYAML's safe loader) made of a plain scalar (with the
    explicit ``tag``, if any), or ``text`` when it was a string there or a tag
    the DSL never took (timestamp, merge).

    >>> _yaml11_value("on"), _yaml11_value("0777"), _yaml11_value("1:30"), _yaml11_value("1e3")
    (True, 511, 90, '1e3')
    """
    tag = tag or _YAML11.resolve(yaml.ScalarNode, text, (True, False))
    if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float"):
        return text
    node = yaml.ScalarNode(tag, text)
    try:   # the constructor, not construct_object, which would keep every node in a cache
        return _YAML11_VALUES.yaml_constructors[tag](_YAML11_VALUES, node)
    except (ValueError, TypeError, yaml.YAMLError):   # 0x_ matched YAML 1.1's int and is no int
        return text


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def legacy_meaning(text: str, value, tag: str | None = None) -> str | None:
    """The warning for a plain scalar (explicitly tagged ``tag``, if it is)
    whose YAML 1.1 meaning differs from ``value``, its YAML 1.2 one, with what
    to write instead; else None.

    >>> print(legacy_meaning("yes", "yes"))
    'yes' is the string "yes" (YAML 1.2); YAML 1.1 read it as true: write true for the boolean, or quote it ('yes') for the string
    """
    old = _yaml11_value(text, tag)
    if isinstance(old, str) or _same(old, value):   # 1e3, 0o17: text before, now what JSON means too
        return None
    was = "true" if old is True else "false" if old is False else repr(old)
    if isinstance(value, str):
        what = "the boolean" if isinstance(old, bool) else "the number"
        return (f"'{text}' is the string \"{text}\" (YAML 1.2); YAML 1.1 read it as {was}: "
                f"write {was} for {what}, or quote it ('{text}') for the string")
    if isinstance(old, int) and text.isdigit():   # 0777
        return (f"'{text}' is the decimal number {value} (YAML 1.2); YAML 1.1 read it as octal {old}: "
                f"write 0o{old:o} for octal, or {value} without the leading zero")
    return (f"'{text}' is the number {value!r} (YAML 1.2); YAML 1.1 read it as {was}: "
            f"write {was} for that, or {value!r}")


MAX_NODES = 200_000
MAX_DEPTH = 100
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null")}


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


_EXPLICIT = re.compile(r"(?:&\S+\s+)?!")   # a node's properties: an anchor, then a tag


class _Builder:
    def __init__(self, file: str, text: str):
        self.file, self.text, self.values, self.keys, self.spans = file, text, {}, {}, {}
        self.diagnostics: list[Diagnostic] = []
        self.count = 0

    def diag(self, node, code, message, severity="error"):
        mark = node.start_mark
        self.diagnostics.append(Diagnostic(self.file, mark.line + 1, mark.column + 1, code, message, severity))

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
            kind = node.tag.rsplit(":", 1)[-1]
            try:
                value = core_value(kind, node.value)
            except ValueError:
                self.diag(node, "bad-yaml", f"{node.value!r} is not a valid {kind} (YAML 1.2 core schema)")
                return None
            explicit = _EXPLICIT.match(self.text, node.start_mark.index)
            legacy = None if node.style else legacy_meaning(node.value, value, node.tag if explicit else None)
            if legacy:
                self.diag(node, "legacy-yaml", legacy, severity="warning")
            return value
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
    builder = _Builder(file, text)
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
