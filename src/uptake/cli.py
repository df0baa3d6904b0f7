"""The ``uptake`` command (see :data:`HELP` for what it prints as help).

    uptake replay EVENTS.jsonl --client myapp.analytics:client
    uptake serve [--host 127.0.0.1] [--port 8787] [--db uptake-events.db] [--workers N]
    uptake report [uptake-events.db | EVENTS.jsonl | clickhouse://...] [--out uptake-report.html]
                  [--settings FILE] [--json FILE] [--csv FOLDER]
    uptake discover [uptake-events.db | EVENTS.jsonl] [--goal EVENT] [--json FILE]
    uptake demo [--seed 7]

``serve`` takes its write keys from ``$UPTAKE_WRITE_KEY``, a file (``--write-key-file``
or ``$UPTAKE_WRITE_KEY_FILE``, one key a line) or ``--write-key`` (visible to every user
of the machine in ``ps``). A mistake on the command line, a missing folder, a busy port or
a file that is not an event source ends in one line on stderr and exit status 2, never a
traceback.
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
from typing import IO, TYPE_CHECKING, Any

from ._cli_common import UsageError, folder_of, needs_extra
from ._cli_discover import add_parser as _add_discover
from ._cli_discover import discover_command as _discover
from ._cli_report import day as _day
from ._cli_report import report as _report
from ._cli_serve import serve_command as _serve
from ._version import __version__

if TYPE_CHECKING:
    from .client import Client

__all__ = ["main"]

#: The top-level help, as plain text.
HELP = """\
In-app engagement tracking: the uptake command.

  uptake replay EVENTS.jsonl --client myapp.analytics:client
      rebuild milestone state from past events through your configured client
  uptake serve [--port 8787] [--db uptake-events.db] [--workers N]
      run the reference collector (Segment's HTTP API) that stores what clients send;
      write keys from $UPTAKE_WRITE_KEY or --write-key-file
  uptake report [uptake-events.db | EVENTS.jsonl] [--out uptake-report.html]
      the engagement report from what the collector stored, or from an export,
      or computed on a ClickHouse server (clickhouse://user@host:8123/db?table=events,
      password in $UPTAKE_CLICKHOUSE_PASSWORD; needs the clickhouse extra);
      settings from SOURCE.toml or --settings; --json FILE and --csv FOLDER for data
  uptake discover [uptake-events.db | EVENTS.jsonl] [--goal EVENT]
      which early behaviours go with retention: activation candidates, ranked
  uptake demo
      a simulated product through a client and a collector to such a report

serve, report, discover and demo need the collector extra: pip install 'uptake[collector]'.
"""


def _load_client(spec: str) -> Client:
    from .client import Client

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
    from .stores.memory import MemoryStore

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uptake",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"uptake {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    serve = commands.add_parser(
        "serve",
        help="run the reference collector (Segment's HTTP API)",
        description="Run the reference collector: Segment's HTTP tracking API (/v1/batch, "
        "/v1/import, /v1/track, /v1/identify, /v1/group, /v1/page, /v1/screen, /v1/alias) "
        "storing into a SQLite file. Write keys come from $UPTAKE_WRITE_KEY (several "
        "separated by commas), a file of keys (--write-key-file or $UPTAKE_WRITE_KEY_FILE, "
        "one a line) or --write-key.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8787, help="port (8787; 0 for any free one)")
    serve.add_argument("--db", default="uptake-events.db", help="SQLite file for the events")
    serve.add_argument(
        "--workers", type=int, default=1, help="processes serving the port and sharing --db (1)"
    )
    serve.add_argument(
        "--write-key-file",
        metavar="PATH",
        help="a file of write keys, one a line, # comments (default: $UPTAKE_WRITE_KEY_FILE)",
    )
    serve.add_argument(
        "--write-key",
        action="append",
        default=[],
        help="a key clients may send (repeatable); visible to other users in ps: prefer "
        "$UPTAKE_WRITE_KEY or --write-key-file",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest time for a request's headers to arrive (10)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="longest time for a request's body to arrive (30)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="info: one access-log line per request on stderr (info)",
    )
    report = commands.add_parser(
        "report", help="the engagement report from stored events (HTML and a summary)"
    )
    report.add_argument(
        "source",
        nargs="?",
        default="uptake-events.db",
        help="the collector's SQLite file (uptake serve --db), a JSONL export, or a "
        "ClickHouse table: clickhouse[s]://user@host:port/db?table=events "
        "(default: uptake-events.db)",
    )
    report.add_argument("--out", default="uptake-report.html", help="HTML file to write")
    report.add_argument(
        "--json",
        metavar="FILE",
        help="also write every figure as JSON ('-': standard output, the summary then "
        "goes to standard error)",
    )
    report.add_argument(
        "--csv", metavar="FOLDER", help="also write every table as a CSV file in FOLDER"
    )
    report.add_argument(
        "--settings",
        metavar="FILE",
        help="TOML settings (default: SOURCE's name with .toml, when that file exists)",
    )
    report.add_argument(
        "--timezone",
        help="IANA time zone of days and weeks (default: the settings', else UTC)",
    )
    report.add_argument("--until", help="last day of the report, YYYY-MM-DD (default: last event)")
    report.add_argument(
        "--inactive",
        action="append",
        default=[],
        help="an event that is not activity (repeatable; replaces the settings' list)",
    )
    report.add_argument(
        "--core-feature",
        action="append",
        default=[],
        help="a core feature for account breadth (repeatable; replaces the settings' list)",
    )
    report.add_argument(
        "--touchpoint",
        action="append",
        default=[],
        help="a customer-success touchpoint event (repeatable; replaces the settings' list)",
    )
    report.add_argument(
        "--engine",
        choices=["duckdb", "chdb", "python"],
        help="what computes the figures (default: DuckDB, in process)",
    )
    report.add_argument(
        "--no-discover",
        action="store_true",
        help='leave out "What retained users did first" (uptake discover, on the events '
        "the report loaded)",
    )
    _add_discover(commands)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``uptake`` command; return its exit status."""
    args = _parser().parse_args(argv)
    commands = {
        "serve": _serve,
        "report": _report,
        "discover": _discover,
        "demo": _demo,
        "replay": _replay,
    }
    try:
        status = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except UsageError as exc:
        print(f"uptake: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # uptake report ... | head: the reader has all it wanted
        _quiet_stdout()
        return 0


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not complain
    about the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file (captured by a test, say)
        pass


def _demo(args: argparse.Namespace) -> int:
    needs_extra("demo", "plotly", "uvicorn")
    from .demo import run_demo

    folder_of(args.out, "the report to")
    if args.db is not None:
        folder_of(args.db, "the events to")

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
    except (ValueError, OSError, sqlite3.Error) as exc:
        print(f"uptake: {exc}", file=sys.stderr)
        return 2
    print(f"done in {result.seconds:.1f}s")
    lost = result.tracked - result.stored
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
