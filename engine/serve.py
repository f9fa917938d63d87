"""Run the server: one process, or N worker processes on one port.

SIGTERM/SIGINT: stop accepting, let in-flight requests finish (bounded by
``shutdown_timeout``), close connections, exit 0. With ``workers > 1`` the
parent binds the socket, forks the workers, forwards the signal to them and
restarts a worker that dies on its own.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .server import App

log = logging.getLogger("hookline")


def serve(pipelines, host: str, port: int, workers: int = 1, shutdown_timeout: float = 10.0,
          ready=None) -> int:
    sockets = bind_sockets(port, host, reuse_port=False)
    if ready:
        ready(sockets)
    if workers <= 1:
        return asyncio.run(_worker(pipelines, sockets, shutdown_timeout))
    return _supervise(pipelines, sockets, workers, shutdown_timeout)


async def _worker(pipelines, sockets, shutdown_timeout) -> int:
    app = App(pipelines)
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
    await asyncio.wait_for(server.close_all_connections(), timeout=5)
    await app.outbound.close()
    return 0


def _supervise(pipelines, sockets, workers, shutdown_timeout) -> int:
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os._exit(asyncio.run(_worker(pipelines, sockets, shutdown_timeout)))
        children[pid] = slot

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
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
