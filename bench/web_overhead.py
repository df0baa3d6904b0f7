"""What uptake's web integration costs a FastAPI and a Flask app, as req/s ratios in one run.

    python bench/web_overhead.py [--seconds 8] [--rounds 2] [--connections 50] [--modes ...]

Needs ``wrk`` (Debian: ``apt-get install wrk``) and the fastapi, flask, uvicorn and
gunicorn packages (the ``test`` extra has them). For each framework it serves the same
one-route app (bench/web_apps.py) bare, with the middleware and a MemoryStore, and with
a SqliteStore, interleaved over ``--rounds`` rounds, and loads each with wrk (one user in
1,000 per request, named in a header). The events go to a loopback sink in this process
that reads each batch and answers 200 without parsing it: a collector elsewhere costs
the app's machine nothing, and a parsing collector on these 2 cores would bill its own
work to the app. Prints requests per second (median of the rounds), each set-up's ratio to
the bare app measured in the same run, and in brackets each round's ratio to the bare app
of that round: other work on the machine moves between rounds, and the spread of those
ratios shows how much. Target (issue on production hosts): with a MemoryStore and
sending, at least 0.85 of the bare app's req/s. ``--rows N`` makes the route answer N rows
of a small table (the serializing a real page does), so the ratio can be read for an app
whose requests do some work of their own, not only for an empty route.
"""

from __future__ import annotations

import argparse
import http.server
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
LUA = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/dashboard", {["X-User"] = "user-" .. math.random(1, 1000)})
end
"""


class _Sink(http.server.BaseHTTPRequestHandler):
    """Reads a batch and answers 200, as a collector on another machine looks from here."""

    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Sink.received += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(framework: str, port: int) -> list[str]:
    if framework == "fastapi":
        return [
            sys.executable, "-m", "uvicorn", "--factory", "web_apps:fastapi_app",
            "--app-dir", str(HERE), "--port", str(port), "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-b", f"127.0.0.1:{port}",
        "-k", "gthread", "--threads", "8", "-w", "1", "--log-level", "warning",
        "web_apps:flask_app()",
    ]  # fmt: skip


def measure(framework: str, mode: str, endpoint: str, args: argparse.Namespace) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "UPTAKE_BENCH_MODE": mode,
            "UPTAKE_ENDPOINT": endpoint,
            "UPTAKE_BENCH_DB": os.path.join(tmp, "state.db"),
            "UPTAKE_BENCH_ROWS": str(args.rows),
        }
        server = subprocess.Popen(command(framework, port), env=env)
        try:
            url = f"http://127.0.0.1:{port}/dashboard"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url, timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            script = Path(tmp) / "users.lua"
            script.write_text(LUA)
            run = [
                "wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s",
                "-s", str(script), f"http://127.0.0.1:{port}",
            ]  # fmt: skip
            subprocess.run([*run[:3], "-d2s", *run[4:]], capture_output=True, check=True)
            out = subprocess.run(run, capture_output=True, text=True, check=True).stdout
        finally:
            server.terminate()
            server.wait(30)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk reported errors:\n{out}")
    return float(found.group(1))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--frameworks", default="fastapi,flask")
    p.add_argument("--modes", default="bare,memory,sqlite", help="bare is always measured")
    p.add_argument("--rows", type=int, default=0, help="rows in each answer (0: a page name)")
    args = p.parse_args()
    modes = ("bare", *(m for m in args.modes.split(",") if m != "bare"))
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{sink.server_address[1]}"
    results: dict[tuple[str, str], list[float]] = {}
    load_before = os.getloadavg()[0]
    try:
        for _ in range(args.rounds):
            for framework in args.frameworks.split(","):
                for mode in modes:
                    rps = measure(framework, mode, url, args)
                    results.setdefault((framework, mode), []).append(rps)
    finally:
        sink.shutdown()
    if not _Sink.received:
        raise RuntimeError("no batch reached the sink: the apps sent nothing")
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; wrk "
          f"{args.connections} connections, {args.seconds} s x {args.rounds} rounds, {args.rows} "
          "rows an answer (median "
          "req/s; each round's ratio to the bare app of the same round in brackets)")  # fmt: skip
    for framework in args.frameworks.split(","):
        bare_runs = results[(framework, "bare")]
        bare = statistics.median(bare_runs)
        for mode in modes:
            runs = results[(framework, mode)]
            rps = statistics.median(runs)
            rounds = " ".join(f"{r / b:.2f}" for r, b in zip(runs, bare_runs, strict=True))
            print(
                f"  {framework:8s} {mode:7s} {rps:9,.0f} req/s  {rps / bare:5.2f}x bare  [{rounds}]"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
