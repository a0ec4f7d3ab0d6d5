"""Fixtures shared by the unit tests."""

import logging

import pytest


@pytest.fixture
def package_log_off_stderr():
    """The package logger without handlers, propagating to pytest's capture.

    So stderr holds only what ``cli._fail`` prints: a handler left by an
    earlier test may write to that test's (closed) captured stream.
    """
    logger = logging.getLogger("prospect_sim")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(logger, "handlers", [])
        mp.setattr(logger, "propagate", True)
        yield
