"""The log, as text or JSON lines on standard error (``serve --log-format``).

Every line has a time, a level, a logger name, the process id and a message;
in JSON, lines that describe a request or a delivery attempt also carry their
facts as keys (``fields``). Access lines (one per answered request) do not go
through :mod:`logging`'s per-record machinery, which costs ~10 µs a line: the
request path appends a formatted line to a buffer that is written once per
event-loop iteration (:class:`AccessLog`).

Every worker of ``serve --workers N`` writes to the same standard error, often a
pipe (a container runtime, journald). Lines go out in writes of whole lines of
at most ``PIPE_BUF`` bytes (:func:`write_lines`), which a pipe keeps whole even
when it is full and several processes wait to write: one process's line never
lands inside another's.

What never goes in: request or response bodies, header values (so no
``Authorization``, cookie or signature), query strings (an API key may be one).
The path is logged without its query.

    >>> print(AccessLog("text").format("orders", "a1b2c3d4e5f6", "POST", "/hooks/orders", 202, 0.0012, "9f2c",
    ...                                 "0193a", "", at=1796380200.5).replace(str(_PID), "PID"), end="")
    2026-12-04 10:30:00.500 INFO hookline.access[PID]: POST /hooks/orders 202 1.20ms pipeline=orders version=a1b2c3d4e5f6 run=9f2c delivery=0193a trace=-
"""
from __future__ import annotations

import asyncio
import logging
import os
import select
import sys
import threading
import time

import orjson

FORMATS = ("text", "json")
ACCESS = "hookline.access"
PIPE_BUF = getattr(select, "PIPE_BUF", 512)   # a pipe writes this many bytes or fewer at once, whole
_PID = os.getpid()


def configure(fmt: str = "text", level=logging.INFO) -> AccessLog:
    """Send every log record to standard error in ``fmt``; returns the access log to use."""
    access = AccessLog(fmt)
    handler = _Handler(access)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return access


def fields(**facts) -> dict:
    """``extra=`` for a log call: the facts a JSON line carries as keys.

        log.warning("job %s dead: %s", job.id, why, extra=fields(job=job.id, error=why))
    """
    return {"fields": facts}


class TextFormatter(logging.Formatter):
    """``2026-12-04 10:30:00.123 WARNING hookline.delivery[4242]: message``"""

    def format(self, record) -> str:
        text = f"{_text_time(record.created)} {record.levelname} {record.name}[{record.process}]: " \
               f"{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, then the record's
    ``fields`` and, for an error with a traceback, ``exception``."""

    def format(self, record) -> str:
        line = {"time": iso_time(record.created), "level": record.levelname.lower(), "logger": record.name,
                "pid": record.process, "message": record.getMessage(), **getattr(record, "fields", {})}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def write_lines(fd: int, data: bytes) -> None:
    """Write ``data`` (lines, each ending in a newline) to ``fd`` in pieces of whole lines of
    at most :data:`PIPE_BUF` bytes (a longer line alone), continuing after a short write.

    A pipe writes a piece that small in one go, never mixed with what other processes
    write to it; one large write may be split around theirs when the pipe is full."""
    start, size = 0, len(data)
    while start < size:
        end = start + PIPE_BUF
        if end < size:
            cut = data.rfind(b"\n", start, end)
            end = cut + 1 if cut >= 0 else (data.find(b"\n", end) + 1 or size)
        piece = memoryview(data)[start:end]
        while piece:
            piece = piece[os.write(fd, piece):]
        start = end


class _Handler(logging.StreamHandler):
    """Standard error, a record at a time in whole lines (:func:`write_lines`); writes the
    access lines waiting in the buffer first, so that lines keep their order."""

    def __init__(self, access):
        super().__init__(sys.stderr)
        self.access = access

    def emit(self, record):
        self.access.flush_here()
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):       # not a file (a test's capture)
            return super().emit(record)
        try:
            line = self.format(record) + "\n"
            self.stream.flush()         # anything written to sys.stderr directly goes first
            write_lines(fd, line.encode("utf-8", "replace"))
        except Exception:
            self.handleError(record)


class AccessLog:
    """One line per answered request, buffered and written at the end of the event-loop
    iteration (or when a log record is written, or at :meth:`flush`)."""

    def __init__(self, fmt: str = "text", out=None):
        self.format = self._json if fmt == "json" else self._text
        self.out = out or (lambda data: write_lines(2, data))
        self.lines: list = []
        self.owner = threading.get_ident()

    def request(self, pipeline, version, method, path, status, seconds, run_id, delivery, trace) -> None:
        if not self.lines:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:        # no loop (a test calling directly): at once
                self.lines.append(self.format(pipeline, version, method, path, status, seconds, run_id, delivery,
                                              trace))
                self.flush()
                return
            self.owner = threading.get_ident()
        self.lines.append(self.format(pipeline, version, method, path, status, seconds, run_id, delivery, trace))

    def flush(self) -> None:
        if self.lines:
            data, self.lines = "".join(self.lines).encode("utf-8", "replace"), []
            try:
                self.out(data)
            except OSError:
                pass        # standard error closed: nothing to tell anyone

    def flush_here(self) -> None:
        """Flush when called on the thread that fills the buffer (a log call from another
        thread waits for the loop's own flush)."""
        if self.lines and threading.get_ident() == self.owner:
            self.flush()

    @staticmethod
    def _text(pipeline, version, method, path, status, seconds, run_id, delivery, trace, at=None) -> str:
        return (f"{_text_time(time.time() if at is None else at)} INFO {ACCESS}[{_PID}]: {method} {_safe(path)} "
                f"{status} {seconds * 1000:.2f}ms pipeline={pipeline} version={version or '-'} run={run_id or '-'} "
                f"delivery={delivery or '-'} trace={trace or '-'}\n")

    @staticmethod
    def _json(pipeline, version, method, path, status, seconds, run_id, delivery, trace, at=None) -> str:
        return orjson.dumps({
            "time": iso_time(time.time() if at is None else at), "level": "info", "logger": ACCESS, "pid": _PID,
            "message": f"{method} {path} {status}", "pipeline": pipeline, "version": version, "method": method, "path": path,
            "status": status, "duration_ms": round(seconds * 1000, 3), "run_id": run_id,
            "delivery_id": delivery, "trace_id": trace}).decode() + "\n"


def _safe(path: str) -> str:
    """The path as one token of a text line: quoted (JSON escapes) when it holds a space,
    a quote or a control character, so a client cannot forge a line."""
    if path.isprintable() and " " not in path and '"' not in path:
        return path
    return orjson.dumps(path).decode()


_stamps: dict = {}


def _second(t: float, fmt: str) -> str:
    key = (int(t), fmt)
    stamp = _stamps.get(key)
    if stamp is None:
        if len(_stamps) > 8:
            _stamps.clear()
        stamp = _stamps[key] = time.strftime(fmt, time.gmtime(int(t)))
    return stamp


def _text_time(t: float) -> str:
    """UTC, to the millisecond: ``2026-12-04 10:30:00.123``."""
    return f"{_second(t, '%Y-%m-%d %H:%M:%S')}.{int(t * 1000) % 1000:03d}"


def iso_time(t: float) -> str:
    """RFC 3339 UTC: ``2026-12-04T10:30:00.123Z``."""
    return f"{_second(t, '%Y-%m-%dT%H:%M:%S')}.{int(t * 1000) % 1000:03d}Z"


def _forked() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_forked)
