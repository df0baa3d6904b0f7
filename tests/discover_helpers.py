"""A seeded product with a planted activation rule, for the discovery tests.

Users who create at least 3 reports within 7 days of their first event retain (are
active on some day 28-35 after it) at 65%, the others at 15%. Decoys:

- "Dashboard Viewed": everyone, every day they come, whatever they do next;
- "Template Browsed": done by most would-be report makers, no effect of its own;
- "Referral Sent": retention 95%, but only 2% of users do it.

With ``planted=False`` retention is 30% whatever anyone does.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

__all__ = ["START", "planted_records"]

START = 1_767_571_200.0  # 2026-01-05T00:00:00Z, a Monday
DAY = 86_400.0
PLANTED = "Report Created"
FEATURES = ("search", "alerts", "exports", "sharing")


def planted_records(
    seed: int, users: int = 1500, *, planted: bool = True, accounts: int = 0
) -> list[tuple[float, str, str | None, str, str | None, Mapping[str, Any] | None]]:
    """Records (as the report reads them) of ``users`` users signing up over 9 weeks;
    the data ends 40 days after the last signup."""
    rng = random.Random(seed)
    out: list[tuple[float, str, str | None, str, str | None, Mapping[str, Any] | None]] = []
    for i in range(users):
        user = f"u{i}"
        account = f"acct{i % accounts}" if accounts else None
        t0 = START + rng.randrange(63) * DAY + rng.uniform(0, DAY / 2)

        def add(
            t: float,
            event: str,
            data: Mapping[str, Any] | None = None,
            user: str = user,
            account: str | None = account,
        ) -> None:
            out.append((t, user, account, "track", event, data))

        add(t0, "Dashboard Viewed")
        maker = rng.random() < 0.45
        planned = rng.choice((3, 3, 4, 5, 6)) if maker else rng.choice((0, 0, 0, 1, 2))
        times = sorted(rng.uniform(0.01, 11) for _ in range(planned))
        for x in times:
            add(t0 + x * DAY, PLANTED)
        early = sum(1 for x in times if x <= 7)
        if rng.random() < (0.75 if maker else 0.25):
            add(t0 + rng.uniform(0.01, 6) * DAY, "Template Browsed")
        referral = rng.random() < 0.02
        if referral:
            add(t0 + rng.uniform(0.01, 6) * DAY, "Referral Sent")
        for _ in range(rng.randrange(0, 4)):
            add(t0 + rng.uniform(0.01, 14) * DAY, "Feature Used", {"feature": rng.choice(FEATURES)})
        for day in range(1, 21):
            if rng.random() < 0.2:
                add(t0 + (day + rng.uniform(0, 0.4)) * DAY, "Dashboard Viewed")
        p = (0.95 if referral else 0.65 if early >= 3 else 0.15) if planted else 0.3
        if rng.random() < p:
            for day in rng.sample(range(28, 36), rng.randrange(1, 4)):
                add(t0 + (day + rng.uniform(0.05, 0.4)) * DAY, "Dashboard Viewed")
    # the data runs to 40 days after the last signup; late users fall outside the cohort
    out.append((START + 103 * DAY, "late-user", None, "track", "Dashboard Viewed", None))
    rng.shuffle(out)
    return out


def wire(
    records: list[tuple[float, str, str | None, str, str | None, Mapping[str, Any] | None]],
) -> list[dict[str, Any]]:
    """The records as Segment-spec events, as a client sends them."""
    from datetime import datetime, timezone

    out = []
    for i, (t, user, account, kind, event, data) in enumerate(records):
        message: dict[str, Any] = {
            "type": kind,
            "messageId": f"m{i}",
            "userId": user,
            "timestamp": datetime.fromtimestamp(t, timezone.utc).isoformat(),
        }
        if event is not None:
            message["event"] = event
        if data is not None:
            message["properties"] = dict(data)
        if account is not None:
            message["context"] = {"groupId": account}
        out.append(message)
    return out
