"""Client lifecycle: open and closed states, interpreter exit, SIGTERM, and fork.

Every live client registers here: weakly when it sends nothing, strongly until its
``shutdown()`` when it sends (so a client the host dropped still delivers its queue). At
interpreter exit each is shut down within one shared deadline; in a forked child each
starts afresh (its own lock, worker and connections). Process-wide test captures started
with ``uptake.testing.capture_events()`` are kept here too, so a client created inside
such a block captures from its first event; the tracking path never reads this module.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import time
import weakref
from typing import Any, Protocol

from . import _signals

logger = logging.getLogger("uptake")

__all__ = ["ClientState", "Managed", "global_captures", "register", "unregister"]


class ClientState(enum.Enum):
    """Where a client is in its life: open until ``shutdown()``, then closed for good."""

    OPEN = "open"
    CLOSED = "closed"


class Managed(Protocol):
    """What this module needs of a client."""

    @property
    def exit_timeout(self) -> float: ...

    def shutdown(self, timeout: float = ...) -> bool: ...

    def flush(self, timeout: float = ...) -> bool: ...

    def _after_fork_in_child(self) -> None: ...


_clients: weakref.WeakSet[Any] = weakref.WeakSet()
# Clients that send are also held strongly until shutdown(): a client dropped by the host
# with events still queued must deliver them at exit, not vanish with its queue.
_sending: set[Any] = set()
#: Captures started for every client (``capture_events()`` without a client), innermost first.
global_captures: list[list[dict[str, Any]]] = []


def register(client: Managed, *, sends: bool) -> None:
    """Deliver this client's events at interpreter exit and restart it after fork.

    A client that ``sends`` also has the live clients flushed on SIGTERM (which skips
    ``atexit``), installed once per process from the main thread (see ``_signals``).
    """
    _clients.add(client)
    if sends:
        _sending.add(client)
        _signals.install_sigterm_flush(live)


def unregister(client: object) -> None:
    """Forget a client that was shut down."""
    _clients.discard(client)
    _sending.discard(client)


def live() -> list[Managed]:
    """Every registered client."""
    return list(_clients)


def _exit_hook() -> None:
    clients = live()
    if not clients:
        return
    # One deadline for all clients: exit takes at most the longest exit_timeout.
    deadline = time.monotonic() + max(client.exit_timeout for client in clients)
    for client in clients:
        remaining = max(0.0, min(client.exit_timeout, deadline - time.monotonic()))
        try:
            client.shutdown(remaining)
        except Exception:  # never disturb interpreter exit
            logger.exception("error while delivering events at exit")


def _after_fork() -> None:
    for client in live():
        try:
            client._after_fork_in_child()
        except Exception:  # one broken client must not leave the others unusable
            logger.exception("error while preparing a client in a forked child")


_fork_warned = False


def warn_memory_store_after_fork() -> None:
    """Say once per process that a MemoryStore in a forked worker sees part of the events."""
    global _fork_warned
    if not _fork_warned:
        _fork_warned = True
        logger.warning(
            "uptake is running in a forked worker with milestones kept in a MemoryStore: each "
            "process sees only part of a user's events, so milestones fire late, never, or "
            "once per worker. Use SqliteStore to share the state between the workers."
        )


atexit.register(_exit_hook)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
