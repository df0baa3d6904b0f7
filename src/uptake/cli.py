"""The ``uptake`` command.

    uptake replay EVENTS.jsonl --client myapp.analytics:client
    uptake serve --write-key wk_123 [--host 127.0.0.1] [--port 8787] [--db uptake-events.db]
    uptake report [uptake-events.db | EVENTS.jsonl] [--out uptake-report.html]
    uptake demo [--seed 7]

``replay`` feeds past events (one wire-format JSON object per line) to your configured
client's :meth:`~uptake.Client.replay`, so its store starts with the right milestones. The
client is found the way gunicorn finds an app: ``module:attribute``. ``serve`` runs the
reference collector (the ``collector`` extra: uvicorn) that stores what clients send.
``report`` builds the engagement report from what it stored (or from an export), and
``demo`` runs a simulated product through a client and a collector to such a report.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import date
from typing import IO, Any

import attrs

from .client import Client
from .stores.memory import MemoryStore

__all__ = ["main"]


def _load_client(spec: str) -> Client:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"uptake: --client must look like 'package.module:name', not {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"uptake: cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SystemExit(f"uptake: {module_name!r} has no attribute {attribute!r}") from None
    if callable(target) and not isinstance(target, Client):
        target = target()  # a factory
    if not isinstance(target, Client):
        raise SystemExit(f"uptake: {spec!r} is not an uptake.Client")
    return target


class _Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total_bytes: int, stream: IO[str], enabled: bool) -> None:
        self.total = max(total_bytes, 1)
        self.stream = stream
        self.enabled = enabled
        self.started = time.monotonic()
        self._drawn = 0.0

    def update(self, done_bytes: int, events: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self._drawn < 0.1):
            return
        self._drawn = now
        share = min(done_bytes / self.total, 1.0)
        bar = "#" * int(share * 30)
        rate = events / max(now - self.started, 1e-9)
        self.stream.write(
            f"\r[{bar:<30}] {share:6.1%}  {events:,} events  {rate:,.0f}/s"
            + ("\n" if final else "")
        )
        self.stream.flush()


def _lines(handle: IO[bytes], progress: _Progress, counts: dict[str, int]) -> Iterator[Any]:
    done = 0
    for line in handle:
        done += len(line)
        counts["lines"] += 1
        progress.update(done, counts["lines"])
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError:
            counts["bad_json"] += 1
            yield None  # counted as skipped by replay
    progress.update(done, counts["lines"], final=True)


def _replay(args: argparse.Namespace) -> int:
    if args.file != "-" and not os.path.isfile(args.file):
        print(f"uptake: no such file: {args.file}", file=sys.stderr)
        return 2
    client = _load_client(args.client)
    if isinstance(client._store, MemoryStore):
        print(
            "uptake: warning: this client keeps its state in a MemoryStore, which ends with "
            "this command; give it a SqliteStore to keep what the replay builds",
            file=sys.stderr,
        )
    size = os.path.getsize(args.file) if args.file != "-" else 0
    progress = _Progress(size, sys.stderr, enabled=size > 0 and not args.quiet)
    counts = {"lines": 0, "bad_json": 0}
    started = time.monotonic()
    if args.file == "-":
        result = client.replay(_lines(sys.stdin.buffer, progress, counts))
    else:
        with open(args.file, "rb") as handle:
            result = client.replay(_lines(handle, progress, counts))
    elapsed = time.monotonic() - started
    print(
        f"replayed {result.applied:,} events in {elapsed:.1f}s "
        f"({result.skipped:,} skipped, {counts['bad_json']:,} of them not JSON); "
        f"{result.reached:,} milestones reached"
    )
    client.shutdown(timeout=5.0)
    return 1 if result.read and not result.applied else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``uptake`` command."""
    parser = argparse.ArgumentParser(prog="uptake", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    replay = commands.add_parser(
        "replay", help="rebuild milestone state from a JSONL export of past events"
    )
    replay.add_argument("file", help="events, one JSON object per line ('-' for stdin)")
    replay.add_argument(
        "--client",
        required=True,
        help="where your configured client is, as 'package.module:name' (or a factory)",
    )
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    serve = commands.add_parser("serve", help="run the reference collector (POST /v1/batch)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8787, help="port (8787)")
    serve.add_argument("--db", default="uptake-events.db", help="SQLite file for the events")
    serve.add_argument(
        "--write-key",
        action="append",
        default=[],
        help="a key clients may send (repeatable; default: $UPTAKE_WRITE_KEY)",
    )
    report = commands.add_parser(
        "report", help="the engagement report from stored events (HTML and a summary)"
    )
    report.add_argument(
        "source",
        nargs="?",
        default="uptake-events.db",
        help="the collector's SQLite file (uptake serve --db) or a JSONL export "
        "(default: uptake-events.db)",
    )
    report.add_argument("--out", default="uptake-report.html", help="HTML file to write")
    report.add_argument("--timezone", help="IANA time zone of days and weeks (default UTC)")
    report.add_argument("--until", help="last day of the report, YYYY-MM-DD (default: last event)")
    report.add_argument(
        "--inactive", action="append", default=[], help="an event that is not activity"
    )
    report.add_argument(
        "--core-feature", action="append", default=[], help="a core feature (account breadth)"
    )
    report.add_argument(
        "--touchpoint", action="append", default=[], help="a customer-success touchpoint event"
    )
    demo = commands.add_parser(
        "demo", help="simulate a product end to end: SDK, collector, engagement report"
    )
    demo.add_argument("--seed", type=int, default=7, help="simulation seed (7)")
    demo.add_argument("--users", type=int, default=360, help="users in the product (360)")
    demo.add_argument("--days", type=int, default=60, help="days of event time (60)")
    demo.add_argument("--until", help="last simulated day, YYYY-MM-DD (default today, UTC)")
    demo.add_argument("--out", default="uptake-report.html", help="HTML file to write")
    demo.add_argument("--db", help="keep the collector's events in this SQLite file")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "report":
        return _report(args)
    if args.command == "demo":
        return _demo(args)
    return _replay(args)


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"uptake: not a date (YYYY-MM-DD): {text!r}") from None


def _report(args: argparse.Namespace) -> int:
    try:
        import plotly  # noqa: F401
    except ImportError:
        print("uptake: report needs the collector extra: pip install 'uptake[collector]'")
        return 2
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from .collector.metrics import compute
    from .collector.report import render_html, summary
    from .collector.sources import from_jsonl, from_store
    from .rules.engagement import Engagement

    tz = None
    if args.timezone:
        try:
            tz = ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            print(f"uptake: unknown time zone {args.timezone!r}", file=sys.stderr)
            return 2
    until = _day(args.until)
    if not os.path.isfile(args.source):
        print(f"uptake: no such file: {args.source}", file=sys.stderr)
        return 2
    with open(args.source, "rb") as handle:
        is_sqlite = handle.read(16) == b"SQLite format 3\x00"
    engagement = Engagement(core_features=args.core_feature or None, touchpoints=args.touchpoint)
    started = time.monotonic()
    try:
        source = from_store(args.source) if is_sqlite else from_jsonl(args.source)
        report = compute(source, tz=tz, inactive=args.inactive, engagement=engagement, until=until)
    except sqlite3.DatabaseError as exc:
        print(f"uptake: {args.source} is not a collector's event store: {exc}", file=sys.stderr)
        return 2
    report = attrs.evolve(report, skipped=source.skipped)
    page = render_html(report, title=f"uptake engagement report: {os.path.basename(args.source)}")
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(page)
    for line in summary(report):
        print(line)
    print(f"wrote {args.out} in {time.monotonic() - started:.1f}s")
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        import plotly  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print("uptake: demo needs the collector extra: pip install 'uptake[collector]'")
        return 2
    from .demo import run_demo

    try:
        result = run_demo(
            seed=args.seed,
            users=args.users,
            days=args.days,
            until=_day(args.until),
            out=args.out,
            db=args.db,
            progress=not args.quiet,
        )
    except ValueError as exc:
        print(f"uptake: {exc}", file=sys.stderr)
        return 2
    print(f"done in {result.seconds:.1f}s")
    lost = result.tracked - result.stored
    return 0 if lost == 0 else 1


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("uptake: serve needs the collector extra: pip install 'uptake[collector]'")
        return 2
    from .collector import EventStore, create_app

    keys = args.write_key or [k for k in [os.environ.get("UPTAKE_WRITE_KEY")] if k]
    if not keys:
        print("uptake: give --write-key (or set UPTAKE_WRITE_KEY)", file=sys.stderr)
        return 2
    if not all(k.strip() for k in keys):
        print("uptake: a write key cannot be empty", file=sys.stderr)
        return 2
    store = EventStore(args.db)
    print(f"uptake collector on http://{args.host}:{args.port}/v1/batch, storing into {args.db}")
    uvicorn.run(create_app(store, keys), host=args.host, port=args.port, log_level="warning")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
