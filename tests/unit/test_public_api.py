"""The public surface is deliberate: adding or removing a name must show up here."""

import kafka_ws_trio
import kafka_ws_trio.testing


def test_package_exports() -> None:
    assert sorted(kafka_ws_trio.__all__) == [
        "ConfigError",
        "ErrorCode",
        "ProxyConfig",
        "ProxyServer",
        "ProxyStatistics",
        "Record",
        "RouteChanges",
        "RouteConfig",
        "RouteStoreConfig",
        "SaslConfig",
        "Secret",
        "ServerConfig",
        "TlsConfig",
        "TopicStreamStatistics",
        "UpstreamStatistics",
        "__version__",
        "load_config",
        "parse_config",
        "serve_proxy",
        "tune_gc",
    ]
    for name in kafka_ws_trio.__all__:
        assert hasattr(kafka_ws_trio, name)


def test_client_exports() -> None:
    import kafka_ws_trio.client

    assert sorted(kafka_ws_trio.client.__all__) == [
        "Acks",
        "Batch",
        "CaughtUp",
        "ConnectFailed",
        "EARLIEST",
        "Filter",
        "HeaderMatch",
        "LATEST",
        "NotWritten",
        "OnPartitions",
        "OutRecord",
        "PartitionsChanged",
        "ProduceResult",
        "PubSubClient",
        "PubSubError",
        "Record",
        "Stream",
        "StreamEnded",
        "StreamProblem",
        "Written",
        "open_client",
    ]
    for name in kafka_ws_trio.client.__all__:
        assert hasattr(kafka_ws_trio.client, name)


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
