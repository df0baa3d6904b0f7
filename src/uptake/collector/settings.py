"""The report's settings, in one TOML file anyone can read (docs/report.md#settings).

Core features, touchpoints, inactive events, account score weights, tiers and the time
zone change the report's numbers, so they live in a file beside the events rather than in
command-line flags nobody sees: ``uptake demo`` writes one beside its store, ``uptake
report`` reads it (``--settings FILE``, else ``SOURCE`` with ``.toml`` in place of its
extension), and both print it at the top of the report.

A file that cannot be used fails with :class:`SettingsError` naming the file and the key.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigurationError
from ..rules.engagement import ACCOUNT_COMPONENTS, Engagement
from ..rules.milestones import Milestone
from .milestone_entries import from_entries, to_entry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "ReportSettings",
    "SettingsError",
    "beside",
    "dumps",
    "load",
    "loads",
]

_DEFAULTS = Engagement()


class SettingsError(ConfigurationError):
    """A settings file that cannot be used; the message names the file and the key."""


def _names(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise SettingsError(f"{key}: must be a list of non-empty strings, not {value!r}")
    return tuple(dict.fromkeys(value))


def _core(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = _names(value, "core_features")
    if not names:
        raise SettingsError("core_features: must not be empty (leave it out for every feature)")
    return names


def _number(value: object, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingsError(f"{key}: must be a number, not {value!r}")
    if not low <= value <= high:
        raise SettingsError(f"{key}: must be between {low:g} and {high:g}, not {value!r}")
    return float(value)


def _whole(value: object, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingsError(f"{key}: must be a whole number from {low} to {high}, not {value!r}")
    return value


def _inactive(value: object) -> tuple[str, ...]:
    return _names(value, "inactive")


def _touchpoints(value: object) -> tuple[str, ...]:
    return _names(value, "touchpoints")


def _high(value: object) -> float:
    return _number(value, "tiers.high", 0, 100)


def _medium(value: object) -> float:
    return _number(value, "tiers.medium", 0, 100)


def _depth_target(value: object) -> int:
    return _whole(value, "depth_target", 1, 28)


def _touchpoint_target(value: object) -> int:
    return _whole(value, "touchpoint_target", 1, 365)


def _touchpoint_window_days(value: object) -> int:
    return _whole(value, "touchpoint_window_days", 1, 365)


def _milestones(value: object) -> tuple[Milestone, ...]:
    try:
        return from_entries(value)
    except ConfigurationError as exc:
        raise SettingsError(str(exc)) from None


def _weights(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise SettingsError(f"account_weights: must be a table of weights, not {value!r}")
    out = {}
    for name, weight in value.items():
        if name not in ACCOUNT_COMPONENTS:
            raise SettingsError(
                f"account_weights.{name}: unknown component; use {', '.join(ACCOUNT_COMPONENTS)}"
            )
        out[name] = _number(weight, f"account_weights.{name}", 0, 1e9)
    if not any(out.values()):
        raise SettingsError("account_weights: some component needs a weight above 0")
    return out


def _clickhouse(value: object) -> dict[str, str]:
    from .engine.chtable import ROLES

    if not isinstance(value, Mapping):
        raise SettingsError(f"clickhouse: must be a table of column names, not {value!r}")
    known = ("table", "json", *ROLES)
    out = {}
    for key, column in value.items():
        if key not in known:
            raise SettingsError(f"clickhouse.{key}: unknown key; known: {', '.join(known)}")
        if not isinstance(column, str) or not column:
            raise SettingsError(f"clickhouse.{key}: must be a non-empty string, not {column!r}")
        out[key] = column
    return out


def _zone(value: object) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str) or not value:
        raise SettingsError(f"timezone: must be an IANA zone name such as 'UTC', not {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"timezone: unknown time zone {value!r}") from None
    return value


@attrs.frozen
class ReportSettings:
    """Everything besides the events that changes the report's numbers.

    Attributes:
        timezone: IANA zone of calendar days and ISO weeks.
        inactive: Host events that are not activity (uptake's own never are).
        core_features: The features account breadth counts; None: every feature the
            account used.
        touchpoints: Customer-success touchpoint events (``QBR Attended``).
        account_weights: Weights of the account score's components (normalised).
        high: Lowest score of the high tier.
        medium: Lowest score of the medium tier; below it, low.
        depth_target: Distinct days of use in 28 that count as full depth.
        touchpoint_target: Touchpoint days in the window that count as full marks.
        touchpoint_window_days: How far back touchpoints count.
        seats_trait: The group trait holding an account's seats.
        milestones: Milestones declared as ``[[milestones]]`` (``uptake discover``
            measures them; docs/discover.md).
        clickhouse: Where a ClickHouse source's events are (``table``) and how its
            columns map to an event's fields (docs/report.md#clickhouse).
        path: The file these came from (None: defaults or the command line).
    """

    timezone: str = attrs.field(default="UTC", converter=_zone)
    inactive: tuple[str, ...] = attrs.field(default=(), converter=_inactive)
    core_features: tuple[str, ...] | None = attrs.field(default=None, converter=_core)
    touchpoints: tuple[str, ...] = attrs.field(default=(), converter=_touchpoints)
    account_weights: Mapping[str, float] = attrs.field(
        factory=lambda: dict(_DEFAULTS.account_weights), converter=_weights, hash=False
    )
    high: float = attrs.field(default=_DEFAULTS.high, converter=_high)
    medium: float = attrs.field(default=_DEFAULTS.medium, converter=_medium)
    depth_target: int = attrs.field(default=_DEFAULTS.depth_target, converter=_depth_target)
    touchpoint_target: int = attrs.field(
        default=_DEFAULTS.touchpoint_target, converter=_touchpoint_target
    )
    touchpoint_window_days: int = attrs.field(
        default=_DEFAULTS.touchpoint_window.days, converter=_touchpoint_window_days
    )
    seats_trait: str = attrs.field(default=_DEFAULTS.seats_trait)
    milestones: tuple[Milestone, ...] = attrs.field(default=(), converter=_milestones)
    clickhouse: Mapping[str, str] = attrs.field(factory=dict, converter=_clickhouse, hash=False)
    path: str | None = attrs.field(default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.medium < self.high <= 100:
            raise SettingsError(
                f"tiers: must satisfy 0 < medium < high <= 100, not medium={self.medium:g}, "
                f"high={self.high:g}"
            )
        if not isinstance(self.seats_trait, str) or not self.seats_trait:
            raise SettingsError(
                f"seats_trait: must be a non-empty string, not {self.seats_trait!r}"
            )

    def engagement(self) -> Engagement:
        """The account-score configuration these settings describe."""
        return Engagement(
            core_features=self.core_features,
            account_weights=dict(self.account_weights),
            high=self.high,
            medium=self.medium,
            depth_target=self.depth_target,
            touchpoints=self.touchpoints,
            touchpoint_window=timedelta(days=self.touchpoint_window_days),
            touchpoint_target=self.touchpoint_target,
            seats_trait=self.seats_trait,
        )

    def tzinfo(self) -> tzinfo:
        """The time zone as a ``tzinfo``."""
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    def describe(self) -> list[str]:
        """Say in a few lines which settings the report used (and where they came from)."""
        weights = ", ".join(f"{k} {v:g}" for k, v in self.account_weights.items())
        source = self.path or ("defaults" if self == ReportSettings() else "not from a file")
        return [
            f"settings: {source}; time zone {self.timezone}; "
            f"inactive events: {', '.join(self.inactive) or 'none'}",
            "account score: core features "
            + (", ".join(self.core_features) if self.core_features else "every feature used")
            + f"; touchpoints {', '.join(self.touchpoints) or 'none'}"
            + f"; weights {weights}; tiers high >= {self.high:g}, medium >= {self.medium:g}",
        ] + (
            [f"declared milestones: {', '.join(m.name for m in self.milestones)}"]
            if self.milestones
            else []
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data (the JSON report's ``settings``)."""
        return {
            "timezone": self.timezone,
            "inactive": list(self.inactive),
            "core_features": None if self.core_features is None else list(self.core_features),
            "touchpoints": list(self.touchpoints),
            "account_weights": dict(self.account_weights),
            "tiers": {"high": self.high, "medium": self.medium},
            "depth_target": self.depth_target,
            "touchpoint_target": self.touchpoint_target,
            "touchpoint_window_days": self.touchpoint_window_days,
            "seats_trait": self.seats_trait,
            "milestones": [to_entry(m) for m in self.milestones],
            "path": self.path,
        }


_KEYS = {
    "timezone",
    "inactive",
    "core_features",
    "touchpoints",
    "account_weights",
    "tiers",
    "depth_target",
    "touchpoint_target",
    "touchpoint_window_days",
    "seats_trait",
    "milestones",
    "clickhouse",
}


def loads(text: str, *, path: str | None = None) -> ReportSettings:
    """Read settings from TOML text.

    Raises:
        SettingsError: not TOML, an unknown key, or a value that cannot be used; the
            message names the key (and ``path``, when given).
    """
    where = f"{path}: " if path else ""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where}not a TOML file: {exc}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise SettingsError(
            f"{where}{unknown[0]}: unknown setting; known: {', '.join(sorted(_KEYS))}"
        )
    args: dict[str, Any] = {k: v for k, v in data.items() if k != "tiers"}
    tiers = data.get("tiers", {})
    if not isinstance(tiers, dict):
        raise SettingsError(f"{where}tiers: must be a table with high and medium, not {tiers!r}")
    for key, value in tiers.items():
        if key not in ("high", "medium"):
            raise SettingsError(f"{where}tiers.{key}: unknown tier; use high and medium")
        args[key] = value
    try:
        return ReportSettings(**args, path=path)
    except SettingsError as exc:
        raise SettingsError(f"{where}{exc}") from None


def load(path: str | Path) -> ReportSettings:
    """Read a settings file.

    Raises:
        SettingsError: the file cannot be read or used (the message says which key).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read settings {path}: {exc}") from None
    return loads(text, path=str(path))


def beside(source: str | Path) -> Path:
    """Where the settings of an event file are looked for: its name with ``.toml``."""
    return Path(source).with_suffix(".toml")


_SURROGATE = re.compile("[\ud800-\udfff]")


def toml_value(value: object) -> str:
    """``value`` (text, number, list or table) written as a TOML value.

    Text is a TOML basic string: JSON's escapes for quotes, backslashes and control
    characters, every other character as itself (TOML refuses ``\\ud83d``-style halves
    of a pair), DEL escaped, and a lone surrogate as U+FFFD.
    """
    if isinstance(value, str):
        text = json.dumps(_SURROGATE.sub("\ufffd", value), ensure_ascii=False)
        return text.replace("\x7f", "\\u007f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        pairs = ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }"
    return str(value)


_toml = toml_value


def dumps(settings: ReportSettings) -> str:
    """Write settings as TOML, with a comment on each key; :func:`loads` reads it back."""
    core = (
        f"core_features = {_toml(settings.core_features)}"
        if settings.core_features is not None
        else "# core_features = [...]  (left out: every feature the account used)"
    )
    weights = "\n".join(f"{k} = {_toml(v)}" for k, v in settings.account_weights.items())
    return (
        f"""\
# uptake report settings: everything besides the events that changes the report's numbers.
# Read by `uptake report` from SOURCE's name with .toml (or --settings FILE); see docs/report.md.

# IANA zone of calendar days and ISO weeks
timezone = {_toml(settings.timezone)}
# host events that are not activity (uptake's own never are)
inactive = {_toml(settings.inactive)}
# the features account breadth counts
{core}
# customer-success touchpoint events
touchpoints = {_toml(settings.touchpoints)}
# distinct days of use in 28 that count as full depth for a feature
depth_target = {settings.depth_target}
# touchpoint days in the window that count as full marks, and the window
touchpoint_target = {settings.touchpoint_target}
touchpoint_window_days = {settings.touchpoint_window_days}
# the group trait that holds an account's seats
seats_trait = {_toml(settings.seats_trait)}

# weights of the account score's components (only their ratios matter)
[account_weights]
{weights}

# lowest score of each tier (below medium: low)
[tiers]
high = {_toml(settings.high)}
medium = {_toml(settings.medium)}
"""
        + _clickhouse_toml(settings.clickhouse)
        + "".join(_entry_toml(m) for m in settings.milestones)
    )


def _entry_toml(m: Milestone) -> str:
    """A ``[[milestones]]`` table."""
    lines = ["", "[[milestones]]"]
    for key, value in to_entry(m).items():
        if isinstance(value, dict):
            pairs = ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {pairs} }}")
        else:
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _clickhouse_toml(mapping: Mapping[str, str]) -> str:
    if not mapping:
        return ""
    lines = "".join(f"{key} = {_toml(column)}\n" for key, column in mapping.items())
    header = "\n# a ClickHouse source: its table, and its columns named otherwise\n"
    return header + "[clickhouse]\n" + lines
