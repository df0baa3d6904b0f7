"""What the ``uptake`` subcommands share: the user-mistake error and small checks."""

from __future__ import annotations

import importlib
import os
import re

__all__ = ["UsageError", "folder_of", "needs_extra"]


class UsageError(Exception):
    """A mistake of the user's: one line on stderr, exit status 2."""


def needs_extra(command: str, *modules: str) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise UsageError(
                f"{command} needs the collector extra: pip install 'uptake[collector]'"
            ) from None


def folder_of(path: str, what: str) -> None:
    """Refuse a path whose folder does not exist (before any work is done)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {what} {path}: no folder {folder}")


_CREDENTIALS = re.compile(r"(?i)^([a-z][a-z0-9+.-]*://[^/@:]*):[^@/]*@")


def is_clickhouse(source: str) -> bool:
    """Whether ``source`` names a ClickHouse server (``clickhouse://``, ``clickhouses://``)."""
    return source[:14].lower().startswith(("clickhouse://", "clickhouses://"))


def shown(source: str) -> str:
    """``source`` as a message may show it: a URL's password replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1:***@", source)
