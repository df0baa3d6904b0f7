"""flush_on_return: every event is at the collector before the platform freezes the process.

The freeze is simulated for real: the handler's process stops itself with SIGSTOP right
after the handler returns (or raises), as a serverless platform freezes it, and the test
looks at a loopback collector while it is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import uptake
from uptake.serverless import flush_on_return
from uptake.testing import LoopbackCollector

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")

HANDLER = """
import os, signal, sys
import uptake
from uptake.serverless import flush_on_return

client = uptake.Client(
    write_key="wk", endpoint=sys.argv[1], flush_interval=60, flush_at=10_000, exit_timeout=0.1
)

@flush_on_return(client, timeout=5)
def handler(event, context):
    for i in range(event["n"]):
        client.track("u1", "Handled", {"i": i})
    if event["fail"]:
        raise RuntimeError("the handler failed")
    return "ok"

mode = sys.argv[2]
if mode == "unwrapped":
    handler = handler.__wrapped__
try:
    handler({"n": 20, "fail": mode == "raise"}, None)
except RuntimeError:
    pass
os.kill(os.getpid(), signal.SIGSTOP)  # the platform freezes the process here
"""


@pytest.fixture
def collector() -> Iterator[LoopbackCollector]:
    with LoopbackCollector(write_key="wk") as c:
        yield c


def handled_at_freeze(tmp_path: Path, collector: LoopbackCollector, mode: str) -> int:
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    proc = subprocess.Popen([sys.executable, str(script), collector.url, mode])
    try:
        _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once it is frozen
        assert os.WIFSTOPPED(status), f"the handler's process ended: {status}"
        return sum(1 for e in collector.events if e.get("event") == "Handled")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.parametrize("mode", ["return", "raise"])
def test_everything_is_delivered_before_the_freeze(
    tmp_path: Path, collector: LoopbackCollector, mode: str
) -> None:
    assert handled_at_freeze(tmp_path, collector, mode) == 20


def test_without_it_the_freeze_finds_events_still_queued(
    tmp_path: Path, collector: LoopbackCollector
) -> None:
    assert handled_at_freeze(tmp_path, collector, "unwrapped") == 0


def test_context_manager_and_async_handlers(collector: LoopbackCollector) -> None:
    client = uptake.Client(write_key="wk", endpoint=collector.url, flush_interval=60)
    try:
        with flush_on_return(client, timeout=5) as same:
            assert same is client
            client.track("u1", "In A Block")
        assert "In A Block" in [e.get("event") for e in collector.events]

        @flush_on_return(client, timeout=5)
        async def handler(event: dict[str, str], context: object) -> str:
            client.track("u1", event["name"])
            return "done"

        assert asyncio.run(handler({"name": "Async Handled"}, None)) == "done"
        assert "Async Handled" in [e.get("event") for e in collector.events]
    finally:
        client.shutdown(timeout=5)


def test_the_flush_ends_with_the_invocation(
    collector: LoopbackCollector, caplog: pytest.LogCaptureFixture
) -> None:
    client = uptake.Client(write_key="wk", endpoint=collector.url, flush_interval=60, timeout=30)
    lambda_context = SimpleNamespace(get_remaining_time_in_millis=lambda: 150)

    @flush_on_return(client, timeout=30)
    def handler(event: object, context: object) -> str:
        client.track("u1", "Late")
        return "ok"

    collector.hang()  # nothing can be delivered: the flush must stop on its own
    try:
        with caplog.at_level(logging.WARNING, logger="uptake"):
            assert handler({}, lambda_context) == "ok"  # 150 ms left, 200 ms margin: no wait
        assert "not every event was delivered within 0.00 s" in caplog.text
    finally:
        collector.release()
        client.shutdown(timeout=5)


def test_arguments_are_checked() -> None:
    with pytest.raises(uptake.ConfigurationError, match="client"):
        flush_on_return(object())  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match="timeout"):
        flush_on_return(uptake.Client(send=False), timeout=0)
