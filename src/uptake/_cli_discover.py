"""``uptake discover``: the early behaviours that go with retention, from stored events."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from typing import Any

from ._cli_common import UsageError, folder_of, is_clickhouse, needs_extra, shown
from ._cli_report import _is_event_source, _report_settings, day

__all__ = ["add_parser", "discover_command"]


def add_parser(commands: Any) -> None:
    """Add the ``discover`` subcommand to the ``uptake`` parser's subcommands."""
    p = commands.add_parser(
        "discover",
        help="find the early behaviours that go with retention (activation candidates)",
        description="Rank 'did E at least k times within the first N days' rules (every "
        "event and feature, distinct active days and features, pairs) by how they go with "
        "retention (active on a day in days 28-35 after first seen) or a --goal event, in "
        "the cohort first seen early enough to be observed. Correlation, not causation: "
        "test a candidate with a nudge and a holdout. See docs/discover.md.",
    )
    p.add_argument(
        "source",
        nargs="?",
        default="uptake-events.db",
        help="the collector's SQLite file or a JSONL export (default: uptake-events.db)",
    )
    p.add_argument("--settings", metavar="FILE", help="TOML settings (default: SOURCE.toml)")
    p.add_argument("--timezone", help="IANA time zone of days (default: the settings', else UTC)")
    p.add_argument("--until", help="last day of data used, YYYY-MM-DD (default: last event)")
    p.add_argument(
        "--inactive",
        action="append",
        default=[],
        help="an event that is not activity (repeatable; replaces the settings' list)",
    )
    p.add_argument("--unit", choices=["user", "account"], default="user", help="(user)")
    p.add_argument("--goal", metavar="EVENT", help="outcome: did EVENT in the window")
    p.add_argument(
        "--window",
        metavar="START:END",
        help=(
            "outcome window, days after first seen (28:35; with --goal 0:35, and a later "
            "START leaves out who reached the goal before it)"
        ),
    )
    p.add_argument(
        "--days", default="1,3,7,14", metavar="N,N,...", help="early windows in days (1,3,7,14)"
    )
    p.add_argument("--max-count", type=int, default=10, help="largest k tried (10)")
    p.add_argument("--min-reach", type=float, default=0.05, help="smallest reach kept (0.05)")
    p.add_argument("--min-users", type=int, default=30, help="fewest subjects kept (30)")
    p.add_argument("--pairs", type=int, default=8, help="strongest families paired (8)")
    p.add_argument("--top", type=int, default=15, help="rows shown (15)")
    p.add_argument(
        "--json",
        metavar="FILE",
        help="also write the result as JSON ('-': standard output; the table then goes "
        "to standard error)",
    )
    p.add_argument("--all", action="store_true", help="with --json: every variant measured too")
    p.add_argument("--engine", choices=["duckdb", "chdb"], default="duckdb", help="(duckdb)")
    p.set_defaults(core_feature=[], touchpoint=[])


def _window(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start), int(end)
    except ValueError:
        raise UsageError(f"--window must look like START:END (28:35), not {text!r}") from None


def _days(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--days must be whole days separated by commas, not {text!r}") from None


def discover_command(args: argparse.Namespace) -> int:
    """Run ``uptake discover``; return its exit status."""
    needs_extra("discover", "duckdb", "pyarrow")
    from .collector.discovery import discover, lines, to_data
    from .errors import ConfigurationError

    until = day(args.until)
    if is_clickhouse(args.source):
        raise UsageError(
            "uptake discover reads a collector store or a JSONL export; "
            "a ClickHouse source is for uptake report"
        )
    if not os.path.isfile(args.source):
        raise UsageError(f"no such file: {shown(args.source)}")
    settings = _report_settings(args)
    if args.json not in (None, "-"):
        folder_of(args.json, "the JSON result to")
    _is_event_source(args.source)  # a file that is neither fails here, with one line
    started = time.monotonic()
    try:
        found = discover(
            args.source,
            unit=args.unit,
            goal=args.goal,
            window=_window(args.window),
            days=_days(args.days),
            max_count=args.max_count,
            min_reach=args.min_reach,
            min_users=args.min_users,
            pairs=args.pairs,
            settings=settings,
            until=until,
            engine=args.engine,
        )
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{args.source} is not a collector's event store: {exc}") from None
    text = sys.stderr if args.json == "-" else sys.stdout
    for line in settings.describe()[:1] + lines(found, top=args.top):
        print(line, file=text)
    if args.json is not None:
        document = json.dumps(to_data(found, variants=args.all), indent=1, allow_nan=False)
        if args.json == "-":
            sys.stdout.write(document + "\n")
        else:
            try:
                with open(args.json, "w", encoding="utf-8") as out:
                    out.write(document + "\n")
            except OSError as exc:
                raise UsageError(f"cannot write {args.json}: {exc.strerror}") from None
            print(f"wrote {args.json}", file=text)
    print(f"done in {time.monotonic() - started:.1f}s", file=text)
    return 0
