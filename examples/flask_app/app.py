"""A Flask app that shows a tooltip nudge with uptake.

Visit the dashboard three times and a tooltip suggests the reports; the page tells the
nudge endpoint when the tooltip is shown, clicked or dismissed.

Run it (from the repository root)::

    pip install -e '.[flask]'
    flask --app examples/flask_app/app.py run
    # or, as in production, two worker processes sharing the rule state:
    gunicorn --chdir examples/flask_app --preload -w 2 -b 127.0.0.1:8000 app:app

Events are sent when ``UPTAKE_ENDPOINT`` and ``UPTAKE_WRITE_KEY`` are set (try
``uptake serve --write-key wk_demo`` in another terminal, then
``UPTAKE_ENDPOINT=http://127.0.0.1:8787 UPTAKE_WRITE_KEY=wk_demo``); without them nothing
leaves the process. ``UPTAKE_STATE_DB`` names the SQLite file the workers share the
nudge state in (default: one in the temporary directory).
"""

from __future__ import annotations

import os
import tempfile

from flask import Flask, g, redirect, render_template_string, request, session, url_for
from werkzeug.wrappers import Response

import uptake
from uptake.integrations.flask import Uptake

client = uptake.Client(
    send=bool(os.environ.get("UPTAKE_ENDPOINT")),
    flush_interval=0.5,
    store=uptake.SqliteStore(
        os.environ.get("UPTAKE_STATE_DB")
        or os.path.join(tempfile.gettempdir(), "uptake-flask-example.db")
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

app = Flask(__name__)
app.secret_key = os.environ.get("FLASK_SECRET_KEY", "demo only: set FLASK_SECRET_KEY")
Uptake(
    app,
    client,
    user_id=lambda request: session.get("user_id"),
    features={"dashboard": "dashboard", "/reports": "reports", "/reports/*": "reports"},
)

PAGE = """<!doctype html>
<title>{{ title }}</title>
<style>
  .tooltip { border: 1px solid #888; background: #ffd; padding: .5em; max-width: 22em; }
</style>
<p>{% if g.uptake.user_id %}Signed in as {{ g.uptake.user_id }}
   (<a href="{{ url_for('logout') }}">sign out</a>){% else %}
   <a href="{{ url_for('login', user='alice') }}">Sign in as alice</a>{% endif %}</p>
<nav><a href="{{ url_for('dashboard') }}">Dashboard</a>
     <a id="reports-link" href="{{ url_for('reports') }}">Reports</a></nav>
<h1>{{ title }}</h1>
{% for nudge in uptake_nudges() %}
  <div class="tooltip" data-nudge="{{ nudge.name }}">
    {{ nudge.payload.tooltip }}
    <a href="{{ url_for('reports') }}" data-outcome="clicked">Open reports</a>
    <button data-outcome="dismissed" title="Not now">&times;</button>
  </div>
{% endfor %}
<script>
  for (const tip of document.querySelectorAll("[data-nudge]")) {
    const report = (outcome, body = {}) =>
      fetch(`/uptake/nudges/${encodeURIComponent(tip.dataset.nudge)}/${outcome}`, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify(body),
        keepalive: true,
      });
    report("shown");
    tip.querySelector("[data-outcome=clicked]").addEventListener("click", () => report("clicked"));
    tip.querySelector("[data-outcome=dismissed]").addEventListener("click", () => {
      report("dismissed", {snooze_seconds: 86400});
      tip.remove();
    });
  }
</script>
"""


@app.get("/")
def dashboard() -> str:
    g.uptake.track("Dashboard Viewed")  # before the page reads its nudges
    return render_template_string(PAGE, title="Dashboard")


@app.get("/reports")
@app.get("/reports/<int:report_id>")
def reports(report_id: int | None = None) -> str:
    title = "Reports" if report_id is None else f"Report {report_id}"
    return render_template_string(PAGE, title=title)


@app.get("/login")
def login() -> Response:
    session["user_id"] = request.args.get("user", "alice")  # a demo, not authentication
    return redirect(url_for("dashboard"))


@app.get("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("dashboard"))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}  # skipped by uptake: health checks record nothing


if __name__ == "__main__":
    app.run(debug=True)
