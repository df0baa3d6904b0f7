"""A password in a source URL never shows in what the commands print."""

from __future__ import annotations

import pytest

from uptake.cli import main
from uptake.collector.clickhouse import ClickHouseLocation, _one_line


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out + err


def test_a_missing_source_is_named_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, text = run(["report", "https://ana:S3cretPw@example.invalid/events.db"], capsys)
    assert status == 2
    assert "no such file: https://ana:***@example.invalid/events.db" in text
    assert "S3cretPw" not in text


def test_discover_refuses_a_clickhouse_source_without_showing_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, text = run(["discover", "clickhouse://ana:S3cretPw@127.0.0.1:1/db"], capsys)
    assert status == 2
    assert "uptake report" in text and "S3cretPw" not in text


def test_a_capitalised_scheme_is_a_clickhouse_source(capsys: pytest.CaptureFixture[str]) -> None:
    status, text = run(["report", "ClickHouse://ana:S3cretPw@127.0.0.1:1/db"], capsys)
    assert status == 2
    assert "ClickHouse at 127.0.0.1:1" in text  # tried as a server, not as a file
    assert "S3cretPw" not in text and "no such file" not in text


def test_a_password_with_spaces_is_masked_before_the_message_is_folded() -> None:
    secret = "two  spaces\tand a tab"
    where = ClickHouseLocation("db.example", 8123, password=secret)
    line = _one_line(RuntimeError(f"Code: 516. auth failed for {secret}"), where)
    assert "spaces" not in line and "***" in line
