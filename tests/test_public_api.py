"""The public namespace is the contract: stable names, sorted ``__all__``, typed package."""

from __future__ import annotations

import importlib.resources

import uptake
import uptake.testing


def test_all_is_sorted_and_complete() -> None:
    assert uptake.__all__ == sorted(uptake.__all__)
    for name in uptake.__all__:
        assert hasattr(uptake, name), name


def test_contract_names_exist() -> None:
    for name in (
        "Client",
        "MemoryBuffer",
        "UptakeError",
        "InvalidEventError",
        "ConfigurationError",
        "DeliveryError",
        "Stats",
    ):
        assert name in uptake.__all__


def test_exception_tree() -> None:
    assert issubclass(uptake.InvalidEventError, uptake.UptakeError)
    assert issubclass(uptake.InvalidEventError, ValueError)
    assert issubclass(uptake.ConfigurationError, uptake.UptakeError)
    assert issubclass(uptake.ConfigurationError, ValueError)
    assert issubclass(uptake.DeliveryError, uptake.UptakeError)


def test_delivery_error_describes_itself() -> None:
    error = uptake.DeliveryError("refused", status=400, count=3)
    assert (error.status, error.count, error.reason) == (400, 3, "refused")
    assert str(error) == "3 events not delivered (HTTP 400): refused"
    assert "no response" in str(uptake.DeliveryError("down"))


def test_testing_module_exports() -> None:
    assert uptake.testing.__all__ == sorted(uptake.testing.__all__)
    assert callable(uptake.testing.capture_events)


def test_package_is_typed() -> None:
    assert importlib.resources.files("uptake").joinpath("py.typed").is_file()


def test_version_is_reported_in_events() -> None:
    from uptake.events import LIBRARY

    assert {"name": "uptake", "version": uptake.__version__} == LIBRARY


def test_types_a_user_needs_are_exported() -> None:
    assert {"Store", "ReplayResult"} <= set(uptake.__all__)
    assert "MockTransport" in uptake.testing.__all__
    assert issubclass(uptake.StoreUnavailable, ConnectionError)
    assert issubclass(uptake.StoreUnavailable, uptake.UptakeError)


def test_nothing_below_the_client_imports_it() -> None:
    import ast
    from pathlib import Path

    root = Path(uptake.__file__).parent
    below = [*root.glob("rules/*.py"), *root.glob("stores/*.py"), *root.glob("collector/*.py")]
    below += [root / name for name in ("worker.py", "transport.py", "buffer.py", "outbox.py")]
    below += [root / name for name in ("pipeline.py", "definitions.py", "_config.py")]
    for path in below:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not module.endswith("client") or module.endswith("_client"), (
                    f"{path.relative_to(root)} imports {module}"
                )
