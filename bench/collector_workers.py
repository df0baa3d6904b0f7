"""Events stored per second by ``uptake serve --workers N`` for several N.

    python bench/collector_workers.py [--workers 1 2 4] [--events 200000] [--batch 100]
                                      [--senders 4] [--gzip] [--repeat 3]

For each worker count: starts ``uptake serve --port 0 --workers N`` on 127.0.0.1 with a
fresh SQLite file, then ``--senders`` processes that POST prepared Segment batches of
``--batch`` events to ``/v1/batch`` over keep-alive connections (the bodies are built
before the clock starts, so the senders cost little), and times from the first request to
the last event stored (read from ``/health``). Prints one line per run and the median per
worker count, and checks that no event was lost. Collector and senders share the machine's
cores, as they would on a small host. Needs the collector extra.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

KEY = "wk_bench"


def health(url: str) -> int:
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        return int(json.load(response)["events"])


def sender(url: str, tag: int, batches: int, size: int, gzip: bool, go: object) -> None:
    import gzip as gz

    import httpx

    bodies = []
    for b in range(batches):
        batch = [
            {
                "type": "track",
                "event": "Report Created",
                "userId": f"user-{(b * size + i) % 1000}",
                "messageId": f"{tag}-{b}-{i}",
                "timestamp": "2026-06-01T09:00:00.000Z",
                "properties": {"i": i, "format": "csv"},
                "context": {"library": {"name": "bench", "version": "1"}},
            }
            for i in range(size)
        ]
        body = json.dumps({"batch": batch, "sentAt": "2026-06-01T09:00:01.000Z"}).encode()
        bodies.append(gz.compress(body, 1) if gzip else body)
    headers = {"Content-Type": "application/json"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    go.wait()  # type: ignore[attr-defined]
    with httpx.Client(auth=(KEY, ""), headers=headers, timeout=60) as client:
        for body in bodies:
            for _ in range(20):
                response = client.post(f"{url}/v1/batch", content=body)
                if response.status_code == 200:
                    break
                time.sleep(float(response.headers.get("retry-after", 1)))
            else:
                raise SystemExit(f"gave up: {response.status_code} {response.text}")


def run(
    workers: int, events: int, size: int, senders: int, gzip: bool, baseline: str | None = None
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "events.db")
        env = {**os.environ, "UPTAKE_WRITE_KEY": KEY}
        if baseline is None:
            command = ["--port", "0", "--workers", str(workers), "--log-level", "warning"]
        else:  # an older uptake (its src folder), which knows neither --port 0 nor --workers
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                command = ["--port", str(s.getsockname()[1])]
            env["PYTHONPATH"] = baseline
        server = subprocess.Popen(
            [sys.executable, "-m", "uptake.cli", "serve", "--db", db, *command],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert server.stdout is not None
            match = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline().decode())
            assert match, "uptake serve did not start"
            url = match.group(0)
            deadline = time.monotonic() + 30
            while True:
                try:
                    health(url)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            time.sleep(0.5 * workers)  # every worker up
            batches = events // size // senders
            total = batches * size * senders
            go = multiprocessing.Event()
            procs = [
                multiprocessing.Process(target=sender, args=(url, n, batches, size, gzip, go))
                for n in range(senders)
            ]
            for p in procs:
                p.start()
            time.sleep(2.0)  # the senders build their bodies
            started = time.perf_counter()
            go.set()
            for p in procs:
                p.join()
                assert p.exitcode == 0
            while (stored := health(url)) < total and time.perf_counter() - started < 600:
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            assert stored == total, f"lost events: {stored} of {total}"
        finally:
            server.terminate()
            server.wait()
    return total / elapsed


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--baseline", metavar="SRC", help="also run an older uptake from this src folder"
    )
    a = p.parse_args()
    print(
        f"### uptake serve --workers N: {a.events:,} events in batches of {a.batch}, "
        f"{a.senders} sender processes, {'gzip' if a.gzip else 'plain JSON'}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
    )
    if a.baseline:
        rates = []
        for _ in range(a.repeat):
            rates.append(run(1, a.events, a.batch, a.senders, a.gzip, a.baseline))
            print(f"  baseline: {rates[-1]:,.0f} events/s", flush=True)
        print(f"baseline ({a.baseline}): median {statistics.median(rates):,.0f} events/s stored")
    for workers in a.workers:
        rates = []
        for _ in range(a.repeat):
            rates.append(run(workers, a.events, a.batch, a.senders, a.gzip))
            print(f"  {workers} worker(s): {rates[-1]:,.0f} events/s", flush=True)
        print(f"{workers} worker(s): median {statistics.median(rates):,.0f} events/s stored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
