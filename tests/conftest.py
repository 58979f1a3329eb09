"""Shared fixtures: a scratch copy of the course directory with its gradebook generated."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- one graded class
#
# Grading a class costs a pool of workers, their warm parents and a kernel per notebook; feedback
# a pool of its own. The modules that grade hand-ins of many kinds share one class, graded and
# given feedback once per session: each module hands in its own students (``hand_in``) and its
# tests look only at those. Test modules import as top-level modules (``tests/`` is on the path).

#: A student whose autograded notebook is broken: feedback records it and writes everyone else's.
BROKEN_FEEDBACK = "s99_broken_feedback"


class Listener:
    """An HTTP server on 127.0.0.1 that records every request made to it (the hostile pages'
    attacks, if they ran, would call it)."""

    def __init__(self):
        import http.server
        import threading

        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _hit(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            do_GET = do_POST = do_OPTIONS = _hit

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def listener():
    listening = Listener()
    yield listening
    listening.close()


@dataclass
class GradedClass:
    course: Path
    cases: dict  # test_grading's students: student -> examples.Case
    collected: Any  # collect's report on test_grading's LMS download
    refused: list[str]  # folder names submitted_students refused (test_staging_hostile's)
    run: Any  # grade's GradeRun for the whole class
    feedback: Any  # feedback's FeedbackRun for the whole class, BROKEN_FEEDBACK among them


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory, course_template, listener) -> GradedClass:
    """test_grading's class (from an LMS zip), test_staging_hostile's attackers, and
    test_hostile_pages' hostile student, in one course: graded with two workers, then feedback
    for everyone (two workers) with one broken autograded student."""
    import test_grading
    import test_hostile_pages
    import test_staging_hostile

    from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS
    from toeplitz_course.grader.coursedir import submitted_students
    from toeplitz_course.grader.grade import grade
    from toeplitz_course.instructor.feedback import feedback

    base = tmp_path_factory.mktemp("class")
    course = base / "course"
    shutil.copytree(course_template, course)
    with open(course / "nbgrader_config.py", "a") as f:
        # The shortest of each module's limits (the last assignment wins).
        f.write(test_staging_hostile.TEST_CONFIG + test_grading.TEST_LIMITS)
    cases, collected = test_grading.hand_in(course)
    test_staging_hostile.hand_in(course, base)
    test_hostile_pages.hand_in(course, listener.url)
    refused: list[str] = []
    submitted_students(course, refused)
    run = grade(course, jobs=2, progress=False)
    broken = course / "autograded" / BROKEN_FEEDBACK
    shutil.copytree(course / "autograded" / test_grading.MISTAKES, broken)
    (broken / ASSIGNMENT / f"{NOTEBOOKS[0]}.ipynb").write_text("{")
    written = feedback(course, jobs=2, progress=False)
    return GradedClass(course, cases, collected, refused, run, written)
