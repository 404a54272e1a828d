"""What a run measured: the proxy's package (tree, commit, uncommitted changes, digest) and the machine.

The package is the one the proxy process imports: this tree's, or with
``--proxy-package DIR`` the one under DIR. The load clients always use this
tree's codec; ``commit`` says which bench that was.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import subprocess
import time
from pathlib import Path
from typing import Any, Final

import attrs

from .plan import REPO, Plan

#: What drives the sessions (why it is hand-written: bench/wsclient.py).
CLIENT_DESCRIPTION: Final = (
    "asyncio on uvloop with a minimal RFC 6455 client (frames parsed in Python, requests masked "
    "with a zero key), requests built by kafka_ws_trio._proto; sessions split over several processes"
)


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return done.stdout


def package_state(root: Path) -> dict[str, Any]:
    """The package under ``root``: its commit, uncommitted changes under kafka_ws_trio/, a digest of its sources."""
    digest = hashlib.sha256()
    package = root / "kafka_ws_trio"
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return {
        "package_root": str(root),
        "package_commit": _git(root, "describe", "--always", "--dirty").strip() or "unknown",
        "package_changes": _git(root, "status", "--porcelain", "--", "kafka_ws_trio").splitlines(),
        "package_sha256": digest.hexdigest()[:16],
    }


def run_meta(plan: Plan, args: argparse.Namespace, kafka_version: str) -> dict[str, Any]:
    import psutil
    from google.protobuf.internal import api_implementation

    return {
        "plan": attrs.asdict(plan),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": _git(REPO, "describe", "--always", "--dirty").strip() or "unknown",
        **package_state(args.proxy_package or REPO),
        "fresh_proxy_per_timed_run": True,
        "python": platform.python_version(),
        "protobuf_backend": api_implementation.Type(),
        "kafka_version": kafka_version,
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "client": CLIENT_DESCRIPTION,
        "client_procs": args.client_procs,
        "pipeline_depth": args.pipeline,
        # Anything here means a what-if run, not the proxy's defaults.
        "server_overrides": args.server_options,
        "route_overrides": args.route_options,
    }
