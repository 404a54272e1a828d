"""Kept for old command lines: the bench is now the package ``bench/`` (run it with ``scripts/bench``).

``python scripts/bench.py ARGS`` is ``python -m bench ARGS`` from the repository root.
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    runpy.run_module("bench", run_name="__main__", alter_sys=True)
