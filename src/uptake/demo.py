"""``uptake demo``: a simulated SaaS product, run end to end on this machine.

Hundreds of users in dozens of accounts use a small analytics product over about 60 days
of event time: they sign up, some activate, some form a habit, some churn, some accounts
cool off. Their events go through a real :class:`uptake.Client` (milestones, engagement,
two nudges with holdouts, a 5% global holdout) to the reference collector, started in this
process on a free loopback port; the engagement report is then built from what the
collector stored. Users shown a nudge act on it (more reports, more invitations), so the
report's lift by assignment has a real effect to find.

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
from typing import IO

import attrs

from .client import Client
from .rules.engagement import Engagement
from .rules.milestones import Milestone, MilestoneReached
from .rules.nudges import EventCount, NotReached, Nudge, NudgeFired

__all__ = ["DemoResult", "run_demo"]

WRITE_KEY = "wk_demo"
FEATURES = ("dashboards", "reports", "alerts", "exports", "integrations", "sharing")
_DAY = timedelta(days=1)

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


@attrs.define
class _User:
    id: str
    account: str
    joined: int  # simulation day
    activity: float  # chance of a session on a weekday
    churn_day: int | None
    features: tuple[str, ...]
    reports: float  # chance a session creates a report
    invited: bool = False
    created: bool = False
    boost_until: int = -1  # shown try_reports: more reports until then
    setup_push_until: int = -1  # shown finish_setup: more likely to invite


@attrs.define
class _Account:
    id: str
    started: int
    seats: int
    cooling_from: int | None  # from this day on its members use the product less
    health: float  # how much its members use the product, 0.15 to 1.0
    features: tuple[str, ...]  # what the account uses the product for


def _world(rng: random.Random, users: int, days: int) -> tuple[list[_Account], list[_User]]:
    accounts: list[_Account] = []
    members: list[_User] = []
    n_accounts = max(users // 10, 1)
    for a in range(n_accounts):
        started = rng.randrange(0, max(days * 2 // 3, 1))
        cooling = None
        if a % 6 == 5 and started < days - 42:  # one account in six cools off
            cooling = days - rng.randrange(24, 28)
        features = ("dashboards", *rng.sample(FEATURES[1:], rng.randint(1, 5)))
        accounts.append(
            _Account(
                f"acct-{a + 1:02d}",
                started,
                rng.randrange(6, 30),
                cooling,
                rng.uniform(0.15, 1.0),
                features,
            )
        )
    for u in range(users):
        account = accounts[u % n_accounts] if u < n_accounts else rng.choice(accounts)
        persona = rng.choices(["power", "regular", "casual", "churner"], [15, 35, 30, 20])[0]
        activity = {"power": 0.85, "regular": 0.55, "casual": 0.22, "churner": 0.6}[persona]
        activity = min(activity * account.health, 0.95)
        joined = min(account.started + int(rng.expovariate(1 / 4)), days - 1)
        churn = joined + rng.randrange(7, 24) if persona == "churner" else None
        breadth = {"power": 5, "regular": 3, "casual": 2, "churner": 2}[persona]
        mine = account.features[1:]
        features = ("dashboards", *rng.sample(mine, min(breadth - 1, len(mine))))
        reports = {"power": 0.35, "regular": 0.12, "casual": 0.05, "churner": 0.05}[persona]
        members.append(
            _User(f"user-{u + 1:03d}", account.id, joined, activity, churn, features, reports)
        )
    return accounts, members


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
    first = last - (days - 1) * _DAY
    accounts, members = _world(rng, users, days)
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

            sim = _Simulation(rng, client, first, accounts, members, fired)
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
        report = compute(
            source,
            tz=settings.tzinfo(),
            inactive=settings.inactive,
            engagement=settings.engagement(),
        )
        report = attrs.evolve(
            report, skipped=source.skipped, skipped_by=tuple(source.skipped_by.most_common())
        )
        lines = summary(report, settings)
        say("")
        for line in lines:
            say(line)
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(
                render_html(report, title="uptake demo: engagement report", settings=settings)
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
    )


class _Simulation:
    """One day at a time: who comes back, what they do, how they react to nudges."""

    def __init__(
        self,
        rng: random.Random,
        client: Client,
        first: date,
        accounts: list[_Account],
        members: list[_User],
        fired: list[NudgeFired],
    ) -> None:
        self.rng, self.client, self.first = rng, client, first
        self.accounts = {a.id: a for a in accounts}
        self.members = members
        self.fired = fired
        self.users = {u.id: u for u in members}
        self.tracked = 0

    def _at(self, day: int, minutes: float) -> datetime:
        start = datetime(self.first.year, self.first.month, self.first.day, tzinfo=timezone.utc)
        return start + timedelta(days=day, minutes=minutes)

    def run_day(self, day: int) -> None:
        rng = self.rng
        weekday = (self.first + timedelta(days=day)).weekday()
        for account in self.accounts.values():
            if account.started == day:
                admin = next(u for u in self.members if u.account == account.id)
                self.client.group(
                    admin.id,
                    account.id,
                    {"seats": account.seats, "plan": rng.choice(["team", "business"])},
                    timestamp=self._at(day, 8 * 60),
                )
            # Healthy accounts meet their customer-success manager now and then.
            if day >= account.started + 7 and account.cooling_from is None and rng.random() < 0.015:
                admin = next(u for u in self.members if u.account == account.id)
                self._track(admin, "QBR Attended", day, 16 * 60)
        for user in self.members:
            if day < user.joined or (user.churn_day is not None and day >= user.churn_day):
                continue
            if day == user.joined:
                self.client.identify(
                    user.id,
                    {"plan": "trial", "role": rng.choice(["analyst", "admin", "viewer"])},
                    timestamp=self._at(day, 8 * 60),
                )
            chance = user.activity * (0.35 if weekday >= 5 else 1.0)
            account = self.accounts[user.account]
            if account.cooling_from is not None and day >= account.cooling_from:
                chance *= 0.25
            if day == user.joined or rng.random() < chance:
                self._session(user, day)

    def _session(self, user: _User, day: int) -> None:
        rng = self.rng
        minute = rng.uniform(8 * 60, 18 * 60)
        steps = rng.randint(2, 10)
        for _ in range(steps):
            minute += rng.uniform(0.5, 4)
            self._show_pending(user, day, minute)
            roll = rng.random()
            if not user.created and (day - user.joined < 3) and roll < 0.5:
                user.created = True
                self._track(user, "Project Created", day, minute)
            elif not user.invited and rng.random() < (
                0.25 if day <= user.setup_push_until else 0.04
            ):
                user.invited = True
                self._track(user, "Teammate Invited", day, minute)
            elif roll < 0.45:
                self._track(user, "Dashboard Viewed", day, minute)
            else:
                feature = rng.choice(user.features)
                self.client.feature_used(
                    user.id, feature, account_id=user.account, timestamp=self._at(day, minute)
                )
                self.tracked += 1
                boost = 2.5 if day <= user.boost_until else 1.0
                if feature in ("reports", "dashboards") and rng.random() < user.reports * boost:
                    self._track(user, "Report Created", day, minute + 0.2)

    def _track(self, user: _User, event: str, day: int, minute: float) -> None:
        self.client.track(user.id, event, account_id=user.account, timestamp=self._at(day, minute))
        self.tracked += 1

    def _show_pending(self, user: _User, day: int, minute: float) -> None:
        """The front end renders what fired for this user on their previous page view."""
        if not self.fired:
            return
        mine = [n for n in self.fired if n.user_id == user.id]
        if not mine:
            return
        self.fired[:] = [n for n in self.fired if n.user_id != user.id]
        rng = self.rng
        for nudge in mine:
            at = self._at(day, minute)
            self.client.nudge_shown(user.id, nudge.name, account_id=user.account, timestamp=at)
            if nudge.name == "try_reports":
                user.boost_until = day + 7
            else:
                user.setup_push_until = day + 10
            if rng.random() < 0.35:
                self.client.nudge_clicked(
                    user.id, nudge.name, account_id=user.account, timestamp=at + _DAY / 1440
                )
            elif rng.random() < 0.3:
                self.client.nudge_dismissed(
                    user.id, nudge.name, account_id=user.account, timestamp=at + _DAY / 1440
                )
