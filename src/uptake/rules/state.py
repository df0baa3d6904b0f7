"""The rules' per-subject state (kept in :mod:`uptake._rulestate`, which stores import too).

Re-exported here so that rule modules and existing imports keep one name for it.
"""

from .._rulestate import (
    FEATURE_DAYS_BITS,
    REACHED,
    SIGNAL_STALE,
    TRAITS,
    SubjectState,
    feature_days,
    feature_first_use,
    pack_feature,
    reached_key,
)

__all__ = [
    "FEATURE_DAYS_BITS",
    "REACHED",
    "SIGNAL_STALE",
    "TRAITS",
    "SubjectState",
    "feature_days",
    "feature_first_use",
    "pack_feature",
    "reached_key",
]
