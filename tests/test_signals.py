"""SIGTERM: what is queued is delivered first, and the process stops the way it would have.

The handler's choices are tested in this process (calling it directly, never raising the
signal here); the deaths by SIGTERM in real child processes sending to a loopback
collector.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from uptake import _signals
from uptake.testing import LoopbackCollector

from .integrations_helpers import wait_until

KEY = "wk_signals"


@pytest.fixture
def fresh() -> Iterator[None]:
    """Let this process install again; put SIGTERM's handler back afterwards."""
    saved_handler = signal.getsignal(signal.SIGTERM)
    saved_pid = _signals._installed_pid
    _signals._installed_pid = None
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved_handler)
        _signals._installed_pid = saved_pid


class FakeClient:
    """A client double: records its flushes; with ``block``, hangs in them until it is set."""

    def __init__(self, exit_timeout: float = 5.0, block: threading.Event | None = None) -> None:
        self.exit_timeout = exit_timeout
        self.flushes: list[float] = []
        self.block = block

    def flush(self, timeout: float = 5.0) -> bool:
        self.flushes.append(timeout)
        if self.block is not None:
            self.block.wait()  # ignores its timeout: a flush stuck on a lock
        return True


def test_a_default_sigterm_gets_the_flushing_handler_once_per_process(fresh: None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert _signals.install_sigterm_flush(list)
    handler = signal.getsignal(signal.SIGTERM)
    assert isinstance(handler, _signals.SigtermFlush) and handler.previous is signal.SIG_DFL
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the host takes it back: it stays so
    assert not _signals.install_sigterm_flush(list)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_ignored_sigterm_stays_ignored(fresh: None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    assert not _signals.install_sigterm_flush(list)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_nothing_is_installed_from_another_thread(fresh: None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(_signals.install_sigterm_flush(list)))
    thread.start()
    thread.join()
    assert results == [False] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert _signals.install_sigterm_flush(list)  # the main thread still can


def test_a_host_handler_is_chained_after_the_flush(fresh: None) -> None:
    client = FakeClient(exit_timeout=2.0)
    seen: list[tuple[int, list[float]]] = []

    def host(signum: int, frame: Any) -> None:
        seen.append((signum, list(client.flushes)))

    signal.signal(signal.SIGTERM, host)
    assert _signals.install_sigterm_flush(lambda: [client])
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    handler(signal.SIGTERM, None)
    assert len(seen) == 1 and seen[0][0] == signal.SIGTERM
    [timeout] = seen[0][1]  # flushed once, before the host's handler ran
    assert 0 < timeout <= 2.0


def test_a_stuck_flush_is_waited_for_until_the_deadline_only() -> None:
    block = threading.Event()
    stuck = FakeClient(exit_timeout=0.2, block=block)
    handler = _signals.SigtermFlush(lambda: [stuck], lambda signum, frame: None)
    started = time.monotonic()
    try:
        assert not handler.flush()
    finally:
        block.set()
    assert time.monotonic() - started < 0.2 + _signals._SLACK_S + 1.0


def test_a_failing_client_list_does_not_break_the_shutdown() -> None:
    def broken() -> list[FakeClient]:
        raise RuntimeError("boom")

    calls: list[int] = []
    handler = _signals.SigtermFlush(broken, lambda signum, frame: calls.append(signum))
    handler(signal.SIGTERM, None)
    assert calls == [signal.SIGTERM]


# ---------------------------------------------------------------------- real processes


def run_script(code: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 (closed with the process below)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=out, stderr=out
    )
    out.close()
    return proc


def wait_ready(proc: subprocess.Popen[bytes], log: Path, word: str = "ready") -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {log.read_text()}")
        return word in log.read_text()

    wait_until(ready, 30, f"{word!r} from the child")


def used(collector: LoopbackCollector) -> list[dict[str, Any]]:
    return [e for e in collector.events if e.get("event") == "Feature Used"]


def child_env(url: str) -> dict[str, str]:
    return {**os.environ, "UPTAKE_ENDPOINT": url, "UPTAKE_WRITE_KEY": KEY}


TRACK_THEN_WAIT = """
    import signal, sys, time
    import uptake
    {before}
    client = uptake.Client(flush_interval=60, flush_at=10_000)
    for i in range(300):
        client.track(f"u{{i % 7}}", "Feature Used", {{"i": i}})
    print("ready", flush=True)
    time.sleep(60)
    print("not stopped", flush=True)
"""


def test_a_plain_script_killed_by_sigterm_delivers_its_queue_and_dies_by_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "child.log"
    with LoopbackCollector(write_key=KEY) as collector:
        proc = run_script(TRACK_THEN_WAIT.format(before=""), child_env(collector.url), log)
        wait_ready(proc, log)
        assert collector.events == []  # queued, not sent: the interval is a minute
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == -signal.SIGTERM, log.read_text()
        assert sorted(e["properties"]["i"] for e in used(collector)) == list(range(300))
    assert "not stopped" not in log.read_text()


def test_a_host_handler_runs_after_the_flush_and_keeps_its_exit_status(tmp_path: Path) -> None:
    before = """
    def host(signum, frame):
        print(f"host: queued={client.stats.queued}", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, host)
    """
    log = tmp_path / "child.log"
    with LoopbackCollector(write_key=KEY) as collector:
        code = TRACK_THEN_WAIT.format(before=textwrap.dedent(before).replace("\n", "\n    "))
        proc = run_script(code, child_env(collector.url), log)
        wait_ready(proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 3, log.read_text()
        assert len(used(collector)) == 300
    assert "host: queued=0" in log.read_text()


def test_an_ignored_sigterm_is_left_ignored_by_a_client(tmp_path: Path) -> None:
    before = "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    report = "print('ignored:', signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)"
    code = TRACK_THEN_WAIT.replace("time.sleep(60)", report)
    log = tmp_path / "child.log"
    with LoopbackCollector(write_key=KEY) as collector:
        proc = run_script(code.format(before=before), child_env(collector.url), log)
        assert proc.wait(30) == 0, log.read_text()
    assert "ignored: True" in log.read_text()


def test_a_second_sigterm_during_a_stuck_flush_ends_the_process_at_once(tmp_path: Path) -> None:
    code = """
    import threading, time
    from uptake import _signals

    class Stuck:
        exit_timeout = 60.0
        def flush(self, timeout=5.0):
            print("flushing", flush=True)
            threading.Event().wait(timeout)
            return False

    assert _signals.install_sigterm_flush(lambda: [Stuck()])
    print("ready", flush=True)
    time.sleep(60)
    """
    log = tmp_path / "child.log"
    proc = run_script(code, dict(os.environ), log)
    wait_ready(proc, log)
    proc.send_signal(signal.SIGTERM)
    wait_ready(proc, log, "flushing")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == -signal.SIGTERM, log.read_text()
