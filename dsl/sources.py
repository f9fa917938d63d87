"""A pipeline version's source: what compiles that version again after the files changed.

An async job is delivered by the version of the pipeline that accepted it, even after a
reload changed or removed the pipeline, so the store keeps each such version's source
(engine/queue). The source is the pipeline's text and every file it reads that is not a
secret — JSON Schemas, tables — as they were when the version was compiled. Files read by
``${file:…}`` are secrets: only their names are kept, and like ``${env:…}`` they are read
from the current environment when a stored version is compiled again.

    >>> encoded = capture("a1b2c3d4e5f6", "orders", "/srv/p/orders.yaml", "pipeline: orders",
    ...                   "/srv/p", {"schemas/o.json": b"{}"}, ["secrets/token"])
    >>> sorted(orjson.loads(encoded))
    ['base', 'file', 'files', 'pipeline', 'secrets', 'text', 'version']
    >>> described(encoded)
    ('orders', 'a1b2c3d4e5f6')
"""
from __future__ import annotations

import base64
import dataclasses
import os
import tempfile
from pathlib import Path

import orjson

__all__ = ["capture", "compile_source", "described"]


def capture(version: str, name: str, file: str, text: str, base_dir, files: dict, secrets) -> bytes:
    """The source of one version, encoded for the store: ``files`` maps paths relative to
    ``base_dir`` to their bytes; ``secrets`` are the relative paths of ``${file:}`` reads."""
    return orjson.dumps({
        "version": version, "pipeline": name, "file": file, "text": text,
        "base": os.path.abspath(base_dir),
        "files": {rel: base64.b64encode(data).decode() for rel, data in sorted(files.items())},
        "secrets": list(secrets)})


def described(encoded: bytes) -> tuple[str, str]:
    """``(pipeline name, version)`` of a stored source."""
    doc = orjson.loads(encoded)
    return doc["pipeline"], doc["version"]


def compile_source(encoded: bytes, env=None):
    """Compile a stored version again: ``(Pipeline or None, [Diagnostic])``. Its files are
    laid out in a temporary directory as they were; ``${file:}`` secrets point at the
    files in the pipeline's own directory as they are now, ``${env:}`` reads ``env``
    (default ``os.environ``). The pipeline keeps the stored version and file name."""
    from .compiler import compile_text       # the compiler imports this module
    doc = orjson.loads(encoded)
    with tempfile.TemporaryDirectory(prefix="hookline-version-") as tmp:
        base = _laid_out(Path(tmp), doc)
        pipeline, problems = compile_text(doc["text"], doc["file"], env=env, base_dir=base)
    if pipeline is None:
        return None, problems
    return dataclasses.replace(pipeline, version=doc["version"], reads=(), source=encoded), problems


def _laid_out(tmp: Path, doc: dict) -> Path:
    """The directory to compile in: deep enough below ``tmp`` that paths going up
    (``../shared/order.json``) stay inside it."""
    names = [*doc["files"], *doc["secrets"]]
    depth = max((Path(rel).parts.count("..") for rel in names), default=0)
    base = tmp.joinpath(*["d"] * depth)
    base.mkdir(parents=True, exist_ok=True)
    for rel, data in doc["files"].items():
        _parent(base / rel).write_bytes(base64.b64decode(data))
    for rel in doc["secrets"]:
        target = Path(doc["base"]) / rel
        if not (base / rel).exists():
            _parent(base / rel).symlink_to(target)
    return base


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
