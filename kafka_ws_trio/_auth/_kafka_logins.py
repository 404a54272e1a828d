"""Which Kafka login a principal's session uses, on a route that maps principals to logins of their own.

The map comes from the route's ``kafka_credentials`` (a file or a text); a
file is read again when its size or modification time changes, so an
operator adds, rotates or removes a login without a restart. A file that no
longer reads keeps the last good map in use (and says so in the log once per
change): a deploy that half-wrote it must not lock everyone out.
"""

from __future__ import annotations

import logging
import os

from .._config import ConfigError
from .._config._access import KafkaCredentialsConfig, KafkaLogin

log = logging.getLogger("kafka_ws_trio.auth")


class NoKafkaLogin(Exception):
    """The principal has no Kafka login, and the route refuses such principals (answered 403)."""


class KafkaLogins:
    """A route's principal-to-login map (call :meth:`login` in a thread: it may read the file)."""

    def __init__(self, config: KafkaCredentialsConfig) -> None:
        self._config = config
        self.refuses_unmapped = config.unmapped == "refuse"
        self._stamp: tuple[int, int] | None = self._file_stamp()
        self._logins = dict(config.logins())

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._config.file is None:
            return None
        stat = os.stat(self._config.file)
        return stat.st_mtime_ns, stat.st_size

    def _refresh(self) -> None:
        try:
            stamp = self._file_stamp()
        except OSError as exc:
            stamp = None
            problem = f"cannot read it: {exc.strerror or exc}"
        else:
            if stamp == self._stamp:
                return
            try:
                self._logins = dict(self._config.logins())
            except ConfigError as exc:
                problem = str(exc)
            else:
                self._stamp = stamp
                log.info("read the Kafka logins again from %s: %d principals", self._config.file, len(self._logins))
                return
        if stamp != self._stamp:
            self._stamp = stamp  # said once per change of the file
            log.error("kept the Kafka logins read before from %s: %s", self._config.file, problem)

    def login(self, principal: str) -> KafkaLogin | None:
        """The login ``principal`` reaches Kafka with; None: the route's own (``unmapped = "route"``).

        Raises:
            NoKafkaLogin: the principal has none, and the route refuses such principals.
        """
        self._refresh()
        found = self._logins.get(principal)
        if found is None and self.refuses_unmapped:
            raise NoKafkaLogin("no Kafka login for this principal")
        return found
