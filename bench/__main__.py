"""``python -m bench [ROLE SPEC]``: the orchestrator, or one of its children.

* no role: the orchestrator (``bench.cli``), which ``scripts/bench`` runs;
* ``_proxy SPEC``: the proxy under test (``bench.proxy``);
* ``_worker SPEC``: a load client (``bench.load``) or a direct Kafka client
  (``bench.direct``), by the spec's ``kind``.

Each role imports only what it needs, and nothing here imports
``kafka_ws_trio``: the proxy child chooses which tree to import it from.
"""

from __future__ import annotations

import contextlib
import json
import sys


def _run(argv: list[str]) -> int:
    if len(argv) > 1 and argv[0] == "_proxy":
        from . import proxy

        with contextlib.suppress(KeyboardInterrupt):
            proxy.main(json.loads(argv[1]))
        return 0
    if len(argv) > 1 and argv[0] == "_worker":
        from . import direct

        spec = json.loads(argv[1])
        with contextlib.suppress(KeyboardInterrupt):
            if spec["kind"] in direct.WORKERS:
                direct.run(spec)
            else:
                from . import load

                load.run(spec)
        return 0
    from .cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(_run(sys.argv[1:]))
