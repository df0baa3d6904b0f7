"""The ``uptake`` command (see :data:`HELP` for what it prints as help).

    uptake replay EVENTS.jsonl --client myapp.analytics:client
    uptake serve [--host 127.0.0.1] [--port 8787] [--db uptake-events.db] [--workers N]
    uptake report [uptake-events.db | EVENTS.jsonl] [--out uptake-report.html]
                  [--settings FILE] [--json FILE] [--csv FOLDER]
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
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import date
from typing import IO, TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .client import Client
    from .collector.settings import ReportSettings

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
      the engagement report from what the collector stored, or from an export;
      settings from SOURCE.toml or --settings; --json FILE and --csv FOLDER for data
  uptake demo
      a simulated product through a client and a collector to such a report

serve, report and demo need the collector extra: pip install 'uptake[collector]'.
"""


class _UsageError(Exception):
    """A mistake of the user's: one line on stderr, exit status 2."""


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
        help="the collector's SQLite file (uptake serve --db) or a JSONL export "
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
    commands = {"serve": _serve, "report": _report, "demo": _demo, "replay": _replay}
    try:
        status = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except _UsageError as exc:
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


def _needs_extra(command: str, *modules: str) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise _UsageError(
                f"{command} needs the collector extra: pip install 'uptake[collector]'"
            ) from None


def _folder_of(path: str, what: str) -> None:
    """Refuse a path whose folder does not exist (before any work is done)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise _UsageError(f"cannot write {what} {path}: no folder {folder}")


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"uptake: not a date (YYYY-MM-DD): {text!r}") from None


def _report(args: argparse.Namespace) -> int:
    _needs_extra("report", "plotly")
    import attrs

    from .collector.export import to_json, write_csv
    from .collector.metrics import compute
    from .collector.report import render_html, summary
    from .collector.sources import from_jsonl, from_store

    until = _day(args.until)
    if not os.path.isfile(args.source):
        print(f"uptake: no such file: {args.source}", file=sys.stderr)
        return 2
    settings = _report_settings(args)
    _folder_of(args.out, "the report to")
    if args.json not in (None, "-"):
        _folder_of(args.json, "the JSON report to")
    is_sqlite = _is_event_source(args.source)
    started = time.monotonic()
    try:
        source = from_store(args.source) if is_sqlite else from_jsonl(args.source)
        report = compute(
            source,
            tz=settings.tzinfo(),
            inactive=settings.inactive,
            engagement=settings.engagement(),
            until=until,
            engine=args.engine,
        )
    except sqlite3.DatabaseError as exc:
        print(f"uptake: {args.source} is not a collector's event store: {exc}", file=sys.stderr)
        return 2
    report = attrs.evolve(
        report, skipped=source.skipped, skipped_by=tuple(source.skipped_by.most_common())
    )
    page = render_html(
        report,
        title=f"uptake engagement report: {os.path.basename(args.source)}",
        settings=settings,
    )
    try:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(page)
    except OSError as exc:
        raise _UsageError(f"cannot write the report to {args.out}: {exc.strerror}") from None
    wrote = [args.out]
    if args.json is not None:
        wrote += _write_json(args.json, to_json(report, settings))
    if args.csv is not None:
        try:
            write_csv(report, args.csv, settings)
        except OSError as exc:
            raise _UsageError(f"cannot write CSV files to {args.csv}: {exc.strerror}") from None
        wrote.append(os.path.join(args.csv, "*.csv"))
    text = sys.stderr if args.json == "-" else sys.stdout
    for line in summary(report, settings):
        print(line, file=text)
    print(f"wrote {', '.join(wrote)} in {time.monotonic() - started:.1f}s", file=text)
    return 0


def _write_json(path: str, document: str) -> list[str]:
    """Write the JSON report to ``path`` ("-": standard output); return what was written."""
    if path == "-":
        sys.stdout.write(document + "\n")
        return []
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(document + "\n")
    except OSError as exc:
        raise _UsageError(f"cannot write the JSON report to {path}: {exc.strerror}") from None
    return [path]


def _report_settings(args: argparse.Namespace) -> ReportSettings:
    """The settings file (``--settings``, else the one beside the source), then the flags.

    Raises:
        _UsageError: the settings cannot be read or used, or a flag is invalid.
    """
    import attrs

    from .collector.settings import ReportSettings, SettingsError, beside, load

    try:
        if args.settings is not None:
            settings = load(args.settings)
        elif beside(args.source).is_file():
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
        raise _UsageError(str(exc)) from None
    return settings


def _is_event_source(path: str) -> bool:
    """True for a SQLite file, False for what looks like a JSONL export.

    Raises:
        _UsageError: neither (its first line is not a JSON object).
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
                raise _UsageError(
                    f"{path} is neither a collector's event store (SQLite) nor a JSONL "
                    f"export of events: line {number} is not a JSON object"
                )
            break
    return False


def _demo(args: argparse.Namespace) -> int:
    _needs_extra("demo", "plotly", "uvicorn")
    from .demo import run_demo

    _folder_of(args.out, "the report to")
    if args.db is not None:
        _folder_of(args.db, "the events to")

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


def _write_keys(args: argparse.Namespace) -> list[str]:
    """The keys from the command line (--write-key, --write-key-file), else from the
    environment ($UPTAKE_WRITE_KEY_FILE, $UPTAKE_WRITE_KEY)."""
    keys = list(args.write_key)
    if args.write_key_file:
        keys += _keys_in(args.write_key_file)
    if not keys:
        path = os.environ.get("UPTAKE_WRITE_KEY_FILE")
        if path:
            keys += _keys_in(path)
        keys += [k.strip() for k in os.environ.get("UPTAKE_WRITE_KEY", "").split(",")]
        keys = [k for k in keys if k]
    if not keys:
        raise _UsageError(
            "no write key: set UPTAKE_WRITE_KEY, or give --write-key-file (or --write-key)"
        )
    if not all(k.strip() for k in keys):
        raise _UsageError("a write key cannot be empty")
    return keys


def _keys_in(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        raise _UsageError(f"cannot read write keys from {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise _UsageError(f"cannot read write keys from {path}: not UTF-8 text") from None
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise _UsageError(f"no write key in {path}")
    return keys


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, checked before anything else is created."""
    if not 0 <= port <= 65535:
        raise _UsageError(f"no such port: {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise _UsageError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def _serve(args: argparse.Namespace) -> int:
    _needs_extra("serve", "uvicorn")
    from .collector.server import serve
    from .collector.store import EventStore

    keys = _write_keys(args)
    if args.write_key:
        print(
            "uptake: note: --write-key is visible to every user of this machine (ps); "
            "prefer UPTAKE_WRITE_KEY or --write-key-file",
            file=sys.stderr,
        )
    if args.workers < 1:
        raise _UsageError("--workers must be at least 1")
    if args.header_timeout <= 0 or args.body_timeout <= 0:
        raise _UsageError("timeouts must be positive")
    _folder_of(args.db, "the events to")
    sock = _listen(args.host, args.port)
    try:
        EventStore(args.db).close()  # created (or checked) once, before any worker starts
    except (sqlite3.Error, OSError) as exc:
        sock.close()
        raise _UsageError(f"cannot use {args.db} as the event store: {exc}") from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    workers = f"{args.workers} workers" if args.workers > 1 else "1 worker"
    print(
        f"uptake collector on http://{shown}:{port} (POST /v1/batch and Segment's other "
        f"/v1 endpoints), storing into {args.db}, {workers}",
        flush=True,
    )
    try:
        return serve(
            sock,
            args.db,
            keys,
            workers=args.workers,
            header_timeout=args.header_timeout,
            log_level=args.log_level,
            options={"body_timeout": args.body_timeout},
        )
    finally:
        sock.close()


if __name__ == "__main__":
    raise SystemExit(main())
