"""Build the sdist and the wheel, check them, and prove the wheel installs and runs.

Run by ``./scripts/build-dist [OUTDIR]`` (which makes a venv with the pinned tools)
and by tox's ``build`` env. Needs ``build`` and ``twine`` importable; uses only the
standard library otherwise. Every step prints what it does, and any failure exits
non-zero with the step named.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parent.parent

#: Files a working install cannot do without; a packaging slip that drops one fails here, not on a user's machine.
REQUIRED_IN_WHEEL: Final = (
    "kafka_ws_trio/py.typed",
    "kafka_ws_trio/testing/kafka-broker-pom.xml",
    "kafka_ws_trio/_pb/pubsub_pb2.py",
)


def _step(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


def _run(*command: str | Path) -> str:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"build-dist: `{' '.join(map(str, command))}` failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def main(argv: list[str]) -> int:
    outdir = Path(argv[0] if argv else "dist").resolve()
    shutil.rmtree(outdir, ignore_errors=True)
    _step(f"building the sdist and the wheel into {outdir}")
    _run(sys.executable, "-m", "build", "--outdir", outdir, REPO)
    wheels = sorted(outdir.glob("*.whl"))
    sdists = sorted(outdir.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        found = sorted(path.name for path in outdir.iterdir())
        sys.exit(f"build-dist: expected one wheel and one sdist in {outdir}, found {found}")
    wheel = wheels[0]

    _step("checking their metadata (twine check --strict)")
    _run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdists[0])
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in REQUIRED_IN_WHEEL if name not in names]
    if missing:
        sys.exit(f"build-dist: {wheel.name} lacks {', '.join(missing)}")

    _step(f"installing {wheel.name} into a fresh venv and running it")
    with tempfile.TemporaryDirectory(prefix="kafka-ws-trio-wheel-") as scratch:
        env_dir = Path(scratch) / "venv"
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
        version = _run(env_dir / "bin" / "kafka-ws-trio", "--version").strip()
        _run(env_dir / "bin" / "kafka-ws-trio", "broker", "--help")
        _run(python, "-c", "import kafka_ws_trio, kafka_ws_trio.client, kafka_ws_trio.testing")
    print(f"{wheel}\n{sdists[0]}\n({version}; upload with: twine upload {outdir}/*)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
