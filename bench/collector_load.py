"""Memory and ``/health`` latency of ``uptake serve`` under 24 concurrent ~1 MB gzip bodies.

    python bench/collector_load.py [--bodies 24] [--events 18000]

Starts the collector on a free loopback port with a fresh SQLite file, polls ``/health``
every 10 ms from a thread while the bodies are posted at once (each one a batch of
``--events`` events with random tokens, so it compresses only ~6x), and prints the
collector's peak RSS (``VmHWM``) and the p50 / p99 / max latency of ``/health``. A 503 is
retried after its ``Retry-After``, as an SDK does. The test suite runs the same case for
its memory bound and its correctness; the latency figures belong here, where the load
on the machine can be read beside them (``uptime``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx

KEY = "wk_bench"


def bodies(count: int, events: int) -> list[bytes]:
    tokens = os.urandom(events * 32).hex()
    batch = [
        {
            "type": "track",
            "event": "Report Exported",
            "userId": f"user-{i % 5000}",
            "messageId": f"@@-{i}",
            "timestamp": "2026-06-01T09:00:00.000Z",
            "properties": {"token": tokens[i * 64 : (i + 1) * 64], "rows": i},
            "context": {"library": {"name": "load", "version": "1"}},
        }
        for i in range(events)
    ]
    text = json.dumps({"batch": batch}).encode()
    return [gzip.compress(text.replace(b'"@@-', f'"b{n}-'.encode()), 6) for n in range(count)]


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bodies", type=int, default=24)
    p.add_argument("--events", type=int, default=18_000)
    a = p.parse_args()
    payloads = bodies(a.bodies, a.events)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    auth = httpx.BasicAuth(KEY, "")
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "events.db")
        server = subprocess.Popen(
            [sys.executable, "-m", "uptake.cli", "serve", "--port", str(port), "--db", db],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "UPTAKE_WRITE_KEY": KEY, "UPTAKE_WRITE_KEY_FILE": ""},
        )
        try:
            deadline = time.monotonic() + 30
            while True:  # wait for the port to answer
                try:
                    httpx.get(f"{url}/health", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            stop = threading.Event()
            latencies: list[float] = []

            def poll() -> None:
                with httpx.Client(timeout=30) as client:
                    while not stop.is_set():
                        started = time.perf_counter()
                        client.get(f"{url}/health")
                        latencies.append(time.perf_counter() - started)
                        time.sleep(0.01)

            def send(body: bytes) -> None:
                headers = {"Content-Encoding": "gzip"}
                with httpx.Client(timeout=300, auth=auth) as client:
                    for _ in range(60):
                        reply = client.post(f"{url}/v1/batch", content=body, headers=headers)
                        if reply.status_code != 503:
                            return
                        time.sleep(float(reply.headers["retry-after"]))

            poller = threading.Thread(target=poll)
            poller.start()
            started = time.perf_counter()
            senders = [threading.Thread(target=send, args=(body,)) for body in payloads]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join()
            elapsed = time.perf_counter() - started
            stop.set()
            poller.join()
            rss = peak_rss(server.pid)
            stored = int(httpx.get(f"{url}/health").json()["events"])
        finally:
            server.terminate()
            server.wait()
    latencies.sort()
    n = len(latencies)
    print(f"### uptake serve: {a.bodies} concurrent gzip bodies of ~{len(payloads[0]) // 1000} KB")
    print(f"load average {os.getloadavg()[0]:.1f}; stored {stored:,} events in {elapsed:.1f} s")
    print(f"peak RSS {rss / 1e6:.0f} MB")
    print(
        f"/health over {n} requests: p50 {latencies[n // 2] * 1000:.0f} ms, "
        f"p99 {latencies[int(n * 0.99)] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )
    return 0 if stored == a.bodies * a.events else 1


if __name__ == "__main__":
    raise SystemExit(main())
