"""Events stored per second by ``uptake serve`` with the SDK sending from another process.

    python bench/collector_throughput.py [--events 200000] [--senders 1]

Starts the collector (``python -m uptake.cli serve``) on a free loopback port with a fresh
SQLite file, then one or more sender processes that each track ``--events`` events through
a real ``uptake.Client`` and flush. Reports events stored per second (from the first send
to the last event stored, read from the collector's health endpoint) and checks none was
lost. Needs the collector extra: ``pip install -e '.[collector]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

KEY = "wk_bench"
SENDER = """
import sys, time, uptake
url, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = uptake.Client(write_key="wk_bench", endpoint=url, flush_at=500, max_queue_size=1_000_000)
for i in range(n):
    client.track(f"user-{i % 1000}", "Bench Event", {"i": i, "sender": tag}, account_id="acme")
ok = client.flush(timeout=300)
client.shutdown()
print(ok, client.stats.delivered, client.stats.dropped, file=sys.stderr)
"""


def health(url: str) -> int:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
        return int(json.load(response)["events"])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--senders", type=int, default=1)
    a = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "events.db")
        command = ["serve", "--port", str(port), "--db", db]
        server = subprocess.Popen(
            [sys.executable, "-m", "uptake.cli", *command],
            stdout=subprocess.DEVNULL,
            env={**os.environ, "UPTAKE_WRITE_KEY": KEY, "UPTAKE_WRITE_KEY_FILE": ""},
        )
        try:
            deadline = time.monotonic() + 30
            while True:  # wait for the port to answer (a benchmark, not a test)
                try:
                    health(url)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            started = time.perf_counter()
            senders = [
                subprocess.Popen([sys.executable, "-c", SENDER, url, str(a.events), str(n)])
                for n in range(a.senders)
            ]
            for sender in senders:
                sender.wait()
            total = a.events * a.senders
            while health(url) < total and time.perf_counter() - started < 600:
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            stored = health(url)
        finally:
            server.terminate()
            server.wait()
    print(f"### uptake serve: {a.senders} sender process(es) x {a.events:,} events")
    # (Stored also counts each sender's "Session Started" events, one per user.)
    print(f"stored {stored:,} events ({total:,} tracked) in {elapsed:.1f}s:")
    print(f"{stored / elapsed:,.0f} events/s")
    return 0 if stored >= total else 1


if __name__ == "__main__":
    raise SystemExit(main())
