"""Benchmark uptake against peer analytics SDKs, all against one loopback collector.

    python bench/run.py [--sdks uptake,segment,posthog] [--scenarios caller_cost,outage]
                        [--reps 3] [--scale 1.0] [--out bench/results-local.json]
                        [--baseline uptake]

Each (rep, scenario, SDK) runs in a fresh SDK subprocess (worker.py) against a fresh
collector process (collector.py); SDKs are interleaved within a rep and tables show the
median over reps.  Every loop is bounded: a worker is killed after WORKER_LIMIT_S, flushing
plus waiting for arrivals is capped at WAIT_S, and the collector exits by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import adapters
from collector import query, wait_for_events

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_LIMIT_S = 200
WAIT_S = 60.0
COLLECTOR_MAX_S = 300

# name -> collector args, what the worker does (kind), events at scale 1, every how many
# calls one is timed, how long a quiet collector means "done", and extras for the worker.
SCENARIOS: dict[str, dict] = {
    "caller_cost": dict(collector=["--mode", "ok"], kind="flush", n=100_000, sample=100),
    "burst_drop": dict(collector=["--mode", "ok"], kind="flush", n=200_000, sample=100),
    "outage": dict(
        collector=["--mode", "down", "--down-s", "5"],
        kind="flush",
        n=20_000,
        sample=1,
        quiet_s=10.0,
        pace_outage=True,
    ),
    "flaky": dict(
        collector=["--mode", "flaky", "--every", "5"],
        kind="flush",
        n=20_000,
        sample=1,
        quiet_s=10.0,
    ),
    "rate_limited": dict(
        collector=["--mode", "rate_limited", "--every", "10"],
        kind="flush",
        n=20_000,
        sample=1,
        quiet_s=10.0,
    ),
    "exit_without_flush": dict(collector=["--mode", "ok"], kind="exit", n=5_000, sample=100),
    "memory": dict(
        collector=["--mode", "down", "--down-s", "250"], kind="memory", n=50_000, quiet_s=10.0
    ),
    # not in the default run: every reply delayed 50 ms
    "slow": dict(
        collector=["--mode", "slow", "--delay-ms", "50"],
        kind="flush",
        n=20_000,
        sample=1,
        quiet_s=10.0,
        extra=True,
    ),
}

# (header, result key, format, ratio against the baseline?)
FAULT_COLUMNS = [
    ("recv", "received", "d", True),
    ("lost", "lost", "d", False),
    ("dups", "dups", "d", False),
    ("max track ms", "max_track_ms", ".1f", True),
    ("track errs", "track_errors", "d", False),
    ("flush s", "flush_s", ".1f", False),
    ("total s", "deliver_s", ".1f", True),
]
COLUMNS = {
    "caller_cost": [
        ("us/call", "us_per_call", ".1f", True),
        ("p50 us", "p50_us", ".1f", False),
        ("p99 us", "p99_us", ".0f", True),
        ("flush s", "flush_s", ".2f", False),
        ("all-in s", "deliver_s", ".2f", True),
        ("e2e ev/s", "e2e_ev_s", ".0f", True),
        ("recv", "received", "d", False),
        ("lost", "lost", "d", False),
        ("peak RSS MB", "peak_rss_mb", ".0f", True),
    ],
    "burst_drop": [
        ("us/call", "us_per_call", ".1f", True),
        ("recv", "received", "d", True),
        ("lost", "lost", "d", False),
        ("track errs", "track_errors", "d", False),
        ("all-in s", "deliver_s", ".1f", False),
        ("peak RSS MB", "peak_rss_mb", ".0f", False),
    ],
    "exit_without_flush": [
        ("us/call", "us_per_call", ".1f", False),
        ("recv", "received", "d", True),
        ("lost", "lost", "d", False),
        ("exit s", "exit_s", ".2f", True),
    ],
    "memory": [
        ("us/call", "us_per_call", ".1f", False),
        ("RSS growth MB", "rss_growth_mb", ".1f", True),
        ("held", "held", "d", False),
        ("bytes/held event", "bytes_per_held", ".0f", True),
        ("bytes/call", "bytes_per_call", ".0f", False),
    ],
}


def start_collector(args: list[str]):
    cmd = [sys.executable, os.path.join(HERE, "collector.py"), *args]
    proc = subprocess.Popen([*cmd, "--max-s", str(COLLECTOR_MAX_S)], stdout=subprocess.PIPE)
    line = proc.stdout.readline()
    if not line:
        proc.wait(5)
        raise RuntimeError(f"collector did not start: {' '.join(args)}")
    ports = json.loads(line)
    return proc, f"http://127.0.0.1:{ports['ingest']}", f"http://127.0.0.1:{ports['control']}"


def stop_collector(proc, control: str) -> None:
    try:
        query(control, "/_stop", post=True)
        proc.wait(5)
    except Exception:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(sdk: str, name: str, scale: float) -> dict:
    sc = SCENARIOS[name]
    n = max(100, round(sc["n"] * scale))
    result: dict = {"sdk": sdk, "scenario": name, "sent": n}
    proc, ingest, control = start_collector(sc["collector"])
    try:
        spec = {
            "sdk": sdk,
            "kind": sc["kind"],
            "n": n,
            "ingest": ingest,
            "control": control,
            "sample": sc.get("sample", 100),
            "pace_outage": sc.get("pace_outage", False),
            "wait_s": WAIT_S,
            "quiet_s": sc.get("quiet_s", 3.0),
            "limit_s": WORKER_LIMIT_S + 5,  # run.py kills it at WORKER_LIMIT_S; this is a backstop
        }
        cmd = [sys.executable, os.path.join(HERE, "worker.py"), json.dumps(spec)]
        with tempfile.TemporaryFile() as err:
            try:
                done = subprocess.run(
                    cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=WORKER_LIMIT_S
                )
                exited = time.monotonic()
                lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
                if lines:
                    result.update(json.loads(lines[-1][len("RESULT ") :]))
                else:
                    result["error"] = f"worker exited {done.returncode} without a result"
            except subprocess.TimeoutExpired:
                result["error"] = f"worker killed after {WORKER_LIMIT_S}s"
            if "loop_end_t" in result:  # exit_without_flush: time from last track() to exit
                result["exit_s"] = exited - result.pop("loop_end_t")
                wait_for_events(control, n, 1.0, time.monotonic() + 10)  # in-flight requests
            if "error" in result:
                err.seek(0)
                result["stderr_tail"] = err.read()[-800:].decode(errors="replace")
        st = query(control)
        result["collector_cpu_s"] = cpu_seconds(proc.pid)
    finally:
        stop_collector(proc, control)
    received = st["unique"] + st["no_id"]
    result.update(
        received=received,
        lost=n - received,
        dups=st["dups"],
        events=st["events"],
        requests=st["requests"],
        http_status=st["status"],
        parse_errors=st["parse_errors"],
        other_events=st["other_events"],
        other_names=st["other_names"],
    )
    return result


def median_row(runs: list[dict]) -> dict:
    row: dict = {"reps": len(runs)}
    for key in dict.fromkeys(k for r in runs for k in r):
        nums = [r[key] for r in runs if type(r.get(key)) in (int, float)]
        if nums:
            row[key] = statistics.median(nums)
        else:
            text = [r[key] for r in runs if isinstance(r.get(key), str) and r[key]]
            if text:
                row[key] = text[0]
    return row


def fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    return format(round(value), spec) if spec == "d" else format(value, spec)


def table(name: str, rows: dict[str, dict]) -> str:
    cols = COLUMNS.get(name, FAULT_COLUMNS)
    first = next(iter(rows.values()))
    lines = [
        f"### {name} (sent {first['sent']:,}, median of {first['reps']})",
        "| sdk | " + " | ".join(c[0] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for sdk, row in rows.items():
        cells = [fmt(row.get(key), spec) for _, key, spec, _ in cols]
        if row.get("error"):
            cells.append(f"error: {row['error']}")
        lines.append(f"| {sdk} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_lines(name: str, rows: dict[str, dict], baseline: str) -> list[str]:
    if baseline not in rows:
        return []
    base = rows[baseline]
    out = []
    for peer, row in rows.items():
        if peer == baseline:
            continue
        parts = []
        for header, key, _, wanted in COLUMNS.get(name, FAULT_COLUMNS):
            b, p = base.get(key), row.get(key)
            if not wanted or b is None or p is None:
                continue
            if p == 0:
                parts.append(f"{header} = {b:g} vs 0 for {peer}")
            else:
                r = b / p
                parts.append(
                    f"{header} = {r:.0f}x {peer}" if r >= 10 else f"{header} = {r:.2f}x {peer}"
                )
        if parts:
            out.append(f"- {name}: {baseline} " + ", ".join(parts))
    return out


def other_event_notes(name: str, runs: list[dict]) -> list[str]:
    """Events an SDK sent on its own (not counted in the table), e.g. session events."""
    notes = []
    for sdk in dict.fromkeys(r["sdk"] for r in runs):
        mine = [r for r in runs if r["sdk"] == sdk and r.get("other_events")]
        if mine:
            names = ", ".join(f"{k}: {v}" for k, v in mine[0]["other_names"].items())
            notes.append(
                f"- note: {sdk} also sent events of its own, not counted above "
                f"(rep {mine[0]['rep'] + 1}: {names})"
            )
    return notes


def main() -> None:
    p = argparse.ArgumentParser(description="uptake vs peer SDKs against a loopback collector")
    p.add_argument(
        "--sdks",
        help="comma list of adapters (" + ",".join(adapters.all_names()) + "); default: those "
        "whose SDK imports, except EXTRA ones (rudder)",
    )
    p.add_argument("--scenarios", help="comma list; default all but 'slow': " + ",".join(SCENARIOS))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every scenario's calls")
    p.add_argument("--out", default=os.path.join(HERE, "results-local.json"))
    p.add_argument("--baseline", default="uptake", help="SDK the ratio lines compare")
    a = p.parse_args()

    sdks = a.sdks.split(",") if a.sdks else adapters.default_names()
    if a.baseline in sdks:  # baseline first in the tables
        sdks.remove(a.baseline)
        sdks.insert(0, a.baseline)
    skipped = [s for s in adapters.all_names() if s not in sdks and not adapters.available(s)]
    if skipped and not a.sdks:
        print("skipped (SDK not importable): " + ", ".join(skipped))
    names = (
        a.scenarios.split(",")
        if a.scenarios
        else [k for k, v in SCENARIOS.items() if not v.get("extra")]
    )
    if not sdks:
        p.error("no SDK to run: install uptake and the peers (see bench/README.md)")
    unknown = [x for x in names if x not in SCENARIOS] + [
        x for x in sdks if x not in adapters.all_names()
    ]
    if unknown:
        p.error("unknown: " + ", ".join(unknown))

    sdk_info = {
        s: {"version": adapters.version(s), "settings": adapters.load(s).SETTINGS} for s in sdks
    }
    started = time.monotonic()
    runs = []
    for rep in range(a.reps):
        for name in names:
            # interleaved, so machine noise spreads over every SDK; rotated, so no SDK always
            # runs first
            for sdk in sdks[rep % len(sdks) :] + sdks[: rep % len(sdks)]:
                r = run_one(sdk, name, a.scale)
                r["rep"] = rep
                runs.append(r)
                print(
                    f"rep {rep + 1}/{a.reps} {name:18} {sdk:8} sent={r['sent']} "
                    f"recv={r['received']} lost={r['lost']} dups={r['dups']} "
                    f"us/call={r.get('us_per_call', float('nan')):.1f} {r.get('error', '')}",
                    flush=True,
                )

    medians = {
        name: {
            sdk: median_row([r for r in runs if r["sdk"] == sdk and r["scenario"] == name])
            for sdk in sdks
        }
        for name in names
    }
    header = ["| sdk | version | settings |", "|---|---|---|"]
    header += [f"| {s} | {i['version']} | {i['settings']} |" for s, i in sdk_info.items()]
    sections = ["\n".join(header)]
    for name in names:
        notes = ratio_lines(name, medians[name], a.baseline)
        notes += other_event_notes(name, [r for r in runs if r["scenario"] == name])
        sections.append("\n".join([table(name, medians[name]), "", *notes]).strip())
    report = "\n\n".join(sections)
    print("\n" + report)
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "reps": a.reps,
        "scale": a.scale,
        "wall_s": round(time.monotonic() - started, 1),
        "sdks": sdk_info,
    }
    doc = {
        "meta": meta,
        "scenarios": {k: SCENARIOS[k] for k in names},
        "medians": medians,
        "runs": runs,
        "report_md": report,
    }
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
