"""in-app engagement tracking with batched, retried delivery.

Start with :class:`uptake.Client`.
"""

from typing import TYPE_CHECKING, Any

from ._context_api import Context
from ._version import __version__
from .buffer import Buffer, MemoryBuffer
from .client import Client
from .errors import (
    ConfigurationError,
    DeliveryError,
    InvalidEventError,
    StoreUnavailable,
    UptakeError,
)
from .outbox import SqliteBuffer
from .rules.engagement import Engagement, EngagementSnapshot
from .rules.engagement_signals import EngagementChange
from .rules.facade import ReplayResult
from .rules.milestones import Milestone, MilestoneReached
from .rules.nudges import (
    Audience,
    Declining,
    EventCount,
    Inactive,
    NotReached,
    Nudge,
    NudgeBudget,
    NudgeExplanation,
    NudgeFired,
    QuietHours,
    Reached,
)
from .rules.simulation import NudgeSimulation, Simulation
from .stats import Stats
from .stores import Store
from .stores.memory import MemoryStore
from .stores.redis import RedisStore
from .stores.sqlite import SqliteStore

if TYPE_CHECKING:
    from .collector.discovery import discover

__all__ = [
    "Audience",
    "Buffer",
    "Client",
    "ConfigurationError",
    "Context",
    "Declining",
    "DeliveryError",
    "Engagement",
    "EngagementChange",
    "EngagementSnapshot",
    "EventCount",
    "Inactive",
    "InvalidEventError",
    "MemoryBuffer",
    "MemoryStore",
    "Milestone",
    "MilestoneReached",
    "NotReached",
    "Nudge",
    "NudgeBudget",
    "NudgeExplanation",
    "NudgeFired",
    "NudgeSimulation",
    "QuietHours",
    "Reached",
    "RedisStore",
    "ReplayResult",
    "Simulation",
    "SqliteBuffer",
    "SqliteStore",
    "Stats",
    "Store",
    "StoreUnavailable",
    "UptakeError",
    "__version__",
    "discover",
]


def __getattr__(name: str) -> Any:
    """Import ``discover`` on first use: it needs the report extra (DuckDB)."""
    if name == "discover":
        from .collector.discovery import discover

        return discover
    raise AttributeError(f"module 'uptake' has no attribute {name!r}")
