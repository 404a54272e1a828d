"""Why Kafka cannot be used, in words a user can act on.

kafka-python reports a wrong password or a bad certificate only as "Unable
to bootstrap" after its timeout; :func:`diagnose` then probes the brokers
itself (TCP, then TLS) to name the real cause.
"""

from __future__ import annotations

import socket
import ssl
from typing import Final

from .._config import RouteConfig
from .._proto import NOT_AUTHORIZED_REASON, CommandFailed, ErrorCode, topic_not_found
from ._settings import split_node, ssl_context

#: Seconds for each TCP or TLS probe of a broker when naming a failure.
PROBE_TIMEOUT: Final = 1.0
#: Kafka's error code for a topic its ACLs hide from the login asking.
TOPIC_AUTHORIZATION_FAILED: Final = 29
#: Kafka's authorization errors, by the name kafka-python gives them, as the proxy's own denial codes.
_KAFKA_DENIALS: Final = {
    "TOPIC_AUTHORIZATION_FAILED": ErrorCode.NOT_AUTHORIZED,
    "CLUSTER_AUTHORIZATION_FAILED": ErrorCode.NOT_AUTHORIZED,
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": ErrorCode.NOT_AUTHORIZED,
    "GROUP_AUTHORIZATION_FAILED": ErrorCode.GROUP_NOT_AUTHORIZED,
}


def diagnose(route: RouteConfig, *, tcp_only: bool = False) -> CommandFailed | None:
    """Name why the route's brokers cannot be used, probing them directly (blocking).

    Returns None when ``tcp_only`` and some broker accepts TCP connections.
    Bounded by PROBE_TIMEOUT per node for the TCP connect and again for TLS.
    """
    context = None if tcp_only else ssl_context(route)
    reachable = []
    for node in route.nodes:
        host, port = split_node(node)
        try:
            sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT)
        except OSError:
            continue
        with sock:
            if context is not None:
                try:
                    with context.wrap_socket(sock, server_hostname=host):
                        pass
                except ssl.SSLCertVerificationError as exc:
                    return CommandFailed(ErrorCode.TLS_FAILED, f"TLS certificate verify failed: {exc.verify_message}")
                except (ssl.SSLError, OSError) as exc:
                    return CommandFailed(ErrorCode.TLS_FAILED, f"TLS handshake failed with {node}: {exc}")
        reachable.append(node)
    if not reachable:
        return CommandFailed(ErrorCode.BROKER_UNREACHABLE, f"broker unreachable: {', '.join(route.nodes)}")
    if tcp_only:
        return None
    if route.sasl is not None:
        return CommandFailed(ErrorCode.AUTHENTICATION_FAILED, "SASL authentication failed")
    return CommandFailed(ErrorCode.BROKER_UNREACHABLE, f"broker not responding: {', '.join(reachable)}")


def named_failure(route: RouteConfig, exc: Exception, what: str) -> CommandFailed:
    """A kafka-python failure as a command failure; a timeout is probed to name its cause (blocking)."""
    failure = kafka_failure(exc, what)
    if failure.code == ErrorCode.TIMEOUT:
        return diagnose(route) or failure
    return failure


def kafka_denial(name: str) -> CommandFailed:
    """Kafka's own ACLs refused the route's login (a principal's own, with ``kafka_credentials``)."""
    return CommandFailed(_KAFKA_DENIALS[name], f"{NOT_AUTHORIZED_REASON} by Kafka ({name})")


def kafka_failure(exc: Exception, what: str) -> CommandFailed:
    """Turn a kafka-python exception into a command failure with Kafka's own error name."""
    from kafka.errors import KafkaTimeoutError, OffsetOutOfRangeError, UnknownTopicOrPartitionError

    if isinstance(exc, OffsetOutOfRangeError):
        return CommandFailed(ErrorCode.OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE")
    if isinstance(exc, UnknownTopicOrPartitionError):
        return topic_not_found()
    if isinstance(exc, KafkaTimeoutError):
        return CommandFailed(ErrorCode.TIMEOUT, f"{what} timed out")
    name = getattr(exc, "message", None)
    if isinstance(name, str) and name:
        if name in _KAFKA_DENIALS:
            return kafka_denial(name)
        if name == "NOT_LEADER_FOR_PARTITION":
            name = "NOT_LEADER_OR_FOLLOWER"  # Kafka's current name for errno 6
        return CommandFailed(ErrorCode.KAFKA_ERROR, name)
    text = str(exc)
    # kafka-python's own errors already start with their class name ("KafkaError: ...").
    if not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    return CommandFailed(ErrorCode.KAFKA_ERROR, text)
