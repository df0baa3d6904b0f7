"""Running the real ``uptake serve`` as a subprocess on 127.0.0.1 for black-box tests."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

KEY = "wk_blackbox"


class Served:
    """A running ``uptake serve``: its URL, process, database and log file."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, db: Path, log: Path) -> None:
        self.process = process
        self.url = url
        self.db = db
        self.log = log

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def health(self) -> dict[str, object]:
        reply: dict[str, object] = httpx.get(f"{self.url}/health", timeout=10).json()
        return reply

    def pids(self) -> list[int]:
        """The collector's processes: the server itself, or the supervisor's workers."""
        children = _children(self.process.pid)
        return children or [self.process.pid]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the parent's pid
            cmdline = (entry / "cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:  # multiprocessing's helper
                found.append(int(entry.name))
    return found


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


@contextlib.contextmanager
def serve(
    folder: Path,
    *args: str,
    env: dict[str, str] | None = None,
    key: str | None = KEY,
    timeout: float = 30.0,
) -> Iterator[Served]:
    """``uptake serve --port 0`` with a fresh store in ``folder``, until the block ends
    (then SIGTERM, as a service manager stops it)."""
    db = folder / "events.db"
    log = folder / "serve.log"
    environment = {**os.environ, **(env or {})}
    if key is not None:
        environment["UPTAKE_WRITE_KEY"] = key
    command: Sequence[str] = [
        sys.executable,
        "-m",
        "uptake.cli",
        "serve",
        "--port",
        "0",
        "--db",
        str(db),
        *args,
    ]
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, env=environment, cwd=folder
        )
    try:
        url = _announced_url(process, timeout)
        served = Served(process, url, db, log)
        deadline = time.monotonic() + timeout
        while True:  # the port is bound before the line is printed; the app may lag
            try:
                served.health()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _announced_url(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline().decode() if ready else ""
    match = re.search(r"http://(127\.0\.0\.1|\[::1\]):(\d+)", line)
    if match is None:
        process.kill()
        raise AssertionError(f"uptake serve did not start: {line!r}")
    return f"http://{match.group(1)}:{match.group(2)}"


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 in front of a collector that closes the client's
    connection instead of passing on the first ``drops`` responses: the collector has
    stored the batch (it answers only after its commit), the client never hears so, and
    retries it. As a response lost on the network would."""

    def __init__(self, upstream_port: int, drops: int) -> None:
        self.upstream_port = upstream_port
        self.drops = drops
        self.dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> DroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answer, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def _answer(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                with self._lock:
                    drop = self.dropped < self.drops
                    if drop:
                        self.dropped += 1
                if drop:  # the collector has answered, so it has stored: lose the answer
                    for side in (client, upstream):  # (shutdown: the pump thread is in recv)
                        with contextlib.suppress(OSError):
                            side.shutdown(socket.SHUT_RDWR)
                        side.close()
                    return
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.close()
