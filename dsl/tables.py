"""The top-level ``tables:`` key: lookup tables, read once when the pipeline loads.

A table is given inline (``values``) or read from a JSON, YAML or CSV file
next to the pipeline (``file``). Either way it becomes a frozen mapping from
key text to value, which ``lookup('name', key, default?)`` reads
(dsl/functions/lookup.py). Sources:

* an object: its keys and values, as they are;
* a list of records (objects; every CSV row is one): ``key`` names the
  field holding the key (a CSV file: default its first column) and
  ``value`` the field returned (default the whole record; a two-column CSV:
  the second column).

Keys are text: a number key is stored by its JSON text (``404`` → ``"404"``).
Every problem is a ``bad-table`` diagnostic at the table's ``values`` or
``file``, naming the row.

    >>> build({"key": "sku", "value": "bin"}, [{"sku": "A-1", "bin": "B7"}])
    mappingproxy({'A-1': 'B7'})
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from types import MappingProxyType

import orjson

from .functions.lookup import key_text
from .loader import load_yaml

MAX_FILE_BYTES = 16 * 1024 * 1024


class TableError(Exception):
    """A table that cannot be built; the message says why and where."""


def compile_tables(cc) -> MappingProxyType:
    """Every table of the pipeline; a table with problems is empty (its diagnostics are in ``cc``)."""
    tables = {}
    for name, spec in cc.get(()).get("tables", {}).items():
        path = ("tables", name, "values" if "values" in spec else "file")
        if "file" in spec:
            cc.reads.add(cc.base_dir / spec["file"])   # part of the pipeline's version
        try:
            rows, is_csv = (spec["values"], False) if "values" in spec else _read(cc.base_dir, spec["file"])
            tables[name] = build(spec, rows, is_csv)
        except TableError as exc:
            cc.error(path, "bad-table", f"table '{name}': {exc}")
            tables[name] = MappingProxyType({})
    return MappingProxyType(tables)


def _read(base_dir: Path, name: str):
    """``(data, is_csv)`` from a table file."""
    file = base_dir / name
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise TableError(f"{name} is larger than {MAX_FILE_BYTES:,} bytes")
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"cannot read {name}: {getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return _csv(text, name), True
    return (_json(text, name) if suffix == ".json" else _yaml(text, name)), False


def _json(text: str, name: str):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise TableError(f"{name} is not JSON: {exc}") from None


def _yaml(text: str, name: str):
    doc, problems = load_yaml(text, name)
    if problems:
        raise TableError(f"{name} is not usable YAML: {problems[0]}")
    return doc.data


def _csv(text: str, name: str) -> list[dict]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise TableError(f"{name} has no header line")
    rows = []
    for number, cells in enumerate(reader, start=2):
        if len(cells) != len(header) and cells:
            raise TableError(f"{name} line {number} has {len(cells)} cells; the header has {len(header)}")
        if cells:
            rows.append(dict(zip(header, cells)))
    return rows


def build(spec: dict, rows, is_csv: bool = False) -> MappingProxyType:
    """The frozen table from a source (``spec`` gives ``key`` and ``value`` for records)."""
    if isinstance(rows, dict):
        if "key" in spec or "value" in spec:
            raise TableError("key and value are for a list of records; this is an object")
        pairs = [(f"key {k!r}", k, v) for k, v in rows.items()]
    elif isinstance(rows, list):
        pairs = _records(rows, spec, is_csv)
    else:
        raise TableError("must be an object (key → value) or a list of records")
    table = {}
    for where, key, value in pairs:
        text = key_text(key)
        if text is None:
            raise TableError(f"{where}: a key must be a string or a number")
        if text in table:
            raise TableError(f"{where}: key {text!r} is there twice")
        table[text] = value
    return MappingProxyType(table)


def _records(rows: list, spec: dict, is_csv: bool) -> list[tuple]:
    columns = list(rows[0]) if rows and isinstance(rows[0], dict) else []
    key = spec.get("key") or (columns[0] if is_csv and columns else None)
    if key is None:
        raise TableError("a list of records needs key: the field that holds the key")
    value = spec.get("value") or (columns[1] if is_csv and len(columns) == 2 else None)
    pairs = []
    for i, row in enumerate(rows):
        where = f"line {i + 2}" if is_csv else f"record {i + 1}"
        if not isinstance(row, dict) or key not in row or (value is not None and value not in row):
            wanted = f"{key!r}" + (f" and {value!r}" if value else "")
            raise TableError(f"{where} is not an object with {wanted}")
        pairs.append((where, row[key], row if value is None else row[value]))
    return pairs
