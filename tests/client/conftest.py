"""Fixtures of the cloud client's tests."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes tens of seconds of real time (e.g. the 1000-call quota run)")
