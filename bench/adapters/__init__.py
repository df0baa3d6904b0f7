"""One module per SDK.  Adding an SDK to the benchmark means adding one file here.

Each adapter module defines:

* ``MODULE``   the import name of the SDK (an adapter whose SDK can't be imported is skipped
               unless it is named with ``--sdks``)
* ``DIST``     its distribution name, to report the installed version
* ``SETTINGS`` one line on the SDK settings the adapter uses (normally the SDK's defaults)
* ``EXTRA``    optional; True keeps the adapter out of the default run
* ``make_client(url)`` returning a ``Client``; ``url`` is ``http://127.0.0.1:PORT`` (no path)
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from importlib import metadata
from types import ModuleType
from typing import Any, NamedTuple


class Client(NamedTuple):
    track: Callable[[str, str, dict], Any]  # track(user_id, event, props), called in a hot loop
    flush: Callable[[], Any]  # block until queued events are sent (or the SDK gives up)
    shutdown: Callable[[], Any]  # flush, then stop background work


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def all_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def available(name: str) -> bool:
    try:
        return importlib.util.find_spec(load(name).MODULE) is not None
    except ImportError:  # the parent package of a dotted MODULE is missing
        return False


def default_names() -> list[str]:
    """Adapters in the default run: not EXTRA, and the SDK is importable."""
    return [n for n in all_names() if not getattr(load(n), "EXTRA", False) and available(n)]


def version(name: str) -> str:
    mod = load(name)
    try:
        return metadata.version(mod.DIST)
    except metadata.PackageNotFoundError:
        try:
            return str(getattr(importlib.import_module(mod.MODULE), "__version__", "?"))
        except ImportError:
            return "not installed"
