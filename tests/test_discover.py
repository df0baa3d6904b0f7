"""Activation discovery: the planted rule comes out on top, decoys and noise do not."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import pytest

import uptake
from uptake.collector.discovery import DiscoverOptions, Discovery, html_section, lines, to_data
from uptake.collector.discovery.stats import family_z, newcombe, phi, wilson

from .discover_helpers import DAY, PLANTED, planted_records

SEEDS = (1, 2, 3)


@cache
def found(seed: int, planted: bool = True) -> Discovery:
    return uptake.discover(planted_records(seed, planted=planted))


@pytest.mark.parametrize("seed", SEEDS)
def test_the_planted_rule_comes_out_on_top(seed: int) -> None:
    d = found(seed)
    top = d.candidates[0]
    assert (top.kind, top.name, top.count, top.days) == ("event", PLANTED, 3, 7)
    assert top.score > 0 and top.lift_low > 0.3
    assert top.stability == 1.0 and top.weeks == 9
    # one row per family: the planted event appears once in the ranked table
    assert [c.name for c in d.candidates].count(PLANTED) == 1
    runner_up = d.candidates[1]
    assert runner_up.score < top.score / 2
    # the event everyone does is no candidate at k = 1 (nobody to compare with)
    assert not any(
        c.name == "Dashboard Viewed" and c.count == 1 and c.days >= 1 for c in d.variants
    )
    names = {c.name for c in d.variants} | {p.name for c in d.variants for p in c.parts}
    assert "Referral Sent" not in names  # 2% reach: under the minimum
    browsed = next(c for c in d.candidates if c.name == "Template Browsed")
    assert browsed.score < top.score / 3  # correlated with the rule, no effect of its own
    for pair in (c for c in d.candidates if c.kind == "pair"):
        assert all(pair.score > part.score for part in pair.parts)
        assert pair.score < top.score


@pytest.mark.parametrize("seed", SEEDS)
def test_no_strong_candidate_when_retention_ignores_behaviour(seed: int) -> None:
    d = found(seed, planted=False)
    assert d.cohort == 1500 and d.tested > 40
    assert d.strong == ()
    assert all(c.lift_low < 0.1 and c.lift > 0 for c in d.candidates)
    assert any(c.lift < 0 for c in d.variants)  # measured, not ranked
    assert "no strong candidate" in "\n".join(lines(d))


def _reference(
    records: list[tuple[float, str, str | None, str, str | None, object]],
    event: str,
    k: int,
    days: int,
) -> tuple[int, int, int, int]:
    """The 2 x 2 table of one candidate, counted event by event in plain Python."""
    first: dict[str, float] = {}
    for t, user, *_ in records:
        first[user] = min(first.get(user, math.inf), t)
    last_day = max(int(t // DAY) for t, *_ in records)
    retained: set[str] = set()
    counts: dict[str, int] = defaultdict(int)
    for t, user, _, _, name, _ in records:
        offset = int(t // DAY) - int(first[user] // DAY)
        if 28 <= offset <= 35:
            retained.add(user)
        if name == event and t - first[user] <= days * DAY:
            counts[user] += 1
    table = [0, 0, 0, 0]
    for user, t0 in first.items():
        if int(t0 // DAY) + 35 <= last_day:
            table[(0 if counts[user] >= k else 2) + (0 if user in retained else 1)] += 1
    return table[0], table[1], table[2], table[3]


def test_the_counts_agree_with_a_plain_count_of_the_events() -> None:
    records = planted_records(4, 600)
    d = uptake.discover(records, min_users=5, min_reach=0.01)
    for event, k, days in ((PLANTED, 3, 7), (PLANTED, 1, 1), ("Template Browsed", 1, 3)):
        c = next(
            c for c in d.variants if (c.kind, c.name, c.count, c.days) == ("event", event, k, days)
        )
        a, b, cc, dd = _reference(records, event, k, days)
        assert (c.did_retained, c.did - c.did_retained) == (a, b)
        assert (c.not_did_retained, c.not_did - c.not_did_retained) == (cc, dd)
        assert c.reach == pytest.approx((a + b) / (a + b + cc + dd))
        assert c.precision == pytest.approx(a / (a + b))
        assert c.recall == pytest.approx(a / (a + cc))
        assert c.lift == pytest.approx(a / (a + b) - cc / (cc + dd))
        assert c.phi == pytest.approx(phi(a, b, cc, dd))
    assert d.cohort == 600 and d.data_end == date(2026, 4, 18)


def test_the_statistics_match_published_values() -> None:
    z = family_z(1)
    assert z == pytest.approx(1.959964, abs=1e-6)
    # Newcombe (1998): Wilson 81/263 and the hybrid interval of 56/70 - 48/80, 9/10 - 3/10
    assert wilson(81, 263, z) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert newcombe(56, 70, 48, 80, z) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert newcombe(9, 10, 3, 10, z) == pytest.approx((0.1705, 0.8090), abs=1e-4)
    assert phi(10, 0, 0, 10) == 1.0 and phi(5, 5, 0, 0) is None
    assert family_z(100) > family_z(10) > z


def test_the_milestone_it_prints_is_the_rule_it_measured() -> None:
    d = found(1)
    code = to_data(d)["candidates"][0]["milestone"]
    milestone = eval(code, {"uptake": uptake, "timedelta": timedelta})
    assert milestone == uptake.Milestone(
        "report_created_3x_7d", counts={PLANTED: 3}, within=timedelta(days=7)
    )
    text = "\n".join(lines(d))
    assert "[[milestones]]" in text and 'counts = { "Report Created" = 3 }' in text
    assert "correlations, not causes" in text and "holdout" in text


def test_accounts_are_a_unit_of_their_own() -> None:
    d = uptake.discover(planted_records(5, 800, accounts=200), unit="account", min_users=10)
    assert d.cohort == 200
    assert all(c.did + c.not_did == 200 for c in d.variants)
    code = next(c for c in d.candidates if c.kind == "event")
    assert 'scope="account"' in to_data(d)["candidates"][d.candidates.index(code)]["milestone"]


def test_a_goal_event_is_the_outcome_and_no_candidate() -> None:
    records = planted_records(6, 800)
    d = uptake.discover(records, goal="Template Browsed", min_users=10)
    assert d.options.outcome_window == (0, 35)
    browsed = {r[1] for r in records if r[4] == "Template Browsed"}
    assert d.outcome == len(browsed) and d.cohort == 800
    assert all(c.name != "Template Browsed" for c in d.variants)
    # the planted makers browse templates: the rule predicts the goal
    assert d.candidates[0].name == PLANTED
    # the window starts before the early windows end: a goal before a behaviour leaks
    assert d.options.goal_warning is not None and "starts on day 0" in d.options.goal_warning
    assert to_data(d)["goal_warning"] == d.options.goal_warning
    assert any(line.startswith("warning: the goal window starts") for line in lines(d))


def test_a_goal_window_after_the_early_windows_leaves_out_who_reached_it_before() -> None:
    records = planted_records(6, 800)
    d = uptake.discover(records, goal=PLANTED, window=(7, 35), days=(1, 3, 7), min_users=10)
    assert d.options.goal_warning is None and to_data(d)["goal_warning"] is None
    first: dict[str, int] = {}
    goal_days: dict[str, list[int]] = defaultdict(list)
    for t, user, _, _, event, _ in records:
        first[user] = min(first.get(user, 10**9), int(t // DAY))
        if event == PLANTED:
            goal_days[user].append(int(t // DAY))
    cohort = [u for u in first if u != "late-user"]
    at_stake = [u for u in cohort if all(day >= first[u] + 7 for day in goal_days[u])]
    converted = [u for u in at_stake if any(day <= first[u] + 35 for day in goal_days[u])]
    assert d.cohort == len(at_stake) < 800 and d.outcome == len(converted) > 0


def test_only_subjects_observed_for_the_whole_window_are_the_cohort() -> None:
    records = planted_records(7, 400)
    whole = uptake.discover(records, min_users=5)
    assert whole.cohort == 400  # not "late-user", first seen on the last day
    early = uptake.discover(records, min_users=5, until=date(2026, 3, 1))
    firsts: dict[str, float] = {}
    for t, user, *_ in records:
        firsts[user] = min(firsts.get(user, math.inf), t)
    cutoff = (date(2026, 3, 1) - date(1970, 1, 1)).days - 35
    assert early.cohort == sum(1 for t in firsts.values() if t // DAY <= cutoff) < 400
    assert early.last_signup is not None and early.last_signup <= date(2026, 1, 25)
    short = uptake.discover(records, until=date(2026, 1, 20))
    assert short.cohort == 0 and short.candidates == ()
    assert "nothing to discover yet" in "\n".join(lines(short))
    assert html_section(short) == ""


def test_chdb_finds_the_same() -> None:
    pytest.importorskip("chdb")
    records = planted_records(8, 500)
    duck = to_data(uptake.discover(records, min_users=10), variants=True)
    click = to_data(uptake.discover(records, min_users=10, engine="chdb"), variants=True)
    assert duck.pop("engine") == "duckdb" and click.pop("engine") == "chdb"
    assert duck == click


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unit": "team"}, "unit must be"),
        ({"window": (35, 28)}, "window must end"),
        ({"days": []}, "days must be"),
        ({"days": [0]}, "each of days"),
        ({"min_reach": 1.5}, "min_reach"),
        ({"goal": ""}, "goal must be"),
        ({"max_count": 0}, "max_count"),
    ],
)
def test_bad_options_fail_before_reading(options: dict[str, object], message: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        DiscoverOptions(**options)  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match=message):
        uptake.discover("no-such-file.db", **options)  # type: ignore[arg-type]


def test_importing_uptake_leaves_the_engine_unimported() -> None:
    import subprocess
    import sys

    code = (
        "import sys, uptake; assert 'discover' in uptake.__all__; "
        "assert 'duckdb' not in sys.modules and 'uptake.collector' not in sys.modules; "
        "f = uptake.discover; assert 'duckdb' not in sys.modules; print(f.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "discover"


def test_declared_milestones_are_measured_with_the_candidates(tmp_path: Path) -> None:
    settings = tmp_path / "events.toml"
    settings.write_text(
        '[[milestones]]\nname = "reports"\ncounts = { "Report Created" = 3 }\nwithin_days = 7\n\n'
        '[[milestones]]\nname = "browsed"\nall_of = ["Template Browsed", "Report Created"]\n'
        "within_days = 5\n\n"
        '[[milestones]]\nname = "ever"\nall_of = ["Report Created"]\n\n'
        '[[milestones]]\nname = "teams"\nfeatures = 1\nscope = "account"\n'
    )
    records = planted_records(1)
    d = uptake.discover(records, settings=settings)
    assert 5 in d.options.days
    reports, browsed = d.declared
    same = next(c for c in d.variants if (c.name, c.count, c.days) == (PLANTED, 3, 7))
    assert (reports.name, reports.did, reports.did_retained) == (
        "reports",
        same.did,
        same.did_retained,
    )
    assert reports.score == same.score and browsed.days == 5
    first: dict[str, float] = {}
    for t, user, *_ in records:
        first[user] = min(first.get(user, math.inf), t)
    early: dict[str, set[str]] = defaultdict(set)
    for t, user, _, _, name, _ in records:
        if name is not None and t - first[user] <= 5 * DAY:
            early[user].add(name)
    both = {"Template Browsed", PLANTED}
    assert browsed.did == sum(1 for u in first if u != "late-user" and both <= early[u])
    assert dict(d.not_measured) == {
        "ever": "no within: nothing ties it to the first days",
        "teams": "its scope is account; this run's unit is user",
    }
    data = to_data(d)
    assert [c["name"] for c in data["declared"]] == ["reports", "browsed"]
    assert "declared milestone reports (within 7 days)" in "\n".join(lines(d))


@pytest.mark.parametrize("engine", ["duckdb", "chdb"])
def test_the_reports_hook_finds_the_same_on_the_table_it_loaded(engine: str) -> None:
    # `uptake report` runs discovery on the table the report loaded (compute's on_loaded)
    # instead of reading the source again; the result must be the same, and the report's
    # tables ("ev" a view or a table) are replaced without a clash.
    if engine == "chdb":
        pytest.importorskip("chdb")
    from uptake.collector.discovery import after_report
    from uptake.collector.metrics import compute
    from uptake.collector.settings import ReportSettings

    records = planted_records(8, 500)
    into: list[Discovery] = []
    report = compute(records, engine=engine, on_loaded=after_report(ReportSettings(), None, into))
    assert report.users > 500 and report.last_day is not None  # (and a late user)
    (hooked,) = into
    alone = uptake.discover(records, engine=engine)
    assert hooked.cohort > 0 and to_data(hooked, variants=True) == to_data(alone, variants=True)
    # the plain-Python engine has no table: the hook is never called
    compute(records, engine="python", on_loaded=after_report(ReportSettings(), None, into))
    assert len(into) == 1
