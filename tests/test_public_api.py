"""The public surface is deliberate: adding or removing a name must show up here."""

import kafka_ws_trio
import kafka_ws_trio.testing


def test_package_exports() -> None:
    assert sorted(kafka_ws_trio.__all__) == ["__version__"]
    for name in kafka_ws_trio.__all__:
        assert hasattr(kafka_ws_trio, name)


def test_testing_exports() -> None:
    assert sorted(kafka_ws_trio.testing.__all__) == [
        "BrokerError",
        "KafkaBroker",
        "Listener",
        "Record",
        "create_topic",
        "delete_topic",
        "produce",
        "start_broker",
        "stop_broker",
        "unique_topic_name",
    ]
    for name in kafka_ws_trio.testing.__all__:
        assert hasattr(kafka_ws_trio.testing, name)
