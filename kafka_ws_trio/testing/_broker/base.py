"""What every job of the broker manager shares: release lines, the home folder, the error.

Standard library only: ``scripts/kafka`` runs this package with the system
``python3`` before any virtual environment exists.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

#: Each supported release line maps to one pinned release: the newest of that
#: line whose artifacts Maven Central serves completely. (4.4.0 is listed there
#: but its kafka-tools-api jar is missing, so the 4 line stays on 4.3.1.)
VERSIONS: Final[dict[str, str]] = {"3.9": "3.9.2", "4": "4.3.1"}
DEFAULT_LINE: Final = "4"

#: The checkout this package sits in, when it sits in one (``kafka_ws_trio/testing/_broker``).
REPO_ROOT: Final = Path(__file__).resolve().parents[3]

#: Reports a step to the person waiting; ``up`` and friends take one so tests can silence them.
Progress = Callable[[str], None]


class BrokerError(Exception):
    """A broker could not be set up, started or stopped; the message says why."""


def stderr_progress(message: str) -> None:
    """The default :data:`Progress`: one ``[kafka]`` line on stderr, so stdout stays eval-able."""
    print(f"[kafka] {message}", file=sys.stderr, flush=True)


def home_dir() -> Path:
    """Where jars are cached and brokers keep their run folders.

    ``$KAFKA_WS_TRIO_HOME`` wins; inside a checkout of the project it is the
    ignored ``.kafka`` folder of the repo; otherwise a per-user cache folder.
    """
    env = os.environ.get("KAFKA_WS_TRIO_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if (REPO_ROOT / "setup.cfg").is_file() and (REPO_ROOT / "scripts" / "kafka").is_file():
        return REPO_ROOT / ".kafka"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "kafka-ws-trio"


def resolve_line(line: str) -> str:
    """Map ``3.9``/``39``/``3``/``4``/``4.x`` or a pinned version to a line key."""
    aliases = {"3.9": "3.9", "39": "3.9", "3": "3.9", "kafka39": "3.9", "4": "4", "kafka4": "4"}
    if line in aliases:
        return aliases[line]
    for key, version in VERSIONS.items():
        if line == version or (line.startswith("4.") and key == "4"):
            return key
    raise BrokerError(f"unknown Kafka version {line!r}; choose one of: {', '.join(VERSIONS)}")
