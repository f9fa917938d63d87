#!/usr/bin/env python3
"""A trivial, fast HTTP destination for the async benchmark (bench.py --suite async).

Raw asyncio (no framework): every request gets ``200 application/json {}`` on a kept-alive
connection. It counts what the Hookline deliverer sends:

    POST <any path>   -> 200 {}             counted: posts, distinct Idempotency-Key values
    GET  /_count      -> {"posts": N, "unique": U}
    GET  /_last       -> the body of the last POST (to check what was delivered)
    GET  /_hold?s=S   -> from now on answer each POST only after S seconds (counted on arrival)
    GET  /_release    -> answer every held POST now, and the next ones at once again

Holding (bench.py --hold-delivery) keeps the server's deliverer idle during a round: its 64
concurrent calls wait here, so the round measures acknowledgement alone; keep S below the
pipeline's call timeout_s (5), or the held calls time out and are retried.

Usage: dest_server.py PORT      (binds 127.0.0.1; bench.py pins it to core 1, beside wrk)
"""
import asyncio
import json
import sys

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
MAX_HEAD = 64 * 1024


class State:
    posts = 0
    keys: set = set()
    last = b"null"
    hold_s = 0.0
    held: dict = {}          # TimerHandle -> transport


def _answer(handle, transport):
    State.held.pop(handle, None)
    if not transport.is_closing():
        transport.write(OK)


def release():
    State.hold_s = 0.0
    for handle, transport in list(State.held.items()):
        handle.cancel()
        _answer(handle, transport)


class Dest(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, bytearray()

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.transport.close()
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.transport.close()            # the deliverer always sends Content-Length
                return
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            method, _, rest = head[0].partition(" ")
            path = rest.partition(" ")[0]
            if method == "GET" and path == "/_count":
                out = json.dumps({"posts": State.posts, "unique": len(State.keys)}).encode()
                self._send(out)
            elif method == "GET" and path == "/_last":
                self._send(State.last)
            elif method == "GET" and path.startswith("/_hold"):
                State.hold_s = float(path.partition("s=")[2] or 0)
                self._send(b"{}")
            elif method == "GET" and path == "/_release":
                release()
                self._send(b"{}")
            else:
                State.posts += 1
                key = headers.get("idempotency-key")
                if key:
                    State.keys.add(key)
                State.last = body or b"null"
                if State.hold_s > 0:
                    self._hold()
                else:
                    self.transport.write(OK)

    def _hold(self):
        transport, box = self.transport, []
        handle = asyncio.get_running_loop().call_later(State.hold_s, lambda: _answer(box[0], transport))
        box.append(handle)
        State.held[handle] = transport

    def _send(self, body):
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)


async def main(port):
    server = await asyncio.get_running_loop().create_server(Dest, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
