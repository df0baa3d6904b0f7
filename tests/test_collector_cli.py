"""The ``uptake`` command's user-facing edges: clear errors instead of tracebacks, write keys
kept out of the command line, ``--version``, help, a closed pipe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.collector_helpers import serve
from uptake import __version__
from uptake.cli import main
from uptake.collector.store import EventStore

Capture = pytest.CaptureFixture[str]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uptake.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_version(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"uptake {__version__}"


def test_the_top_level_help_is_plain_text() -> None:
    result = run("--help")
    assert result.returncode == 0
    for markup in ("``", ":meth:", ":class:", ":data:", "~uptake"):
        assert markup not in result.stdout
    for command in ("replay", "serve", "report", "demo"):
        assert f"uptake {command}" in result.stdout


@pytest.mark.parametrize(
    ("command", "module"),
    [("serve", "uvicorn"), ("report", "plotly"), ("demo", "plotly"), ("demo", "uvicorn")],
)
def test_a_missing_extra_is_said_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: Capture, tmp_path: Path, command: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    monkeypatch.setenv("UPTAKE_WRITE_KEY", "wk")
    assert main([command, "--db" if command != "report" else "--out", str(tmp_path / "x")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"uptake: {command} needs the collector extra" in err


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--db", "{missing}/events.db"],
        ["report", "{store}", "--out", "{missing}/report.html"],
        ["demo", "--out", "{missing}/report.html", "--quiet"],
        ["demo", "--db", "{missing}/events.db", "--quiet"],
    ],
    ids=["serve-db", "report-out", "demo-out", "demo-db"],
)
def test_a_missing_folder_is_a_clear_error_not_a_traceback(tmp_path: Path, args: list[str]) -> None:
    EventStore(tmp_path / "store.db").close()
    values = {"missing": str(tmp_path / "no" / "such"), "store": str(tmp_path / "store.db")}
    result = run(*(a.format(**values) for a in args), env={"UPTAKE_WRITE_KEY": "wk"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("uptake: cannot write")
    assert "no folder" in result.stderr
    assert not (tmp_path / "no").exists()


def test_a_busy_port_is_found_before_the_store_is_created(tmp_path: Path, capsys: Capture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        db = tmp_path / "events.db"
        code = main(
            [
                "serve",
                "--port",
                str(port),
                "--db",
                str(db),
                "--write-key-file",
                str(_keys(tmp_path)),
            ]
        )
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""  # no "listening on" line
    assert f"uptake: cannot listen on 127.0.0.1:{port}" in err
    assert not db.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--port", "70000"], "no such port"),
        (["--header-timeout", "0"], "timeouts must be positive"),
    ],
)
def test_bad_serve_options(tmp_path: Path, capsys: Capture, args: list[str], message: str) -> None:
    keys = ["--write-key-file", str(_keys(tmp_path))]
    assert main(["serve", "--db", str(tmp_path / "e.db"), *keys, *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"a text file\n", b"\x00" * 200])
def test_serve_on_a_file_that_is_not_a_store(
    tmp_path: Path, capsys: Capture, content: bytes
) -> None:
    db = tmp_path / "notes.txt"
    db.write_bytes(content)
    assert main(["serve", "--db", str(db), "--write-key-file", str(_keys(tmp_path))]) == 2
    assert "cannot use" in capsys.readouterr().err
    assert db.read_bytes() == content


def test_report_on_a_file_that_is_not_an_event_source(tmp_path: Path, capsys: Capture) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Meeting notes\n\n- ship the collector\n")
    assert main(["report", str(notes), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "notes.txt is neither a collector's event store (SQLite) nor a JSONL export" in err
    assert not (tmp_path / "r.html").exists()
    export = tmp_path / "events.jsonl"
    export.write_text(
        "\n"
        + json.dumps(
            {"type": "track", "event": "E", "userId": "u", "timestamp": "2026-06-01T09:00:00Z"}
        )
        + "\nnot json\n"
    )
    assert main(["report", str(export), "--out", str(tmp_path / "r.html")]) == 0
    assert "1 event skipped: 1 not a JSON object" in capsys.readouterr().out


def test_the_report_says_why_it_skipped_events(tmp_path: Path, capsys: Capture) -> None:
    export = tmp_path / "events.jsonl"
    lines = [
        {"type": "track", "event": "E", "userId": "u", "timestamp": "2026-06-01T09:00:00Z"},
        {"type": "track", "event": "E", "timestamp": "2026-06-01T09:00:00Z"},
        {"type": "track", "event": "E", "userId": "u", "timestamp": "1970-01-02T00:00:00Z"},
        {"type": "track", "event": "E", "userId": "u"},
    ]
    export.write_text("\n".join(json.dumps(line) for line in lines))
    assert main(["report", str(export), "--out", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "3 events skipped: " in out
    for reason in ("1 no user or anonymous id", "1 time before 1990", "1 no usable time"):
        assert reason in out
    assert "3 events skipped: " in (tmp_path / "r.html").read_text()


def test_a_closed_pipe_ends_the_report_quietly(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    store.add(
        [
            {"type": "track", "event": "E", "userId": f"u{i}", "timestamp": "2026-06-01T09:00:00Z"}
            for i in range(50)
        ]
    )
    store.close()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uptake.cli",
            "report",
            str(tmp_path / "events.db"),
            "--out",
            str(tmp_path / "r.html"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `| head` does once it has what it wants
    stderr = process.stderr.read().decode()
    assert process.wait(120) == 0
    assert stderr == ""


# -- write keys -------------------------------------------------------------------------


def _keys(folder: Path, text: str = "# the collector's keys\nwk_file_1\n\n  wk_file_2  \n") -> Path:
    path = folder / "keys.txt"
    path.write_text(text)
    return path


def _accepts(url: str, key: str) -> bool:
    body = {"batch": [{"type": "track", "event": "E", "userId": "u"}], "writeKey": key}
    return httpx.post(f"{url}/v1/batch", json=body).status_code == 200


def test_write_keys_from_the_environment_stay_out_of_ps(tmp_path: Path) -> None:
    with serve(tmp_path, env={"UPTAKE_WRITE_KEY": "wk_env_1, wk_env_2"}, key=None) as served:
        assert _accepts(served.url, "wk_env_1") and _accepts(served.url, "wk_env_2")
        assert not _accepts(served.url, "wk_env_3")
        for pid in served.pids():
            assert b"wk_env" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert "wk_env" not in served.log_text()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_write_keys_from_a_file(tmp_path: Path, how: str) -> None:
    keys = _keys(tmp_path)
    args, env = (
        (("--write-key-file", str(keys)), {})
        if how == "option"
        else ((), {"UPTAKE_WRITE_KEY_FILE": str(keys)})
    )
    with serve(tmp_path, *args, env={**env, "UPTAKE_WRITE_KEY": ""}, key=None) as served:
        assert _accepts(served.url, "wk_file_1") and _accepts(served.url, "wk_file_2")
        assert not _accepts(served.url, "# the collector's keys")
    assert "wk_file" not in served.log_text()


def test_a_key_on_the_command_line_still_works_with_a_warning(tmp_path: Path) -> None:
    with serve(
        tmp_path, "--write-key", "wk_argv", key=None, env={"UPTAKE_WRITE_KEY": ""}
    ) as served:
        assert _accepts(served.url, "wk_argv")
    assert "visible to every user of this machine" in served.log_text()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({}, "no write key"),
        ({"UPTAKE_WRITE_KEY_FILE": "{missing}"}, "cannot read write keys"),
        ({"UPTAKE_WRITE_KEY_FILE": "{empty}"}, "no write key in"),
    ],
)
def test_no_usable_write_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Capture,
    setup: dict[str, str],
    message: str,
) -> None:
    empty = _keys(tmp_path, "# nothing yet\n")
    monkeypatch.delenv("UPTAKE_WRITE_KEY", raising=False)
    monkeypatch.delenv("UPTAKE_WRITE_KEY_FILE", raising=False)
    for name, value in setup.items():
        monkeypatch.setenv(name, value.format(missing=tmp_path / "nope", empty=empty))
    assert main(["serve", "--db", str(tmp_path / "e.db")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "e.db").exists()


def test_an_empty_write_key_is_refused(tmp_path: Path, capsys: Capture) -> None:
    assert main(["serve", "--db", str(tmp_path / "e.db"), "--write-key", " "]) == 2
    assert "cannot be empty" in capsys.readouterr().err
