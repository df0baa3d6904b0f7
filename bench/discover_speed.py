"""How long ``uptake discover`` takes on large collector stores, on DuckDB and on chdb.

    python bench/discover_speed.py [--events 1000000,10000000] [--dir /tmp]

For each size it fills a collector store (the file ``uptake serve`` writes) with one user
per 100 events (10M events: 100,000 users) signing up over 90 days, in the wire format
the SDK sends. A third of the users ("makers") create more reports and stay for 60 days;
the rest leave within 25 or 40 days, so retention (days 28-35) goes with early report
making and there is something to find. The events are generated in DuckDB SQL and
written as Arrow batches; files are kept and reused by later runs of the same size.

Then, each in a fresh process (so peak RSS is the run's own), ``uptake.discover(store)``
with the default options, on DuckDB and on chdb, and prints the time, the peak RSS, the
cohort and the top candidate.

Target: 10M events and 100,000 users in under 60 s on the 2-core machine.
Needs the collector extra and chdb: ``pip install -e '.[test]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

START = 1_780_272_000  # 2026-06-01T00:00:00Z
CHUNK = 1_000_000
FEATURES = "['dashboards', 'reports', 'alerts', 'exports', 'integrations', 'sharing', 'api']"


def _events_sql(first: int, n: int, users: int) -> str:
    """DuckDB SQL of events first .. first + n - 1 as stored rows."""
    return f"""
WITH b AS (SELECT i, hash(i) AS h, i % {users} AS u FROM range({first}, {first + n}) r(i)),
c AS (SELECT i, h, u, (h >> 8) % 1000 AS roll, CAST((h >> 20) % 7 AS BIGINT) AS k,
        CASE WHEN u % 3 = 0 THEN (h >> 30) % 60 WHEN u % 3 = 1 THEN (h >> 30) % 40
             ELSE (h >> 30) % 25 END AS age
      FROM b),
d AS (SELECT *, {START} + ((u * 7919) % 90 + age) * 86400 + (h >> 50) % 86400 AS s,
        CASE WHEN roll < 250 THEN 'Feature Used'
             WHEN roll < CASE WHEN u % 3 = 0 THEN 450 ELSE 300 END THEN 'Report Created'
             WHEN roll < 700 THEN 'Dashboard Viewed' WHEN roll < 800 THEN 'Search'
             WHEN roll < 850 THEN 'Invite Sent' WHEN roll < 900 THEN 'Export Started'
             ELSE 'Page' END AS ev
      FROM c),
e AS (SELECT *, strftime(to_timestamp(s), '%Y-%m-%dT%H:%M:%S') || '.000Z' AS ts,
        'user-' || u AS uid, 'acct-' || (u % {max(users // 12, 10)}) AS acct FROM d)
SELECT 'm-' || lpad(CAST(i AS VARCHAR), 10, '0') AS message_id,
  CAST(s AS DOUBLE) + 0.5 AS received_at,
  ts AS timestamp, CASE WHEN ev = 'Page' THEN 'page' ELSE 'track' END AS type,
  CASE WHEN ev = 'Page' THEN NULL ELSE ev END AS event, uid AS user_id,
  CAST(NULL AS VARCHAR) AS anonymous_id, acct AS group_id,
  '{{"type":"' || CASE WHEN ev = 'Page' THEN 'page' ELSE 'track' END || '","event":"' || ev
  || '","messageId":"m-' || i || '","timestamp":"' || ts || '","userId":"' || uid
  || '","context":{{"groupId":"' || acct || '"}},"properties":' || CASE
    WHEN ev = 'Feature Used' THEN '{{"feature":"' || ({FEATURES})[k + 1] || '"}}'
    ELSE '{{}}' END || '}}' AS body,
  CAST(s AS DOUBLE) AS event_time
FROM e ORDER BY s
"""


def fill(path: Path, n: int, users: int) -> None:
    """Write n synthetic events of ``users`` users to a collector store (kept)."""
    import adbc_driver_sqlite.dbapi as adbc
    import duckdb

    from uptake.collector import EventStore

    if path.exists():
        store = EventStore(path)
        stored = len(store)
        store.close()
        if stored == n:
            return
        path.unlink()
    EventStore(path).close()  # the collector's own schema
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    with adbc.connect(path.resolve().as_uri()) as conn, conn.cursor() as cur:
        for first in range(0, n, CHUNK):
            rows = con.sql(_events_sql(first, min(CHUNK, n - first), users))
            cur.adbc_ingest("events", rows.to_arrow_table(), mode="append")
        conn.commit()
    took = time.perf_counter() - started
    print(f"generated {n:,} events in {took:.1f}s ({path.stat().st_size / 1e9:.2f} GB store)")


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(store: str, engine: str) -> None:
    import uptake

    started = time.perf_counter()
    found = uptake.discover(store, engine=engine)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    top = found.candidates[0].label if found.candidates else None
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": _peak_rss_mb(),
                "cohort": found.cohort,
                "tested": found.tested,
                "top": top,
            }
        )
    )


def measure(store: Path, engine: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(store), engine],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", default="1000000,10000000")
    parser.add_argument("--engines", default="duckdb,chdb")
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    for n in (int(x) for x in args.events.split(",")):
        users = max(n // 100, 100)
        store = Path(args.dir) / f"uptake-discover-bench-{n}.db"
        fill(store, n, users)
        for engine in args.engines.split(","):
            r = measure(store, engine)
            seconds, rss = float(r["seconds"]), float(r["peak_rss_mb"])  # type: ignore[arg-type]
            cpu = float(r["cpu_seconds"])  # type: ignore[arg-type]
            load = os.getloadavg()[0]
            verdict = ""
            if n >= 10_000_000:
                verdict = f"  (target 60 s: {'met' if seconds < 60 else 'MISSED'})"
            print(
                f"{n:>11,} events {users:>8,} users  {engine:<7} {seconds:6.1f}s "
                f"(CPU {cpu:5.1f}s, load {load:.1f})  "
                f"peak RSS {rss:6.0f} MB  cohort {r['cohort']:,}  {r['tested']} measured  "
                f"top: {r['top']}{verdict}"
            )


if __name__ == "__main__":
    main()
