"""The package's layers (ARCHITECTURE.md) hold, and each import-linter contract can fail.

`make test` runs `lint-imports` on the package itself; here each contract is broken on purpose in
a copy of the package, to show that the check would catch it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(where: Path, contract: str | None = None) -> subprocess.CompletedProcess:
    cmd = [str(LINT), "--no-cache", "--no-logo"] + (["--contract", contract] if contract else [])
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "toeplitz_course", tmp_path / "toeplitz_course")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_copy_keeps_every_contract(package_copy: Path):
    result = _lint(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # The kernel side computing or judging an answer: the sandbox's first promise.
        ("kernel/probe.py", "from toeplitz_course.course import reference", "kernel-side"),
        ("kernel/hidden.py", "from toeplitz_course.grader import verdicts", "kernel-side"),
        ("kernel/channel.py", "import nbgrader", "kernel-side"),
        ("course/reference.py", "from toeplitz_course.grader import coursedir", "course-pure"),
        ("course/contract.py", "import nbclient", "course-pure"),
        # The grader calling back up into the instructor's steps (an import circle).
        ("grader/gradebook.py", "from toeplitz_course.instructor import export", "layers"),
        ("instructor/export.py", "from toeplitz_course import __main__", "layers"),
    ],
)
def test_a_broken_layer_rule_fails_the_check(package_copy: Path, module, line, contract):
    path = package_copy / "toeplitz_course" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint(package_copy, contract)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout


def test_the_kernel_side_loads_nothing_else_of_the_project():
    """What a hidden test imports brings in no reference, verdict or grader module."""
    code = (
        "import json, sys\n"
        "from toeplitz_course.kernel import hidden, gradingkernel\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('toeplitz_course'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    loaded = json.loads(out)
    assert "toeplitz_course.kernel.hidden" in loaded
    assert all(m == "toeplitz_course" or m.startswith("toeplitz_course.kernel") for m in loaded)
