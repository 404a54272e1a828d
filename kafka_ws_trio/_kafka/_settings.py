"""kafka-python settings for a route's consumers and producers, TLS included (secrets are revealed only here)."""

from __future__ import annotations

import itertools
import os
import socket
import ssl
from typing import Any, Final

from .._config import RouteConfig
from .._proto import Isolation

#: Records kafka-python hands over per poll.
MAX_POLL_RECORDS: Final = 2000
#: Bytes a record batch adds around its records (Kafka's v2 batch header), with room to spare.
MAX_BATCH_OVERHEAD: Final = 512

_client_ids = itertools.count(1)


def ssl_context(route: RouteConfig) -> ssl.SSLContext | None:
    """The TLS context for the route's brokers, or None for plaintext."""
    tls = route.tls
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.verify:
        if tls.ca_file:
            context.load_verify_locations(cafile=tls.ca_file)
        else:
            context.load_default_certs()
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        password = tls.key_password.reveal() if tls.key_password is not None else None
        context.load_cert_chain(tls.cert_file, tls.key_file, password=password)
    return context


def _client_config(route: RouteConfig) -> dict[str, Any]:
    """What every kafka-python client of the route shares: brokers, its name, TLS and SASL (secrets included)."""
    config: dict[str, Any] = {
        "bootstrap_servers": list(route.nodes),
        "client_id": f"{route.client_id}-{next(_client_ids)}",
        "security_protocol": route.security_protocol,
        "reconnect_backoff_max_ms": 1000,
    }
    context = ssl_context(route)
    if context is not None:
        config["ssl_context"] = context
    if route.sasl is not None:
        config["sasl_mechanism"] = route.sasl.mechanism
        config["sasl_plain_username"] = route.sasl.username
        config["sasl_plain_password"] = route.sasl.password.reveal()
    return config


def consumer_config(route: RouteConfig, isolation: Isolation = Isolation.READ_UNCOMMITTED) -> dict[str, Any]:
    """kafka-python settings for one of this route's consumers (secrets included).

    ``isolation`` READ_COMMITTED makes its fetches and end-offset lookups stop at the
    last stable offset and leaves out records of aborted transactions.
    """
    request_timeout_ms = int(route.request_timeout * 1000)
    return _client_config(route) | {
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "none",
        "bootstrap_timeout_ms": request_timeout_ms,
        # kafka-python requires fetch_max_wait_ms < request_timeout_ms.
        "request_timeout_ms": max(request_timeout_ms, int(route.fetch_max_wait * 1000) + 1000),
        "fetch_max_wait_ms": int(route.fetch_max_wait * 1000),
        "max_partition_fetch_bytes": route.fetch_max_bytes,
        "fetch_max_bytes": route.fetch_max_bytes,
        "max_poll_records": MAX_POLL_RECORDS,
        "isolation_level": "read_committed" if isolation == Isolation.READ_COMMITTED else "read_uncommitted",
    }


#: Milliseconds within which a member must poll again or be put out of its group; also how
#: long a rebalance waits for live members to join it (kafka-python's max_poll_interval_ms).
GROUP_REBALANCE_TIMEOUT_MS: Final = 60_000


def group_config(route: RouteConfig, group: str) -> dict[str, Any]:
    """kafka-python settings for a consumer that is one member of ``group`` (it fetches nothing itself).

    Offsets are committed by the proxy, never by kafka-python on its own. A partition
    without a committed offset gets a position from ``latest`` inside kafka-python, which
    the proxy does not use: it starts such a partition where the subscribe says.
    """
    return consumer_config(route) | {
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "latest",
        "session_timeout_ms": int(route.group_session_timeout * 1000),
        "heartbeat_interval_ms": int(route.group_heartbeat_interval * 1000),
        "max_poll_interval_ms": GROUP_REBALANCE_TIMEOUT_MS,
    }


def admin_config(route: RouteConfig) -> dict[str, Any]:
    """kafka-python settings for the route's admin client (topic limits)."""
    request_timeout_ms = int(route.request_timeout * 1000)
    return _client_config(route) | {
        "request_timeout_ms": request_timeout_ms,
        "bootstrap_timeout_ms": request_timeout_ms,
    }


def delivery_timeout(route: RouteConfig) -> float:
    """Seconds within which a produced record has its result: a linger, then one request."""
    return route.produce_linger + route.request_timeout


def transaction_id_prefix(route: RouteConfig) -> str:
    """The route's transactional.id prefix: configured, or unique to this process on this host."""
    if route.transaction_id_prefix is not None:
        return route.transaction_id_prefix
    return f"{route.client_id}-{socket.gethostname()}-{os.getpid()}-"


def producer_config(route: RouteConfig, acks: int, transactional_id: str | None = None) -> dict[str, Any]:
    """kafka-python settings for a producer of this route with ``acks`` (-1 all, 1 leader, 0 none).

    ``acks=-1`` is idempotent unless the route says otherwise; a transactional producer always is.
    Topics are never created by producing.
    """
    request_timeout_ms = int(route.request_timeout * 1000)
    config = _client_config(route) | {
        "acks": acks,
        "enable_idempotence": transactional_id is not None or acks == -1,
        "allow_auto_create_topics": False,
        "linger_ms": int(route.produce_linger * 1000),
        "batch_size": route.produce_batch_bytes,
        # The record bound is checked before send(); this only must not refuse what it lets through.
        "max_request_size": max(route.produce_max_record_bytes, route.produce_batch_bytes) + MAX_BATCH_OVERHEAD,
        "request_timeout_ms": request_timeout_ms,
        "delivery_timeout_ms": int(delivery_timeout(route) * 1000),
        "max_block_ms": request_timeout_ms,
        "bootstrap_timeout_ms": request_timeout_ms,
    }
    if transactional_id is not None:
        config["transactional_id"] = transactional_id
        # Kafka aborts it a little after the proxy would have.
        config["transaction_timeout_ms"] = int((route.transaction_timeout + route.request_timeout) * 1000)
    return config


def split_node(node: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` as a (host, port) pair."""
    host, _, port = node.rpartition(":")
    return host.strip("[]"), int(port)
