"""Checked by ``mypy --strict`` in CI: the public API reads well to a type checker."""

from __future__ import annotations

import datetime as dt

import uptake
from uptake.integrations import IntegrationOptions
from uptake.testing import LoopbackCollector, MockTransport, capture_events


def on_error(error: uptake.DeliveryError) -> None:
    status: int | None = error.status
    count: int = error.count
    print(status, count, error.reason)


def redact(event: dict[str, object]) -> dict[str, object] | None:
    return event


client = uptake.Client(
    write_key="wk",
    endpoint="https://events.example",
    flush_at=100,
    flush_interval=1.0,
    max_queue_size=10_000,
    buffer=uptake.MemoryBuffer(),
    on_error=on_error,
    before_send=redact,
    send=False,
)
client.track("u1", "Report Created", {"rows": 10}, account_id="acme", timestamp=dt.datetime.now())
client.track(None, "Viewed", anonymous_id="anon-1")
client.feature_used(7, "reports")
client.identify("u1", {"plan": "pro"})
client.identify("u1", anonymous_id="anon-1")
client.alias("anon-1", "u1", timestamp=dt.datetime.now())
client.group("u1", "acme", {"seats": 40})
session_id: str = client.session_start("u1")
client.session_end("u1")
with client.session("u1") as sid:
    print(sid.upper())
delivered: bool = client.flush(timeout=5.0)
closed: bool = client.shutdown(timeout=5.0)
stats: uptake.Stats = client.stats
total: int = stats.delivered + stats.dropped + stats.failed + stats.queued
waiting: int = stats.rules_skipped - stats.rules_replayed - stats.rules_overflowed
with capture_events(client) as events:
    first: dict[str, object] = events[0]
with LoopbackCollector(write_key="wk") as collector:
    url: str = collector.url
    ok: bool = collector.wait_for_events(1, timeout=1.0)

mock = MockTransport(lambda batch: 200 if batch else None)
tested = uptake.Client(transport=mock)
sent: list[dict[str, object]] = [dict(e) for e in mock.events]
store: uptake.Store = uptake.MemoryStore()
replayed: uptake.ReplayResult = tested.replay([])
options = IntegrationOptions(skip_paths=["/health"])
# A global holdout: a read-only fraction; explain_nudges may name it.
held = uptake.Client(send=False, global_holdout=0.05)
fraction: float = held.global_holdout
statuses: list[str] = [w.status for w in held.explain_nudges("u1")]
# Nudge fatigue: budgets per channel, quiet hours as a pair of times or per channel.
tired = uptake.Client(
    send=False,
    nudges=[uptake.Nudge("digest", trigger=uptake.Inactive(dt.timedelta(days=3)), channel="email")],
    nudge_budget=uptake.NudgeBudget(3, per=dt.timedelta(days=7)),
    quiet_hours=(dt.time(21), dt.time(8)),
)
uptake.Client(
    send=False,
    nudge_budget=[uptake.NudgeBudget(1, dt.timedelta(days=1))],
    quiet_hours=[uptake.QuietHours(dt.time(22), dt.time(7), trait="tz")],
)


def check_context(client: uptake.Client) -> None:
    with client.context(user_id="u1", account_id="acme", properties={"job": "export"}) as ctx:
        client.track("Report Exported")
        client.track("Report Exported", properties={"rows": 1})
        client.track(None, "Report Exported", {"rows": 1})
        client.feature_used("reports")
        user: str | None = ctx.user_id
        assert user == "u1"
    current: uptake.Context | None = client.current_context()
    assert current is None


def activation(path: str) -> list[str]:
    found = uptake.discover(path, unit="account", goal="Plan Upgraded", window=(0, 35), days=[7])
    rate: float | None = found.rate
    return [f"{c.label}: {c.lift:+.2f} ({c.score:.3f})" for c in found.strong] + [str(rate)]


async def check_async(client: uptake.Client) -> None:
    await client.atrack("u1", "Report Created", {"rows": 10}, account_id="acme")
    await client.afeature_used("u1", "reports", timestamp=dt.datetime.now())
    await client.aidentify("u1", {"plan": "pro"}, anonymous_id="anon-1")
    with client.context(user_id="u1"):
        await client.atrack("Report Exported")


def engagement_signals(client: uptake.Client) -> list[str]:
    @client.on_engagement_change("account", change="dropped")
    def alert(change: uptake.EngagementChange) -> None:
        tier: str = change.tier
        print(change.account_id, change.previous_tier, tier, change.score)

    found = client.check_engagement(account_id="acme")
    on = uptake.Engagement(signals=True)
    return [f"{c.scope} {c.kind} {c.change} {c.timestamp:%Y-%m-%d}" for c in found] + [
        str(on.signals)
    ]
