"""``uptake demo``: a simulated SaaS product, run end to end on this machine.

Hundreds of users in dozens of accounts use a small analytics product over about 60 days
of event time: they sign up, some activate, some form a habit, some churn, some accounts
cool off. Their events go through a real :class:`uptake.Client` (milestones, engagement,
two nudges with holdouts, a 5% global holdout) to the reference collector, started in this
process on a free loopback port; the engagement report is then built from what the
collector stored. Users shown a nudge act on it (more reports, more invitations), so the
report's lift by assignment has a real effect to find, and the simulation plants an
activation moment (:mod:`._demo_world`: at least 3 reports within 7 days of the first
event makes a user stay) that the report's discovery section should find on top.

The same seed gives the same product history and the same report.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import IO, TYPE_CHECKING

import attrs

from ._demo_world import (
    CHURN_ACTIVATED,
    CHURN_OTHERS,
    FEATURES,
    INVITE,
    INVITE_PUSHED,
    MOMENT_DAYS,
    MOMENT_REPORTS,
    REPORTS_BOOST,
    Simulation,
    build_world,
)
from .client import Client
from .rules.engagement import Engagement
from .rules.milestones import Milestone, MilestoneReached
from .rules.nudges import EventCount, NotReached, Nudge, NudgeFired

if TYPE_CHECKING:
    from .collector.discovery import Discovery

__all__ = ["DemoResult", "run_demo"]

WRITE_KEY = "wk_demo"

MILESTONES = (
    Milestone(
        "activated", all_of=["Project Created", "Teammate Invited"], within=timedelta(days=14)
    ),
    Milestone("habit", active_days=3, within=timedelta(days=7)),
    Milestone("reporting", counts={"Report Created": 3}),
    Milestone("depth", features=4),
    Milestone("team_depth", features=5, scope="account"),
)
NUDGES = (
    Nudge(
        "try_reports",
        trigger=EventCount("Dashboard Viewed", 3),
        unless=["reporting"],
        max_shows=2,
        cooldown=timedelta(days=2),
        priority=10,
        holdout=0.3,
        goal="Report Created",
        goal_within=timedelta(days=7),
        payload={"tooltip": "Turn this dashboard into a weekly report"},
    ),
    Nudge(
        "finish_setup",
        trigger=NotReached("activated", after=timedelta(days=2)),
        max_shows=1,
        holdout=0.3,
        goal="activated",
        goal_within=timedelta(days=10),
        payload={"banner": "Invite a teammate to finish setting up"},
    ),
)

#: Users no nudge ever fires for: the control group of the whole nudge programme.
GLOBAL_HOLDOUT = 0.05
TOUCHPOINTS = ("QBR Attended",)
#: The client's engagement settings; the report's settings file says the same.
ENGAGEMENT = Engagement(core_features=FEATURES, touchpoints=TOUCHPOINTS)


@attrs.frozen
class DemoResult:
    """What a demo run did: events, deliveries, rule activity, and where the report is.

    ``milestones`` counts subjects (users; accounts for account milestones) that reached
    each milestone; ``nudges`` holds, per nudge, the report's counts of distinct users
    (``fired``, ``shown``, ``held_out``, ``clicked``, ``dismissed``). ``settings_path`` is
    the settings file written beside ``db`` (None without ``db``).
    """

    tracked: int
    delivered: int
    stored: int
    dropped: int
    failed: int
    milestones: dict[str, int]
    nudges: dict[str, dict[str, int]]
    report_path: str
    summary: list[str]
    seconds: float
    settings_path: str | None = None
    discovery: Discovery | None = None


class _Progress:
    """A bar redrawn in place: only on a terminal (a log or a pipe gets no "\\r" lines)."""

    def __init__(self, stream: IO[str], total: int, enabled: bool) -> None:
        self.stream, self.total = stream, total
        self.enabled = enabled and _is_terminal(stream)

    def update(self, done: int, text: str) -> None:
        if not self.enabled:
            return
        bar = "#" * (30 * done // self.total)
        end = "\n" if done == self.total else ""
        self.stream.write(f"\r[{bar:<30}] day {done}/{self.total}  {text}{end}")
        self.stream.flush()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def run_demo(
    *,
    seed: int = 7,
    users: int = 360,
    days: int = 60,
    until: date | None = None,
    out: str = "uptake-report.html",
    db: str | None = None,
    stream: IO[str] | None = None,
    progress: bool = True,
) -> DemoResult:
    """Simulate the product, deliver its events to a local collector, write the report.

    Args:
        seed: Seed of the simulation; the same seed gives the same history and report.
        users: How many users the product gets.
        days: Days of event time simulated, ending with ``until``.
        until: Last simulated day (default: today, UTC).
        out: Where to write the HTML report.
        db: SQLite file for the collector (default: a temporary file, removed after).
            The report's settings are written beside it (its name with ``.toml``), so
            ``uptake report DB`` gives the same numbers.
        stream: Where to print what happens (default: standard output).
        progress: Show a progress bar (on a terminal only).

    Raises:
        ValueError: fewer than 10 users or fewer than 14 days, or ``db`` or its settings
            file exists.
        ImportError: the ``collector`` extra (uvicorn, plotly) is not installed.
    """
    if users < 10 or days < 14:
        raise ValueError("the demo needs at least 10 users and 14 days")
    if db is not None and os.path.exists(db):
        raise ValueError(f"{db} exists; give the demo a new file (its count must be its own)")
    from .collector.discovery import after_report, headline, html_section
    from .collector.metrics import compute
    from .collector.report import render_html, summary
    from .collector.server import BackgroundCollector
    from .collector.settings import ReportSettings, beside, dumps
    from .collector.sources import from_store

    settings = ReportSettings(core_features=FEATURES, touchpoints=TOUCHPOINTS)
    settings_path = None if db is None else str(beside(db))
    if settings_path is not None and os.path.exists(settings_path):
        raise ValueError(f"{settings_path} exists; the demo writes its settings there")

    started = time.perf_counter()
    rng = random.Random(seed)
    last = until or datetime.now(timezone.utc).date()
    first = last - timedelta(days=days - 1)
    accounts, members = build_world(rng, users, days)
    folder = None
    if db is None:
        folder = tempfile.TemporaryDirectory(prefix="uptake-demo-")
        db = os.path.join(folder.name, "events.db")
    stream = stream if stream is not None else sys.stdout
    say: Callable[[str], None] = lambda text: print(text, file=stream)  # noqa: E731
    try:
        with BackgroundCollector(db, [WRITE_KEY]) as collector:
            say(f"collector listening on {collector.url}, storing into {db}")
            say(
                f"simulating {users} users in {len(accounts)} accounts over {days} days "
                f"({first} to {last}), seed {seed}"
            )
            client = Client(
                write_key=WRITE_KEY,
                endpoint=collector.url,
                flush_at=500,
                milestones=MILESTONES,
                nudges=NUDGES,
                engagement=ENGAGEMENT,
                global_holdout=GLOBAL_HOLDOUT,
            )
            reached: Counter[str] = Counter()
            examples: list[str] = []
            shown_example: set[str] = set()
            fired: list[NudgeFired] = []

            @client.on_milestone()
            def _milestone(r: MilestoneReached) -> None:
                reached[r.milestone] += 1
                if r.milestone not in shown_example:  # the first of each, as an example
                    shown_example.add(r.milestone)
                    days_taken = r.time_to_reach.total_seconds() / 86_400
                    examples.append(
                        f"  {r.timestamp:%Y-%m-%d %H:%M} {r.user_id} ({r.account_id}) reached "
                        f"{r.milestone} after {days_taken:.1f} days"
                    )

            @client.on_nudge()
            def _nudge(n: NudgeFired) -> None:
                fired.append(n)  # shown by the "front end" on the user's next page view

            sim = Simulation(rng, client, first, accounts, members, fired)
            bar = _Progress(sys.stderr, days, progress)
            for day in range(days):
                sim.run_day(day)
                client.flush(timeout=30)
                bar.update(
                    day + 1,
                    f"{client.stats.tracked:,} events tracked, "
                    f"{sum(reached.values()):,} milestones reached",
                )
            client.shutdown(timeout=30)
            stats = client.stats
            stored = len(collector.store)
        say(
            f"tracked {stats.tracked:,} events (tracks, identifies, groups and uptake's own); "
            f"delivered {stats.delivered:,}, the collector stored {stored:,} (dropped "
            f"{stats.dropped}, failed {stats.failed})"
        )
        say("first milestones reached:")
        for line in examples:
            say(line)
        if settings_path is not None:
            with open(settings_path, "w", encoding="utf-8") as handle:
                handle.write(dumps(attrs.evolve(settings, path=settings_path)))
            settings = attrs.evolve(settings, path=settings_path)
            say(f"wrote the report's settings to {settings_path}")
        else:
            say("the events and the report's settings are not kept: give --db FILE to keep both")
        source = from_store(db)
        found: list[Discovery] = []
        report = compute(
            source,
            tz=settings.tzinfo(),
            inactive=settings.inactive,
            engagement=settings.engagement(),
            on_loaded=after_report(settings, None, found),
        )
        report = attrs.evolve(
            report, skipped=source.skipped, skipped_by=tuple(source.skipped_by.most_common())
        )
        lines = summary(report, settings) + [x for d in found for x in headline(d)]
        if found:
            lines.append(_PLANTED)
        say("")
        for line in lines:
            say(line)
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(
                render_html(
                    report,
                    title="uptake demo: engagement report",
                    settings=settings,
                    extra_sections=[*(html_section(d) for d in found), _planted_section()],
                )
            )
        say(f"\nwrote {out} ({os.path.getsize(out) / 1e6:.1f} MB); open it in a browser")
    finally:
        if folder is not None:
            folder.cleanup()
    return DemoResult(
        tracked=stats.tracked,
        delivered=stats.delivered,
        stored=stored,
        dropped=stats.dropped,
        failed=stats.failed,
        milestones=dict(reached),
        nudges={
            n.name: {
                "fired": n.fired,
                "shown": n.shown,
                "held_out": n.held_out,
                "clicked": n.clicked,
                "dismissed": n.dismissed,
            }
            for n in report.nudges
        },
        report_path=out,
        summary=lines,
        seconds=time.perf_counter() - started,
        settings_path=settings_path,
        discovery=found[0] if found else None,
    )


_PLANTED = (
    f"planted by the demo: users who create at least {MOMENT_REPORTS} reports within "
    f"{MOMENT_DAYS} days of their first event stay (they leave at {CHURN_ACTIVATED:.0%}, "
    f"the others at {CHURN_OTHERS:.0%}); try_reports makes reports {REPORTS_BOOST:g} times "
    f"as likely for a week; finish_setup makes an invitation {INVITE_PUSHED / INVITE:g} times "
    "as likely for 10 days"
)


def _planted_section() -> str:
    """The page's section saying what the simulation planted, to compare with the findings."""
    return (
        "<section id=planted><h2>What the demo planted</h2><ul>"
        f"<li>An activation moment: users who create at least {MOMENT_REPORTS} reports "
        f"within {MOMENT_DAYS} days of their first event keep using the product (from then "
        f"on they are active most weekdays, and {CHURN_ACTIVATED:.0%} of them leave); "
        f"{CHURN_OTHERS:.0%} of the others leave 14 to 25 days after signing up. "
        "&ldquo;What retained users did first&rdquo; should show it on top.</li>"
        f"<li>Two nudges with a real effect: users shown <code>try_reports</code> create "
        f"reports {REPORTS_BOOST:g} times as often for a week (so more of them reach the "
        "moment); users shown <code>finish_setup</code> invite a teammate "
        f"{INVITE_PUSHED / INVITE:g} times as often for 10 days. Each nudge holds out 30% of "
        "its users, and 5% of all users are held out of every nudge.</li></ul>"
        "<p class=note>The figures above are what the report measured from the events; "
        "this list is what the simulation did (src/uptake/_demo_world.py).</p></section>"
    )
