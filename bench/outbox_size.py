"""Memory and disk used by 100,000 queued events, per buffer (the collector is unreachable).

    python bench/outbox_size.py [--events 100000]

Each buffer runs in a fresh subprocess: it tracks N events with the benchmark's 5-key
properties while nothing listens on the endpoint, waits until all are held, and reports the
growth of its resident memory and, for SqliteBuffer, the size of the file (database plus
write-ahead log).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, socket, sys, time, uptake

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

kind, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]  # bound, never listening
buffer = {"memory": lambda: uptake.MemoryBuffer(),
          "outbox": lambda: uptake.SqliteBuffer(path),
          "outbox_sync": lambda: uptake.SqliteBuffer(path, commit_interval=0)}[kind]()
client = uptake.Client(write_key="bench", endpoint=f"http://127.0.0.1:{port}", buffer=buffer,
                       retry_timeout=3600, max_backoff=3600)
users = [f"user-{i}" for i in range(1000)]
for i in range(100):  # warm up imports and caches before the baseline
    client.track(users[i], "Warm Up", {})
base = rss()
t0 = time.perf_counter()
for i in range(n):
    client.track(users[i % 1000], "Bench Event",
                 {"plan": "pro", "amount": i, "currency": "USD", "ok": True, "page": "/checkout"})
loop = time.perf_counter() - t0
if kind != "memory":
    buffer.mark()  # commit whatever the writer thread has not committed yet
held = client.stats.queued + client.stats.in_flight
print(client.stats, file=sys.stderr)
grown = rss() - base
disk = sum(os.path.getsize(path + sfx) for sfx in ("", "-wal") if os.path.exists(path + sfx))
print(json.dumps({"buffer": kind, "events": n, "held": held, "us_per_call": loop / n * 1e6,
                  "rss_growth_mb": grown / 2**20, "rss_bytes_per_event": grown / n,
                  "disk_mb": disk / 2**20, "disk_bytes_per_event": disk / n}))
os._exit(0)
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100_000)
    a = p.parse_args()
    rows = []
    for kind in ("memory", "outbox", "outbox_sync"):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, kind, str(a.events), os.path.join(tmp, "o.db")],
                stdout=subprocess.PIPE,
                text=True,
                timeout=600,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"### {a.events:,} queued events, collector unreachable")
    print(
        "| buffer | us/call | held | RSS growth MB | RSS bytes/event | disk MB | disk bytes/event |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = (
            r["buffer"],
            f"{r['us_per_call']:.1f}",
            r["held"],
            f"{r['rss_growth_mb']:.1f}",
            f"{r['rss_bytes_per_event']:.0f}",
            f"{r['disk_mb']:.1f}",
            f"{r['disk_bytes_per_event']:.0f}",
        )
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
