"""./scripts/test names every Python the selected tox environments need and stops when one is missing.

Before, tox skipped a missing interpreter and CI went green with most
environments never run (issue 8, bug 9). These tests drive the shell
functions in ``scripts/_common.sh`` with a PATH holding fake interpreters.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash") or "/bin/bash"

pytestmark = pytest.mark.timeout(60)


def fake_python(folder: Path, version: str, *, works: bool = True) -> None:
    """``python<version>`` that claims to be that version (or fails, like an unselected pyenv shim)."""
    path = folder / f"python{version}"
    path.write_text(f"#!{BASH}\nexit {0 if works else 1}\n")
    path.chmod(0o755)


def run(folder: Path, script: str) -> subprocess.CompletedProcess[str]:
    for tool in ("dirname", "tr", "grep", "sed", "sort"):
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    return subprocess.run(
        [BASH, "-c", f"source {REPO}/scripts/_common.sh; {script}"],
        env={"PATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_default_envlist_needs_every_supported_python(tmp_path: Path) -> None:
    result = run(tmp_path, "tox_pythons")
    assert result.stdout.split() == ["3.10", "3.11", "3.12", "3.13"], result.stderr


def test_selected_environments_need_only_their_pythons(tmp_path: Path) -> None:
    result = run(tmp_path, "tox_pythons -e py312-kafka4,lint -- -k listener")
    assert result.stdout.split() == ["3.12"], result.stderr


def test_all_pythons_found_passes(tmp_path: Path) -> None:
    for version in ("3.10", "3.11"):
        fake_python(tmp_path, version)
    result = run(tmp_path, "require_pythons 3.10 3.11 && echo ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_missing_pythons_stop_the_run_naming_each_and_how_to_install_it(tmp_path: Path) -> None:
    fake_python(tmp_path, "3.11")
    fake_python(tmp_path, "3.12", works=False)  # present but not runnable: missing all the same
    result = run(tmp_path, "require_pythons 3.10 3.11 3.12 3.13; echo survived")
    assert result.returncode == 1
    assert "survived" not in result.stdout
    assert "Python 3.10, 3.12, 3.13 not found" in result.stderr
    assert "pyenv install 3.10 && pyenv install 3.12 && pyenv install 3.13" in result.stderr


def test_tox_does_not_skip_missing_interpreters() -> None:
    lines = (REPO / "tox.ini").read_text().splitlines()
    assert "skip_missing_interpreters = false" in lines
