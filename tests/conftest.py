"""Shared fixtures: a scratch copy of the course directory with its gradebook generated."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    from toeplitz_course.grader.config import ensure_tools_on_path

    ensure_tools_on_path()


def make_course(dest: Path) -> Path:
    """A course directory like the repository's (sources, release, config), gradebook generated."""
    from toeplitz_course.instructor.build import generate_release

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "source", dest / "source")
    shutil.copy(ROOT / "nbgrader_config.py", dest / "nbgrader_config.py")
    generate_release(dest)  # nbgrader generate_assignment: release/ and the gradebook's cells
    return dest


@pytest.fixture(scope="session")
def course_template(tmp_path_factory) -> Path:
    return make_course(tmp_path_factory.mktemp("course-template"))


@pytest.fixture
def course(course_template, tmp_path) -> Path:
    """A fresh, writable course directory (copied from the session's template)."""
    dest = tmp_path / "course"
    shutil.copytree(course_template, dest)
    return dest
