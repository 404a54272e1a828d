"""kafka-ws-trio: read Apache Kafka over WebSocket, speaking Apache APISIX's PubSub protocol.

The public surface is re-exported here; everything in ``_``-prefixed modules is
private. The Trio client lives in :mod:`kafka_ws_trio.client`, test helpers in
:mod:`kafka_ws_trio.testing`.
"""

from ._config import ConfigError as ConfigError
from ._config import ProxyConfig as ProxyConfig
from ._config import RouteConfig as RouteConfig
from ._config import RouteStoreConfig as RouteStoreConfig
from ._config import SaslConfig as SaslConfig
from ._config import Secret as Secret
from ._config import ServerConfig as ServerConfig
from ._config import TlsConfig as TlsConfig
from ._config import load_config as load_config
from ._config import parse_config as parse_config
from ._kafka import UpstreamStatistics as UpstreamStatistics
from ._kafka._upstream import TopicStreamStatistics as TopicStreamStatistics
from ._proto import ErrorCode as ErrorCode
from ._proto import Record as Record
from ._runtime import tune_gc as tune_gc
from ._server import ProxyServer as ProxyServer
from ._server import ProxyStatistics as ProxyStatistics
from ._server import RouteChanges as RouteChanges
from ._server import serve_proxy as serve_proxy
from ._version import __version__ as __version__

__all__ = [
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
