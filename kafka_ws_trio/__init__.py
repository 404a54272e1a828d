"""kafka-ws-trio: read Apache Kafka over WebSocket, speaking APISIX's PubSub protocol."""

from ._version import __version__ as __version__

__all__ = ["__version__"]
