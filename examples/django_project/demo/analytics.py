"""The project's uptake client, named in ``settings.UPTAKE["CLIENT"]``."""

from __future__ import annotations

import os
import tempfile

import uptake

client = uptake.Client(
    send=bool(os.environ.get("UPTAKE_ENDPOINT")),
    flush_interval=0.5,
    store=uptake.SqliteStore(
        os.environ.get("UPTAKE_STATE_DB")
        or os.path.join(tempfile.gettempdir(), "uptake-django-example.db")
    ),
    nudges=[
        uptake.Nudge(
            "try_reports",
            trigger=uptake.EventCount("Dashboard Viewed", 3),
            max_shows=3,
            payload={"tooltip": "You have viewed 3 dashboards: reports can mail them to you."},
        )
    ],
)
