"""``uptake discover`` on a collector store and a JSONL export, and the report's section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import uptake
from uptake.cli import main
from uptake.collector import EventStore
from uptake.collector.discovery import to_data

from .discover_helpers import PLANTED, planted_records, wire


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("discover")
    events = wire(planted_records(11, 900))
    # rows the store reader leaves to the Python path, and a page call
    events[0]["properties"] = {"feature": "caf\\u00e9"}
    events[0]["event"] = "Feature Used"
    events[1]["properties"] = {"feature": 3}
    events[1]["event"] = "Feature Used"
    events[2] = {**events[2], "type": "page", "name": "Home"}
    events[2].pop("event", None)
    store = folder / "events.db"
    with_store = EventStore(store)
    with_store.add(events)
    with_store.close()
    jsonl = folder / "events.jsonl"
    jsonl.write_text("".join(json.dumps(e) + "\n" for e in events))
    return store, jsonl


def test_a_store_and_its_export_give_the_same_discovery(sources: tuple[Path, Path]) -> None:
    store, jsonl = sources
    from_store = to_data(uptake.discover(store, min_users=10), variants=True)
    from_export = to_data(uptake.discover(jsonl, min_users=10), variants=True)
    assert from_store == from_export
    assert from_store["candidates"][0]["name"] == PLANTED


def test_the_command_prints_the_table_and_writes_json(
    sources: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = sources
    out = tmp_path / "found.json"
    assert main(["discover", str(store), "--min-users", "10", "--json", str(out), "--all"]) == 0
    text = capsys.readouterr().out
    assert "Report Created at least 3 times within 7 days" in text
    assert "uptake.Milestone('report_created_3x_7d'" in text
    assert "correlations, not causes" in text
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and data["cohort"] == 900
    assert data["outcome"] == {
        "kind": "retention",
        "goal": None,
        "window": [28, 35],
        "text": "retained = active on at least one day in days 28-35 after first seen",
    }
    top = data["candidates"][0]
    assert top["strong"] and top["lift_ci95"][0] < top["lift"] < top["lift_ci95"][1]
    assert top["settings_entry"].startswith("[[milestones]]")
    assert len(data["variants"]) >= len(data["candidates"])


def test_json_to_standard_output_keeps_the_table_apart(
    sources: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, jsonl = sources
    code = main(["discover", str(jsonl), "--goal", "Template Browsed", "--json", "-"])
    assert code == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["outcome"]["goal"] == "Template Browsed" and data["outcome"]["window"] == [0, 35]
    assert "converted = did 'Template Browsed'" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window", "28-35"], "--window must look like START:END"),
        (["--window", "35:28"], "window must end"),
        (["--days", "7,x"], "--days must be whole days"),
        (["--unit", "account", "--min-reach", "2"], "min_reach"),
    ],
)
def test_a_bad_flag_is_one_line_and_status_2(
    sources: tuple[Path, Path], argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = sources
    assert main(["discover", str(store), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_report_shows_what_retained_users_did_first(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = sources
    page = tmp_path / "report.html"
    assert main(["report", str(store), "--out", str(page)]) == 0
    html = page.read_text()
    assert "What retained users did first" in html
    assert "Report Created at least 3 times within 7 days" in html
    assert "correlations, not causes" in html
    assert main(["report", str(store), "--out", str(page), "--no-discover"]) == 0
    assert "What retained users did first" not in page.read_text()
