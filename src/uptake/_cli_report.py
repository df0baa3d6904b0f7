"""``uptake report``: the engagement report from a store or an export."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from datetime import date
from typing import TYPE_CHECKING

from ._cli_common import UsageError, folder_of, is_clickhouse, needs_extra, shown

if TYPE_CHECKING:
    from .collector.metrics import Report
    from .collector.settings import ReportSettings

__all__ = ["day", "report"]


def day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"uptake: not a date (YYYY-MM-DD): {text!r}") from None


def report(args: argparse.Namespace) -> int:
    needs_extra("report", "plotly")
    import attrs

    from .collector.discovery import Discovery, after_report, headline, html_section
    from .collector.export import to_json, write_csv
    from .collector.metrics import compute
    from .collector.report import render_html, summary
    from .collector.sources import from_jsonl, from_store

    until = day(args.until)
    remote = is_clickhouse(args.source)
    if not remote and not os.path.isfile(args.source):
        print(f"uptake: no such file: {shown(args.source)}", file=sys.stderr)
        return 2
    settings = _report_settings(args)
    folder_of(args.out, "the report to")
    if args.json not in (None, "-"):
        folder_of(args.json, "the JSON report to")
    started = time.monotonic()
    found: list[Discovery] = []  # discovery runs on the local engines' loaded table only
    if remote:
        report, name = _from_clickhouse(args, settings, until)
    else:
        is_sqlite = _is_event_source(args.source)
        try:
            source = from_store(args.source) if is_sqlite else from_jsonl(args.source)
            report = compute(
                source,
                tz=settings.tzinfo(),
                inactive=settings.inactive,
                engagement=settings.engagement(),
                until=until,
                engine=args.engine,
                on_loaded=None if args.no_discover else after_report(settings, until, found),
            )
        except sqlite3.DatabaseError as exc:
            print(f"uptake: {args.source} is not a collector's event store: {exc}", file=sys.stderr)
            return 2
        report = attrs.evolve(
            report, skipped=source.skipped, skipped_by=tuple(source.skipped_by.most_common())
        )
        name = os.path.basename(args.source)
    page = render_html(
        report,
        title=f"uptake engagement report: {name}",
        settings=settings,
        extra_sections=[html_section(d) for d in found],
    )
    try:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(page)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {args.out}: {exc.strerror}") from None
    wrote = [args.out]
    if args.json is not None:
        wrote += _write_json(args.json, to_json(report, settings))
    if args.csv is not None:
        try:
            write_csv(report, args.csv, settings)
        except OSError as exc:
            raise UsageError(f"cannot write CSV files to {args.csv}: {exc.strerror}") from None
        wrote.append(os.path.join(args.csv, "*.csv"))
    text = sys.stderr if args.json == "-" else sys.stdout
    for line in summary(report, settings) + [x for d in found for x in headline(d)]:
        print(line, file=text)
    print(f"wrote {', '.join(wrote)} in {time.monotonic() - started:.1f}s", file=text)
    return 0


def _from_clickhouse(
    args: argparse.Namespace, settings: ReportSettings, until: date | None
) -> tuple[Report, str]:
    """The report computed on a ClickHouse server, and the name the page gives it.

    Raises:
        UsageError: the source cannot be used (one line, never the password).
    """
    if args.engine is not None:
        raise UsageError("--engine does not apply to a ClickHouse source: the server computes")
    try:
        import clickhouse_connect  # noqa: F401
    except ImportError:
        raise UsageError(
            "a ClickHouse source needs the clickhouse extra: pip install 'uptake[clickhouse]'"
        ) from None
    from .collector.clickhouse import ClickHouseError, compute_clickhouse, connect, parse_url

    # The driver logs a failed request before raising it: the one line below says it all.
    logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
    logging.getLogger("clickhouse_connect").propagate = False

    try:
        location = parse_url(args.source, mapping=settings.clickhouse)
        runner = connect(location)
        try:
            report = compute_clickhouse(
                runner,
                location,
                tz=settings.tzinfo(),
                inactive=settings.inactive,
                engagement=settings.engagement(),
                until=until,
            )
        finally:
            runner.close()
    except ClickHouseError as exc:
        raise UsageError(str(exc)) from None
    return report, location.redacted()


def _write_json(path: str, document: str) -> list[str]:
    """Write the JSON report to ``path`` ("-": standard output); return what was written."""
    if path == "-":
        sys.stdout.write(document + "\n")
        return []
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(document + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write the JSON report to {path}: {exc.strerror}") from None
    return [path]


def _report_settings(args: argparse.Namespace) -> ReportSettings:
    """The settings file (``--settings``, else the one beside the source), then the flags.

    Raises:
        UsageError: the settings cannot be read or used, or a flag is invalid.
    """
    import attrs

    from .collector.settings import ReportSettings, SettingsError, beside, load

    try:
        if args.settings is not None:
            settings = load(args.settings)
        elif not is_clickhouse(args.source) and beside(args.source).is_file():
            settings = load(beside(args.source))
        else:
            settings = ReportSettings()
        flags: dict[str, object] = {}
        if args.timezone:
            flags["timezone"] = args.timezone
        if args.inactive:
            flags["inactive"] = args.inactive
        if args.core_feature:
            flags["core_features"] = args.core_feature
        if args.touchpoint:
            flags["touchpoints"] = args.touchpoint
        if flags:
            flags["path"] = f"{settings.path or 'defaults'} with command-line flags"
            settings = attrs.evolve(settings, **flags)  # type: ignore[arg-type]
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    return settings


def _is_event_source(path: str) -> bool:
    """True for a SQLite file, False for what looks like a JSONL export.

    Raises:
        UsageError: neither (its first line is not a JSON object).
    """
    with open(path, "rb") as handle:
        if handle.read(16) == b"SQLite format 3\x00":
            return True
        handle.seek(0)
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                first = json.loads(line)
            except (ValueError, RecursionError):
                first = None
            if not isinstance(first, dict):
                raise UsageError(
                    f"{path} is neither a collector's event store (SQLite) nor a JSONL "
                    f"export of events: line {number} is not a JSON object"
                )
            break
    return False
