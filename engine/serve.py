"""Run the server: one process, or N worker processes on one port.

SIGTERM/SIGINT: stop accepting, let in-flight requests finish (bounded by
``shutdown_timeout``), close connections, exit 0. With ``workers > 1`` the
parent binds the socket, forks the workers, forwards the signal to them and
restarts a worker that dies on its own.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .outbound import Outbound
from .server import App

log = logging.getLogger("hookline")


def serve(pipelines, host: str, port: int, workers: int = 1, shutdown_timeout: float = 10.0,
          ready=None, store_url: str = "sqlite:hookline.db", max_backlog: int = 100_000,
          visibility_s: float = 60.0, admin=None, trusted=(), allow_hosts=()) -> int:
    sockets = bind_sockets(port, host, reuse_port=False)
    if ready:
        ready(sockets)
    options = {"shutdown_timeout": shutdown_timeout, "store_url": store_url, "max_backlog": max_backlog,
               "visibility_s": visibility_s, "admin": admin, "trusted": trusted, "allow_hosts": allow_hosts}
    if workers <= 1:
        return asyncio.run(_worker(pipelines, sockets, **options))
    return _supervise(pipelines, sockets, workers, options)


async def _open_delivery(pipelines, store_url, max_backlog, outbound, visibility_s, admin):
    """The store and the background deliverer, when any pipeline (or the admin API) needs them."""
    shared_limits = store_url.startswith("redis") and any(p.rate_limit for p in pipelines)
    if not any(p.durable for p in pipelines) and admin is None and not shared_limits:
        return None, None, None
    from .delivery import Deliverer
    from .queue import open_store
    store = open_store(store_url)
    await store.open()
    deliverer = Deliverer(store, pipelines, outbound, max_backlog=max_backlog, visibility_s=visibility_s)
    task = asyncio.get_running_loop().create_task(deliverer.run())
    return store, deliverer, task


async def _worker(pipelines, sockets, shutdown_timeout, store_url, max_backlog, visibility_s, admin,
                  trusted, allow_hosts) -> int:
    outbound = Outbound(allow_hosts=allow_hosts)
    store, deliverer, delivering = await _open_delivery(pipelines, store_url, max_backlog, outbound,
                                                        visibility_s, admin)
    app = App(pipelines, outbound, store, deliverer, admin, trusted)
    gc.collect()
    gc.freeze()   # compiled pipelines live for the whole process: keep them out of every GC pass
    server = HTTPServer(app, xheaders=False, idle_connection_timeout=60, body_timeout=60,
                        max_header_size=64 * 1024)
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    deadline = time.monotonic() + shutdown_timeout
    while app.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if app.inflight:
        log.warning("shutdown: %d requests still running after %.0f s", app.inflight, shutdown_timeout)
    if deliverer is not None:
        await deliverer.stop(shutdown_timeout)
        await delivering
        await store.close()
    await asyncio.wait_for(server.close_all_connections(), timeout=5)
    await app.outbound.close()
    return 0


def _supervise(pipelines, sockets, workers, options) -> int:
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os._exit(asyncio.run(_worker(pipelines, sockets, **options)))
        children[pid] = slot

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        for sock in sockets:
            sock.close()   # new connections are refused at once, not queued for no one
        for pid in children:
            _kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(workers):
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
            log.error("worker %d exited (status %d); restarting", pid, status)
            time.sleep(0.2)
            spawn(slot)
    return 0


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def configure_logging(level=logging.INFO):
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
