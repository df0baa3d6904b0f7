"""A merge racing with tracks in other processes: no milestone twice, caps hold."""

from __future__ import annotations

import ast
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from .redis_server import RedisServer

USERS = 12

# Each user: as a visitor, "Landing" (reaches "visited") and three "Ping"s (fire "tip",
# capped at one fire) and one "Step", before the start. Then, released together by a
# barrier, one process aliases the visitor to the user while another tracks two "Step"s
# and two "Ping"s as the user, and a third one more "Step" as the visitor. Four steps in
# all reach "activated": only possible once the states are merged, so it fires exactly
# once; "tip" must not fire again, "visited" must not fire for the user.
SCRIPT = """
import datetime as dt, multiprocessing as mp, sys, uptake
kind, where, prefix, users = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)

def ts(s):
    return T0 + dt.timedelta(seconds=s)

def client():
    if kind == "sqlite":
        store = uptake.SqliteStore(where, timeout=10.0)
    else:
        store = uptake.RedisStore(where, prefix=prefix, timeout=5.0)
    c = uptake.Client(send=False, store=store, nudge_rate_limit=None, milestones=[
        uptake.Milestone("visited", any_of=["Landing"]),
        uptake.Milestone("activated", counts={"Step": 4})],
        nudges=[uptake.Nudge("tip", trigger=uptake.EventCount("Ping", 3), max_shows=1,
                             cooldown=dt.timedelta(0))])
    fired = []
    c.on_milestone()(lambda r: fired.append((r.milestone, r.user_id)))
    c.on_nudge()(lambda n: fired.append((n.name, n.user_id)))
    return c, fired

def run(role, barrier, out):
    c, fired = client()
    barrier.wait()
    for u in range(users):
        uid, anon = f"u{u}", f"v{u}"
        if role == "merge":
            c.alias(anon, uid, timestamp=ts(100))
        elif role == "user":
            for i in range(2):
                c.track(uid, "Step", timestamp=ts(101 + i))
                c.track(uid, "Ping", timestamp=ts(111 + i))
        else:
            c.track(None, "Step", anonymous_id=anon, timestamp=ts(121))
    out.put((role, fired, c.stats.rules_skipped))

if __name__ == "__main__":
    c, fired = client()
    for u in range(users):
        anon = f"v{u}"
        c.track(None, "Landing", anonymous_id=anon, timestamp=ts(1))
        for i in range(3):
            c.track(None, "Ping", anonymous_id=anon, timestamp=ts(2 + i))
        c.track(None, "Step", anonymous_id=anon, timestamp=ts(5))
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=run, args=(r, barrier, out)) for r in ("merge", "user", "visitor")]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    after = len(fired)
    for u in range(users):  # afterwards: nothing fires again for the user
        c.track(f"u{u}", "Landing", timestamp=ts(200))
        c.track(f"u{u}", "Ping", timestamp=ts(201))
        c.track(f"u{u}", "Step", timestamp=ts(202))
    late = len(fired) - after
    for role, more, skipped in results:
        assert skipped == 0, (role, skipped)
        fired.extend(more)
    state = c.state("u0")
    print(repr((fired, late, state["events"]["Step"], state["nudges"]["tip"][0])))
"""


def run_race(kind: str, where: str, prefix: str = "") -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind, where, prefix, str(USERS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    fired, late, steps, tip_fires = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    by_user = Counter((name, user.lstrip("uv")) for name, user in fired)
    expected = Counter()
    for u in range(USERS):
        expected.update({("visited", str(u)): 1, ("tip", str(u)): 1, ("activated", str(u)): 1})
    assert by_user == expected
    assert late == 0  # nothing fired for the user after the race
    assert len(steps) == 4 and len(set(steps)) == 4  # every step applied exactly once
    assert tip_fires == 1


def test_a_merge_racing_with_tracks_on_sqlite_across_processes(tmp_path: Path) -> None:
    run_race("sqlite", str(tmp_path / "rules.db"))


def test_a_merge_racing_with_tracks_on_redis_across_processes(
    redis_server: RedisServer,
) -> None:
    run_race("redis", redis_server.url, f"race-{uuid.uuid4().hex[:8]}:")
