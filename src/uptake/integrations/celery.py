"""Celery: carry ``client.context()`` from the code that enqueues a task to its worker.

Install once, where both the web process and the worker import it (next to the Celery
app, say)::

    from uptake.integrations.celery import install

    install(client)

A task sent inside ``with client.context(user_id=..., account_id=...)`` (a web request
opens one for you) carries the context in a header of its message
(``before_task_publish``); the worker opens the same context while the task runs
(``task_prerun`` to ``task_postrun``), so ``client.track("Report Exported")`` in the task
lands on the right user and account. Tasks sent outside any context run without one. The
worker's process also flushes the client when it ends (``worker_process_shutdown``):
prefork children end with ``os._exit``, which skips the interpreter-exit flush.

Needs the ``celery`` extra (``pip install 'uptake[celery]'``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from celery import signals

from .._before_send import json_ready
from .._context_api import ContextScope
from ..client import Client
from ..errors import ConfigurationError

__all__ = ["HEADER", "CeleryContext", "install"]

logger = logging.getLogger("uptake.integrations")

#: The message header that carries the context.
HEADER = "uptake_context"
_FIELDS = ("user_id", "anonymous_id", "account_id")


class CeleryContext:
    """The signal handlers of one client (what :func:`install` returns). Thread-safe.

    Attributes:
        client: The :class:`~uptake.Client` whose context is carried.
        header: The message header it travels in.
        dropped: Contexts that could not be carried or opened (a bad header from another
            producer, say): logged, and the task ran without one.
    """

    def __init__(self, client: Client, header: str, flush_timeout: float | None) -> None:
        self.client = client
        self.header = header
        self.flush_timeout = flush_timeout
        self.dropped = 0
        self._open: dict[str, ContextScope] = {}
        self._lock = threading.Lock()
        self._uid = f"uptake-celery-{id(self)}"

    def connect(self) -> None:
        """Connect the handlers to Celery's signals."""
        signals.before_task_publish.connect(self.before_publish, weak=False, dispatch_uid=self._uid)
        signals.task_prerun.connect(self.prerun, weak=False, dispatch_uid=self._uid)
        signals.task_postrun.connect(self.postrun, weak=False, dispatch_uid=self._uid)
        if self.flush_timeout is not None:
            signals.worker_process_shutdown.connect(
                self.process_shutdown, weak=False, dispatch_uid=self._uid
            )

    def uninstall(self) -> None:
        """Disconnect the handlers; tasks then carry and open no context."""
        signals.before_task_publish.disconnect(dispatch_uid=self._uid)
        signals.task_prerun.disconnect(dispatch_uid=self._uid)
        signals.task_postrun.disconnect(dispatch_uid=self._uid)
        signals.worker_process_shutdown.disconnect(dispatch_uid=self._uid)

    # ------------------------------------------------------------------ producer side

    def before_publish(self, headers: dict[str, Any] | None = None, **_: Any) -> None:
        """Put the current context in the task message's headers. Never raises."""
        context = self.client.current_context()
        if context is None or headers is None:
            return
        try:
            value: dict[str, Any] = {
                name: getattr(context, name) for name in _FIELDS if getattr(context, name)
            }
            if context.properties:
                value["properties"] = json_ready(context.properties)
            headers[self.header] = value
        except Exception:
            self._drop("carrying the context to a task failed")

    # ------------------------------------------------------------------ worker side

    def prerun(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        """Open the context the task's message carries, if any. Never raises."""
        if task_id is None or task is None:
            return
        value = _header(task, self.header)
        if value is None:
            return
        try:
            if not isinstance(value, Mapping):
                raise TypeError(f"the {self.header} header is a {type(value).__name__}")
            scope = self.client.context(
                user_id=value.get("user_id"),
                anonymous_id=value.get("anonymous_id"),
                account_id=value.get("account_id"),
                properties=value.get("properties"),
            )
            scope.__enter__()
        except Exception:
            self._drop("opening a task's context failed")
            return
        with self._lock:
            self._open[task_id] = scope

    def postrun(self, task_id: str | None = None, **_: Any) -> None:
        """Close the context :meth:`prerun` opened for the task. Never raises."""
        with self._lock:
            scope = self._open.pop(task_id or "", None)
        if scope is not None:
            scope.__exit__(None, None, None)

    def process_shutdown(self, **_: Any) -> None:
        """Deliver what the worker process queued before it ends. Never raises."""
        try:
            self.client.flush(timeout=self.flush_timeout or 0.0)
        except Exception:
            logger.exception("flushing uptake at worker shutdown failed")

    def _drop(self, detail: str) -> None:
        with self._lock:
            self.dropped += 1
        logger.warning("uptake celery: %s; the task runs without it", detail, exc_info=True)


def _header(task: Any, name: str) -> object:
    """The header's value from the task's request (protocol 2 puts headers on it)."""
    request = getattr(task, "request", None)
    value = getattr(request, name, None)
    if value is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, Mapping):
            value = headers.get(name)
    return value


def install(
    client: Client, *, header: str = HEADER, flush_timeout: float | None = 5.0
) -> CeleryContext:
    """Carry ``client.context()`` from task senders to the workers that run the tasks.

    Call it once per process, in code both the senders and the workers import.

    Args:
        client: The :class:`~uptake.Client` whose context is carried.
        header: The message header the context travels in.
        flush_timeout: Seconds the client gets to deliver when a worker process ends;
            ``None``: no flush at worker shutdown.

    Returns:
        The connected handlers; :meth:`CeleryContext.uninstall` disconnects them.

    Raises:
        ConfigurationError: ``client`` is not an :class:`uptake.Client`, or ``header`` is
            empty.
    """
    if not isinstance(client, Client):
        raise ConfigurationError(f"client must be an uptake.Client, not {client!r}")
    if not isinstance(header, str) or not header:
        raise ConfigurationError("header must be a non-empty string")
    handlers = CeleryContext(client, header, flush_timeout)
    handlers.connect()
    return handlers
