"""The client's settings: frozen objects built once from the keyword arguments.

``Client(...)`` keeps its flat keyword arguments; this module checks them, reads the
environment, and groups them in the manner of httpx's ``Timeout`` and ``Limits``: what
delivery needs, what sessions need, what the rules need. The objects are frozen, so a
client's settings cannot change after construction (the attributes that mirror them on
the client are read-only properties).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit

import attrs

from .definitions import OWN_EVENTS
from .errors import ConfigurationError
from .rules import nudge_fatigue as _fatigue
from .rules.engagement import Engagement
from .rules.engine import RulesEngine
from .rules.milestones import Milestone
from .rules.nudge_fatigue import NudgeBudget, QuietHours
from .rules.nudges import Declining, Nudge
from .stores import Store
from .transport import HttpTransport

__all__ = [
    "MAX_BATCH_BYTES",
    "Delivery",
    "Rules",
    "Sessions",
    "check_nudges",
    "check_store",
    "check_timeout",
    "delivery",
    "hooks",
    "rules",
    "sessions",
]

#: Largest batch body sent, in bytes (the Segment spec allows 500 KB).
MAX_BATCH_BYTES = 500_000

BeforeSend = Callable[[dict[str, Any]], "Mapping[str, Any] | None"]


@attrs.frozen
class Delivery:
    """How events leave the process: where to, in which batches, with which retries."""

    endpoint: str | None
    write_key: str = attrs.field(repr=False)
    send: bool
    flush_at: int
    flush_interval: float
    max_queue_size: int
    max_queue_bytes: int
    gzip: bool
    timeout: float
    retry_timeout: float
    max_backoff: float
    exit_timeout: float
    max_batch_bytes: int

    def http_transport(self, on_retry: Callable[[], None], *, prepare: bool) -> HttpTransport:
        """Build the HTTP transport for these settings (its pool too, with ``prepare``)."""
        transport = HttpTransport(
            self.endpoint or "http://127.0.0.1",
            self.write_key,
            on_retry=on_retry,
            gzip=self.gzip,
            timeout=self.timeout,
            retry_timeout=self.retry_timeout,
            max_backoff=self.max_backoff,
        )
        if prepare and self.send:
            transport.prepare()
        return transport


@attrs.frozen
class Sessions:
    """When an automatic session ends."""

    idle_timeout: float
    max_duration: float
    events: bool = True


@attrs.frozen
class Rules:
    """Milestones, engagement and nudges, and what they count as activity."""

    milestones: tuple[Milestone, ...]
    nudges: tuple[Nudge, ...]
    engagement: Engagement | None
    inactive_events: frozenset[str]
    timezone: tzinfo | None
    rate_limit: float | None
    global_holdout: float = 0.0
    budgets: tuple[NudgeBudget, ...] = ()
    quiet_hours: tuple[QuietHours, ...] = ()

    def engine(self, store: Store) -> RulesEngine:
        """Build the rules engine for these settings over ``store``."""
        return RulesEngine(
            milestones=self.milestones,
            engagement=self.engagement,
            nudges=self.nudges,
            rate_limit=self.rate_limit,
            store=store,
            tz=self.timezone,
            inactive_events=self.inactive_events,
            global_holdout=self.global_holdout,
            budgets=self.budgets,
            quiet_hours=self.quiet_hours,
        )


def delivery(
    *,
    write_key: str | None,
    endpoint: str | None,
    send: bool,
    flush_at: int,
    flush_interval: float,
    max_queue_size: int,
    max_queue_bytes: int,
    gzip: bool,
    timeout: float,
    retry_timeout: float,
    max_backoff: float,
    exit_timeout: float,
    allow_http: bool,
    max_batch_bytes: int,
    need_endpoint: bool = True,
) -> Delivery:
    """Check the delivery arguments (reading ``$UPTAKE_WRITE_KEY`` and ``$UPTAKE_ENDPOINT``).

    Raises:
        ConfigurationError: a value out of range, or sending without a key or endpoint.
    """
    write_key = write_key if write_key is not None else os.environ.get("UPTAKE_WRITE_KEY")
    endpoint = endpoint if endpoint is not None else os.environ.get("UPTAKE_ENDPOINT")
    for name, count in (
        ("flush_at", flush_at),
        ("max_queue_size", max_queue_size),
        ("max_queue_bytes", max_queue_bytes),
        ("max_batch_bytes", max_batch_bytes),
    ):
        _check_positive_int(name, count)
    for name, seconds in (
        ("flush_interval", flush_interval),
        ("timeout", timeout),
        ("retry_timeout", retry_timeout),
        ("max_backoff", max_backoff),
    ):
        _check_seconds(name, seconds)
    _check_seconds("exit_timeout", exit_timeout, allow_zero=True)
    if max_batch_bytes > MAX_BATCH_BYTES:
        raise ConfigurationError(f"max_batch_bytes must be at most {MAX_BATCH_BYTES}")
    if send and need_endpoint:
        if not write_key or not isinstance(write_key, str):
            raise ConfigurationError(
                "a write_key is required to send events: pass write_key=... or set "
                "UPTAKE_WRITE_KEY (or pass send=False)"
            )
        if not endpoint:
            raise ConfigurationError(
                "an endpoint is required to send events: pass endpoint=... or set "
                "UPTAKE_ENDPOINT (or pass send=False)"
            )
    if send and endpoint is not None:
        endpoint = _check_endpoint(endpoint, allow_http)
    return Delivery(
        endpoint=endpoint,
        write_key=write_key if isinstance(write_key, str) else "",
        send=bool(send),
        flush_at=flush_at,
        flush_interval=float(flush_interval),
        max_queue_size=max_queue_size,
        max_queue_bytes=max_queue_bytes,
        gzip=bool(gzip),
        timeout=float(timeout),
        retry_timeout=float(retry_timeout),
        max_backoff=float(max_backoff),
        exit_timeout=float(exit_timeout),
        max_batch_bytes=max_batch_bytes,
    )


def sessions(idle_timeout: float, max_duration: float, events: bool = True) -> Sessions:
    """Check the session arguments."""
    _check_seconds("session_timeout", idle_timeout)
    _check_seconds("max_session_duration", max_duration)
    if not isinstance(events, bool):
        raise ConfigurationError(f"session_events must be True or False, not {events!r}")
    return Sessions(
        idle_timeout=float(idle_timeout), max_duration=float(max_duration), events=events
    )


def hooks(**named: object) -> None:
    """Refuse hooks (``on_error``, ``before_send``) that are neither None nor callable."""
    for name, hook in named.items():
        if hook is not None and not callable(hook):
            raise ConfigurationError(f"{name} must be callable, not {type(hook).__name__}")


def rules(
    *,
    milestones: Sequence[Milestone],
    nudges: Sequence[Nudge],
    engagement: Engagement | bool | None,
    inactive_events: Iterable[str],
    timezone: tzinfo | None,
    rate_limit: timedelta | None,
    global_holdout: float = 0.0,
    nudge_budget: object = None,
    quiet_hours: object = None,
) -> Rules:
    """Check the rule arguments; engagement is on by default when there are rules."""
    budget_list = _fatigue.budgets(nudge_budget)
    quiet_list = _fatigue.quiet_hours(quiet_hours)
    if isinstance(global_holdout, bool) or not isinstance(global_holdout, (int, float)):
        raise ConfigurationError(
            f"global_holdout must be a fraction from 0 to 1, not {global_holdout!r}"
        )
    if not 0.0 <= global_holdout < 1.0:
        raise ConfigurationError(
            f"global_holdout must be at least 0 and below 1, not {global_holdout!r}"
        )
    milestones = tuple(milestones)
    for m in milestones:
        if not isinstance(m, Milestone):
            raise ConfigurationError(f"milestones must be uptake.Milestone, not {m!r}")
    seen = [m.name for m in milestones]
    if len(set(seen)) != len(seen):
        twice = sorted({n for n in seen if seen.count(n) > 1})
        raise ConfigurationError(f"milestone names must be unique; repeated: {twice}")
    if timezone is not None and not isinstance(timezone, tzinfo):
        raise ConfigurationError(
            f"timezone must be a datetime.tzinfo such as ZoneInfo('Europe/Paris'), not {timezone!r}"
        )
    nudges = tuple(nudges)
    check_nudges(nudges, milestones, rate_limit)
    channels = {n.channel for n in nudges}
    limits: tuple[NudgeBudget | QuietHours, ...] = (*budget_list, *quiet_list)
    for limit in limits:
        if limit.channel is not None and limit.channel not in channels:
            raise ConfigurationError(
                f"{limit!r} names channel {limit.channel!r}, but no nudge uses it; the "
                f"nudges' channels: {sorted(channels)}"
            )
    if engagement is None:  # on with the rules, off for a plain tracker
        engagement = bool(milestones) or bool(nudges)
    if engagement is True:
        engagement = Engagement()
    elif engagement is not False and not isinstance(engagement, Engagement):
        raise ConfigurationError(
            f"engagement must be an uptake.Engagement or a bool, not {engagement!r}"
        )
    if isinstance(inactive_events, str):
        raise ConfigurationError("inactive_events must be a list of event names")
    if any(isinstance(n.trigger, Declining) for n in nudges) and not engagement:
        raise ConfigurationError("a Declining() trigger needs engagement (it is off)")
    return Rules(
        milestones=milestones,
        nudges=nudges,
        engagement=engagement or None,
        inactive_events=OWN_EVENTS | frozenset(inactive_events),
        timezone=timezone,
        rate_limit=None if rate_limit is None else rate_limit.total_seconds(),
        global_holdout=float(global_holdout),
        budgets=budget_list,
        quiet_hours=quiet_list,
    )


def check_nudges(
    nudges: Sequence[Nudge], milestones: Sequence[Milestone], rate_limit: object
) -> None:
    """Refuse nudges that are not Nudge objects, repeat a name or name unknown milestones."""
    names = set()
    known = {m.name for m in milestones}
    for n in nudges:
        if not isinstance(n, Nudge):
            raise ConfigurationError(f"nudges must be uptake.Nudge, not {n!r}")
        if n.name in names:
            raise ConfigurationError(f"nudge names must be unique; repeated: {n.name!r}")
        names.add(n.name)
        unknown = sorted(n.milestones - known)
        if unknown:
            raise ConfigurationError(
                f"nudge {n.name!r} refers to milestones the client does not have: {unknown}"
            )
    if rate_limit is not None and (
        not isinstance(rate_limit, timedelta) or rate_limit <= timedelta(0)
    ):
        raise ConfigurationError(
            f"nudge_rate_limit must be a positive timedelta or None, not {rate_limit!r}"
        )


def check_store(store: object) -> None:
    """Refuse an object that is not a rule store."""
    needed = ("update", "update_many", "get", "delete", "after_fork_in_child")
    if any(not callable(getattr(store, name, None)) for name in needed):
        raise ConfigurationError(
            f"store must be a rule store such as uptake.MemoryStore(), "
            f"uptake.SqliteStore(path) or uptake.RedisStore(url), not {store!r}"
        )


def check_timeout(timeout: object) -> None:
    """Refuse a timeout that is not a number of seconds >= 0 (NaN included)."""
    if (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or not timeout >= 0  # also refuses NaN
    ):
        raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int, not {value!r}")


def _check_seconds(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and (value > 0 or (allow_zero and value == 0)):  # type: ignore[operator]
        return
    bound = "zero or more" if allow_zero else "positive"
    raise ConfigurationError(f"{name} must be a {bound} number of seconds, not {value!r}")


def _check_endpoint(endpoint: str, allow_http: bool) -> str:
    if not isinstance(endpoint, str):
        raise ConfigurationError(f"endpoint must be a URL string, not {type(endpoint).__name__}")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"endpoint must be an http(s) URL such as https://events.example, not {endpoint!r}"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError("endpoint must not carry a query, fragment or credentials")
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// to {parts.hostname}: events and the write key would "
            "travel unencrypted. Use https://, or pass allow_http=True if you mean it"
        )
    return endpoint.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
