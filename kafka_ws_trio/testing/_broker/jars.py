"""The broker's jars: fetched once from Maven Central through the pom shipped beside this package."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Final

from .base import VERSIONS, BrokerError, Progress, home_dir, stderr_progress

#: The pom lives in ``kafka_ws_trio/testing`` (package data, and ``scripts/kafka-broker-pom.xml`` links to it).
POM_FILE: Final = Path(__file__).resolve().parent.parent / "kafka-broker-pom.xml"
#: How many of Maven's last output lines a failure quotes.
MAVEN_TAIL_LINES: Final = 15


def ensure_jars(line: str, progress: Progress = stderr_progress) -> Path:
    """Download the broker's jars for ``line`` once; return the folder holding them.

    The download lands in a staging folder that is renamed only when complete,
    so an interrupted run never leaves a half-filled cache that looks finished.
    """
    version = VERSIONS[line]
    target = home_dir() / "jars" / version
    marker = target / ".complete"
    if marker.is_file():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven ('mvn') is not on PATH; install it (Debian: apt-get install maven)")
    progress(f"downloading Kafka {version} and its dependencies from Maven Central ...")
    staging = target.with_name(f".{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM_FILE),
        "dependency:copy-dependencies",
        f"-Dkafka.version={version}",
        f"-Dkafka.line={line.split('.')[0]}",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = (result.stdout + result.stderr).strip().splitlines()[-MAVEN_TAIL_LINES:]
        raise BrokerError(
            f"Maven could not fetch Kafka {version}:\n  "
            + "\n  ".join(tail)
            + "\nCheck that Maven Central is reachable, then run again."
        )
    jars = sorted(p.name for p in staging.glob("*.jar"))
    if not any(name.startswith(f"kafka_2.13-{version}") for name in jars):
        raise BrokerError(f"Maven finished but no kafka_2.13-{version} jar is in {staging}")
    (staging / ".complete").write_text(version + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    progress(f"fetched {len(jars)} jars in {time.monotonic() - started:.1f}s into {target}")
    return target
