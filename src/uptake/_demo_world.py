"""The demo's simulated product: accounts, users and what they do each day.

:func:`build_world` draws the accounts and users; :class:`Simulation` plays one day at a
time through a real :class:`uptake.Client`. It plants what the report should find
(docs/discover.md#the-demo): an activation moment (:data:`MOMENT_REPORTS` reports within
:data:`MOMENT_DAYS` days of the first event) that causes retention, and two nudges whose
users act on them.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import attrs

from .client import Client
from .rules.nudges import NudgeFired

__all__ = [
    "CHURN_ACTIVATED",
    "CHURN_OTHERS",
    "FEATURES",
    "INVITE",
    "INVITE_PUSHED",
    "MOMENT_DAYS",
    "MOMENT_REPORTS",
    "REPORTS_ANALYST",
    "REPORTS_BOOST",
    "Simulation",
    "build_world",
]

FEATURES = ("dashboards", "reports", "alerts", "exports", "integrations", "sharing")
_DAY = timedelta(days=1)

#: The activation moment the demo plants (docs/discover.md#the-demo): a user who creates
#: at least MOMENT_REPORTS reports within MOMENT_DAYS x 24 h of their first event is
#: "activated" after that week: from then on they come back on most weekdays (whatever
#: their account), and few of them leave (CHURN_ACTIVATED); the others keep their habits,
#: and most of them leave 14 to 25 days after signing up (CHURN_OTHERS). The same rule
#: is what `uptake discover` should find on top.
MOMENT_REPORTS = 3
MOMENT_DAYS = 7
CHURN_ACTIVATED = 0.02
CHURN_OTHERS = 0.75
#: Chance that a report or dashboard use creates a report, for an analyst (admins 0.3,
#: viewers 0.06), and how much more often users shown try_reports create one (a week).
REPORTS_ANALYST = 0.6
REPORTS_BOOST = 3.0

#: Chance that a session step invites a teammate, and after seeing finish_setup (10 days).
INVITE = 0.03
INVITE_PUSHED = 0.3


@attrs.define
class _User:
    id: str
    account: str
    role: str
    joined: int  # simulation day
    activity: float  # chance of a session on a weekday
    churn_day: int | None
    features: tuple[str, ...]
    reports: float  # chance a report or dashboard use creates a report
    invited: bool = False
    created: bool = False
    boost_until: int = -1  # shown try_reports: more reports until then
    setup_push_until: int = -1  # shown finish_setup: more likely to invite
    first_seen: datetime | None = None  # the user's first active event
    early_reports: int = 0  # reports created within 7 x 24 h of first_seen
    activated: bool | None = None  # met the activation moment (None: not decided yet)


@attrs.define
class _Account:
    id: str
    started: int
    seats: int
    cooling_from: int | None  # from this day on its members use the product less
    health: float  # how much its members use the product, 0.15 to 1.0
    features: tuple[str, ...]  # what the account uses the product for


def build_world(rng: random.Random, users: int, days: int) -> tuple[list[_Account], list[_User]]:
    accounts: list[_Account] = []
    members: list[_User] = []
    n_accounts = max(users // 10, 1)
    for a in range(n_accounts):
        started = rng.randrange(0, max(days // 2, 1))
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
        persona = rng.choices(["power", "regular", "casual", "trialist"], [15, 35, 30, 20])[0]
        activity = {"power": 0.85, "regular": 0.55, "casual": 0.22, "trialist": 0.6}[persona]
        activity = min(activity * account.health, 0.95)
        joined = min(account.started + int(rng.expovariate(1 / 4)), days - 1)
        breadth = {"power": 5, "regular": 3, "casual": 2, "trialist": 2}[persona]
        mine = account.features[1:]
        features = ("dashboards", *rng.sample(mine, min(breadth - 1, len(mine))))
        # Analysts write reports; admins sometimes; viewers rarely.
        role = rng.choices(["analyst", "admin", "viewer"], [40, 25, 35])[0]
        reports = {"analyst": REPORTS_ANALYST, "admin": 0.3, "viewer": 0.06}[role]
        members.append(
            _User(f"user-{u + 1:03d}", account.id, role, joined, activity, None, features, reports)
        )
    return accounts, members


class Simulation:
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
                    user.id, {"plan": "trial", "role": user.role}, timestamp=self._at(day, 8 * 60)
                )
            if user.activated is None and day > user.joined + MOMENT_DAYS:
                self._decide(user, day)
                if user.churn_day is not None and day >= user.churn_day:
                    continue
            chance = user.activity * (0.35 if weekday >= 5 else 1.0)
            account = self.accounts[user.account]
            if account.cooling_from is not None and day >= account.cooling_from:
                chance *= 0.25
            if user.activated:  # the product works for them: they keep coming
                chance = max(chance, 0.6 if weekday < 5 else 0.2)
            if day == user.joined or rng.random() < chance:
                self._session(user, day)

    def _decide(self, user: _User, day: int) -> None:
        """After the first week: the moment (or its absence) decides who stays."""
        rng = self.rng
        user.activated = user.early_reports >= MOMENT_REPORTS
        if rng.random() < (CHURN_ACTIVATED if user.activated else CHURN_OTHERS):
            user.churn_day = user.joined + rng.randrange(14, 26)

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
                INVITE_PUSHED if day <= user.setup_push_until else INVITE
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
                self._seen(user, day, minute)
                boost = REPORTS_BOOST if day <= user.boost_until else 1.0
                if feature in ("reports", "dashboards") and rng.random() < user.reports * boost:
                    self._track(user, "Report Created", day, minute + 0.2)

    def _track(self, user: _User, event: str, day: int, minute: float) -> None:
        at = self._at(day, minute)
        self.client.track(user.id, event, account_id=user.account, timestamp=at)
        self.tracked += 1
        first = self._seen(user, day, minute)
        if event == "Report Created" and at - first <= MOMENT_DAYS * _DAY:
            user.early_reports += 1

    def _seen(self, user: _User, day: int, minute: float) -> datetime:
        """Note the user's first active event (day 0 of the moment's window); return it."""
        if user.first_seen is None:
            user.first_seen = self._at(day, minute)
        return user.first_seen

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
