"""gevent and eventlet: monkey-patched processes deliver everything to a real collector.

Each case runs in its own process (monkey-patching is for a whole process): ten greenlets,
each inside its own ``client.context()``, track 100 events while yielding to each other;
then the process ends normally (the interpreter-exit flush delivers), or, for gevent, is
stopped by SIGTERM (the SIGTERM flush delivers): sent by the test once the process idles,
or raised inside the first batch's delivery, so that the handler interrupts the delivery
greenlet itself (waiting there once stalled the flush until its deadline, and the process
died with nothing delivered). The four processes run at once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from uptake.testing import LoopbackCollector

SCRIPT = """
import sys
green, ending = sys.argv[2], sys.argv[3]
if green == "gevent":
    from gevent import monkey
    monkey.patch_all()
    import gevent
    spawn, sleep = gevent.spawn, gevent.sleep
    def join_all(greenlets):
        gevent.joinall(greenlets)
else:
    import warnings
    warnings.simplefilter("ignore")  # eventlet announces its own deprecation
    import eventlet
    eventlet.monkey_patch()
    spawn, sleep = eventlet.spawn, eventlet.sleep
    def join_all(greenlets):
        for g in greenlets:
            g.wait()

import os
import signal
import time
import uptake

if ending == "sigterm-in-delivery":  # the signal lands while the delivery greenlet runs
    from uptake.transport import HttpTransport

    send = HttpTransport.send
    def send_after_signal(self, messages):
        if not getattr(send_after_signal, "done", False):
            send_after_signal.done = True
            os.kill(os.getpid(), signal.SIGTERM)
        return send(self, messages)
    HttpTransport.send = send_after_signal

client = uptake.Client(
    write_key="wk", endpoint=sys.argv[1], flush_at=50, flush_interval=60, exit_timeout=10
)

def work(n):
    with client.context(user_id=f"u{n}", properties={"greenlet": n}):
        for i in range(100):
            client.track("Green", properties={"i": i})
            if i % 10 == 0:
                sleep(0)  # let the other greenlets and the delivery greenlet run

join_all([spawn(work, n) for n in range(10)])
print("tracked", flush=True)
if ending.startswith("sigterm"):
    time.sleep(60)  # a server idling until it is told to stop
"""

CASES = [
    ("gevent", "exit"),
    ("gevent", "sigterm"),
    ("gevent", "sigterm-in-delivery"),
    ("eventlet", "exit"),
]


@dataclass
class Outcome:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Outcome]]:
    script = tmp_path_factory.mktemp("green") / "green.py"
    script.write_text(SCRIPT)
    collectors = {case: LoopbackCollector(write_key="wk") for case in CASES}
    procs = {}
    try:
        for case, collector in collectors.items():
            collector.start()
            procs[case] = subprocess.Popen(
                [sys.executable, str(script), collector.url, *case],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        results = {}
        for case, proc in procs.items():
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if case[1] == "sigterm" and line == "tracked":
                proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
            results[case] = Outcome(proc.returncode, collectors[case].events, stderr)
        yield results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for collector in collectors.values():
            collector.stop()


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_every_event_is_delivered(
    outcomes: dict[tuple[str, str], Outcome], case: tuple[str, str]
) -> None:
    outcome = outcomes[case]
    expected_status = -signal.SIGTERM if case[1].startswith("sigterm") else 0
    assert outcome.returncode == expected_status, outcome.stderr
    green = [e for e in outcome.events if e.get("event") == "Green"]
    assert len(green) == 1000, outcome.stderr
    # each greenlet's context stayed its own while they interleaved
    assert all(e["userId"] == f"u{e['properties']['greenlet']}" for e in green)
    assert len({e["messageId"] for e in outcome.events}) == len(outcome.events)
    assert "Traceback" not in outcome.stderr


BUSY = """
import signal
import sys
from gevent import monkey
monkey.patch_all()
import uptake

mode = sys.argv[2]
if mode == "host-handler":  # installed before the client: uptake calls it after
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))
if mode == "in-delivery":  # the signal lands in uptake's delivery greenlet: handed over
    import os
    from uptake.transport import HttpTransport

    send = HttpTransport.send

    def send_after_signal(self, messages):
        os.kill(os.getpid(), signal.SIGTERM)
        return send(self, messages)

    HttpTransport.send = send_after_signal
client = uptake.Client(write_key="wk", endpoint=sys.argv[1], exit_timeout=1)
client.track("u1", "Busy")
if mode == "in-delivery":
    client.flush()  # the batch goes; the flush greenlet handed the signal never runs
print("busy", flush=True)
while True:  # a greenlet that never yields
    pass
"""


@pytest.mark.parametrize(
    ("handler", "status"),
    [("default", -signal.SIGTERM), ("host-handler", 3), ("in-delivery", -signal.SIGTERM)],
)
def test_sigterm_reaches_a_greenlet_that_never_yields(
    tmp_path: Any, handler: str, status: int
) -> None:
    script = tmp_path / "busy.py"
    script.write_text(BUSY)
    with LoopbackCollector(write_key="wk") as collector:
        proc = subprocess.Popen(
            [sys.executable, str(script), collector.url, handler],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "busy"
            if handler != "in-delivery":  # (there the process raised it itself)
                proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        events = collector.events
    # The handler waited in the spinning greenlet while the delivery greenlet flushed, then
    # did what the signal did before: died by it, or ran the host's handler there. Handed
    # over from the delivery greenlet, the watchdog thread ended the process after the
    # deadline, since the greenlet that had it never ran.
    assert proc.returncode == status, stderr
    assert [e["event"] for e in events if e["type"] == "track"][-1] == "Busy", stderr
    assert "Traceback" not in stderr
