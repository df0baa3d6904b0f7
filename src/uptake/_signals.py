"""Deliver what is queued when the process is told to stop (SIGTERM), keeping its exit.

A process that dies by SIGTERM never runs its ``atexit`` hooks, so the interpreter-exit
flush never happens: a plain script under ``kill``, a container stopped by ``docker stop``,
uvicorn (which re-raises the signal after its graceful shutdown). :func:`install_sigterm_flush`
puts a handler in front of SIGTERM that flushes the live clients with a deadline first,
then does exactly what would have happened without uptake:

- SIGTERM at its default action (``SIG_DFL``): the handler flushes, restores ``SIG_DFL``
  and re-delivers the signal, so the process still dies by SIGTERM (exit status -15 as
  seen by its parent: supervisors, gunicorn's arbiter and shells see no difference).
- A Python handler the host installed before the first client: the handler flushes, then
  calls the host's handler with the same arguments (graceful shutdowns keep working).
- ``SIG_IGN``, or a handler installed outside Python: left alone; uptake installs nothing.

Servers that install their own handler later (uvicorn, gunicorn's workers, asyncio's
``add_signal_handler``) replace uptake's; when they restore the previous handler and
re-raise the signal (uvicorn does), uptake's runs then. Only the main thread can install
a handler; a client built on another thread installs nothing (a later one on the main
thread does). It is installed at most once per process.

The flush runs on a helper thread while the handler waits for it (at most the longest
``exit_timeout`` of the live clients, plus a little): the interrupted main thread may hold
a lock the flush needs, and waiting on it inline would hang the process forever. A second
SIGTERM while the handler waits stops waiting at once.

Under gevent's monkey-patching every greenlet shares the main thread, so the handler runs
in whichever greenlet was interrupted. In the host's own code it waits there, as it would
on a thread (the other greenlets, delivery included, run meanwhile), then calls the host's
handler in that greenlet or dies. In the event loop's own greenlet (the hub, which must
never wait) or in uptake's own code (the delivery greenlet in the middle of a batch, whose
waiting once stalled the flush until ``exit_timeout`` and let the process die with the batch
undelivered, or a tracking call that may hold a lock the flush needs), it hands the work
to a new greenlet and returns at once. There, when the signal's action is the default,
it also restores ``SIG_DFL`` at once (a second SIGTERM ends the process) and starts a real
watchdog thread that re-delivers the signal after the deadline, so the process dies by
SIGTERM even if its greenlets never yield again. Under eventlet's patching no handler is
installed (its main greenlet is not the main thread for ``threading``): SIGTERM kills the
process as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Protocol

__all__ = ["Flushable", "install_sigterm_flush"]

logger = logging.getLogger("uptake")

#: Extra time the handler waits past the clients' deadline for the flush thread to return.
_SLACK_S = 0.5

_install_lock = threading.Lock()
_installed_pid: int | None = None


class Flushable(Protocol):
    """What the handler needs of a client: a bounded flush and its exit deadline."""

    @property
    def exit_timeout(self) -> float: ...

    def flush(self, timeout: float = ...) -> bool: ...


Handler = Callable[[int, FrameType | None], object]


class SigtermFlush:
    """The SIGTERM handler: flush the live clients, then what the previous handler did.

    Args:
        clients: Returns the clients to flush, read when the signal arrives.
        previous: The handler found in place: ``SIG_DFL`` or a Python callable.
    """

    def __init__(
        self, clients: Callable[[], Iterable[Flushable]], previous: Handler | signal.Handlers
    ) -> None:
        self.clients = clients
        self.previous = previous
        self._busy = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        spawn = _green_spawn()
        if spawn is None or not _must_hand_over(frame):
            self._handle(signum, frame)
            return
        # In the hub (which must not wait) or inside uptake's own code (the delivery
        # greenlet, or a tracking call holding a lock the flush needs): hand it over. The
        # host's own handler then runs in that greenlet too (gevent passes SystemExit and
        # KeyboardInterrupt raised there on to the main greenlet).
        if not callable(self.previous):
            signal.signal(signum, signal.SIG_DFL)
            _start_watchdog(self.deadline() + 2 * _SLACK_S, signum)
        spawn(self._handle, signum, frame)

    def deadline(self) -> float:
        """The longest ``exit_timeout`` of the live clients (0 when there are none)."""
        try:
            return max((_exit_timeout(client) for client in self.clients()), default=0.0)
        except Exception:  # never let uptake break a shutdown
            return 0.0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self._busy:  # a second signal during the flush goes straight on
            self._busy = True
            try:
                self.flush()
            finally:
                self._busy = False
        previous = self.previous
        if callable(previous):
            previous(signum, frame)
            return
        # The default action: die by the signal, as the process would have without uptake.
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    def flush(self) -> bool:
        """Flush every live client on a helper thread; wait at most their longest deadline.

        Returns:
            True when the flush thread finished in time (whatever it delivered).
        """
        try:
            clients = list(self.clients())
        except Exception:  # never let uptake break a shutdown
            logger.exception("uptake: could not list the clients to flush at SIGTERM")
            return False
        if not clients:
            return True
        timeout = max(_exit_timeout(client) for client in clients)
        if timeout <= 0:
            return True
        done = threading.Event()

        def run() -> None:
            deadline = time.monotonic() + timeout
            try:
                for client in clients:
                    remaining = min(_exit_timeout(client), deadline - time.monotonic())
                    if remaining > 0:
                        client.flush(remaining)
            except Exception:
                logger.exception("uptake: error while delivering events at SIGTERM")
            finally:
                done.set()

        try:
            threading.Thread(target=run, name="uptake-sigterm", daemon=True).start()
        except RuntimeError:  # interpreter shutting down: the exit hook delivers instead
            return False
        finished = done.wait(timeout + _SLACK_S)
        if not finished:
            logger.warning("uptake: events still queued after %.1f s at SIGTERM", timeout)
        return finished


def install_sigterm_flush(clients: Callable[[], Iterable[Flushable]]) -> bool:
    """Flush ``clients()`` when SIGTERM arrives, then let the signal do what it did before.

    Call it when a client that sends is created; only the first call on the main thread of
    each process does anything (see the module's docstring for what is installed when).

    Args:
        clients: Returns the live clients; called when the signal arrives.

    Returns:
        True when this call installed the handler.
    """
    global _installed_pid
    pid = os.getpid()
    if _installed_pid == pid or threading.current_thread() is not threading.main_thread():
        return False
    with _install_lock:
        if _installed_pid == pid:
            return False
        _installed_pid = pid
        try:
            current = signal.getsignal(signal.SIGTERM)
        except (AttributeError, ValueError):  # no SIGTERM on this platform
            return False
        if isinstance(current, SigtermFlush):  # inherited through fork
            return False
        if current is not signal.SIG_DFL and not callable(current):
            return False  # SIG_IGN, or a handler installed outside Python: leave it
        try:
            signal.signal(signal.SIGTERM, SigtermFlush(clients, current))
        except (ValueError, OSError):  # not allowed here (an embedded interpreter)
            return False
        return True


def _green_spawn() -> Callable[..., object] | None:
    """``gevent.spawn`` when gevent has monkey-patched ``threading`` in this process.

    None otherwise, and when gevent is not imported: there the flush waits on a real thread
    and the handler may block. (Under eventlet's patching no handler is installed: its main
    greenlet is not the main thread for ``threading``.)
    """
    try:
        monkey = sys.modules.get("gevent.monkey")
        if monkey is not None and monkey.is_module_patched("threading"):
            import gevent

            return gevent.spawn  # type: ignore[no-any-return]
    except Exception:  # a green library in a state we do not know: wait inline
        logger.debug("uptake: could not tell whether gevent patched threading", exc_info=True)
    return None


def _must_hand_over(frame: FrameType | None) -> bool:
    """Under gevent: whether the interrupted greenlet must not wait for the flush.

    It must not when it is the hub (which may never wait) or when it is running uptake's
    own code: the delivery or outbox greenlet (waiting there stops the very greenlet the
    flush waits for), or a tracking call that may hold a lock the flush needs. Any other
    greenlet waits, as a thread would, while the others (delivery included) run: that
    keeps the host's handler in the interrupted greenlet and gives the flush the loop.
    """
    try:
        import gevent

        if gevent.getcurrent() is gevent.get_hub():
            return True
        if threading.current_thread().name.startswith("uptake-"):
            return True
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module == "uptake" or module.startswith("uptake."):
                return True
            frame = frame.f_back
    except Exception:  # a green library in a state we do not know: do not wait
        logger.debug("uptake: could not tell where SIGTERM arrived", exc_info=True)
        return True
    return False


def _start_watchdog(after: float, signum: int) -> None:
    """Re-deliver ``signum`` after ``after`` seconds from a real OS thread (gevent's originals).

    The handler has restored ``SIG_DFL`` by then, so this ends the process when the green
    flush has not (its greenlet never got to run, or the flush hung).
    """
    try:
        from gevent import monkey

        start_new_thread = monkey.get_original("_thread", "start_new_thread")
        real_sleep = monkey.get_original("time", "sleep")
    except Exception:
        logger.debug("uptake: no real thread for the SIGTERM watchdog", exc_info=True)
        return

    def watch() -> None:
        real_sleep(after)
        os.kill(os.getpid(), signum)

    with contextlib.suppress(RuntimeError):  # interpreter shutting down: nothing to guard
        start_new_thread(watch, ())


def _exit_timeout(client: Flushable) -> float:
    value = getattr(client, "exit_timeout", 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0
