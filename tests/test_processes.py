"""Whole processes: delivery at interpreter exit, and fork safety."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from uptake.testing import LoopbackCollector

from .conftest import WRITE_KEY, track_names


def run(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_script_that_exits_without_flush_delivers_everything(
    collector: LoopbackCollector,
) -> None:
    result = run(
        f"""
        import sys, uptake
        client = uptake.Client(write_key={WRITE_KEY!r}, endpoint=sys.argv[1], flush_interval=60)
        for i in range(5_003):
            client.track("u1", "Exit Event", {{"i": i}})
        # no flush(), no shutdown(): the exit hook must deliver
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert track_names(collector.events).count("Exit Event") == 5_003
    assert collector.duplicates == 0


def test_a_client_the_host_dropped_still_delivers_its_queue_at_exit(
    collector: LoopbackCollector,
) -> None:
    result = run(
        f"""
        import gc, sys, uptake

        def work():  # the client is a local: nothing refers to it once work() returns
            client = uptake.Client(write_key={WRITE_KEY!r}, endpoint=sys.argv[1])
            for i in range(3_001):
                client.track(f"u{{i % 500}}", "Dropped Client", {{"i": i}})

        work()
        gc.collect()
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert track_names(collector.events).count("Dropped Client") == 3_001


def test_exit_is_bounded_when_the_collector_hangs(collector: LoopbackCollector) -> None:
    collector.hang()
    started = time.monotonic()
    result = run(
        f"""
        import sys, uptake
        client = uptake.Client(
            write_key={WRITE_KEY!r}, endpoint=sys.argv[1], exit_timeout=1.0, timeout=30
        )
        client.track("u1", "Stuck")
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15  # exit_timeout=1 s, plus interpreter start-up
    assert "1 event not delivered" in result.stderr or "2 events not delivered" in result.stderr


FORK_SCRIPT = """
import os, sys, threading, uptake

client = uptake.Client(write_key=sys.argv[2], endpoint=sys.argv[1], flush_interval=60)
client.track("parent", "Before Fork")          # queued in the parent, worker started
client._lock.acquire()                          # a lock held at fork time...
pid = os.fork()
if pid == 0:                                    # ...must not deadlock the child
    client.track("child", "In Child")
    ok = client.shutdown(timeout=10)
    os._exit(0 if ok else 3)
client._lock.release()
_, status = os.waitpid(pid, 0)
client.track("parent", "After Fork")
ok = client.shutdown(timeout=10)
sys.exit(os.waitstatus_to_exitcode(status) * 10 + (0 if ok else 1))
"""


def test_client_works_after_fork_without_double_sending(collector: LoopbackCollector) -> None:
    result = run(FORK_SCRIPT, collector.url, WRITE_KEY, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr)
    names = track_names(collector.events)
    assert names.count("Before Fork") == 1  # the parent's queue is not re-sent by the child
    assert names.count("In Child") == 1
    assert names.count("After Fork") == 1
    assert collector.duplicates == 0


def test_multiprocessing_fork_children_deliver(collector: LoopbackCollector) -> None:
    result = run(
        f"""
        import multiprocessing as mp, sys, uptake
        client = uptake.Client(write_key={WRITE_KEY!r}, endpoint=sys.argv[1])
        client.track("parent", "Parent")

        def work(n):
            for i in range(100):
                client.track(f"worker-{{n}}", "Child Work", {{"i": i}})
            return client.flush(timeout=10)

        if __name__ == "__main__":
            with mp.get_context("fork").Pool(3) as pool:
                assert all(pool.map(work, range(3)))
            assert client.flush(timeout=10)
        """,
        collector.url,
    )
    assert result.returncode == 0, result.stderr
    names = track_names(collector.events)
    assert names.count("Child Work") == 300
    assert names.count("Parent") == 1


def test_a_forked_child_forgets_the_parents_sessions() -> None:
    import uptake

    client = uptake.Client(send=False)
    client.track("parent-user", "Before Fork")
    assert len(client._sessions) == 1
    client._after_fork_in_child()  # what os.fork() runs in the child
    assert len(client._sessions) == 0  # the child will not end the parent's session


def test_callbacks_still_run_in_a_forked_child(collector: LoopbackCollector) -> None:
    # A real fork: gunicorn --preload and Celery's prefork pool register the callbacks in
    # the parent and track in the children.
    script = textwrap.dedent(
        f"""
        import os, sys
        import uptake
        client = uptake.Client(write_key="k", endpoint={collector.url!r},
                               milestones=[uptake.Milestone("went", counts={{"Go": 1}})])
        seen = []
        client.on_milestone("went")(lambda reached: seen.append(reached.user_id))
        client.on_nudge()(lambda fired: None)
        pid = os.fork()
        if pid == 0:
            client.track("child-user", "Go")
            client.flush()
            os._exit(0 if seen == ["child-user"] else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
