"""The report as JSON and CSV: every figure, read back equal, with a schema version."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.test_report import END, dataset
from uptake.cli import main
from uptake.collector.export import (
    SCHEMA_VERSION,
    _build,
    _plain,
    from_data,
    to_data,
    to_json,
    write_csv,
)
from uptake.collector.metrics import Report, compute
from uptake.collector.report import summary
from uptake.collector.settings import ReportSettings
from uptake.collector.sources import from_events
from uptake.collector.wording import lift_interval


def full_report() -> Report:
    settings = ReportSettings(inactive=["Heartbeat"], touchpoints=["Goal"])
    events = dataset()
    # Sessions with lengths and a trait to segment by, so that every table has rows.
    for n, user in enumerate(["u1", "u2", "u3", "u4"]):
        at = f"2026-03-{10 + n:02d}T10:00:00Z"
        events.append(
            {
                "type": "identify",
                "userId": user,
                "timestamp": at,
                "traits": {"plan": "pro" if n % 2 else "free"},
            }
        )
        events.append(
            {"type": "track", "userId": user, "event": "Session Started", "timestamp": at}
        )
        ended = {"duration_s": 600 + 60 * n}
        events.append(
            {
                "type": "track",
                "userId": user,
                "event": "Session Ended",
                "timestamp": at,
                "properties": ended,
            }
        )
    # A user in the global holdout, so that the programme's table has its row.
    held = {"nudge": "tip", "global_holdout": 0.05}
    for event, properties in (("Report Created", {}), ("Nudge Held Out", held)):
        events.append(
            {
                "type": "track",
                "userId": "g1",
                "event": event,
                "timestamp": "2026-03-02T10:00:00Z",
                "properties": properties,
            }
        )
    source = from_events(events)
    report = compute(
        source,
        inactive=settings.inactive,
        engagement=settings.engagement(),
        until=END,
        segment_by="plan",
    )
    return attrs.evolve(
        report, skipped=source.skipped, skipped_by=tuple(source.skipped_by.most_common())
    )


def test_the_json_round_trips_every_figure_of_the_report() -> None:
    report = full_report()
    # Every table has rows, so the round trip covers every nested type.
    for field in attrs.fields(Report):
        value = getattr(report, field.name)
        assert value not in ((), None), field.name
    settings = ReportSettings(inactive=["Heartbeat"], touchpoints=["Goal"], path="s.toml")
    data = json.loads(to_json(report, settings))
    assert data["schema"] == "uptake.report" and data["schema_version"] == SCHEMA_VERSION
    assert set(data["report"]) == {f.name for f in attrs.fields(Report)}
    assert data["settings"]["inactive"] == ["Heartbeat"] and data["settings"]["path"] == "s.toml"
    assert from_data(data) == report
    assert data["report"]["first_day"] == report.first_day.isoformat()  # type: ignore[union-attr]
    for nudge, plain in zip(report.nudges, data["report"]["nudges"], strict=True):
        interval = lift_interval(nudge)
        assert interval is not None
        assert (plain["lift_ci_low"], plain["lift_ci_high"]) == pytest.approx(interval)
    # The summary's nudge counts are the JSON's.
    text = "\n".join(summary(report))
    for plain in data["report"]["nudges"]:
        assert f"users fired {plain['fired']:,}, shown {plain['shown']:,}, held out " in text


def test_a_document_of_another_schema_is_refused() -> None:
    data = to_data(full_report())
    with pytest.raises(ValueError, match="schema version 2; this uptake reads version 1"):
        from_data(data | {"schema_version": 2})
    with pytest.raises(ValueError, match=r"not an uptake\.report document"):
        from_data({"report": data["report"]})


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_csv_files_hold_every_table_and_figure(tmp_path: Path) -> None:
    report = full_report()
    written = write_csv(report, tmp_path / "out", ReportSettings(timezone="Europe/Paris"))
    names = sorted(Path(p).name for p in written)
    assert names == sorted(
        [
            f"{f.name}.csv"
            for f in attrs.fields(Report)
            if isinstance(getattr(report, f.name), tuple)
        ]
        + ["report.csv"]
    )
    figures = {r["figure"]: r["value"] for r in rows(tmp_path / "out" / "report.csv")}
    assert figures["users"] == str(report.users) and figures["events"] == str(report.events)
    assert figures["schema_version"] == str(SCHEMA_VERSION)
    assert figures["settings.timezone"] == "Europe/Paris"
    assert figures["settings.inactive"] == "[]"
    nudges = rows(tmp_path / "out" / "nudges.csv")
    assert [r["name"] for r in nudges] == [n.name for n in report.nudges]
    assert [int(r["held_out"]) for r in nudges] == [n.held_out for n in report.nudges]
    assert "lift_ci_low" in nudges[0]
    l7 = rows(tmp_path / "out" / "l7.csv")
    assert [(int(r["active_days"]), int(r["users"])) for r in l7] == [
        (k + 1, n) for k, n in enumerate(report.l7)
    ]
    accounts = rows(tmp_path / "out" / "accounts_engagement.csv")
    first = report.accounts_engagement[0]
    assert accounts[0]["weekly_active_users"] == " ".join(map(str, first.weekly_active_users))
    skipped = rows(tmp_path / "out" / "skipped_by.csv")
    assert sum(int(r["events"]) for r in skipped) == report.skipped > 0


def test_an_empty_report_still_writes_every_table_with_its_header(tmp_path: Path) -> None:
    report = compute(from_events([]))
    write_csv(report, tmp_path)
    with open(tmp_path / "nudges.csv", encoding="utf-8") as handle:
        assert handle.read().startswith("name,fired,held_out,shown,")
    assert from_data(json.loads(to_json(report))) == report


def test_the_report_command_writes_json_and_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in dataset(3)))
    out, data, folder = tmp_path / "r.html", tmp_path / "r.json", tmp_path / "csv"
    args = ["report", str(source), "--out", str(out), "--until", "2026-03-31"]
    assert main([*args, "--json", str(data), "--csv", str(folder)]) == 0
    printed = capsys.readouterr().out
    document: dict[str, Any] = json.loads(data.read_text(encoding="utf-8"))
    assert f"{document['report']['users']:,} active users" in printed
    assert (folder / "daily.csv").is_file() and out.is_file()
    # To standard output: the JSON alone, the summary on standard error.
    assert main([*args, "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == document
    assert "active users" in captured.err
    assert main([*args, "--json", str(tmp_path / "missing" / "r.json")]) == 2


@attrs.frozen
class Cohort:
    """A table of the kind a later report adds (retention cohorts, segments)."""

    week_start: dt.date
    retained: tuple[float | None, ...]
    by_plan: Mapping[str, int]
    last_seen: dt.date | None = None


def test_tables_a_later_report_adds_are_exported_and_read_back_unchanged() -> None:
    cohorts = (
        Cohort(dt.date(2026, 3, 2), (1.0, 0.5, None), {"team": 3, "business": 1}),
        Cohort(dt.date(2026, 3, 9), (1.0,), {}, last_seen=dt.date(2026, 3, 15)),
    )
    plain = _plain(cohorts)
    assert plain[0] == {
        "week_start": "2026-03-02",
        "retained": [1.0, 0.5, None],
        "by_plan": {"team": 3, "business": 1},
        "last_seen": None,
    }
    assert _build(tuple[Cohort, ...], json.loads(json.dumps(plain))) == cohorts


def test_the_json_holds_the_lift_by_assignment_and_how_it_was_drawn() -> None:
    data = to_data(full_report())
    assert data["schema_version"] == SCHEMA_VERSION == 1  # added fields only
    assert data["lift_sequence"]["alpha"] == 0.05
    assert data["lift_sequence"]["method"] == "normal-mixture confidence sequence"
    (nudge,) = data["report"]["nudges"]
    for key in ("treated", "control", "pending", "itt_lift", "itt_low", "itt_high", "mde"):
        assert key in nudge, key
    assert nudge["verdict"] in (
        "keep running",
        "positive",
        "negative",
        "no effect detectable at this size",
    )
    assert nudge["global_held_out"] == 1
    (programme,) = data["report"]["programme"]
    assert programme["control"] + programme["pending"] >= 1  # the global holdout's user
    # Read back from a document of an older uptake, without any of them: still a report.
    old = json.loads(to_json(full_report()))
    for key in ("treated", "control", "pending", "verdict", "itt_lift", "global_held_out"):
        del old["report"]["nudges"][0][key]
    del old["report"]["programme"]
    back = from_data(old)
    assert back.nudges[0].verdict is None and back.programme == ()
