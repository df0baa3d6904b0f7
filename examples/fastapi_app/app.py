"""A FastAPI app that shows a tooltip nudge with uptake.

Visit the dashboard three times and a tooltip suggests the reports; the page tells the
nudge endpoint when the tooltip is shown, clicked or dismissed.

Run it (from the repository root)::

    pip install -e '.[fastapi]' uvicorn
    uvicorn --app-dir examples/fastapi_app app:app   # or: python examples/fastapi_app/app.py

Events are sent when ``UPTAKE_ENDPOINT`` and ``UPTAKE_WRITE_KEY`` are set (try
``uptake serve --write-key wk_demo`` in another terminal); without them nothing leaves
the process. ``UPTAKE_STATE_DB`` names the SQLite file holding the nudge state.

Stopping uvicorn (Ctrl-C, or SIGTERM from a supervisor) loses nothing: after the last
request the middleware flushes the client at lifespan shutdown.
"""

from __future__ import annotations

import html
import os
import tempfile

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

import uptake
from uptake.integrations import RequestState
from uptake.integrations.fastapi import UptakeMiddleware, UptakeState

client = uptake.Client(
    send=bool(os.environ.get("UPTAKE_ENDPOINT")),
    flush_interval=0.5,
    store=uptake.SqliteStore(
        os.environ.get("UPTAKE_STATE_DB")
        or os.path.join(tempfile.gettempdir(), "uptake-fastapi-example.db")
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

app = FastAPI()
app.add_middleware(
    UptakeMiddleware,
    client=client,
    # A demo sign-in cookie; a real app reads its session or request.user here.
    user_id=lambda request: request.cookies.get("demo_user"),
    features={"dashboard": "dashboard", "/reports": "reports", "/reports/*": "reports"},
)

SCRIPT = """<script>
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
</script>"""


def page(title: str, state: RequestState) -> HTMLResponse:
    who = (
        f"Signed in as {html.escape(state.user_id)} (<a href='/logout'>sign out</a>)"
        if state.user_id
        else "<a href='/login?user=alice'>Sign in as alice</a>"
    )
    tips = "".join(
        f"<div class='tooltip' data-nudge='{html.escape(n.name)}'>"
        f"{html.escape(str(n.payload.get('tooltip', '')))} "
        "<a href='/reports' data-outcome='clicked'>Open reports</a> "
        "<button data-outcome='dismissed' title='Not now'>&times;</button></div>"
        for n in state.nudges
    )
    return HTMLResponse(
        f"<!doctype html><title>{title}</title><p>{who}</p>"
        "<nav><a href='/'>Dashboard</a> <a href='/reports'>Reports</a></nav>"
        f"<h1>{title}</h1>{tips}{SCRIPT}"
    )


@app.get("/", name="dashboard")
def dashboard(uptake_state: UptakeState) -> HTMLResponse:
    uptake_state.track("Dashboard Viewed")
    return page("Dashboard", uptake_state)


@app.get("/reports")
@app.get("/reports/{report_id}")
def reports(uptake_state: UptakeState, report_id: int | None = None) -> HTMLResponse:
    return page("Reports" if report_id is None else f"Report {report_id}", uptake_state)


@app.get("/api/nudges")
async def nudge_names(request: Request) -> dict[str, object]:
    # The same state, without the dependency; anudges() reads the store off the event loop.
    state = request.state.uptake
    return {"user": state.user_id, "nudges": [n.name for n in await state.anudges()]}


@app.get("/login")
def login(user: str = "alice") -> RedirectResponse:
    response = RedirectResponse("/", status_code=303)
    response.set_cookie("demo_user", user, httponly=True, samesite="lax")  # a demo only
    return response


@app.get("/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie("demo_user")
    return response


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}  # skipped by uptake: health checks record nothing


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
