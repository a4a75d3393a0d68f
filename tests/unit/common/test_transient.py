"""An expected failure of a loop on the bus (a timeout while a stream elects its leader) is one warning line
a minute at most while it lasts, saying how many it left out; any other failure keeps its traceback."""

from __future__ import annotations

import logging

import nats.errors
import pytest
from nats.js.errors import ServiceUnavailableError

from switchyard.common.transient import Failures

pytestmark = pytest.mark.unit


def test_a_timeout_is_one_line_a_minute_and_another_error_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tests.transient")
    now = [0.0]
    failures = Failures(logger, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=logger.name):
        for _ in range(5):  # a timeout every 10 s for 50 s
            failures.failed(nats.errors.TimeoutError(), "scan of %s failed", "bucket")
            now[0] += 10.0
        failures.failed(ServiceUnavailableError(), "scan of %s failed", "bucket")  # 50 s: still left out
        now[0] = 60.0
        failures.failed(TimeoutError(), "scan of %s failed", "bucket")
        failures.failed(ValueError("a record no runner wrote"), "scan of %s failed", "bucket")

    lines = [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        (logging.WARNING, "scan of bucket failed: nats: timeout", False),
        (logging.WARNING, "scan of bucket failed: TimeoutError (5 more since the last such line)", False),
        (logging.ERROR, "scan of bucket failed", True),
    ]
    assert {r.filename for r in caplog.records} == {
        "test_transient.py"
    }  # the caller's line, not the helper's
