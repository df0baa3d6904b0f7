"""The reference collector (``uptake serve``): needs the ``collector`` extra (uvicorn)."""

from .app import MAX_BODY, MAX_INFLATED, create_app
from .store import EventStore

__all__ = ["MAX_BODY", "MAX_INFLATED", "EventStore", "create_app"]
