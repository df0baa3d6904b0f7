"""A loopback HTTP collector for the SDK benchmark (stdlib asyncio, binds 127.0.0.1 only).

Run as a process: ``python collector.py --mode flaky --every 5``.  It prints one JSON line,
``{"ingest": PORT, "control": PORT}``, then serves until ``POST /_stop`` on the control port,
until ``--max-s`` seconds have passed, or until its parent process has gone away.

Ingest port: any ``POST`` whose body is JSON with a ``"batch"`` (or ``"events"``) list, or a
bare list, e.g. Segment/Rudder ``POST /v1/batch`` and PostHog ``POST /batch/``.  Bodies may be
gzip-encoded and sent with Content-Length or chunked; connections are kept alive.  Events are
counted only when the reply is 2xx; an event's id is its ``messageId`` or ``uuid``.  Only
events named ``--event`` ("Bench Event") are counted as such; any others an SDK sends on its
own (e.g. session events) are tallied by name under ``other_events``.

Fault modes, fixed at start:

* ``ok``            every request gets 200
* ``down``          the port refuses connections for the first ``--down-s`` seconds (or until
                    ``POST /_up`` on the control port), then listens
* ``flaky``         every ``--every``-th request gets 503
* ``rate_limited``  every ``--every``-th request gets 429 with ``Retry-After: 1``
* ``slow``          every reply is delayed by ``--delay-ms``

Control port (always up): ``GET /_stats``, ``POST /_reset``, ``POST /_up``, ``POST /_stop``.
This module also has the client side of the control port: ``query()``, ``wait_for_events()``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import socket
import time
import urllib.request
import zlib

HOST = "127.0.0.1"
OK_REPLY = b'{"status":1,"code":200,"message":"ok"}'
FAULT_REPLY = {
    503: (b"", b'{"status":0,"code":503,"message":"injected failure"}'),
    429: (b"Retry-After: 1\r\n", b'{"status":0,"code":429,"message":"rate limited"}'),
}
REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 503: "Service Unavailable"}


def query(control_url: str, path: str = "/_stats", post: bool = False, timeout: float = 5.0):
    """Call the collector's control port and return its JSON reply."""
    req = urllib.request.Request(control_url + path, data=b"" if post else None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_for_events(control_url: str, n: int, quiet_s: float, deadline: float) -> dict:
    """Poll /_stats until n events arrived, none arrived for quiet_s, or time.monotonic()
    reaches deadline; return the last stats."""
    last, changed = -1, time.monotonic()
    while True:
        st = query(control_url)
        now = time.monotonic()
        if st["events"] != last:
            last, changed = st["events"], now
        if st["unique"] + st["no_id"] >= n or now - changed >= quiet_s or now >= deadline:
            return st
        time.sleep(0.02)


def decode_events(headers: dict, body: bytes) -> list:
    encoding = headers.get("content-encoding", "").lower()
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "deflate":
        body = zlib.decompress(body)
    doc = json.loads(body)
    if isinstance(doc, list):
        return doc
    for key in ("batch", "events"):
        if isinstance(doc.get(key), list):
            return doc[key]
    return [doc]


class Collector:
    def __init__(self, opts: argparse.Namespace):
        self.opts = opts
        self.started = time.monotonic()
        self.listening = asyncio.Event()
        self.stopping = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        self.seen = 0  # ingest requests, used for the every-k-th fault schedule
        self.by_status: dict[int, int] = {}
        self.by_path: dict[str, int] = {}
        self.events = self.with_id = self.parse_errors = self.bytes = 0
        self.ids: set = set()
        self.others: dict[str, int] = {}  # events not named --event, by name
        self.first_event_t = self.last_event_t = None

    def stats(self) -> dict:
        down_left = 0.0
        if not self.listening.is_set():
            down_left = max(0.0, self.started + self.opts.down_s - time.monotonic())
        return {
            "mode": self.opts.mode,
            "listening": self.listening.is_set(),
            "down_remaining_s": down_left,
            "requests": self.seen,
            "status": self.by_status,
            "paths": self.by_path,
            "bytes": self.bytes,
            "events": self.events,
            "unique": len(self.ids),
            "dups": self.with_id - len(self.ids),
            "no_id": self.events - self.with_id,
            "parse_errors": self.parse_errors,
            "other_events": sum(self.others.values()),
            "other_names": self.others,
            # time.monotonic() is CLOCK_MONOTONIC: comparable with other processes' clocks
            "first_event_t": self.first_event_t,
            "last_event_t": self.last_event_t,
        }

    async def on_ingest(self, method: str, path: str, headers: dict, body: bytes):
        self.seen += 1
        self.by_path[path] = self.by_path.get(path, 0) + 1
        opts = self.opts
        if opts.mode == "slow":
            await asyncio.sleep(opts.delay_ms / 1000)
        fault = {"flaky": 503, "rate_limited": 429}.get(opts.mode)
        if fault and self.seen % opts.every == 0:
            return (fault, *FAULT_REPLY[fault])
        if method != "POST":
            return 200, b"", OK_REPLY
        self.bytes += len(body)
        try:
            events = decode_events(headers, body)
        except Exception:  # any undecodable body is a parse error, not a crash
            self.parse_errors += 1
            return 200, b"", OK_REPLY
        counted = 0
        for ev in events:
            ev = ev if isinstance(ev, dict) else {}
            name = ev.get("event")
            if opts.event and name != opts.event:
                key = str(name or ev.get("type") or "?")
                self.others[key] = self.others.get(key, 0) + 1
                continue
            counted += 1
            ev_id = ev.get("messageId") or ev.get("uuid")
            if ev_id:
                self.with_id += 1
                self.ids.add(ev_id)
        if counted:
            self.events += counted
            self.first_event_t = self.first_event_t or time.monotonic()
            self.last_event_t = time.monotonic()
        return 200, b"", OK_REPLY

    async def on_control(self, method: str, path: str, headers: dict, body: bytes):
        if path.startswith("/_reset"):
            self.reset()
        elif path.startswith("/_up"):
            self.listening.set()
        elif path.startswith("/_stop"):
            self.stopping.set()
        elif not path.startswith("/_stats"):
            return 404, b"", b'{"error":"unknown path"}'
        return 200, b"", json.dumps(self.stats()).encode()

    def http_handler(self, route, counted: bool):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            try:
                while True:
                    try:
                        head = await reader.readuntil(b"\r\n\r\n")
                    except asyncio.IncompleteReadError:
                        break  # the client closed the connection between requests
                    request_line, *lines = head.decode("latin-1").split("\r\n")
                    method, target, version = request_line.split(" ", 2)
                    headers = {}
                    for line in lines:
                        name, sep, value = line.partition(":")
                        if sep:
                            headers[name.strip().lower()] = value.strip()
                    if headers.get("expect", "").lower() == "100-continue":
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    body = await read_body(reader, headers)
                    code, extra, payload = await route(method, target, headers, body)
                    if counted:
                        self.by_status[code] = self.by_status.get(code, 0) + 1
                    conn = headers.get("connection", "").lower()
                    close = conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive")
                    writer.write(
                        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n%s%s\r\n%s"
                        % (
                            code,
                            REASONS.get(code, "X").encode(),
                            len(payload),
                            extra,
                            b"Connection: close\r\n" if close else b"",
                            payload,
                        )
                    )
                    await writer.drain()
                    if close:
                        break
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                pass
            except ValueError:  # malformed request line or chunk size
                pass
            finally:
                writer.close()

        return handle

    async def serve(self) -> None:
        opts = self.opts
        control = await asyncio.start_server(self.http_handler(self.on_control, False), HOST, 0)
        # Bind the ingest port now but listen only when "up": until then, Linux answers a
        # connect() to a bound, non-listening socket with RST, i.e. "connection refused".
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        ports = {"ingest": sock.getsockname()[1], "control": control.sockets[0].getsockname()[1]}
        print(json.dumps(ports), flush=True)
        if opts.mode != "down":
            self.listening.set()
        else:
            asyncio.get_running_loop().call_later(opts.down_s, self.listening.set)
        parent = os.getppid()
        deadline = self.started + opts.max_s
        ingest = None
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if os.getppid() != parent:
                break  # orphaned: the benchmark that started us is gone
            if ingest is None and self.listening.is_set():
                handler = self.http_handler(self.on_ingest, True)
                ingest = await asyncio.start_server(handler, sock=sock, backlog=1024)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.05 if ingest is None else 0.5)
        if ingest is not None:
            ingest.close()
        else:
            sock.close()
        control.close()


async def read_body(reader: asyncio.StreamReader, headers: dict) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        return b""
    parts = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after each chunk
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass  # trailer fields, if any
    return b"".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", default="ok", choices=["ok", "down", "flaky", "rate_limited", "slow"])
    p.add_argument("--down-s", type=float, default=5.0, help="down: seconds before listening")
    p.add_argument("--every", type=int, default=5, help="flaky/rate_limited: fault every k-th")
    p.add_argument("--delay-ms", type=float, default=50.0, help="slow: delay per reply")
    p.add_argument("--max-s", type=float, default=300.0, help="exit after this many seconds")
    p.add_argument(
        "--event",
        default="Bench Event",
        help="count only events with this name; others are tallied by name ('' counts all)",
    )
    asyncio.run(Collector(p.parse_args()).serve())


if __name__ == "__main__":
    main()
