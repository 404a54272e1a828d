"""Kafka outages are logged once per cause, at most once per interval, and the recovery once."""

from __future__ import annotations

import logging

import pytest

from kafka_ws_trio._kafka._outages import OUTAGE_LOG_INTERVAL, RECOVERY_QUIET, OutageLog
from kafka_ws_trio._proto import CommandFailed, ErrorCode

UNREACHABLE = CommandFailed(ErrorCode.BROKER_UNREACHABLE, "broker unreachable: 10.0.0.1:9092")
BAD_PASSWORD = CommandFailed(ErrorCode.AUTHENTICATION_FAILED, "SASL authentication failed")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines:
    """What the outage log wrote so far (read anew at each use)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def __len__(self) -> int:
        return len(self._caplog.messages)

    def __getitem__(self, index: int) -> str:
        return self._caplog.messages[index]

    def __eq__(self, other: object) -> bool:
        return self._caplog.messages == other

    def after(self, count: int) -> list[str]:
        return self._caplog.messages[count:]


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Lines:
    caplog.set_level(logging.INFO, logger="kafka_ws_trio.kafka")
    return Lines(caplog)


def test_a_cause_is_logged_once_per_interval_with_the_count_it_left_out(lines: Lines) -> None:
    clock = Clock()
    outages = OutageLog("/kafka", clock=clock)
    for _ in range(50):
        outages.failed(UNREACHABLE)
        clock.now += 1
    assert len(lines) == 1
    assert lines[0] == "route /kafka: Kafka cannot be used: broker unreachable: 10.0.0.1:9092 [BROKER_UNREACHABLE]"
    clock.now += OUTAGE_LOG_INTERVAL
    outages.failed(UNREACHABLE)
    assert len(lines) == 2
    assert lines[1].endswith("(49 more since the last report)")


def test_each_cause_gets_its_own_line(lines: Lines) -> None:
    outages = OutageLog("/kafka", clock=Clock())
    outages.failed(UNREACHABLE)
    outages.failed(BAD_PASSWORD)
    outages.failed(UNREACHABLE)
    assert len(lines) == 2
    assert "SASL authentication failed" in lines[1]


def test_recovery_is_logged_once_with_the_outage_length(lines: Lines) -> None:
    clock = Clock()
    outages = OutageLog("/kafka", clock=clock)
    outages.recovered()
    assert lines == []  # no outage, nothing to report
    outages.failed(UNREACHABLE)
    clock.now += 12.5
    outages.failed(UNREACHABLE)
    outages.recovered()
    assert len(lines) == 1, "a success right after a failure does not end the outage"
    clock.now += RECOVERY_QUIET
    outages.recovered()
    outages.recovered()
    assert lines.after(1) == ["route /kafka: Kafka reachable again after 12.5s (2 failed calls)"]
    outages.failed(UNREACHABLE)
    assert len(lines) == 3, "a new outage is reported again at once"


def test_a_partial_outage_does_not_flood_the_log(lines: Lines) -> None:
    """One partition's leader down, the others fine: failures and successes alternate every second."""
    clock = Clock()
    outages = OutageLog("/kafka", clock=clock)
    for _ in range(int(2 * OUTAGE_LOG_INTERVAL)):
        outages.failed(UNREACHABLE)
        clock.now += 0.5
        outages.recovered()
        clock.now += 0.5
    assert len(lines) == 2, list(lines.after(0))
    assert all("cannot be used" in line for line in lines.after(0))


@pytest.mark.parametrize(
    "failure",
    [
        CommandFailed(ErrorCode.TOPIC_NOT_FOUND, "not found topic"),
        CommandFailed(ErrorCode.OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE"),
        CommandFailed(ErrorCode.RECORD_TOO_LARGE, "record at offset 3 is 2000000 bytes encoded"),
    ],
)
def test_failures_of_a_request_are_not_outages(lines: Lines, failure: CommandFailed) -> None:
    outages = OutageLog("/kafka", clock=Clock())
    outages.failed(failure)
    assert lines == []
    assert not outages.in_outage
