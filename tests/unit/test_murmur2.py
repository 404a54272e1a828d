"""Keyed records land where the Java client puts them: the proxy's producer (kafka-python) picks a
keyed record's partition with murmur2, as ``org.apache.kafka.common.utils.Utils.murmur2`` does.
The expected hashes are the Java client's own test vectors."""

from __future__ import annotations

import pytest

JAVA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


def signed32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


@pytest.mark.parametrize(("key", "expected"), JAVA_VECTORS)
def test_murmur2_matches_the_java_clients_vectors(key: bytes, expected: int) -> None:
    from kafka.partitioner.default import murmur2

    assert signed32(murmur2(key)) == expected


@pytest.mark.parametrize(("key", "expected"), JAVA_VECTORS)
def test_the_default_partitioner_picks_what_java_picks(key: bytes, expected: int) -> None:
    """Java: ``toPositive(murmur2(key)) % numPartitions``, toPositive being ``& 0x7fffffff``."""
    from kafka.partitioner.default import DefaultPartitioner
    from kafka.producer.kafka import KafkaProducer

    class Cluster:  # the two questions the partitioner asks of the producer's metadata
        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(7))

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(7))

    # The partitioner the proxy's producers use: kafka-python's default, which the proxy does not override.
    assert isinstance(KafkaProducer.DEFAULT_CONFIG["partitioner"], DefaultPartitioner)
    picked = DefaultPartitioner().partition("t", key, key, b"v", b"v", Cluster())
    assert picked == (expected & 0x7FFFFFFF) % 7
