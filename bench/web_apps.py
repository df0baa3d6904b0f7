"""The apps bench/web_overhead.py serves: FastAPI and Flask, bare or with uptake.

``UPTAKE_BENCH_MODE`` chooses: ``bare`` (no uptake), ``memory`` (the middleware with a
MemoryStore, sending to ``UPTAKE_ENDPOINT``) or ``sqlite`` (the same with a SqliteStore in
``UPTAKE_BENCH_DB``). Every request names its user in an ``X-User`` header; the client has
one nudge and two milestones, so recording runs the rules as a real app's would.
``UPTAKE_BENCH_ROWS`` (default 0) makes the route answer that many rows of a small table,
so the app does the work of a real page (serializing a response) around uptake's.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

MODE = os.environ.get("UPTAKE_BENCH_MODE", "bare")
ROWS = int(os.environ.get("UPTAKE_BENCH_ROWS", "0"))


def _page() -> dict[str, Any]:
    """The route's answer: a page name, and ``ROWS`` rows of a report when asked."""
    if not ROWS:
        return {"page": "dashboard"}
    rows = [
        {"id": i, "name": f"report {i}", "owner": f"user-{i % 97}", "views": i * 7, "ok": i % 3 > 0}
        for i in range(ROWS)
    ]
    return {"page": "dashboard", "rows": rows}


def _client() -> Any:
    import uptake

    store: Any = None
    if MODE == "sqlite":
        store = uptake.SqliteStore(os.environ["UPTAKE_BENCH_DB"])
    return uptake.Client(
        write_key="wk_bench",
        endpoint=os.environ["UPTAKE_ENDPOINT"],
        store=store,
        milestones=[
            uptake.Milestone("explored", counts={"Feature Used": 3}),
            uptake.Milestone("regular", active_days=2, within=timedelta(days=7)),
        ],
        nudges=[
            uptake.Nudge(
                "try_reports",
                trigger=uptake.EventCount("Feature Used", 5),
                max_shows=1,
                payload={"tooltip": "Try reports"},
            )
        ],
    )


def _user(headers: Any) -> str | None:
    value = headers.get("x-user")
    return str(value) if value else None


def fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/dashboard")
    def dashboard() -> dict[str, Any]:
        return _page()

    if MODE != "bare":
        from uptake.integrations.fastapi import UptakeMiddleware

        app.add_middleware(
            UptakeMiddleware,
            client=_client(),
            user_id=lambda request: _user(request.headers),
            features={"/dashboard": "dashboard"},
        )
    return app


def flask_app() -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/dashboard")
    def dashboard() -> dict[str, Any]:
        return _page()

    if MODE != "bare":
        from uptake.integrations.flask import Uptake

        Uptake(
            app,
            client=_client(),
            user_id=lambda request: _user(request.headers),
            features={"/dashboard": "dashboard"},
        )
    return app
