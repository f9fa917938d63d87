"""Regular expressions, run by RE2: time linear in the subject, whatever the pattern.

Patterns are literals, compiled when the pipeline loads; RE2's syntax is
Python's without backreferences and lookaround (a pattern using them is a
load-time ``bad-argument``). ``regex_match`` and ``regex_extract`` search
anywhere in the subject: anchor with ``^`` and ``$``.

    >>> match = _prepare_match(("", "^refs/heads/"), None)
    >>> match("refs/heads/main", "^refs/heads/")
    True
    >>> extract = _prepare_extract(("", r"(?P<first>\\S+)\\s+(?P<last>.+)"), None)
    >>> extract("Ada King Lovelace", None)
    {'first': 'Ada', 'last': 'King Lovelace'}

The subject is searched as UTF-8 bytes (RE2's own form; ``.`` still matches
one character), which halves the cost of each match in the Python binding.
"""
from __future__ import annotations

import re

import re2

from .base import ArgError, Function, Param

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False          # a bad pattern is a diagnostic, not a line on stderr
_SUBJECT = Param("subject", ("string",))
_PATTERN = Param("pattern", ("string",), literal=True)
MAX_MATCHES = 100_000    # ~2 µs each in the binding: a request gets at most ~0.2 s of matching
_TEMPLATE_PART = re.compile(r"\\(?:(\d{1,2})|g<([^<>]*)>|(\\)|(.?))", re.S)


def compile_pattern(pattern: str):
    """RE2's compiled form of ``pattern``; ArgError for argument 2 when RE2 refuses it."""
    try:
        return re2.compile(pattern.encode(), _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ArgError(1, f"is not an RE2 pattern: {reason} (RE2 has no backreferences or "
                          "lookaround)") from None


def _prepare_match(literals, env):
    compiled = compile_pattern(literals[1])
    return lambda subject, pattern: compiled.search(subject.encode()) is not None


def _prepare_extract(literals, env):
    """The first match: its text without groups, the group's with one, a list with several,
    an object with named groups; null when nothing matches."""
    compiled = compile_pattern(literals[1])
    names = tuple(sorted((i, n.decode()) for n, i in compiled.groupindex.items()))
    count = compiled.groups

    def extract(subject, pattern):
        found = compiled.search(subject.encode())
        if found is None:
            return None
        groups = [None if g is None else g.decode() for g in found.groups()]
        if names:
            return {name: groups[i - 1] for i, name in names}
        return found.group(0).decode() if count == 0 else groups[0] if count == 1 else groups
    return extract


def _template(text: str, compiled, index: int) -> tuple:
    """A replacement as parts: bytes to copy, or a group number (``\\1``, ``\\g<name>``)."""
    parts, at = [], 0
    for m in _TEMPLATE_PART.finditer(text):
        parts.append(text[at:m.start()].encode())
        number, name, backslash, other = m.groups()
        if backslash:
            parts.append(b"\\")
        elif other is not None:
            raise ArgError(index, "has a backslash that is not \\1…\\99, \\g<name> or \\\\")
        else:
            parts.append(_group(number if number is not None else name, compiled, index))
        at = m.end()
    parts.append(text[at:].encode())
    return tuple(p for p in parts if p != b"")


def _group(ref: str, compiled, index: int) -> int:
    number = int(ref) if ref.isdigit() else compiled.groupindex.get(ref.encode())
    if number is None or number > compiled.groups:
        raise ArgError(index, f"refers to group {ref}, which the pattern does not have")
    return number


def _prepare_replace(literals, env):
    compiled = compile_pattern(literals[1])
    known = literals[2] if isinstance(literals[2], str) else None
    fixed = _template(known, compiled, 2) if known is not None else None   # checked at load time
    limit = env.max_bytes

    def replace(subject, pattern, replacement):
        template = fixed if replacement == known else _template(replacement, compiled, 2)
        raw = subject.encode()
        out, size, last = [], 0, 0
        for count, found in enumerate(compiled.finditer(raw)):
            if count == MAX_MATCHES:
                raise ArgError(0, f"has more than {MAX_MATCHES} matches")
            start, end = found.span()
            pieces = [raw[last:start]] + [p if type(p) is bytes else found.group(p) or b"" for p in template]
            size += sum(map(len, pieces))
            if size > limit:
                raise ArgError(0, f"would give a result longer than the body limit ({limit} bytes)")
            out += pieces
            last = end
        out.append(raw[last:])
        return b"".join(out).decode()
    return replace


FUNCTIONS = (
    Function("regex_match", (_SUBJECT, _PATTERN), _prepare_match),
    Function("regex_extract", (_SUBJECT, _PATTERN), _prepare_extract),
    Function("regex_replace", (_SUBJECT, _PATTERN, Param("replacement", ("string",))), _prepare_replace),
)
