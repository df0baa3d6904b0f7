"""SqliteBuffer: the durable outbox survives kills, outages and sharing between processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import uptake
from uptake.testing import LoopbackCollector

from .conftest import WRITE_KEY, track_names

MakeClient = Callable[..., uptake.Client]


def rows(path: Path) -> list[dict[str, Any]]:
    """The events stored in an outbox file, read with a separate connection."""
    with sqlite3.connect(path) as conn:
        return [json.loads(body) for (body,) in conn.execute("SELECT body FROM outbox ORDER BY id")]


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll a condition another process makes true (no in-process event exists for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_events_stay_on_disk_until_acknowledged(
    tmp_path: Path, collector: LoopbackCollector, make_client: MakeClient
) -> None:
    buffer = uptake.SqliteBuffer(tmp_path / "outbox.db")
    client = make_client(buffer=buffer, flush_interval=60)
    collector.hang()
    for i in range(20):
        client.track("u1", "Stored", {"i": i})
    buffer.mark()  # commits what the writer thread has not committed yet
    stored = rows(tmp_path / "outbox.db")
    assert [e["properties"]["i"] for e in stored if e["event"] == "Stored"] == list(range(20))
    collector.release()
    assert client.flush(timeout=10)
    assert rows(tmp_path / "outbox.db") == []
    assert track_names(collector.events).count("Stored") == 20


def test_commit_interval_zero_commits_inside_track(tmp_path: Path) -> None:
    path = tmp_path / "sync.db"
    client = uptake.Client(
        write_key="k",
        endpoint="http://127.0.0.1:9",
        buffer=uptake.SqliteBuffer(path, commit_interval=0),
    )
    client.track("u1", "Now")
    assert [e["event"] for e in rows(path)] == ["Session Started", "Now"]
    client.shutdown(timeout=0.5)


def test_outage_loses_nothing_and_drains_in_order(tmp_path: Path, make_client: MakeClient) -> None:
    collector = LoopbackCollector(write_key=WRITE_KEY)
    collector.start()
    url = collector.url
    collector.stop()  # down
    try:
        client = make_client(
            endpoint=url, buffer=uptake.SqliteBuffer(tmp_path / "o.db"), retry_timeout=0.5
        )
        for i in range(3_000):
            client.track("u1", "During Outage", {"i": i})
        assert client.flush(timeout=1.5) is False
        stats = client.stats
        assert stats.failed == 0 and stats.dropped == 0  # kept, not given up
        assert stats.queued + stats.in_flight == 3_001
        collector.start()
        assert client.flush(timeout=30)
        got = [e["properties"]["i"] for e in collector.events if e["event"] == "During Outage"]
        assert got == list(range(3_000))
        assert collector.duplicates == 0
        assert client.stats.delivered == 3_001
    finally:
        collector.stop()


def test_full_outbox_drops_the_oldest_and_counts_them(
    tmp_path: Path, collector: LoopbackCollector, make_client: MakeClient
) -> None:
    errors: list[uptake.DeliveryError] = []
    buffer = uptake.SqliteBuffer(tmp_path / "small.db", max_events=100)
    # Nothing is sent while the outbox fills: no wake-up below 10,000, no interval for 60 s.
    client = make_client(buffer=buffer, on_error=errors.append, flush_interval=60, flush_at=10_000)
    for i in range(300):
        client.track("u1", "E", {"i": i})
        if i % 50 == 49:
            buffer.mark()  # commit in steps, as the writer would under a steady load
    assert client.flush(timeout=10) is False  # events tracked before it were dropped
    stats = client.stats
    assert stats.dropped_by_reason["outbox_full"] >= 200
    arrived = [e["properties"]["i"] for e in collector.events if e.get("event") == "E"]
    assert arrived == sorted(arrived) and arrived[-1] == 299 and len(arrived) <= 101
    assert stats.tracked == stats.delivered + stats.dropped + stats.failed
    client.shutdown(timeout=5)
    assert any("outbox full" in e.reason and e.count >= 200 for e in errors)


KILL_SCRIPT = """
import sys, uptake
client = uptake.Client(
    write_key=sys.argv[3], endpoint=sys.argv[1], buffer=uptake.SqliteBuffer(sys.argv[2]),
    flush_at=10, timeout=60,
)
for i in range(1000):
    client.track(f"user-{i % 20}", "Before Kill", {"i": i})
print("tracked", flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_sigkill_loses_nothing_and_a_new_process_delivers_once(
    tmp_path: Path, collector: LoopbackCollector
) -> None:
    path = tmp_path / "kill.db"
    collector.hang()  # the doomed process claims a batch and never hears back
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, collector.url, str(path), WRITE_KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "tracked"
        # Past the durability window: every event is in the file (one batch is leased).
        assert wait_until(lambda: path.exists() and len(rows(path)) == 1020)
        assert wait_until(lambda: collector.wait_for_requests(1, timeout=0.1))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    before = {e["messageId"]: e["timestamp"] for e in rows(path)}
    collector.reset()  # up again, and forget the unanswered request

    client = uptake.Client(
        write_key=WRITE_KEY, endpoint=collector.url, buffer=uptake.SqliteBuffer(path)
    )
    assert client.flush(timeout=30)
    client.shutdown(timeout=5)
    after = {e["messageId"]: e["timestamp"] for e in collector.events}
    assert after == before  # every event, its original id and timestamp
    assert collector.duplicates == 0
    assert track_names(collector.events).count("Before Kill") == 1000
    assert rows(path) == []


WORKER_SCRIPT = """
import sys, uptake
client = uptake.Client(
    write_key=sys.argv[3], endpoint=sys.argv[1], buffer=uptake.SqliteBuffer(sys.argv[2]),
    flush_at=50,
)
for i in range(500):
    client.track(f"{sys.argv[4]}-user", "Shared", {"i": i, "worker": sys.argv[4]})
sys.exit(0 if client.shutdown(timeout=30) else 1)
"""


def test_processes_sharing_one_file_send_each_event_once(
    tmp_path: Path, collector: LoopbackCollector
) -> None:
    path = tmp_path / "shared.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, collector.url, str(path), WRITE_KEY, f"w{n}"]
        )
        for n in range(3)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    shared = [e for e in collector.events if e.get("event") == "Shared"]
    assert len(shared) == 1_500
    assert collector.duplicates == 0
    for n in range(3):
        mine = [e["properties"]["i"] for e in shared if e["properties"]["worker"] == f"w{n}"]
        assert sorted(mine) == list(range(500))


def test_corrupt_file_is_moved_aside(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    collector: LoopbackCollector,
    make_client: MakeClient,
) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a database, it is a shopping list " * 100)
    with caplog.at_level(logging.ERROR, logger="uptake"):
        buffer = uptake.SqliteBuffer(path)
    assert "moved aside" in caplog.text
    assert len(list(tmp_path.glob("broken.db.corrupt-*"))) == 1
    client = make_client(buffer=buffer)
    client.track("u1", "After Recovery")
    assert client.flush(timeout=10)
    assert "After Recovery" in track_names(collector.events)


@pytest.mark.parametrize("where", ["missing-dir/outbox.db", "."])
def test_unusable_path_is_a_configuration_error(tmp_path: Path, where: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match="cannot open the outbox"):
        uptake.SqliteBuffer(tmp_path / where)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"commit_interval": -1}, "commit_interval"),
        ({"max_events": 0}, "max_events"),
        ({"max_bytes": 1.5}, "max_bytes"),
        ({"lease": 0}, "lease"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        uptake.SqliteBuffer(tmp_path / "x.db", **options)


def test_failing_writes_fall_back_to_memory_and_recover(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    collector: LoopbackCollector,
    make_client: MakeClient,
) -> None:
    buffer = uptake.SqliteBuffer(tmp_path / "full.db")
    client = make_client(buffer=buffer)
    with buffer._lock:  # simulate a full disk: the file may not grow by a single page
        conn = buffer._connection()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
    with caplog.at_level(logging.ERROR, logger="uptake"):
        for i in range(2_000):
            client.track("u1", "Disk Full", {"i": i, "pad": "x" * 200})
        assert client.flush(timeout=10)
    assert buffer.write_errors >= 1
    assert "writing failed" in caplog.text
    assert track_names(collector.events).count("Disk Full") == 2_000
    assert collector.duplicates == 0
    with buffer._lock:  # space again
        buffer._connection().execute("PRAGMA max_page_count = 1073741823")
    client.track("u1", "Disk Back")
    assert client.flush(timeout=10)
    assert not buffer.degraded
    assert "Disk Back" in track_names(collector.events)


FORK_SCRIPT = """
import os, sys, uptake
client = uptake.Client(
    write_key=sys.argv[3], endpoint=sys.argv[1], buffer=uptake.SqliteBuffer(sys.argv[2]),
    flush_interval=60,
)
client.track("parent", "Before Fork")
pid = os.fork()
if pid == 0:
    client.track("child", "In Child")
    os._exit(0 if client.shutdown(timeout=10) else 3)
_, status = os.waitpid(pid, 0)
client.track("parent", "After Fork")
ok = client.shutdown(timeout=10)
sys.exit(os.waitstatus_to_exitcode(status) * 10 + (0 if ok else 1))
"""


def test_fork_with_an_outbox_sends_each_event_once(
    tmp_path: Path, collector: LoopbackCollector
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(FORK_SCRIPT),
            collector.url,
            str(tmp_path / "f.db"),
            WRITE_KEY,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = track_names(collector.events)
    assert [names.count(n) for n in ("Before Fork", "In Child", "After Fork")] == [1, 1, 1]
    assert collector.duplicates == 0


def test_outbox_is_exported_and_repr_is_safe(tmp_path: Path) -> None:
    buffer = uptake.SqliteBuffer(tmp_path / "r.db")
    assert "SqliteBuffer" in uptake.__all__
    assert repr(buffer) == f"SqliteBuffer({str(tmp_path / 'r.db')!r}, commit_interval=0.05)"
    assert os.path.exists(tmp_path / "r.db")


def test_a_full_outbox_with_synchronous_commits_does_not_deadlock(
    tmp_path: Path, collector: LoopbackCollector, make_client: MakeClient
) -> None:
    buffer = uptake.SqliteBuffer(tmp_path / "tiny.db", commit_interval=0, max_events=2)
    client = make_client(buffer=buffer, flush_interval=60, flush_at=10_000)
    done = threading.Event()

    def track_some() -> None:
        for i in range(5):
            client.track("u1", "E", {"i": i})  # each commit past 2 rows drops the oldest
        done.set()

    threading.Thread(target=track_some, daemon=True).start()
    assert done.wait(timeout=10), "track() hung"
    assert client.stats.dropped_by_reason["outbox_full"] == 4


def test_settling_never_touches_rows_another_process_claimed(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first = uptake.SqliteBuffer(path, lease=1e-6)  # its leases end at once
    second = uptake.SqliteBuffer(path)
    for i in range(3):
        assert first.put(f'{{"i":{i}}}'.encode())
    stale = first.take(500_000)
    assert stale is not None and len(stale) == 3
    claimed = second.take(500_000)  # the lease ran out: the second process claims them
    assert claimed is not None and list(claimed.ids) == list(stale.ids)
    first.settle(stale, keep=[(0, 3)])  # the first process gives up on them...
    first.settle(stale)  # ...or thinks it delivered them: neither may touch the rows now
    with sqlite3.connect(path) as conn:
        owners = {owner for (owner,) in conn.execute("SELECT lease_owner FROM outbox")}
    assert owners == {second._owner}
    second.settle(claimed)
    assert rows(path) == []
    assert len(second) == 0


def test_a_row_that_is_not_utf8_does_not_block_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    buffer = uptake.SqliteBuffer(path)
    with sqlite3.connect(path) as conn:  # a row some other writer left behind
        conn.execute("INSERT INTO outbox (body, size) VALUES (?, 3)", (b"\xff\xfe\x00",))
        conn.execute("UPDATE outbox_totals SET events = events + 1, bytes = bytes + 3")
    assert buffer.put(b'{"ok":true}')
    batch = buffer.take(500_000)
    assert batch is not None and list(batch.messages) == [b"\xff\xfe\x00", b'{"ok":true}']


def test_losing_the_file_later_falls_back_to_memory_without_raising(
    tmp_path: Path, collector: LoopbackCollector, make_client: MakeClient
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    buffer = uptake.SqliteBuffer(folder / "o.db", commit_interval=0)
    client = make_client(buffer=buffer)
    buffer.after_fork_in_child()  # as in a forked child: the file is reopened on first use
    folder.rename(tmp_path / "gone")  # ...and by then its directory has disappeared
    client.track("u1", "Still Tracked")  # must not raise into the host
    assert buffer.degraded
    assert client.flush(timeout=10)
    assert "Still Tracked" in track_names(collector.events)


def test_a_delivered_batch_the_locked_file_could_not_delete_is_deleted_later(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    buffer = uptake.SqliteBuffer(path)
    assert buffer.put(b'{"i":0}')
    batch = buffer.take(500_000)
    assert batch is not None
    with buffer._lock:  # wait 50 ms for a lock, not 10 s
        buffer._connection().execute("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock...
    buffer.settle(batch)  # ...so the delivered rows cannot be deleted now
    other.execute("ROLLBACK")
    other.close()
    # Deleted at the next use of the file: not left leased for minutes, making every
    # flush() wait for them, then sent a second time once the lease ends.
    assert buffer.drained(batch.high)
    assert rows(path) == []
    assert len(buffer) == 0
