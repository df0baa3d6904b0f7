"""The exceptions uptake defines.

The tree::

    UptakeError                          base of everything uptake raises or reports
    ├── InvalidEventError (ValueError)   a programming mistake at a tracking call site
    ├── ConfigurationError (ValueError)  bad Client / buffer arguments, found at construction
    ├── DeliveryError                    a batch given up; passed to ``on_error``, never raised
    └── StoreUnavailable (ConnectionError)  a rule store could not be reached in time

``InvalidEventError`` and ``ConfigurationError`` are raised where the mistake is made.
``DeliveryError`` describes events that could not be delivered (refused by the collector,
out of retries, too large, dropped by a limit); uptake hands it to the ``on_error`` hook
and logs it, but never raises it into the host application.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "InvalidEventError",
    "StoreUnavailable",
    "UptakeError",
]


class UptakeError(Exception):
    """Base class of every uptake exception."""


class InvalidEventError(UptakeError, ValueError):
    """A tracking call was made with arguments that can never form a valid event.

    Raised at the call site for programming mistakes: no user id, an empty or non-string
    event name, properties or traits that are not a mapping, a timestamp that is not a
    datetime.
    """


class ConfigurationError(UptakeError, ValueError):
    """The client or one of its parts was configured with an invalid value."""


class DeliveryError(UptakeError):
    """Events that uptake gave up delivering.

    Passed to the ``on_error`` hook (and logged); never raised.

    Attributes:
        status: The HTTP status of the last response, or ``None`` when there was none
            (connection error, timeout, or a limit applied before sending).
        count: How many events are concerned.
        reason: A short human-readable explanation.
    """

    def __init__(self, reason: str, *, status: int | None = None, count: int = 1) -> None:
        super().__init__(reason, status, count)
        self.reason = reason
        self.status = status
        self.count = count

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        noun = "event" if self.count == 1 else "events"
        return f"{self.count} {noun} not delivered ({status}): {self.reason}"

    def __repr__(self) -> str:
        return f"DeliveryError(reason={self.reason!r}, status={self.status!r}, count={self.count})"


class StoreUnavailable(UptakeError, ConnectionError):
    """A rule store could not be reached in time; the event waits to be applied later."""

    #: Set by a store that cannot tell whether the failed write landed (its reply was lost
    #: to the timeout): asks the store, once it answers again; True if the write landed.
    landed: Callable[[], bool] | None = None
    #: False when the store answered but refused this key or command (a Redis WRONGTYPE
    #: or READONLY, a key other writers kept changing): not an outage, so the event is
    #: left out of the rules (counted, logged) instead of waiting for the store.
    outage: bool = True
