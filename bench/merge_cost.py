"""What merging a visitor into a user costs, per store (wall time on the calling thread).

    python bench/merge_cost.py [--pairs 2000] [--rounds 3] [--redis URL]

Each pair: a visitor with six events over two days (landing, steps, pings: a milestone
reached, a nudge fired, counts and days kept) and a user with six of their own. Times
``client.alias(visitor, user)`` (the Segment message with ``send=False``, then the merge:
one read, one atomic update of both keys) and, separately, an alias of a visitor merged
already (the no-op: one read). Median of ``--rounds``. Without ``--redis`` a private
redis-server is started on a free loopback port (needs ``redis-server`` on the PATH).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uptake

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)


def client(store: uptake.Store) -> uptake.Client:
    return uptake.Client(
        send=False,
        store=store,
        nudge_rate_limit=None,
        milestones=[
            uptake.Milestone("visited", any_of=["Landing"]),
            uptake.Milestone("activated", counts={"Step": 6}),
            uptake.Milestone("habit", active_days=3, within=dt.timedelta(days=7)),
        ],
        nudges=[uptake.Nudge("tip", trigger=uptake.EventCount("Ping", 2), max_shows=2)],
    )


def prepare(c: uptake.Client, pairs: int, tag: str) -> None:
    for i in range(pairs):
        for who, kw in ((None, {"anonymous_id": f"{tag}v{i}"}), (f"{tag}u{i}", {})):
            for k, name in enumerate(("Landing", "Step", "Ping", "Ping", "Step", "Step")):
                when = T0 + dt.timedelta(hours=20 * k + (0 if who is None else 1))
                c.track(who, name, timestamp=when, **kw)  # type: ignore[arg-type]


def aliasing(c: uptake.Client, tag: str) -> Callable[[int], None]:
    at = T0 + dt.timedelta(days=5)

    def run(i: int) -> None:
        c.alias(f"{tag}v{i}", f"{tag}u{i}", timestamp=at)

    return run


def timed(run: Callable[[int], None], pairs: int) -> float:
    start = time.perf_counter()
    for i in range(pairs):
        run(i)
    return (time.perf_counter() - start) / pairs * 1e6


def measure(make: Callable[[], uptake.Store], pairs: int, rounds: int) -> tuple[float, float]:
    merges, noops = [], []
    for _ in range(rounds):
        c = client(make())
        tag = uuid.uuid4().hex[:6]
        prepare(c, pairs, tag)
        merges.append(timed(aliasing(c, tag), pairs))
        noops.append(timed(aliasing(c, tag), pairs))  # merged already: the no-op
        assert c.stats.rules_skipped == 0
        c.shutdown()
    return statistics.median(merges), statistics.median(noops)


@contextmanager
def redis_server() -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server not found: pass --redis URL")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            break
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", default=None)
    a = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        redis_server() if a.redis is None else (_given(a.redis)) as url,
    ):
        stores: dict[str, Callable[[], uptake.Store]] = {
            "MemoryStore": uptake.MemoryStore,
            "SqliteStore": lambda: uptake.SqliteStore(Path(folder) / f"{uuid.uuid4().hex}.db"),
            "RedisStore": lambda: uptake.RedisStore(
                url, prefix=f"m-{uuid.uuid4().hex}:", timeout=1.0
            ),
        }
        print(f"{a.pairs} pairs, median of {a.rounds} rounds\n")
        print("| store | µs per merge (`alias`) | µs per repeated alias (no-op) |")
        print("|---|---|---|")
        for name, make in stores.items():
            merge, noop = measure(make, a.pairs, a.rounds)
            print(f"| {name} | {merge:.0f} | {noop:.0f} |")


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
