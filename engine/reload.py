"""Change pipelines without a restart: ``hookline serve --reload`` and SIGHUP.

A reload compiles every pipeline again. Any error diagnostic keeps the pipelines being
served: each diagnostic is logged as ``file:line:col``, the failure counted, and the server
stays ready. Otherwise the new set is swapped in (:meth:`engine.server.App.swap`,
:meth:`engine.delivery.Deliverer.swap`): requests already routed finish on the version they
started with, new ones get the new version; connections stay open.

With several processes, the parent passes SIGHUP on to every worker, which compiles and
swaps for itself, and compiles too: it logs the diagnostics (once) and keeps the new set for
workers it may have to restart. ``--reload`` watches the pipeline paths and every file a
pipeline reads (schemas, ``${file:}`` secrets) and sends the server SIGHUP on a change.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

log = logging.getLogger("hookline")

__all__ = ["Reloader", "watch"]


class Reloader:
    """``reloader()`` recompiles with ``compile_paths()`` → ``(pipelines, diagnostics)`` and
    hands a clean result to each of ``swaps``; returns the new pipelines, or None."""

    def __init__(self, compile_paths, current=(), quiet=False):
        self.compile_paths = compile_paths
        self.current = tuple(current)
        self.swaps: list = []
        self.failed = 0
        self.quiet = quiet              # a worker whose parent logs the diagnostics
        self.quiet_workers = False      # set on the parent's: its workers are quiet

    def __call__(self):
        try:
            pipelines, problems = self.compile_paths()
        except Exception:       # never let a reload take the server down
            log.exception("reload failed; still serving the pipelines loaded before")
            self.failed += 1
            return None
        errors = [d for d in problems if d.severity == "error"]
        if errors or not pipelines:
            self.failed += 1
            if self.quiet:
                log.debug("reload failed (%d error(s)); the server logs them", len(errors))
                return None
            for d in errors:
                log.error("reload: %s", d)
            log.error("reload failed (%d error(s), %d failed reload(s) so far); still serving %d pipeline(s)",
                      len(errors), self.failed, len(self.current))
            return None
        (log.debug if self.quiet else log.info)("reload: %s", changes(self.current, pipelines))
        self.current = tuple(pipelines)
        for swap in self.swaps:
            swap(self.current)
        return self.current


def changes(old, new) -> str:
    """``2 pipeline(s): +added, ~changed@version, -removed`` for the log line.

    >>> from types import SimpleNamespace as P
    >>> changes([P(name="a", version="1"), P(name="b", version="1")], [P(name="a", version="2"), P(name="c", version="1")])
    '2 pipeline(s): +c@1 ~a@2 -b'
    """
    before = {p.name: p.version for p in old}
    after = {p.name: p.version for p in new}
    parts = [f"+{n}@{v}" for n, v in sorted(after.items()) if n not in before]
    parts += [f"~{n}@{v}" for n, v in sorted(after.items()) if n in before and before[n] != v]
    parts += [f"-{n}" for n in sorted(before) if n not in after]
    return f"{len(after)} pipeline(s): " + (" ".join(parts) or "no change")


def watch(paths, pipelines, on_change=None, debounce_ms: int = 50) -> threading.Event:
    """Watch ``paths`` and the directories of every file ``pipelines`` read, in a daemon
    thread; on a change call ``on_change`` (default: SIGHUP to this process). Returns the
    event that stops it."""
    from watchfiles import watch as _watch
    roots = {str(Path(p).resolve()) for p in paths}
    roots |= {str(Path(f).resolve().parent) for p in pipelines for f in p.reads}
    roots = sorted(r for r in roots if Path(r).exists())
    stop = threading.Event()
    on_change = on_change or (lambda: os.kill(os.getpid(), signal.SIGHUP))

    def run():
        for _ in _watch(*roots, stop_event=stop, debounce=debounce_ms, step=30, rust_timeout=500,
                        yield_on_timeout=False, raise_interrupt=False):
            on_change()

    threading.Thread(target=run, name="hookline-reload-watch", daemon=True).start()
    return stop
