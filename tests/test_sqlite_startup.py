"""SQLite files created by several processes at the same moment (workers starting together)."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import traceback
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

import uptake

PROCESSES = 6
ROUNDS = 20

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="starts processes by fork")


def open_store(path: str, barrier: Barrier, errors: Any) -> None:
    try:
        barrier.wait(10)
        store = uptake.SqliteStore(path)
        store.update("user:u", lambda state: None)
    except BaseException:
        errors.put(traceback.format_exc())


def open_buffer(path: str, barrier: Barrier, errors: Any) -> None:
    try:
        barrier.wait(10)
        buffer = uptake.SqliteBuffer(path)
        buffer.close()
    except BaseException:
        errors.put(traceback.format_exc())


@pytest.mark.parametrize("target", [open_store, open_buffer], ids=["store", "buffer"])
def test_processes_starting_together_on_a_new_file_all_open_it(target: Any, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for n in range(ROUNDS):
        path = str(tmp_path / f"fresh-{n}.db")
        barrier = ctx.Barrier(PROCESSES)
        procs = [ctx.Process(target=target, args=(path, barrier, errors)) for _ in range(PROCESSES)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, f"{len(failures)} of {ROUNDS * PROCESSES} opens failed:\n{failures[0]}"


@pytest.mark.parametrize("kind", ["store", "buffer"])
def test_connections_opening_a_new_file_together_all_open_it(kind: str, tmp_path: Path) -> None:
    # Threads race more tightly than processes: each opens a connection of its own.
    failures: list[BaseException] = []

    def open_it(path: Path, barrier: threading.Barrier) -> None:
        barrier.wait(10)
        try:
            if kind == "store":
                uptake.SqliteStore(path)
            else:
                uptake.SqliteBuffer(path).close()
        except BaseException as exc:
            failures.append(exc)

    for n in range(150):
        barrier = threading.Barrier(4)
        path = tmp_path / f"fresh-{n}.db"
        threads = [threading.Thread(target=open_it, args=(path, barrier)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert not failures, f"{len(failures)} of 600 opens failed, e.g. {failures[0]!r}"
