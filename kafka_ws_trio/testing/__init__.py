"""Test helpers: a real Kafka broker for any test suite, plus topic and record helpers.

Installing ``kafka-ws-trio`` registers a pytest plugin that provides:

* ``kafka_broker`` (session scope): a :class:`KafkaBroker` describing a real
  broker. When ``KAFKA_BOOTSTRAP`` is set, that broker is used as it is
  (the other ``KAFKA_*`` variables printed by ``scripts/kafka up`` describe
  its other listeners); otherwise a single-node KRaft broker is started on
  127.0.0.1 and stopped when the session ends. Choose its release line with
  ``--kafka-version`` or ``KAFKA_WS_TRIO_BROKER`` (``4`` or ``3.9``).
* ``kafka_topic``: a new, uniquely named topic with one partition.

The functions here are synchronous (kafka-python is); from Trio code call
them through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from . import _broker

__all__ = [
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

BrokerError = _broker.BrokerError

Listener = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

#: Seconds any helper here waits on the broker before giving up.
DEFAULT_TIMEOUT_S: Final = 30.0
#: Environment variable naming the release line the fixture starts.
BROKER_LINE_ENV: Final = "KAFKA_WS_TRIO_BROKER"


@attrs.frozen
class KafkaBroker:
    """Where a running broker listens and how to log in to it."""

    version: str
    bootstrap: str
    bootstrap_ssl: str | None = None
    bootstrap_sasl: str | None = None
    bootstrap_sasl_ssl: str | None = None
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = attrs.field(default=None, repr=False)
    #: Ordinary SASL users (password :attr:`sasl_password`), whom the broker's ACLs apply to; the user
    #: :attr:`sasl_username` is a super user. Empty for a broker ``scripts/kafka up`` did not configure.
    acl_users: tuple[str, ...] = ()
    #: The instance name given to ``scripts/kafka`` when we started it.
    name: str | None = None
    #: The broker's log file, when ``scripts/kafka`` started it.
    log_file: str | None = None
    #: True when :func:`start_broker` started it, so :func:`stop_broker` stops it.
    started: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, started: bool = False) -> KafkaBroker:
        """Build from the ``KAFKA_*`` variables that ``scripts/kafka up`` prints."""
        return cls(
            version=env.get("KAFKA_VERSION", "unknown"),
            bootstrap=env["KAFKA_BOOTSTRAP"],
            bootstrap_ssl=env.get("KAFKA_BOOTSTRAP_SSL"),
            bootstrap_sasl=env.get("KAFKA_BOOTSTRAP_SASL"),
            bootstrap_sasl_ssl=env.get("KAFKA_BOOTSTRAP_SASL_SSL"),
            ca_file=env.get("KAFKA_CA_FILE"),
            client_cert_file=env.get("KAFKA_CLIENT_CERT_FILE"),
            client_key_file=env.get("KAFKA_CLIENT_KEY_FILE"),
            sasl_username=env.get("KAFKA_SASL_USERNAME"),
            sasl_password=env.get("KAFKA_SASL_PASSWORD"),
            acl_users=tuple(name for name in env.get("KAFKA_ACL_USERS", "").split(",") if name),
            name=env.get("KAFKA_BROKER_NAME"),
            log_file=env.get("KAFKA_BROKER_LOG"),
            started=started,
        )

    def address(self, listener: Listener = "PLAINTEXT") -> str:
        """The bootstrap address of one listener.

        Raises:
            BrokerError: this broker has no such listener.
        """
        found = {
            "PLAINTEXT": self.bootstrap,
            "SSL": self.bootstrap_ssl,
            "SASL_PLAINTEXT": self.bootstrap_sasl,
            "SASL_SSL": self.bootstrap_sasl_ssl,
        }[listener]
        if found is None:
            raise BrokerError(f"this broker has no {listener} listener (set KAFKA_BOOTSTRAP_* for it)")
        return found

    def client_config(
        self,
        listener: Listener = "PLAINTEXT",
        *,
        mechanism: SaslMechanism = "PLAIN",
        password: str | None = None,
    ) -> dict[str, Any]:
        """kafka-python keyword arguments that reach this broker on ``listener``.

        TLS listeners verify the broker's certificate against :attr:`ca_file`;
        SASL listeners log in as :attr:`sasl_username` with ``mechanism`` and
        ``password`` (default: the right one).
        """
        config: dict[str, Any] = {"bootstrap_servers": self.address(listener), "security_protocol": listener}
        if listener in ("SSL", "SASL_SSL"):
            config["ssl_cafile"] = self.ca_file
            config["ssl_check_hostname"] = True
        if listener in ("SASL_PLAINTEXT", "SASL_SSL"):
            config["sasl_mechanism"] = mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password if password is None else password
        return config


def start_broker(
    version: str | None = None,
    *,
    name: str | None = None,
    port_base: int | None = None,
    env: Mapping[str, str] | None = None,
) -> KafkaBroker:
    """Return a running broker: the one ``KAFKA_BOOTSTRAP`` names, or one started now.

    ``version`` is a release line (``"4"`` or ``"3.9"``; default from
    ``$KAFKA_WS_TRIO_BROKER``, else ``"4"``). A broker of that line already
    started by ``scripts/kafka up`` is reused and left running.

    Raises:
        BrokerError: the broker could not be started; the message says why.
    """
    env = os.environ if env is None else env
    if env.get("KAFKA_BOOTSTRAP"):
        return KafkaBroker.from_env(env)
    line = version or env.get(BROKER_LINE_ENV) or _broker.DEFAULT_LINE
    found = _broker.up(line, name=name, port_base=port_base)
    return KafkaBroker.from_env(found, started=found.get("KAFKA_STARTED") == "1")


def stop_broker(broker: KafkaBroker) -> None:
    """Stop ``broker`` and delete its data, if :func:`start_broker` started it."""
    if broker.started and broker.name:
        _broker.down(broker.name)


def unique_topic_name(prefix: str = "kwt") -> str:
    """A topic name no other test uses: ``prefix`` plus 12 random hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_topic(
    broker: KafkaBroker,
    name: str | None = None,
    *,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> str:
    """Create a topic (a fresh unique name by default) and wait until it can be used."""
    from kafka.admin import KafkaAdminClient, NewTopic

    name = name or unique_topic_name()
    admin = KafkaAdminClient(**broker.client_config(), request_timeout_ms=int(timeout * 1000))
    try:
        admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=dict(config or {}))],
            timeout_ms=int(timeout * 1000),
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    return name


def delete_topic(broker: KafkaBroker, name: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Delete a topic."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**broker.client_config(), request_timeout_ms=int(timeout * 1000))
    try:
        admin.delete_topics([name], timeout_ms=int(timeout * 1000))
    finally:
        admin.close()


#: kafka-python cannot send a null header value, so values are bytes.
Header = tuple[str, bytes]


@attrs.frozen
class Record:
    """One record to produce. ``None`` key or value is sent as null."""

    value: bytes | None
    key: bytes | None = None
    headers: Sequence[Header] = ()
    timestamp_ms: int | None = None


def _as_record(item: Record | bytes | str | None) -> Record:
    if isinstance(item, Record):
        return item
    if isinstance(item, str):
        return Record(item.encode())
    return Record(item)


def produce(
    broker: KafkaBroker,
    topic: str,
    records: Iterable[Record | bytes | str | None],
    *,
    partition: int = 0,
    compression_type: str | None = None,
    batch_per_record: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
    **producer_config: Any,
) -> list[int]:
    """Write ``records`` to one partition, in order; return their offsets.

    Args:
        records: :class:`Record` objects, or plain values (``str`` is UTF-8 encoded).
        compression_type: ``None``, ``"gzip"``, ``"snappy"``, ``"lz4"`` or ``"zstd"``.
        batch_per_record: flush after every record so each lands in a batch
            of its own; otherwise records share batches (and compression).
        producer_config: more kafka-python producer settings, e.g. a listener's
            :meth:`KafkaBroker.client_config` to produce over TLS or SASL.
    """
    from kafka import KafkaProducer

    config = {**broker.client_config(), **producer_config}
    producer = KafkaProducer(
        **config,
        acks="all",
        compression_type=compression_type,
        linger_ms=0 if batch_per_record else 20,
        request_timeout_ms=int(timeout * 1000),
        max_block_ms=int(timeout * 1000),
    )
    try:
        futures = []
        for item in records:
            record = _as_record(item)
            futures.append(
                producer.send(
                    topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    partition=partition,
                    timestamp_ms=record.timestamp_ms,
                )
            )
            if batch_per_record:
                producer.flush(timeout=timeout)
        producer.flush(timeout=timeout)
        return [future.get(timeout=timeout).offset for future in futures]
    finally:
        producer.close(timeout=timeout)
