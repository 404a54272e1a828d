"""The pytest plugin behind the ``kafka_broker`` and ``kafka_topic`` fixtures.

Registered through the ``pytest11`` entry point, so any test suite in an
environment where kafka-ws-trio is installed can ask for a real broker.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import KafkaBroker, create_topic, start_broker, stop_broker


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kafka-ws-trio")
    group.addoption(
        "--kafka-version",
        default=None,
        metavar="LINE",
        help="Kafka release line for the kafka_broker fixture: 4 or 3.9 "
        "(default: $KAFKA_WS_TRIO_BROKER, else 4). Ignored when KAFKA_BOOTSTRAP is set.",
    )


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[KafkaBroker]:
    """A real Kafka broker for the whole test session (see kafka_ws_trio.testing)."""
    broker = start_broker(request.config.getoption("--kafka-version"))
    try:
        yield broker
    finally:
        stop_broker(broker)


@pytest.fixture
def kafka_topic(kafka_broker: KafkaBroker) -> str:
    """A new topic with one partition, named uniquely for this test."""
    return create_topic(kafka_broker)
