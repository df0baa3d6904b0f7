"""CPU per request of uptake's web integration, in process: no server, no wrk, no noise.

    python bench/web_cpu.py [--requests 20000] [--rounds 3] [--profile fastapi:memory]

Drives the apps of bench/web_apps.py directly: the FastAPI app through its ASGI callable
on one asyncio loop (a prepared scope, requests one after another), the Flask app through
its WSGI callable with a prepared environ. Each set-up (bare, memory, sqlite) runs in a
child process of its own, so an app built for one mode shares nothing with another. The
events go to a loopback sink in another child process that reads each batch and answers
200, so the delivery thread's work (encoding, gzip, HTTP) is billed to the app as it is
under load; CPU time is ``time.process_time()``, all the app process's threads together.

Prints microseconds of CPU per request (best of ``--rounds``) and each set-up's
difference to the bare app. ``--profile framework:mode`` prints a cProfile of that one
set-up instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import http.server
import io
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
USERS = 1000


def _scope(i: int) -> dict[str, Any]:
    user = f"user-{i % USERS + 1}".encode()
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/dashboard",
        "raw_path": b"/dashboard",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"wrk"),
            (b"accept", b"*/*"),
            (b"x-user", user),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def _environ(i: int) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/dashboard",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "HTTP_ACCEPT": "*/*",
        "HTTP_X_USER": f"user-{i % USERS + 1}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _run_fastapi(app: Any, n: int, start: int) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def main() -> None:
        for i in range(start, start + n):
            await app(_scope(i), receive, send)

    asyncio.run(main())


def _run_flask(app: Any, n: int, start: int) -> None:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    for i in range(start, start + n):
        body = app(_environ(i), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


def child(framework: str, mode: str, requests: int, rounds: int, profile: bool) -> None:
    """Build one app and report its CPU per request (or a profile) as a JSON line."""
    sys.path.insert(0, str(HERE))
    import web_apps

    app = web_apps.fastapi_app() if framework == "fastapi" else web_apps.flask_app()
    run = _run_fastapi if framework == "fastapi" else _run_flask
    run(app, 2000, 0)  # warm up: imports, caches, the sessions of every user
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        run(app, requests, 2000)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(45)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(60)
        return
    best = float("inf")
    for r in range(rounds):
        t0 = time.process_time()
        run(app, requests, 2000 + r * requests)
        best = min(best, (time.process_time() - t0) / requests)
    print(json.dumps({"us": best * 1e6}))


class _Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def sink() -> None:
    """Serve the loopback sink on a free port; print the port, serve until killed."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frameworks", default="fastapi,flask")
    p.add_argument("--modes", default="bare,memory,sqlite")
    p.add_argument("--profile", default=None, help="framework:mode, e.g. fastapi:memory")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sink:
        sink()
        return 0
    if args.child:
        framework, mode = args.child.split(":")
        child(framework, mode, args.requests, args.rounds, args.profile is not None)
        return 0
    server = subprocess.Popen(
        [sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        runs = (
            [tuple(args.profile.split(":"))]
            if args.profile
            else [(f, m) for f in args.frameworks.split(",") for m in args.modes.split(",")]
        )
        results: dict[tuple[str, str], float] = {}
        for framework, mode in runs:
            with __import__("tempfile").TemporaryDirectory() as tmp:
                env = {
                    **os.environ,
                    "UPTAKE_BENCH_MODE": mode,
                    "UPTAKE_ENDPOINT": f"http://127.0.0.1:{port}",
                    "UPTAKE_BENCH_DB": os.path.join(tmp, "state.db"),
                }
                cmd = [sys.executable, __file__, "--child", f"{framework}:{mode}"]
                cmd += ["--requests", str(args.requests), "--rounds", str(args.rounds)]
                if args.profile:
                    subprocess.run([*cmd, "--profile", args.profile], env=env, check=True)
                    continue
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                results[(framework, mode)] = json.loads(out.stdout.splitlines()[-1])["us"]
    finally:
        server.terminate()
        server.wait(10)
    if results:
        print(f"load average {os.getloadavg()[0]:.1f}; {args.requests} requests x "
              f"{args.rounds} rounds (best), CPU us per request, all threads")  # fmt: skip
        for framework, mode in runs:
            us = results[(framework, mode)]
            bare = results.get((framework, "bare"))
            extra = "" if bare is None else f"  {us - bare:+7.1f} us vs bare  {bare / us:5.2f}x"
            print(f"  {framework:8s} {mode:7s} {us:8.1f} us{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
