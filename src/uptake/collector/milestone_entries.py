"""Milestones declared in the settings file, as ``[[milestones]]`` tables.

``uptake discover`` prints each strong candidate as such an entry; pasted into the
settings file it declares the milestone, and later runs of ``uptake discover`` measure it
among their results (docs/discover.md#declared-milestones)::

    [[milestones]]
    name = "report_created_3x_7d"
    counts = { "Report Created" = 3 }
    within_days = 7

The keys are :class:`uptake.Milestone`'s, with ``within`` as ``within_days``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ..errors import ConfigurationError
from ..rules.milestones import Milestone

__all__ = ["KEYS", "from_entries", "to_entry"]

KEYS = ("name", "all_of", "any_of", "counts", "features", "active_days", "within_days", "scope")


class _EntryError(ConfigurationError):
    pass


def _entry(index: int, value: object) -> Milestone:
    where = f"milestones[{index}]"
    if isinstance(value, Milestone):
        return value
    if not isinstance(value, Mapping):
        raise _EntryError(f"{where}: must be a table ([[milestones]]), not {value!r}")
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise _EntryError(f"{where}.{unknown[0]}: unknown key; use {', '.join(KEYS)}")
    args: dict[str, Any] = {k: v for k, v in value.items() if k != "within_days"}
    days = value.get("within_days")
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not days > 0:
            raise _EntryError(f"{where}.within_days: must be a number of days above 0")
        args["within"] = timedelta(days=days)
    name = args.pop("name", None)
    try:
        return Milestone(name, **args)
    except (ConfigurationError, TypeError) as exc:
        raise _EntryError(f"{where} ({name!r}): {exc}") from None


def from_entries(value: object) -> tuple[Milestone, ...]:
    """Read ``[[milestones]]`` entries (or Milestone objects).

    Raises:
        ConfigurationError: an entry that is no milestone, naming it and its key.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _EntryError(f"milestones: must be a list of [[milestones]] tables, not {value!r}")
    out = tuple(_entry(i, v) for i, v in enumerate(value))
    names = [m.name for m in out]
    for name in names:
        if names.count(name) > 1:
            raise _EntryError(f"milestones: {name!r} is declared twice")
    return out


def to_entry(m: Milestone) -> dict[str, Any]:
    """Return a milestone as the plain data of its ``[[milestones]]`` entry."""
    entry: dict[str, Any] = {"name": m.name}
    if m.all_of:
        entry["all_of"] = list(m.all_of)
    if m.any_of:
        entry["any_of"] = list(m.any_of)
    if m.counts:
        entry["counts"] = dict(m.counts)
    if m.features:
        entry["features"] = m.features
    if m.active_days:
        entry["active_days"] = m.active_days
    if m.within is not None:
        days = m.within / timedelta(days=1)
        entry["within_days"] = int(days) if days == int(days) else days
    if m.scope != "user":
        entry["scope"] = m.scope
    return entry
