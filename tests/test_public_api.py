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
