"""The reference collector (``uptake serve``): needs the ``collector`` extra (uvicorn).

It speaks Segment's HTTP tracking API and stores events in SQLite; the engagement report
(``uptake report``) reads what it stored. None of its modules imports the SDK's client.
"""

from .app import MAX_BODY, MAX_IN_FLIGHT, MAX_INFLATED, create_app
from .ingest import REASONS
from .store import EventStore

__all__ = ["MAX_BODY", "MAX_INFLATED", "MAX_IN_FLIGHT", "REASONS", "EventStore", "create_app"]
