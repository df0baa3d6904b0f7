"""Read the report's events where they live: a table of Segment-shaped events in ClickHouse.

``uptake report clickhouse://user@host:8123/db?table=events`` computes the whole report
on the ClickHouse server: :func:`typed_select` turns the events table into the engine's
typed table (:mod:`.engine.table`) in ClickHouse SQL, by the same rules as the Python
readers, and the engine's model (:mod:`.engine.model`) runs over it there
(:mod:`.engine.remote`). Only the measures' small results come back.

The table is what Segment-family pipelines land (RudderStack, Jitsu, a Segment warehouse
sync, a Kafka table engine): one row per event, with a column per field
(:data:`DEFAULT_COLUMNS`, each mappable to another name), or one column holding each
event's whole JSON (``json=COLUMN``). See docs/report.md#clickhouse.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, tzinfo
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from ..rules.engagement import Engagement
from .engine import _zone, report_from
from .engine.chtable import (
    DEFAULT_COLUMNS,
    JSON_KEYS,
    PASSWORD_ENV,
    REASONS,
    ROLES,
    ClickHouseError,
    ClickHouseLocation,
    typed_select,
)
from .engine.remote import ClickHouseBackend, Runner
from .metrics import Report

__all__ = [
    "DEFAULT_COLUMNS",
    "JSON_KEYS",
    "PASSWORD_ENV",
    "ROLES",
    "ClickHouseError",
    "ClickHouseLocation",
    "compute_clickhouse",
    "connect",
    "describe",
    "is_clickhouse_url",
    "parse_url",
    "typed_select",
]


def is_clickhouse_url(text: str) -> bool:
    """Whether a report source names a ClickHouse table rather than a file."""
    return text[:14].lower().startswith(("clickhouse://", "clickhouses://"))


def parse_url(
    url: str, *, mapping: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
) -> ClickHouseLocation:
    """Read ``clickhouse[s]://[user[:password]@]host[:port][/database][?table=T&ROLE=COLUMN]``.

    ``mapping`` (the settings file's ``[clickhouse]`` table: ``table``, ``json`` and role
    names) gives defaults that the URL's parameters override. The password comes from
    the URL, else from :data:`PASSWORD_ENV` in ``env`` (default: the environment).

    Raises:
        ClickHouseError: the URL or a mapping cannot be used.
    """
    env = os.environ if env is None else env
    parts = urlsplit(url)
    if parts.scheme not in ("clickhouse", "clickhouses"):
        raise ClickHouseError("a ClickHouse source starts with clickhouse:// or clickhouses://")
    secure = parts.scheme == "clickhouses"
    try:
        port = parts.port or (8443 if secure else 8123)
    except ValueError:
        raise ClickHouseError("the ClickHouse URL's port must be a number") from None
    if not parts.hostname:
        raise ClickHouseError("the ClickHouse URL names no host")
    options = dict(mapping or {})
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        options[key] = value
    unknown = sorted(set(options) - {"table", "json", *ROLES})
    if unknown:
        raise ClickHouseError(
            f"unknown ClickHouse option {unknown[0]!r}; known: table, json, " + ", ".join(ROLES)
        )
    for key, value in options.items():
        if not value:
            raise ClickHouseError(f"the ClickHouse option {key} needs a value")
    password = unquote(parts.password) if parts.password is not None else None
    if password is None:
        password = env.get(PASSWORD_ENV, "")
    database = unquote(parts.path.strip("/")) or "default"
    return ClickHouseLocation(
        host=parts.hostname,
        port=port,
        secure=secure,
        user=unquote(parts.username) if parts.username else "default",
        password=password,
        database=database,
        table=options.pop("table", "events"),
        json=options.pop("json", None),
        columns=options,
    )


class _ConnectRunner:
    """A :class:`~.engine.remote.Runner` over clickhouse-connect (HTTP)."""

    def __init__(self, location: ClickHouseLocation) -> None:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError

        self._location = location
        self._errors: tuple[type[BaseException], ...] = (DriverError, OSError)
        self._client = self._guard(
            lambda: clickhouse_connect.get_client(
                host=location.host,
                port=location.port,
                username=location.user,
                password=location.password,
                database=location.database,
                secure=location.secure,
                settings={"join_use_nulls": 1},
                connect_timeout=10,
                send_receive_timeout=3600,
                query_retries=0,
            )
        )

    def _guard(self, call: Any) -> Any:
        try:
            return call()
        except self._errors as exc:
            raise ClickHouseError(_one_line(exc, self._location)) from None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._guard(lambda: self._client.query(sql).result_rows)]

    def command(self, sql: str) -> None:
        self._guard(lambda: self._client.command(sql))

    def close(self) -> None:
        self._client.close()


_CAUSE = re.compile(r"\[(?:Errno -?\d+|SSL[^\]]*)\][^\"')(]*|timed out|Name or service not known")


def _one_line(exc: BaseException, location: ClickHouseLocation) -> str:
    """What went wrong, in one line, naming the server and never the password."""
    raw = str(exc)
    where = f"ClickHouse at {location.host}:{location.port}"
    secret = location.password
    if secret and secret in raw:  # (masked before the spaces are folded: it may hold some)
        if len(secret) < 4:  # too short to mask without garbling the message
            return f"{where}: {type(exc).__name__} (details withheld: they hold the password)"
        raw = raw.replace(secret, "***")
    text = " ".join(raw.split())
    marker = text.find("Code: ")
    if marker < 0:
        cause = _CAUSE.search(text)
        return f"cannot reach {where}: {cause.group(0).strip() if cause else text[:300]}"
    text = text[marker:]
    code = text[6:].split(".", 1)[0]
    for tail in (" (version", " (for url"):
        if tail in text:
            text = text[: text.index(tail)]
    if code in ("516", "192", "194"):
        return f"{where} refused user {location.user!r}: {text}"
    return f"{where}: {text[:500]}"


def connect(location: ClickHouseLocation) -> Runner:
    """Open a session on the server (clickhouse-connect, HTTP or HTTPS).

    Raises:
        ClickHouseError: the server cannot be reached, or refuses the credentials.
        ImportError: clickhouse-connect is not installed.
    """
    return _ConnectRunner(location)


def describe(runner: Runner, location: ClickHouseLocation) -> dict[str, str]:
    """The events table's columns (name to type).

    Raises:
        ClickHouseError: no such table (or the server says why not).
    """
    return {
        str(row[0]): str(row[1]) for row in runner.rows(f"DESCRIBE TABLE {location.qualified()}")
    }


def compute_clickhouse(
    runner: Runner,
    location: ClickHouseLocation,
    *,
    tz: tzinfo | None = None,
    inactive: Iterable[str] = (),
    engagement: Engagement | None = None,
    until: date | None = None,
    segment_by: str | None = None,
) -> Report:
    """Compute the report on a ClickHouse session over ``location``'s events table.

    The typed table is a temporary table of the session; every figure is the engine's
    model run there. The report counts the events it skipped, by reason.

    Raises:
        ClickHouseError: the table or a column is missing, or the server refuses a query.
    """
    config = engagement if engagement is not None else Engagement()
    zone = _zone(tz)
    db = ClickHouseBackend(runner)
    columns = describe(runner, location)
    select, skipped_sql = typed_select(
        location,
        columns,
        seats_trait=config.seats_trait,
        segment_by=segment_by,
        day=ClickHouseBackend.day(*zone),
    )
    skipped: Counter[str] = Counter()
    for code, n in runner.rows(skipped_sql):
        skipped[REASONS[int(code)]] += int(n)
    db.table("raw", select)
    report = report_from(
        db,
        tz=tz,
        inactive=inactive,
        engagement=config,
        until=until,
        skipped=sum(skipped.values()),
        segment_by=segment_by,
        zone=zone,
        days_known=True,
    )
    return attrs.evolve(report, skipped_by=tuple(skipped.most_common()))
