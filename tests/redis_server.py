"""A real redis-server on a free loopback port, for the RedisStore tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import IO

import pytest

REDIS_SERVER = shutil.which("redis-server")


def require(*tools: str) -> None:
    """Skip when a Redis tool is missing, unless UPTAKE_REQUIRE_REDIS=1 (CI) makes it fail."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (Debian: apt-get install redis-server)"
    if os.environ.get("UPTAKE_REQUIRE_REDIS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_node(port: int, *options: str) -> subprocess.Popen[str]:
    """Start a redis-server without persistence; return once it accepts connections."""
    assert REDIS_SERVER is not None
    plain = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), *plain, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: IO[str] | None = proc.stdout
    assert out is not None
    for line in out:  # the server says when it is ready: no polling
        if "Ready to accept connections" in line:
            return proc
    raise RuntimeError(f"redis-server on port {port} exited with {proc.wait()}")


class RedisServer:
    """Starts, stops, pauses and resumes one redis-server (no persistence)."""

    def __init__(self) -> None:
        require("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        """Start the server on its port; return once it accepts connections."""
        self._proc = start_node(self.port)

    def stop(self) -> None:
        """Kill the server (SIGKILL: nothing is saved), even a frozen one."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections hang, as in a network stall."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as s, socket.socket() as bus:
            try:
                s.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """Three redis-server nodes joined into a Redis Cluster (no replicas, no persistence)."""

    def __init__(self, folder: str) -> None:
        require("redis-server", "redis-cli")
        cli = shutil.which("redis-cli")
        assert cli is not None
        self.ports = [free_cluster_port() for _ in range(3)]
        self._procs = [
            start_node(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"{folder}/nodes-{port}.conf",
            )
            for port in self.ports
        ]
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        # redis-cli returns once the nodes agree on the slots, but each node still answers
        # CLUSTERDOWN until it has declared the cluster ok (a node holds back writes for
        # about two seconds after joining). Redis announces this nowhere, so ask each node.
        deadline = time.monotonic() + 30
        for port in self.ports:
            info = [cli, "-p", str(port), "cluster", "info"]
            while b"cluster_state:ok" not in subprocess.run(info, capture_output=True).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node {port} never reported cluster_state:ok")
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"

    def stop(self) -> None:
        for proc in self._procs:
            proc.kill()
            proc.wait()
