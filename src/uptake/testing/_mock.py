"""MockTransport: the delivery thread's network, replaced by a function of yours."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DeliveryError
from ..transport import Failure, SendOutcome

__all__ = ["MockTransport"]

logger = logging.getLogger("uptake")

Handler = Callable[[list[dict[str, Any]]], "int | None"]


class MockTransport:
    """A transport that records each batch and answers with the status your handler gives.

    Pass it as ``Client(transport=MockTransport())``: the client then needs no write key
    or endpoint, and batches are formed, retried and counted exactly as with the network,
    but nothing leaves the process.

    Args:
        handler: Called on the delivery thread with each batch (a list of event dicts in
            the wire format); returns the HTTP status to answer. ``None`` or a 2xx: the
            batch is delivered. 408, 429 and 5xx: failed for now (a durable buffer keeps
            the events for a later attempt; a memory buffer counts them as failed). Any
            other status: refused for good. A handler that raises counts as no answer.

    Attributes:
        batches: Every batch sent, in order, whatever the answer was.
    """

    def __init__(self, handler: Handler | None = None) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable, not {handler!r}")
        self._handler = handler
        self._lock = threading.Lock()
        self.batches: list[list[dict[str, Any]]] = []

    def __repr__(self) -> str:
        return f"MockTransport(batches={len(self.batches)})"

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event of every batch sent, in order."""
        with self._lock:
            return [event for batch in self.batches for event in batch]

    def send(self, messages: Sequence[bytes]) -> SendOutcome:
        """Record one batch and answer it as the handler says."""
        batch = [json.loads(message) for message in messages]
        with self._lock:
            self.batches.append(batch)
        count = len(batch)
        try:
            status = self._handler(batch) if self._handler is not None else None
        except Exception as exc:
            logger.debug("MockTransport handler raised", exc_info=True)
            error = DeliveryError(f"no response: handler raised {exc!r}", count=count)
            return SendOutcome(failures=(Failure(error, 0, count, retryable=True),))
        if status is None or 200 <= status < 300:
            return SendOutcome(delivered=count)
        retryable = status in (408, 429) or status >= 500
        error = DeliveryError(f"HTTP {status} from the mock transport", status=status, count=count)
        return SendOutcome(failures=(Failure(error, 0, count, retryable=retryable),))
