"""The proxy under test: its process (:func:`main`, ``python -m bench _proxy SPEC``) and its handle (:class:`Proxy`).

The process is a plain ``trio.run`` of ``serve_proxy`` on the default
configuration, except port 0, ``max_sessions``, the settings a scenario gives
its route (the access scenarios: ``auth``, ``jwt``, ``api_keys``, ``acl``,
``quotas``) and any what-if overrides. It
prints one JSON line when it listens and answers each ``{"cmd": "stats"}``
line on stdin with ``attrs.asdict(server.statistics())``; end of stdin is its
graceful shutdown. The ready line also names the ops port (``ops_port``, None
unless the spec's server settings ask for an ops listener).

With ``package_root`` in its spec (``--proxy-package``), this process, and only
this one, imports ``kafka_ws_trio`` from that tree: the root goes first on
``sys.path`` before anything imports the package, and the ready line names the
file that was loaded, which the orchestrator checks. The load clients keep the
current tree's codec, so a before/after comparison changes only the proxy.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from .children import Child, say
from .plan import CHILD_START_TIMEOUT, ROUTE, STATS_TIMEOUT, BenchError, raise_nofile

# ------------------------------------------------------------------ the proxy process


def _use_package(root: str | None) -> None:
    """Make ``import kafka_ws_trio`` load the package under ``root`` (None: whichever the environment has)."""
    if root is None:
        return
    if "kafka_ws_trio" in sys.modules:
        raise RuntimeError("kafka_ws_trio was imported before the proxy chose its package")
    # PathFinder comes before setuptools' editable finder on sys.meta_path, so the first sys.path entry wins.
    sys.path.insert(0, root)
    import kafka_ws_trio

    loaded = Path(kafka_ws_trio.__file__ or "").resolve()
    if not loaded.is_relative_to(Path(root).resolve()):
        raise RuntimeError(f"asked for kafka_ws_trio under {root}, but {loaded} was imported")


def main(spec: dict[str, Any]) -> None:
    import logging

    _use_package(spec.get("package_root"))

    import trio

    from kafka_ws_trio import tune_gc

    raise_nofile()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tune_gc()  # as `kafka-ws-trio serve` does
    trio.run(_serve, spec)


def _route_options(route: dict[str, Any]) -> dict[str, Any]:
    """The route's settings with its access tables (``jwt``, ``api_keys``, ``acl``, ``quotas``) built.

    The spec is JSON, so those arrive as plain tables, as in a TOML file; the
    rest goes to the route as it is. The access classes are imported only when
    a table is there, so a ``--proxy-package`` tree from before issue 13 still
    runs every other scenario.
    """
    if not {"jwt", "api_keys", "acl", "quotas", "sasl", "kafka_credentials"} & route.keys():
        return route
    from kafka_ws_trio._config import SaslConfig, Secret
    from kafka_ws_trio._config._access import AclRuleConfig, ApiKeyConfig, JwtConfig, QuotaConfig

    built = dict(route)
    if "sasl" in route:
        # The password comes from the environment the orchestrator gave this process, never the spec.
        sasl = dict(route["sasl"])
        sasl["password"] = Secret.from_env(sasl.pop("password_env"))
        built["sasl"] = SaslConfig(**sasl)
    if "kafka_credentials" in route:
        from kafka_ws_trio._config._access import KafkaCredentialsConfig

        built["kafka_credentials"] = KafkaCredentialsConfig(**route["kafka_credentials"])
    if "jwt" in route:
        built["jwt"] = JwtConfig(**route["jwt"])
    if "api_keys" in route:
        built["api_keys"] = tuple(ApiKeyConfig(**key) for key in route["api_keys"])
    if "acl" in route:
        built["acl"] = tuple(AclRuleConfig(**rule) for rule in route["acl"])
    if "quotas" in route:
        built["quotas"] = QuotaConfig(**route["quotas"])
    return built


async def _serve(spec: dict[str, Any]) -> None:
    import trio

    import kafka_ws_trio
    from kafka_ws_trio import ProxyConfig, ServerConfig, serve_proxy

    server = {"max_sessions": spec["max_sessions"], "log_level": "WARNING", **spec["server"], "port": 0}
    route = _route_options(spec["route"])
    config = ProxyConfig.single_route([spec["bootstrap"]], ROUTE, server=ServerConfig(**server), **route)
    out = trio.lowlevel.FdStream(os.dup(1))
    commands = trio.lowlevel.FdStream(os.dup(0))

    async def tell(event: dict[str, Any]) -> None:
        await out.send_all((json.dumps(event) + "\n").encode())

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_proxy, config)
        # The ops listener's port (``ops_port`` in spec["server"]; 0 picks a free one), None when it has none;
        # getattr: a --proxy-package tree from before issue 14 has no ops listener.
        ops_port = getattr(server, "ops_port", None)
        ready = {"port": server.port, "ops_port": ops_port, "pid": os.getpid(), "package": kafka_ws_trio.__file__}
        await tell({"event": "ready", **ready})
        pending = b""
        while True:
            chunk = await commands.receive_some(65536)
            if not chunk:
                break  # the orchestrator closed stdin: shut down gracefully
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip() and json.loads(line).get("cmd") == "stats":
                    await tell({"event": "stats", "t": time.time(), **attrs.asdict(server.statistics())})
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ the orchestrator's handle


class Proxy:
    """The proxy process, its psutil handle, and its statistics on request."""

    def __init__(self, name: str, spec: dict[str, Any], logdir: Path) -> None:
        import psutil

        self.child = Child(name, "_proxy", spec, logdir)
        ready = self.child.expect("ready", CHILD_START_TIMEOUT)
        root = spec.get("package_root")
        if root is not None and not Path(ready["package"]).resolve().is_relative_to(Path(root).resolve()):
            self.child.stop()
            raise BenchError(f"{name} loaded {ready['package']}, not the package under {root}")
        self.port: int = ready["port"]
        #: The ops listener (/metrics, /healthz, /readyz), when the spec's server settings asked for one.
        self.ops_port: int | None = ready.get("ops_port")
        self.package: str = ready["package"]
        self.process = psutil.Process(self.child.pid)

    def stats(self) -> dict[str, Any]:
        self.child.send("stats")
        return self.child.expect("stats", STATS_TIMEOUT)

    def wait_sessions(self, count: int, timeout: float) -> dict[str, Any]:
        """Poll statistics until exactly ``count`` sessions are open."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["sessions_open"] == count:
                return stats
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the proxy has {stats['sessions_open']} sessions open, not {count}, after {timeout:.0f}s"
                )
            time.sleep(0.2)

    def polls(self, stats: dict[str, Any]) -> int:
        return int(stats["upstreams"][ROUTE]["broker_polls"])

    def stop(self) -> None:
        code = self.child.stop()
        if code not in (0, None):
            say(f"the proxy exited with code {code}; see {self.child.log_path}")
