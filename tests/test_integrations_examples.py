"""The examples end to end: real servers, real processes, the reference collector.

The FastAPI example runs under uvicorn and the Flask example under gunicorn with
``--preload`` and two workers (the client is built in the master, then forked), both
sending to ``uptake serve``'s app on 127.0.0.1. The Django project runs in a subprocess
through Django's test clients, sync and async.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from .integrations_helpers import (
    free_port,
    running_collector,
    server_process,
    wait_for_http,
    wait_until,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KEY = "wk_examples"


def example_env(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "UPTAKE_ENDPOINT": url,
        "UPTAKE_WRITE_KEY": KEY,
        "UPTAKE_STATE_DB": str(tmp_path / "state.db"),
        "PYTHONUNBUFFERED": "1",
    }


def stored(store: Any, event: str) -> list[dict[str, Any]]:
    """The events named ``event`` in a collector's store (or a list of events)."""
    events = store if isinstance(store, list) else store.events()
    return [e for e in events if e.get("event") == event]


def test_fastapi_example_under_uvicorn(tmp_path: Path) -> None:
    with running_collector(tmp_path / "events.db", KEY) as (url, store):
        port = free_port()
        args = [
            sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES / "fastapi_app"),
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "app:app",
        ]  # fmt: skip
        log = tmp_path / "uvicorn.log"
        with server_process(args, example_env(url, tmp_path), log) as proc:
            base = f"http://127.0.0.1:{port}"
            wait_for_http(f"{base}/health", proc)
            with httpx.Client(base_url=base, follow_redirects=True) as alice:
                # Signing in lands on the dashboard: the first of three views.
                pages = [alice.get("/login?user=alice").text]
                pages += [alice.get("/").text for _ in range(2)]
                assert "data-nudge='try_reports'" not in pages[1]
                assert "data-nudge='try_reports'" in pages[2], log.read_text()
                assert alice.get("/api/nudges").json() == {
                    "user": "alice",
                    "nudges": ["try_reports"],
                }
                shown = alice.post("/uptake/nudges/try_reports/shown", json={})
                assert shown.status_code == 204
                assert alice.get("/uptake/nudges").json() == {"nudges": []}
                alice.get("/reports/7")
            anonymous = httpx.get(f"{base}/reports")
            anon = anonymous.cookies["uptake_anon"]
            httpx.get(f"{base}/health")

            def delivered() -> bool:
                return (
                    len(stored(store, "Nudge Shown")) == 1
                    and len(stored(store, "Feature Used")) == 5
                )

            wait_until(delivered, 15, "the example's events at the collector")
            events = list(store.events())
    used = Counter(
        (e.get("userId") or e.get("anonymousId"), e["properties"]["feature"])
        for e in stored(events, "Feature Used")
    )
    assert used == {("alice", "dashboard"): 3, ("alice", "reports"): 1, (anon, "reports"): 1}


def test_flask_example_under_gunicorn_preload_two_workers(tmp_path: Path) -> None:
    with running_collector(tmp_path / "events.db", KEY) as (url, store):
        port = free_port()
        access = tmp_path / "access.log"
        args = [
            sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
            "-b", f"127.0.0.1:{port}", "--chdir", str(EXAMPLES / "flask_app"),
            "--access-logfile", str(access),
            # the worker's pid and the anonymous id it gave: who served whom
            "--access-logformat", "%(p)s %({set-cookie}o)s",
            "app:app",
        ]  # fmt: skip
        log = tmp_path / "gunicorn.log"
        with server_process(args, example_env(url, tmp_path), log) as proc:
            base = f"http://127.0.0.1:{port}"
            wait_for_http(f"{base}/health", proc)
            served: dict[str, str] = {}  # anonymous id -> worker pid

            def read_log() -> None:
                for line in access.read_text().splitlines():
                    found = re.match(r"<(\d+)> uptake_anon=([0-9a-f]{32});", line)
                    if found:
                        served[found[2]] = found[1]

            def visit(_: int) -> str:
                return httpx.get(f"{base}/reports/1", timeout=10).cookies["uptake_anon"]

            visitors: list[str] = []
            with ThreadPoolExecutor(16) as pool:

                def both_workers_served() -> bool:
                    visitors.extend(pool.map(visit, range(32)))
                    wait_until(lambda: read_log() or len(served) >= len(visitors), 10, "log")
                    return len(set(served.values())) >= 2

                wait_until(both_workers_served, 30, "requests served by both workers")

            # A signed-in user across both workers: the nudge state is shared (SqliteStore).
            with httpx.Client(base_url=base, follow_redirects=True) as bob:
                pages = [bob.get("/login?user=bob").text]  # lands on the dashboard
                pages += [bob.get("/").text for _ in range(2)]
                assert 'data-nudge="try_reports"' not in pages[1]
                assert 'data-nudge="try_reports"' in pages[2], log.read_text()
                assert bob.post("/uptake/nudges/try_reports/shown", json={}).status_code == 204

            def delivered() -> bool:
                # Every event asserted below, whichever worker sends it and whenever its
                # flush interval comes round: each visitor's, bob's three, the nudge's.
                used = stored(store, "Feature Used")
                anonymous = {e.get("anonymousId") for e in used}
                return (
                    set(visitors) <= anonymous
                    and sum(e.get("userId") == "bob" for e in used) >= 3
                    and len(stored(store, "Nudge Shown")) == 1
                    and len(stored(store, "Nudge Fired")) >= 1
                )

            wait_until(delivered, 20, "every asserted event at the collector")
            assert "Traceback" not in log.read_text()
            events = list(store.events())
        workers = set(served.values())
    assert len(workers) == 2 and str(proc.pid) not in workers
    by_worker = Counter(served[a] for a in visitors)
    assert set(by_worker) == workers  # events from both forked workers arrived
    bobs = [e for e in stored(events, "Feature Used") if e.get("userId") == "bob"]
    assert [e["properties"]["feature"] for e in bobs] == ["dashboard"] * 3
    assert len(stored(events, "Nudge Fired")) == 1  # decided once across the two workers


def test_django_example_project_sync_and_async(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, os
        os.environ["DJANGO_SETTINGS_MODULE"] = "demo.settings"
        import django
        django.setup()
        from django.core.management import call_command
        from django.contrib.auth.models import User
        from django.test import AsyncClient, Client
        from uptake.testing import capture_events

        call_command("migrate", verbosity=0)
        http = Client()
        with capture_events() as events:
            assert http.get("/health").status_code == 200
            http.get("/reports/")
            http.get("/login/?user=alice", follow=True)
            pages = [http.get("/").content.decode() for _ in range(3)]
            assert 'data-nudge="try_reports"' in pages[2], pages[2]
            r = http.post("/uptake/nudges/try_reports/shown", content_type="application/json")
            assert r.status_code == 204, r.content
            http.get("/reports/3/")

            async def run():
                client = AsyncClient()
                await client.aforce_login(await User.objects.aget(username="alice"))
                return (await client.get("/async/")).json()

            assert asyncio.run(run()) == {"user": "1", "nudges": []}
        names = [e.get("event") or e["type"] for e in events]
        assert names.count("Feature Used") == 6, names
        assert names.count("identify") == 1 and "Nudge Shown" in names, names
        print("ok")
        """
    )
    env = {
        **os.environ,
        "DJANGO_EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
        "UPTAKE_STATE_DB": str(tmp_path / "state.db"),
    }
    env.pop("UPTAKE_ENDPOINT", None)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=EXAMPLES / "django_project",
        env={**env, "PYTHONPATH": str(EXAMPLES / "django_project")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
