"""The collector served by uvicorn on a thread of this process (``uptake demo``, tests)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from types import TracebackType

import uvicorn

from .app import create_app
from .store import EventStore

__all__ = ["BackgroundCollector"]


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
    """

    def __init__(
        self,
        db: str | os.PathLike[str],
        write_keys: Sequence[str],
        *,
        host: str = "127.0.0.1",
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
        config = uvicorn.Config(
            create_app(self.store, list(write_keys)), log_level="warning", lifespan="off"
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
