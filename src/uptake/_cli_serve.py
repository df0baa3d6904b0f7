"""``uptake serve``: the reference collector on a port, with its write keys."""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import sys

from ._cli_common import UsageError, folder_of, needs_extra

__all__ = ["serve_command"]


def _write_keys(args: argparse.Namespace) -> list[str]:
    """The keys from the command line (--write-key, --write-key-file), else from the
    environment ($UPTAKE_WRITE_KEY_FILE, $UPTAKE_WRITE_KEY)."""
    keys = list(args.write_key)
    if args.write_key_file:
        keys += _keys_in(args.write_key_file)
    if not keys:
        path = os.environ.get("UPTAKE_WRITE_KEY_FILE")
        if path:
            keys += _keys_in(path)
        keys += [k.strip() for k in os.environ.get("UPTAKE_WRITE_KEY", "").split(",")]
        keys = [k for k in keys if k]
    if not keys:
        raise UsageError(
            "no write key: set UPTAKE_WRITE_KEY, or give --write-key-file (or --write-key)"
        )
    if not all(k.strip() for k in keys):
        raise UsageError("a write key cannot be empty")
    return keys


def _keys_in(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        raise UsageError(f"cannot read write keys from {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read write keys from {path}: not UTF-8 text") from None
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise UsageError(f"no write key in {path}")
    return keys


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, checked before anything else is created."""
    if not 0 <= port <= 65535:
        raise UsageError(f"no such port: {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def serve_command(args: argparse.Namespace) -> int:
    needs_extra("serve", "uvicorn")
    from .collector.server import serve
    from .collector.store import EventStore

    keys = _write_keys(args)
    if args.write_key:
        print(
            "uptake: note: --write-key is visible to every user of this machine (ps); "
            "prefer UPTAKE_WRITE_KEY or --write-key-file",
            file=sys.stderr,
        )
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.header_timeout <= 0 or args.body_timeout <= 0:
        raise UsageError("timeouts must be positive")
    folder_of(args.db, "the events to")
    sock = _listen(args.host, args.port)
    try:
        EventStore(args.db).close()  # created (or checked) once, before any worker starts
    except (sqlite3.Error, OSError) as exc:
        sock.close()
        raise UsageError(f"cannot use {args.db} as the event store: {exc}") from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    workers = f"{args.workers} workers" if args.workers > 1 else "1 worker"
    print(
        f"uptake collector on http://{shown}:{port} (POST /v1/batch and Segment's other "
        f"/v1 endpoints), storing into {args.db}, {workers}",
        flush=True,
    )
    try:
        return serve(
            sock,
            args.db,
            keys,
            workers=args.workers,
            header_timeout=args.header_timeout,
            log_level=args.log_level,
            options={"body_timeout": args.body_timeout},
        )
    finally:
        sock.close()
