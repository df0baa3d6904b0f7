"""How long ``uptake report`` takes on large collector stores (DuckDB, chdb) and on ClickHouse.

    python bench/report_speed.py [--events 1000000,10000000] [--dir /tmp]
                                 [--only report,clickhouse,jsonl] [--engines duckdb,chdb]
    python bench/report_speed.py --discovery [--store FILE] [--engines duckdb] [--repeat N]

For each size it fills a collector store (``uptake.collector.EventStore``, the file
``uptake serve`` writes) with synthetic product events, in the wire format the SDK sends:
one user per 200 events, an account per 12 users, 90 days, with feature use, milestones,
nudge decisions and outcomes, sessions and page views. The events are generated in
DuckDB SQL (no Python loop per event) and written to SQLite as Arrow batches, in time
order; a JSONL export of the same events is written beside it. Files are kept and reused
by later runs of the same size.

Then, each in a fresh process (so peak RSS is the run's own):

1. ``compute(from_store(...))`` on DuckDB (the default) and on chdb;
2. for comparison, what reading the raw JSONL costs: DuckDB's ``read_json`` and chdb's
   ``JSONEachRow``, each parsing every line and counting distinct users per day;
3. the ClickHouse source (``uptake report clickhouse://...``): the export loaded once into
   a wide ``events`` table of a chdb database kept on disk beside the store (columns as
   RudderStack lands them: type, event, user_id, timestamp as DateTime64, properties and
   context as JSON text), then the report computed in ClickHouse SQL over it
   (``compute_clickhouse``), chdb standing in for the server.

With ``--discovery`` it measures instead what ``uptake report`` does when it adds the
section "What retained users did first" (docs/discover.md): the report alone, the report
then ``discover(store)`` reading the store a second time (as the report did before it
had the hook), and the report with discovery on the table it loaded
(``compute(..., on_loaded=after_report(...))``). ``--store FILE`` measures an existing
store (``uptake demo --db FILE``) instead of generated ones.

Target: 10M events in under 60 s with peak RSS under 1.5 GB on the 2-core machine.
Needs the collector and clickhouse extras and chdb: ``pip install -e '.[test]'``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

START = 1_780_272_000  # 2026-06-01T00:00:00Z
CHUNK = 1_000_000
FEATURES = "['dashboards', 'reports', 'alerts', 'exports', 'integrations', 'sharing', 'api']"


def _events_sql(first: int, n: int, users: int, accounts: int) -> str:
    """DuckDB SQL of events first .. first + n - 1 as stored rows, in time order."""
    return f"""
WITH b AS (SELECT i, hash(i) AS h, (hash(i) >> 40) % {users} AS u
           FROM range({first}, {first + n}) r(i)),
c AS (SELECT i, h, u, h % 1000 AS roll, (h >> 10) % 1000 AS ms,
             CAST((h >> 20) % 7 AS BIGINT) AS k,
             {START} + ((h >> 30) % 90) * (u % 7 + 3) // 9 * 86400 + (h >> 50) % 86400 AS s
      FROM b),
e AS (SELECT *, s + ms / 1000.0 AS t,
        CASE WHEN roll < 350 THEN 'Feature Used' WHEN roll < 370 THEN 'Milestone Reached'
             WHEN roll < 380 THEN 'Nudge Fired' WHEN roll < 390 THEN 'Nudge Held Out'
             WHEN roll < 400 THEN 'Nudge Shown' WHEN roll < 450 THEN 'Report Created'
             WHEN roll < 700 THEN 'Dashboard Viewed' WHEN roll < 850 THEN 'Search'
             WHEN roll < 900 THEN 'Session Started' WHEN roll < 950 THEN 'Session Ended'
             ELSE 'Page' END AS ev,
        strftime(to_timestamp(s), '%Y-%m-%dT%H:%M:%S') || '.'
          || lpad(CAST(ms AS VARCHAR), 3, '0') || 'Z' AS ts,
        'user-' || u AS uid, 'acct-' || (u % {accounts}) AS acct
      FROM c)
SELECT 'm-' || lpad(CAST(i AS VARCHAR), 10, '0') AS message_id, t + 0.5 AS received_at,
  ts AS timestamp, CASE WHEN ev = 'Page' THEN 'page' ELSE 'track' END AS type,
  CASE WHEN ev = 'Page' THEN NULL ELSE ev END AS event, uid AS user_id,
  CAST(NULL AS VARCHAR) AS anonymous_id, acct AS group_id,
  '{{"type":"' || CASE WHEN ev = 'Page' THEN 'page' ELSE 'track' END || '","event":"' || ev
  || '","messageId":"m-' || i || '","timestamp":"' || ts || '","userId":"' || uid
  || '","context":{{"library":{{"name":"uptake","version":"0"}},"groupId":"' || acct
  || '"}},"properties":' || CASE
    WHEN ev = 'Feature Used' THEN '{{"feature":"' || ({FEATURES})[k + 1] || '"}}'
    WHEN ev = 'Milestone Reached' THEN '{{"milestone":"'
      || (['activated', 'habit', 'depth'])[k % 3 + 1] || '","scope":"user","time_to_reach_s":'
      || (h >> 5) % 864000 || '}}'
    WHEN ev LIKE 'Nudge %' THEN
      '{{"nudge":"try_reports","goal":"Report Created","goal_within_s":604800}}'
    WHEN ev = 'Session Ended' THEN '{{"duration_s":' || (h >> 7) % 3600 || '}}'
    ELSE '{{"path":"/p/' || k || '"}}' END || '}}' AS body,
  t AS event_time
FROM e ORDER BY t
"""


def fill(path: Path, jsonl: Path, n: int) -> None:
    """Write n synthetic events to a collector store and a JSONL export (kept)."""
    import adbc_driver_sqlite.dbapi as adbc
    import duckdb

    from uptake.collector import EventStore

    if path.exists() and jsonl.exists():
        store = EventStore(path)
        stored = len(store)
        store.close()
        if stored == n:
            return
    for old in (path, jsonl):
        old.unlink(missing_ok=True)
    EventStore(path).close()  # the collector's own schema
    started = time.perf_counter()
    users = max(n // 200, 100)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    with adbc.connect(path.resolve().as_uri()) as conn, conn.cursor() as cur:
        for first in range(0, n, CHUNK):
            size = min(CHUNK, n - first)
            rows = con.sql(_events_sql(first, size, users, max(users // 12, 10)))
            cur.adbc_ingest("events", rows.to_arrow_table(), mode="append")
        conn.commit()
    # The export: each stored body, one per line, as a warehouse dump would be.
    with adbc.connect(path.resolve().as_uri() + "?mode=ro") as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM events")
        con.register("bodies", cur.fetch_record_batch())
        con.execute(
            f"COPY bodies TO '{jsonl}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', "
            "DELIMITER '\\t')"
        )
    took = time.perf_counter() - started
    print(f"generated {n:,} events in {took:.1f}s ({path.stat().st_size / 1e9:.2f} GB store)")


def run_report(store: str, engine: str) -> dict[str, object]:
    """Compute the report once (in this process) and measure it."""
    from uptake.collector.metrics import compute
    from uptake.collector.sources import from_store

    started = time.perf_counter()
    source = from_store(store)
    report = compute(source, engine=engine)
    return {
        "seconds": time.perf_counter() - started,
        "events": report.events,
        "users": report.users,
        "skipped": source.skipped,
    }


_WIDE = (
    "type String, event Nullable(String), user_id Nullable(String), anonymous_id "
    "Nullable(String), timestamp DateTime64(3, 'UTC'), properties String, context String"
)


def load_clickhouse(jsonl: Path, folder: Path, n: int) -> None:
    """Load the export into a wide events table of a chdb database in ``folder`` (kept)."""
    from chdb import session

    db = session.Session(str(folder))
    try:
        try:
            stored = int(str(db.query("SELECT count() FROM default.events", "CSV")).strip())
        except Exception:  # no table yet
            stored = -1
        if stored == n:
            return
        started = time.perf_counter()
        db.query("DROP TABLE IF EXISTS default.events")
        db.query(f"CREATE TABLE default.events ({_WIDE}) ENGINE = MergeTree ORDER BY timestamp")
        db.query(
            "INSERT INTO default.events SELECT type, event, userId, anonymousId, "
            "parseDateTime64BestEffort(timestamp, 3, 'UTC'), properties, context FROM "
            f"file('{jsonl.resolve()}', JSONEachRow, 'type String, event Nullable(String), "
            "userId Nullable(String), anonymousId Nullable(String), timestamp String, "
            "properties String, context String')"
        )
        took = time.perf_counter() - started
        print(f"loaded {n:,} events into a chdb events table in {took:.1f}s")
    finally:
        db.close()


def run_clickhouse(folder: str) -> dict[str, object]:
    """The report of a ClickHouse source, computed in ClickHouse SQL (chdb as the server)."""
    from chdb import session

    from uptake.collector.clickhouse import ClickHouseLocation, compute_clickhouse
    from uptake.collector.engine.remote import ChdbRunner

    started = time.perf_counter()
    runner = ChdbRunner(session.Session(folder))
    try:
        report = compute_clickhouse(runner, ClickHouseLocation("chdb", 0, table="events"))
    finally:
        runner.session.close()
    return {
        "seconds": time.perf_counter() - started,
        "events": report.events,
        "users": report.users,
        "skipped": report.skipped,
    }


def run_discovery(store: str, engine: str, how: str) -> dict[str, object]:
    """Compute the report and its discovery section: read twice, or once with the hook."""
    from uptake.collector.discovery import Discovery, after_report, discover
    from uptake.collector.metrics import compute
    from uptake.collector.settings import ReportSettings
    from uptake.collector.sources import from_store

    started = time.perf_counter()
    found: list[Discovery] = []
    hook = after_report(ReportSettings(), None, found) if how == "hook" else None
    report = compute(from_store(store), engine=engine, on_loaded=hook)
    if how == "twice":
        found.append(discover(store, engine=engine))
    return {
        "seconds": time.perf_counter() - started,
        "events": report.events,
        "users": report.users,
        "cohort": found[0].cohort if found else 0,
    }


def run_jsonl(jsonl: str, engine: str) -> dict[str, object]:
    """Parse every line of the export and count distinct users per day."""
    started = time.perf_counter()
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        rows = con.execute(
            "SELECT count(*), count(DISTINCT (userId, CAST(timestamp AS DATE))) FROM "
            f"read_json('{jsonl}', format = 'newline_delimited')"
        ).fetchall()
    else:
        import chdb

        result = chdb.query(
            "SELECT count(), uniqExact(userId, toDate(timestamp)) "
            f"FROM file('{jsonl}', JSONEachRow)",
            "CSV",
        )
        rows = [tuple(str(result).strip().split(","))]
    return {"seconds": time.perf_counter() - started, "events": int(rows[0][0])}


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, target: str, engine: str) -> None:
    if kind == "clickhouse":
        result = run_clickhouse(target)
    elif kind == "report":
        result = run_report(target, engine)
    elif kind in ("twice", "hook"):
        result = run_discovery(target, engine, kind)
    else:
        result = run_jsonl(target, engine)
    result["peak_rss_mb"] = _peak_rss_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))


def measure(kind: str, target: Path, engine: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(target), engine],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", default="1000000,10000000")
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument(
        "--only", help="comma-separated runs: report, clickhouse, jsonl (default: all)"
    )
    parser.add_argument("--engines", default="duckdb,chdb")
    parser.add_argument("--discovery", action="store_true", help="the discovery section")
    parser.add_argument("--store", help="with --discovery: an existing store")
    parser.add_argument("--repeat", type=int, default=1, help="with --discovery: runs each")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    engines = args.engines.split(",")
    if args.discovery:
        stores = [Path(args.store)] if args.store else []
        for n in [] if args.store else (int(x) for x in args.events.split(",")):
            stores.append(Path(args.dir) / f"uptake-report-bench-{n}.db")
            fill(stores[-1], stores[-1].with_suffix(".jsonl"), n)
        for store in stores:
            for engine in engines:
                for kind in ("report", "twice", "hook") * args.repeat:
                    r = measure(kind, store, engine)
                    label = {"report": "report only", "twice": "+ discover, 2 reads"}.get(
                        kind, "+ discover, hook"
                    )
                    print(
                        f"{store.name}  {r['events']:>10,} events  {label:<20} {engine:<7} "
                        f"{float(r['seconds']):6.2f}s  CPU {float(r['cpu_seconds']):6.2f}s  "
                        f"peak RSS {float(r['peak_rss_mb']):5.0f} MB  "
                        f"cohort {r.get('cohort', '-')}",
                        flush=True,
                    )
        return
    for n in (int(x) for x in args.events.split(",")):
        store = Path(args.dir) / f"uptake-report-bench-{n}.db"
        jsonl = store.with_suffix(".jsonl")
        fill(store, jsonl, n)
        folder = store.with_suffix(".chdb")
        runs = [("report", store, "duckdb"), ("report", store, "chdb")]
        runs += [
            ("clickhouse", folder, "chdb"),
            ("jsonl", jsonl, "duckdb"),
            ("jsonl", jsonl, "chdb"),
        ]
        runs = [r for r in runs if not args.only or r[0] in args.only.split(",")]
        runs = [r for r in runs if r[0] == "clickhouse" or r[2] in engines]
        if any(kind == "clickhouse" for kind, _, _ in runs):
            load_clickhouse(jsonl, folder, n)
        for kind, target, engine in runs:
            r = measure(kind, target, engine)
            seconds, rss = float(r["seconds"]), float(r["peak_rss_mb"])  # type: ignore[arg-type]
            verdict = ""
            if kind == "report" and n >= 10_000_000:
                ok = seconds < 60 and rss < 1536
                verdict = f"  (target 60 s / 1.5 GB: {'met' if ok else 'MISSED'})"
            label = {"report": "uptake report", "clickhouse": "ClickHouse source"}.get(
                kind, "raw JSONL scan"
            )
            print(
                f"{n:>11,} events  {label:<17} {engine:<7} {seconds:6.1f}s  "
                f"peak RSS {rss:6.0f} MB  ({r['events']:,} events){verdict}",
                flush=True,
            )


if __name__ == "__main__":
    main()
