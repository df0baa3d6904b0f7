"""Serving the collector with uvicorn: ``uptake serve`` (one or several worker processes on
one port) and :class:`BackgroundCollector` (a thread of this process: ``uptake demo``,
tests).

uvicorn limits neither how long a client may take to send a request's head nor how large
the head may grow; the HTTP protocol classes here add both (408 and 431, then the
connection is closed), so a client that opens connections and never finishes them cannot
hold them, or memory, for ever.
"""

from __future__ import annotations

import gc
import inspect
import os
import socket
import sys
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import ASGIApp, create_app
from .store import EventStore

__all__ = [
    "HEADER_TIMEOUT",
    "MAX_HEADER_BYTES",
    "AppFactory",
    "BackgroundCollector",
    "CollectorConfig",
    "log_config",
    "serve",
]

#: Longest time for a request's line and headers to arrive, in seconds.
HEADER_TIMEOUT = 10.0
#: Largest request head (request line and headers), in bytes.
MAX_HEADER_BYTES = 64 * 1024
#: The interpreter's thread switch interval in a collector process, in seconds (Python's
#: default is 0.005). The threads that parse bodies hold the interpreter lock between
#: events; the event loop waits up to this long for it each time it wakes, several times
#: per request, so a shorter interval keeps ``/health`` and small requests quick while
#: large batches are being read.
SWITCH_INTERVAL = 0.001

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
    b"connection: close\r\n\r\n"
)


class CollectorConfig(uvicorn.Config):
    """uvicorn's configuration plus the request-head limits the protocols read."""

    def __init__(
        self,
        app: Any,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        max_header_bytes: int = MAX_HEADER_BYTES,
        **options: Any,
    ) -> None:
        options.setdefault("http", protocol_class())
        super().__init__(app, **options)
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes


class _HeadLimits:
    """Mixin for uvicorn's HTTP protocols: a request's head must arrive whole within
    ``header_timeout`` and ``max_header_bytes``, from the connection's first byte or, on
    a kept-alive connection, from the first byte of the next request."""

    _head_timer: Any = None
    _head_cycle: Any = None
    _head_bytes = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def _arm(self) -> None:
        this: Any = self
        self._head_cycle = this.cycle
        self._head_bytes = 0
        timeout = getattr(this.config, "header_timeout", HEADER_TIMEOUT)
        self._head_timer = this.loop.call_later(timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        this: Any = self
        if self._head_timer is None and (this.cycle is None or this.cycle.response_complete):
            self._arm()  # the next request on a kept-alive connection begins
        super().data_received(data)  # type: ignore[misc]
        if self._head_timer is None:
            return
        if this.cycle is not self._head_cycle:  # the head is complete: the app has it
            self._disarm()
            return
        self._head_bytes += len(data)
        if self._head_bytes > getattr(this.config, "max_header_bytes", MAX_HEADER_BYTES):
            self._disarm()
            self._close(_TOO_LARGE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._close(_TIMED_OUT)

    def _close(self, reply: bytes) -> None:
        transport: Any = getattr(self, "transport", None)
        if transport is not None and not transport.is_closing():
            transport.write(reply)
            transport.close()


class H11WithHeadLimits(_HeadLimits, H11Protocol):
    """uvicorn's h11 protocol with the request-head limits."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed (it comes with uvicorn[standard])
    HttpToolsWithHeadLimits: type[Any] | None = None
else:

    class HttpToolsWithHeadLimits(_HeadLimits, HttpToolsProtocol):  # type: ignore[no-redef]
        """uvicorn's httptools protocol with the request-head limits."""


def protocol_class() -> type[Any]:
    """The HTTP protocol to serve with: httptools when installed (as uvicorn's ``auto``)."""
    return HttpToolsWithHeadLimits or H11WithHeadLimits


class AppFactory:
    """Builds the collector in each worker process (uvicorn's ``factory=True``), each with
    its own connection to the shared store. Picklable, so the keys reach the workers
    without passing through their command line or environment."""

    def __init__(self, db: str, write_keys: Sequence[str], options: dict[str, Any]) -> None:
        self.db = db
        self.write_keys = list(write_keys)
        self.options = dict(options)

    def __call__(self) -> ASGIApp:
        sys.setswitchinterval(SWITCH_INTERVAL)  # a process of its own: see SWITCH_INTERVAL
        store = EventStore(self.db)
        app = create_app(store, self.write_keys, close_store=True, **self.options)
        # What was loaded so far lives as long as the process: full collections, which
        # hold the interpreter lock, need not walk it again and again.
        gc.collect()
        gc.freeze()
        return app


def log_config(level: str = "info") -> dict[str, Any]:
    """Logging for ``uptake serve``: uvicorn's messages, the collector's warnings and its
    access log (one line per request), to stderr, each line with the worker's pid."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"}
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "uptake": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def serve(
    sock: socket.socket,
    db: str,
    write_keys: Sequence[str],
    *,
    workers: int = 1,
    header_timeout: float = HEADER_TIMEOUT,
    log_level: str = "info",
    options: dict[str, Any] | None = None,
) -> int:
    """Serve the collector on a bound socket until SIGINT or SIGTERM.

    With ``workers`` above 1, uvicorn's supervisor runs that many processes accepting on
    the socket, each with its own connection to the SQLite file, and restarts one that
    dies. Returns 0 once stopped, 3 when the collector could not start.
    """
    config = CollectorConfig(
        AppFactory(db, write_keys, options or {}),
        factory=True,
        workers=workers,
        access_log=False,
        log_config=log_config(log_level),
        log_level=log_level,
        lifespan="on",
        header_timeout=header_timeout,
    )
    if workers <= 1:
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        return 0 if server.started else 3
    from uvicorn.supervisors import Multiprocess

    supervisor: Any = Multiprocess
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn before 0.36
        supervisor(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
    else:
        supervisor(config, sockets=[sock]).run()
    return 0


class _Server(uvicorn.Server):
    """uvicorn, telling a thread when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()

    def install_signal_handlers(self) -> None:  # the host process keeps its own handlers
        pass


class BackgroundCollector:
    """A collector on 127.0.0.1 on a free port, on a background thread.

    Use as a context manager; ``url`` is the endpoint to give a Client. The socket is
    bound before uvicorn starts, so the port cannot be taken in between.

    Args:
        db: SQLite file for the events.
        write_keys: Keys clients may send.
        host: Address to bind (loopback by default).
        options: Keyword arguments for :func:`~uptake.collector.create_app` (limits).
    """

    def __init__(
        self,
        db: str | os.PathLike[str],
        write_keys: Sequence[str],
        *,
        host: str = "127.0.0.1",
        header_timeout: float = HEADER_TIMEOUT,
        **options: Any,
    ) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, 0))
            self.store = EventStore(db)
        except BaseException:
            self._socket.close()
            raise
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = CollectorConfig(
            create_app(self.store, list(write_keys), **options),
            log_level="warning",
            lifespan="off",
            header_timeout=header_timeout,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="uptake-collector",
            daemon=True,
        )

    def start(self, timeout: float = 10.0) -> BackgroundCollector:
        """Start serving; return once the collector listens.

        Raises:
            RuntimeError: uvicorn did not start within ``timeout`` seconds.
        """
        self._thread.start()
        if not self._server.listening.wait(timeout):
            self.stop()
            raise RuntimeError(f"the collector did not start within {timeout}s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and close the store."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()
        if self._thread.is_alive():  # still serving: closing the store under it would fail
            raise RuntimeError(f"the collector did not stop within {timeout}s")
        self.store.close()

    def __enter__(self) -> BackgroundCollector:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
