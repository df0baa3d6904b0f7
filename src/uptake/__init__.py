"""in-app engagement tracking with batched, retried delivery.

Start with :class:`uptake.Client`.
"""

from ._version import __version__
from .buffer import Buffer, MemoryBuffer
from .client import Client
from .errors import ConfigurationError, DeliveryError, InvalidEventError, UptakeError
from .outbox import SqliteBuffer
from .rules.milestones import Milestone, MilestoneReached
from .stats import Stats
from .stores.memory import MemoryStore
from .stores.sqlite import SqliteStore

__all__ = [
    "Buffer",
    "Client",
    "ConfigurationError",
    "DeliveryError",
    "InvalidEventError",
    "MemoryBuffer",
    "MemoryStore",
    "Milestone",
    "MilestoneReached",
    "SqliteBuffer",
    "SqliteStore",
    "Stats",
    "UptakeError",
    "__version__",
]
