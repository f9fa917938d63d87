"""Run the server: HTTP worker processes on one port, and delivery worker processes.

    hookline serve pipelines --workers 2 --delivery-workers 1

An HTTP worker reads, validates, runs the sync steps, commits the branch jobs
and answers. A delivery worker leases jobs and calls the destinations. They
are separate processes so that delivering never slows the acknowledgements
(it would share one event loop otherwise), and the operating system runs them
on separate cores. After a commit with jobs an HTTP worker writes a byte to a
pipe the delivery workers watch (at most once per loop iteration), so delivery
starts at once instead of at the next poll.

One process does everything when there is one HTTP worker and nothing to
deliver in the background: no async branches, the ``memory:`` store (it
cannot be shared between processes) or ``--delivery-workers 0`` (deliver
inside each HTTP worker). Otherwise the parent binds the socket, forks the
workers, restarts a worker that dies on its own, and gives each the
parent-death signal: a ``kill -9`` of the parent ends them all.

SIGTERM/SIGINT: stop accepting, let in-flight requests and delivery attempts
finish (bounded by ``shutdown_timeout``), release leases, close connections,
exit 0; the parent forwards the signal to every worker.
"""
from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import time

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from . import metrics, tracing
from .ops import metrics_app
from .outbound import Outbound
from .reload import Reloader, watch
from .server import App, server as http_server

log = logging.getLogger("hookline")
DELIVERY_NICE = 19      # delivery workers' niceness relative to the HTTP workers (0-19); see docs/cli.md


def serve(pipelines, host: str, port: int, workers: int = 1, shutdown_timeout: float = 10.0,
          ready=None, store_url: str = "sqlite:hookline.db", max_backlog: int = 100_000,
          visibility_s: float = 60.0, admin=None, trusted=(), allow_hosts=(),
          delivery_workers: int = 1, delivery_nice: int = DELIVERY_NICE, loop: str = "asyncio",
          metrics_port: int | None = None, access=None, recompile=None, watch_paths=None) -> int:
    """Serve until SIGTERM. Metrics are counted when the admin endpoints are on or
    ``metrics_port`` is given (engine/metrics.py); ``access`` (engine.logs.AccessLog) writes
    one line per request. ``recompile()`` → ``(pipelines, diagnostics)`` makes SIGHUP reload
    (engine/reload.py); ``watch_paths`` (``--reload``) also reloads when a file there or a
    file a pipeline reads changes."""
    run = runner(resolve_loop(loop))
    counted = admin is not None or metrics_port is not None
    directory = metrics.private_dir() if counted else None
    if directory is not None:
        metrics.enable(directory)       # before the sockets: no client waits for the import
    try:
        return _serve(pipelines, host, port, workers, delivery_workers, delivery_nice, run, ready, metrics_port,
                      counted, shutdown_timeout=shutdown_timeout, store_url=store_url, max_backlog=max_backlog,
                      visibility_s=visibility_s, admin=admin, trusted=trusted, allow_hosts=allow_hosts,
                      access=access, recompile=recompile, watch_paths=watch_paths)
    finally:
        if directory is not None:
            metrics.remove_dir(directory)


def _serve(pipelines, host, port, workers, delivery_workers, delivery_nice, run, ready, metrics_port, counted,
           recompile, watch_paths, **options) -> int:
    sockets = bind_sockets(port, host, reuse_port=False)
    metrics_sockets = bind_sockets(metrics_port, host, reuse_port=False) if metrics_port is not None else []
    if ready:
        ready(sockets)
    options.update(metrics_sockets=metrics_sockets, counted=counted)
    if not delivers_apart(pipelines, options["store_url"], delivery_workers):
        delivery_workers = 0
    reloader = Reloader(recompile, pipelines) if recompile is not None else None
    if workers <= 1 and not delivery_workers:
        if watch_paths is not None:
            watch(watch_paths, pipelines)
        return run(_worker(pipelines, sockets, wake_fds=None, reloader=reloader, **options))
    if watch_paths is not None:
        watch(watch_paths, pipelines)       # the parent gets SIGHUP, compiles, passes it on
    if reloader is not None:
        reloader.quiet_workers = True      # the parent logs the diagnostics, once
    options["reloader"] = reloader
    return _supervise(pipelines, sockets, workers, delivery_workers, dict(options, nice=delivery_nice), run)


LOOPS = ("auto", "asyncio", "uvloop")


def resolve_loop(choice: str) -> str:
    """``auto`` → ``uvloop`` when it can be imported, else ``asyncio``. ``uvloop`` when it
    cannot be imported raises ValueError (a usage error: the operator asked for it)."""
    if choice not in LOOPS:
        raise ValueError(f"unknown event loop {choice!r} (one of {', '.join(LOOPS)})")
    if choice == "asyncio":
        return choice
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise ValueError("uvloop is not installed (pip install uvloop, or --loop asyncio)") from None
        return "asyncio"
    return "uvloop"


def runner(loop: str):
    """The function that runs a worker's coroutine to the end on a new event loop of kind
    ``loop``: ``asyncio`` or ``uvloop``, as :func:`resolve_loop` gives."""
    if loop not in ("asyncio", "uvloop"):
        raise ValueError(f"runner: {loop!r} is not asyncio or uvloop (see resolve_loop)")
    factory = None
    if loop == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop

    def run(coro):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(coro)
    return run


def delivers_apart(pipelines, store_url: str, delivery_workers: int) -> bool:
    """Whether delivery runs in processes of its own (see the module docstring)."""
    return (delivery_workers > 0 and any(p.branches for p in pipelines)
            and not store_url.lower().startswith("memory:"))


def _needs_store(pipelines, store_url, admin) -> bool:
    shared_limits = store_url.startswith("redis") and any(p.rate_limit for p in pipelines)
    return any(p.durable for p in pipelines) or admin is not None or shared_limits or _recorded(pipelines)


def _recorded(pipelines) -> bool:
    """Whether any pipeline keeps a run history (``receive.history``, on by default)."""
    return any(p.history is not None for p in pipelines)


def _recorder(store, pipelines, outage, counters):
    """The run history's recorder and its flushing task, or ``(None, None)``."""
    if store is None or not _recorded(pipelines):
        return None, None
    from .history import Recorder
    recorder = Recorder(store, outage=outage, metrics=counters)
    return recorder, asyncio.get_running_loop().create_task(recorder.run())


async def _stop_recording(task) -> None:
    """Cancel the flusher; it writes what is left first."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _worker(pipelines, sockets, wake_fds, shutdown_timeout, store_url, max_backlog, visibility_s,
                  admin, trusted, allow_hosts, metrics_sockets, counted, access, reloader=None,
                  **_delivery_only) -> int:
    """An HTTP worker; it delivers too unless ``wake_fds`` (pipes to the delivery workers) are given."""
    from .delivery import Backlog, Deliverer, Nudge
    from .durable import Outage
    tracing.start()          # in this process, after the fork: when the OTEL_* variables ask for it
    counters = metrics.Metrics() if counted else metrics.OFF
    outbound, outage = Outbound(allow_hosts=allow_hosts), Outage(metrics=counters)
    store = deliverer = backlog = nudge = None
    background = []
    if counted:
        background.append(asyncio.get_running_loop().create_task(counters.run()))
    if _needs_store(pipelines, store_url, admin):
        store, opening = await _open_store(store_url, outage, "requests that need it are answered 503")
        background += [opening] if opening else []
        backlog = Backlog(store, max_backlog, outage=outage)
        background.append(asyncio.get_running_loop().create_task(backlog.run()))
        if wake_fds is None:
            deliverer = Deliverer(store, pipelines, outbound, visibility_s=visibility_s, outage=outage,
                                  metrics=counters)
            delivering = asyncio.get_running_loop().create_task(deliverer.run())
            nudge = deliverer.wake.set
        else:
            nudge = Nudge(wake_fds)
    recorder, recording = _recorder(store, pipelines, outage, counters)
    if deliverer is not None:
        deliverer.history = recorder
    app = App(pipelines, outbound, store, backlog, nudge, admin, trusted, outage, counters, access, recorder)
    app.state.reloader = _on_sighup(reloader, app.swap, deliverer.swap if deliverer is not None else None)
    gc.collect()
    gc.freeze()   # compiled pipelines live for the whole process: keep them out of every GC pass
    server = http_server(app, xheaders=False, max_header_size=64 * 1024)     # timeouts: App.sweep
    background.append(asyncio.get_running_loop().create_task(app.sweep()))
    server.add_sockets(sockets)
    probes = HTTPServer(metrics_app(app.state), idle_connection_timeout=60) if metrics_sockets else None
    if probes is not None:
        probes.add_sockets(metrics_sockets)
    await _stopped()
    app.state.draining = True        # readiness answers 503 on the connections still open
    server.stop()
    deadline = time.monotonic() + shutdown_timeout
    while app.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if app.inflight:
        log.warning("shutdown: %d requests still running after %.0f s", app.inflight, shutdown_timeout)
    if deliverer is not None:
        await deliverer.stop(shutdown_timeout)
        await delivering
    await _stop_recording(recording)
    for task in background:
        task.cancel()
    if store is not None:
        await store.close()
    await asyncio.wait_for(server.close_all_connections(), timeout=5)
    if probes is not None:
        probes.stop()
        await asyncio.wait_for(probes.close_all_connections(), timeout=5)
    await app.outbound.close()
    counters.flush()
    if access is not None:
        access.flush()
    tracing.finish()
    return 0


async def _deliver(pipelines, wake_fd, shutdown_timeout, store_url, visibility_s, allow_hosts, nice,
                   counted, reloader=None, **_http_only) -> int:
    """A delivery worker: lease jobs, run their branches, until SIGTERM. Its event loop
    runs ``nice`` steps below the HTTP workers (``os.nice`` is per thread on Linux), so
    that where they share a core the acknowledgements come first and delivery takes the
    idle time."""
    from .delivery import Deliverer, watch as watch_wake
    tracing.start()
    from .durable import Outage
    counters = metrics.Metrics() if counted else metrics.OFF
    outbound, outage = Outbound(allow_hosts=allow_hosts), Outage(logging.getLogger("hookline.delivery"), counters)
    store, opening = await _open_store(store_url, outage, "nothing is delivered", for_delivery=True)
    os.nice(nice)     # this thread and those it starts later; the store's writer thread keeps
                      # the HTTP workers' priority, as it holds a lock they may wait for
    recorder, recording = _recorder(store, pipelines, outage, counters)
    deliverer = Deliverer(store, pipelines, outbound, visibility_s=visibility_s, outage=outage, metrics=counters,
                          history=recorder)
    watch_wake(wake_fd, deliverer.wake)
    _on_sighup(reloader, deliverer.swap)
    gc.collect()
    gc.freeze()
    delivering = asyncio.get_running_loop().create_task(deliverer.run())
    flushing = asyncio.get_running_loop().create_task(counters.run()) if counted else None
    await _stopped()
    await deliverer.stop(shutdown_timeout)
    await delivering
    await _stop_recording(recording)
    if flushing is not None:
        flushing.cancel()
    counters.flush()
    if opening is not None:
        opening.cancel()
    await store.close()
    await outbound.close()
    tracing.finish()
    return 0


def _on_sighup(reloader, *swaps):
    """Reload on SIGHUP in this worker: compile in a thread (requests go on meanwhile), then
    swap the new set in. One reload at a time; a SIGHUP during one asks for one more."""
    if reloader is None:
        return None
    reloader = Reloader(reloader.compile_paths, reloader.current, quiet=reloader.quiet_workers)
    reloader.swaps = [s for s in swaps if s is not None]
    loop = asyncio.get_running_loop()
    state = {"running": False, "again": False}

    def done(_future):
        state["running"] = False
        if state["again"]:
            start()

    def start():
        if state["running"]:
            state["again"] = True
            return
        state["running"], state["again"] = True, False
        loop.run_in_executor(None, reloader).add_done_callback(lambda f: loop.call_soon_threadsafe(done, f))

    loop.add_signal_handler(signal.SIGHUP, start)
    if _PENDING_HUP:            # one came while this worker was starting
        start()
    return reloader


_PENDING_HUP: list = []


def _remember_hup(signum, frame) -> None:
    _PENDING_HUP.append(signum)


async def _open_store(store_url, outage, then: str, for_delivery=False):
    """``(store, None)``; or, when the store cannot be opened (Redis not listening, SQLite on
    a path it cannot write), ``(store, task)``: the store stays closed — every call raises
    StoreUnavailable, which the request path answers with 503 and delivery waits out —
    while the task opens it as soon as it answers. One log line says so (``then``: what
    happens meanwhile), instead of a worker dying and restarting."""
    from .durable import REOPEN_S
    from .queue import StoreUnavailable, open_store
    store = open_store(store_url, for_delivery=for_delivery)
    try:
        await store.open()
        return store, None
    except StoreUnavailable as exc:
        outage.starting(exc, then)

    async def reopen():
        while True:
            await asyncio.sleep(REOPEN_S)
            try:
                await store.open()
            except StoreUnavailable as exc:
                outage.note(exc, "attempt(s) to open it")
            else:
                outage.recovered()
                return
    return store, asyncio.get_running_loop().create_task(reopen())


async def _stopped() -> None:
    """Return on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _supervise(pipelines, sockets, workers, delivery_workers, options, run) -> int:
    """Fork ``workers`` HTTP workers and ``delivery_workers`` delivery workers; restart
    one that dies on its own; forward SIGTERM/SIGINT; return when all have exited."""
    pipes = [os.pipe() for _ in range(delivery_workers)]   # one per delivery worker: all are woken
    for fd in (fd for pipe in pipes for fd in pipe):
        os.set_blocking(fd, False)
    parent = os.getpid()
    children: dict[int, tuple] = {}
    stopping = False

    def spawn(slot):
        # SIGTERM waits (blocked) until the new worker is in `children`: stop() then signals it
        # too; arriving in between, it left a worker nobody stopped, and serve never exited
        signal.pthread_sigmask(signal.SIG_BLOCK, _SPAWN_BLOCKED)
        try:
            _fork(slot)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SPAWN_BLOCKED)

    def _fork(slot):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _child(parent, f"hookline-{slot[0]}")
                if slot[0] == "http":
                    _close_all(read for read, _ in pipes)
                    # without delivery workers each HTTP worker delivers itself (wake_fds None)
                    wake = [write for _, write in pipes] or None
                    code = run(_worker(pipelines, sockets, wake, **options))
                else:
                    mine = pipes[slot[1]][0]
                    _close_all(fd for pipe in pipes for fd in pipe if fd != mine)
                    _close_all([*sockets, *options["metrics_sockets"]])
                    code = run(_deliver(pipelines, mine, **options))
            except BaseException:
                log.exception("%s worker failed", slot[0])
            finally:
                os._exit(code)
        children[pid] = slot

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        for sock in [*sockets, *options["metrics_sockets"]]:
            sock.close()   # new connections are refused at once, not queued for no one
        for pid in children:
            _kill(pid, signal.SIGTERM)

    def hup(signum, frame):
        nonlocal pipelines
        reloader = options.get("reloader")
        if reloader is None or stopping:
            return
        for pid in children:                 # they compile alongside, for themselves
            _kill(pid, signal.SIGHUP)
        new = reloader()                     # here for the log (once) and for restarted workers
        if new is not None:
            pipelines = new

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    for slot in [("http", i) for i in range(workers)] + [("delivery", i) for i in range(delivery_workers)]:
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        if slot is not None and not stopping:
            log.error("%s worker %d exited (status %d); restarting", slot[0], pid, status)
            time.sleep(0.2)
            if not stopping:          # SIGTERM during the pause: nothing to restart
                spawn(slot)
    return 0


def _close_all(things) -> None:
    """Close file descriptors (ints) or sockets a worker does not use."""
    for thing in things:
        thing.close() if hasattr(thing, "close") else os.close(thing)


def _child(parent: int, name: str) -> None:
    """In a new worker: default signal handling; a process name for ``ps``/``top``
    (``hookline-http``, ``hookline-delive``: Linux keeps 15 characters); and death with the parent (Linux's
    PR_SET_PDEATHSIG), so that a ``kill -9`` of ``hookline serve`` leaves no worker
    holding the port or leases."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, _remember_hup)        # until the worker's loop handles it
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SPAWN_BLOCKED)      # blocked by spawn() in the parent
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15])                            # 15 = PR_SET_NAME
        libc.prctl(1, signal.SIGKILL)                                 # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass                                                          # not Linux
    if os.getppid() != parent:                                        # it died before prctl
        os._exit(1)


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_SPAWN_BLOCKED = _STOP_SIGNALS | {signal.SIGHUP}   # a reload waits until a new worker is known


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def configure_logging(fmt: str = "text", level=logging.INFO):
    """Log records and access lines to standard error as ``fmt`` (text or json); returns the
    access log for :func:`serve`."""
    from .logs import configure
    return configure(fmt, level)
