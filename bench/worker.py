"""The SDK side of one benchmark run.  run.py starts it as a fresh subprocess per run:

    python worker.py '{"sdk": "segment", "kind": "flush", "n": 1000, "ingest": ..., ...}'

It drives the SDK through its adapter and prints one line ``RESULT {json}`` on stdout.
Spec keys: sdk, kind ("flush" | "exit" | "memory"), n, ingest, control, sample (time every
sample-th call), pace_s (spread the calls over this many seconds), pace_outage (spread them
over what is left of the collector's outage), wait_s (bound on flush + waiting for arrivals),
quiet_s (stop waiting once nothing new arrived for this long), limit_s (hard bound on the
whole process; it also exits when its parent goes away).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time

import adapters
from collector import query, wait_for_events

SHUTDOWN_LIMIT_S = 15.0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bounded(fn, limit: float) -> dict:
    """Call fn() in a daemon thread, waiting at most `limit` seconds for it."""
    box: dict = {"timed_out": True}

    def call():
        try:
            value = fn()
            box.update(timed_out=False, result=None if value is None else repr(value)[:100])
        except Exception as exc:  # an SDK error is a measurement, not a harness failure
            box.update(timed_out=False, error=f"{type(exc).__name__}: {exc}"[:200])

    t0 = time.monotonic()
    th = threading.Thread(target=call, daemon=True)
    th.start()
    th.join(limit)
    box["seconds"] = time.monotonic() - t0
    return box


def drive(track, n: int, sample: int, pace_s: float | None) -> dict:
    """Call track() n times, flat out or spread evenly over pace_s; time every sample-th call."""
    users = [f"user-{i}" for i in range(1000)]
    clock = time.perf_counter
    timings: list[float] = []
    errors, first_error = 0, None
    start = clock()
    for i in range(n):
        if pace_s and i % 100 == 0:
            ahead = start + pace_s * i / n - clock()
            if ahead > 0:
                time.sleep(ahead)
        props = {"plan": "pro", "amount": i, "currency": "USD", "ok": True, "page": "/checkout"}
        timed = i % sample == 0
        t = clock() if timed else 0.0
        try:
            track(users[i % 1000], "Bench Event", props)
        except Exception as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:200]
        if timed:
            timings.append(clock() - t)
    loop_s = clock() - start
    timings.sort()
    return {
        "loop_s": loop_s,
        "us_per_call": loop_s / n * 1e6,
        "p50_us": timings[len(timings) // 2] * 1e6,
        "p99_us": timings[min(len(timings) - 1, int(len(timings) * 0.99))] * 1e6,
        "max_track_ms": timings[-1] * 1e3,
        "track_errors": errors,
        "first_error": first_error,
    }


def watchdog(limit_s: float) -> None:
    """Exit hard if the benchmark that started us goes away, or after limit_s seconds."""
    parent, end = os.getppid(), time.monotonic() + limit_s

    def watch():
        while os.getppid() == parent and time.monotonic() < end:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="bench-watchdog", daemon=True).start()


def finish(out: dict) -> None:
    print("RESULT " + json.dumps(out), flush=True)
    sys.stderr.flush()


def run_memory(spec: dict, client: adapters.Client, out: dict) -> None:
    """Track n events while the collector is down; RSS growth per event the SDK holds."""
    gc.collect()
    before = rss_mb()
    out.update(drive(client.track, spec["n"], 100, None))
    time.sleep(1.0)  # let background threads settle
    gc.collect()
    growth = rss_mb() - before
    query(spec["control"], "/_up", post=True)  # now let the held events through
    deadline = time.monotonic() + spec["wait_s"]
    flushed = bounded(client.flush, spec["wait_s"])
    st = wait_for_events(spec["control"], spec["n"], spec["quiet_s"], deadline)
    held = st["unique"] + st["no_id"] + st["other_events"]  # incl. events the SDK made itself
    out.update(
        rss_growth_mb=growth,
        bytes_per_call=growth * 2**20 / spec["n"],
        held=held,
        bytes_per_held=growth * 2**20 / held if held else None,
        flush_s=flushed["seconds"],
        flush=flushed,
    )
    finish(out)
    os._exit(0)


def main() -> None:
    spec = json.loads(sys.argv[1])
    watchdog(spec["limit_s"])
    client = adapters.load(spec["sdk"]).make_client(spec["ingest"])
    out: dict = {"base_rss_mb": rss_mb()}
    if spec["kind"] == "memory":
        return run_memory(spec, client, out)
    pace_s = spec.get("pace_s")
    if spec.get("pace_outage"):  # track only while the collector still refuses connections
        pace_s = max(0.5, query(spec["control"])["down_remaining_s"] - 0.2)
        out["paced_over_s"] = pace_s
    t0 = time.monotonic()
    out.update(drive(client.track, spec["n"], spec["sample"], pace_s))
    if spec["kind"] == "exit":
        out["loop_end_t"] = time.monotonic()
        finish(out)
        return  # normal interpreter exit: only the SDK's own atexit hooks can deliver the rest
    deadline = time.monotonic() + spec["wait_s"]
    flushed = bounded(client.flush, spec["wait_s"])
    st = wait_for_events(spec["control"], spec["n"], spec["quiet_s"], deadline)
    if st["last_event_t"] is not None:
        out["deliver_s"] = st["last_event_t"] - t0  # both sides use CLOCK_MONOTONIC
        out["e2e_ev_s"] = (st["unique"] + st["no_id"]) / out["deliver_s"]
    out.update(flush_s=flushed["seconds"], flush=flushed, peak_rss_mb=peak_rss_mb())
    out["shutdown"] = bounded(client.shutdown, SHUTDOWN_LIMIT_S)
    finish(out)
    os._exit(0)  # measured; skip atexit hooks, which could only add time


if __name__ == "__main__":
    main()
