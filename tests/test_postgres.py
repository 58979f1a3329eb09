"""The gradebook in PostgreSQL: nbgrader's generate_assignment, then parallel grading, into it.

A throwaway PostgreSQL server (Debian's ``postgresql`` package, binaries under
``/usr/lib/postgresql/<version>/bin``) runs for this module only: a cluster in a temporary
directory, listening on a Unix socket in that directory and on no TCP port at all, trust
authentication, torn down at the end. Without the binaries the module is skipped; with them, a
server that fails to start is an error, not a skip, so CI cannot lose this test silently.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import handins
import pytest
from racing import open_at_once

from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS
from toeplitz_course.grader.coursedir import db_url
from toeplitz_course.grader.grade import grade
from toeplitz_course.instructor import examples
from toeplitz_course.instructor.build import generate_release

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parent.parent

TEST_LIMITS = """
c.HardenedExecute.timeout = 6
c.HardenedExecute.notebook_deadline = 60
"""

NB1, NB2, NB3 = NOTEBOOKS[:3]
#: hostile_class's students, with the notebooks each hands in (a kernel each; the others are
#: missing, and score 0 in rows of their own): the written answer (ex3_4) is in NB3.
CLASS = {
    "s01_correct": (NB1, NB3),
    "s02_blank": (NB1,),
    "s03_mistakes": (NB2,),
    "s11_kernel_crash": (NB2, NB3),
}


def server_binaries() -> Path | None:
    """The newest Debian PostgreSQL bin directory (or $PG_BIN) with initdb and pg_ctl."""
    candidates = [Path(os.environ["PG_BIN"])] if os.environ.get("PG_BIN") else []
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(
        versions, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


class Server:
    """A PostgreSQL cluster in a temporary directory, reachable only through its Unix socket."""

    PORT = 5432  # names the socket file in our private directory; no TCP port is opened
    USER = "grader"

    def __init__(self, bindir: Path):
        self.bindir = bindir
        # PostgreSQL refuses to run as root: as root, the cluster belongs to user postgres.
        self.owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self.as_owner = ["runuser", "-u", "postgres", "--"] if self.owner else []
        # Not under pytest's tmp_path: that is private to the user running the tests.
        self.base = Path(tempfile.mkdtemp(prefix="toeplitz-pg-"))
        if self.owner:
            os.chown(self.base, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.base / "data"
        self.log = self.base / "server.log"

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run(
            [*self.as_owner, *cmd], capture_output=True, text=True, timeout=120, cwd=self.base
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}\n{log}")

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", self.USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )  # fmt: skip
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.base}'",
            "port": str(self.PORT),
            # A throwaway cluster: durability only costs time here.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start"
        )
        self._run(
            str(self.bindir / "createdb"),
            "-h",
            str(self.base),
            "-p",
            str(self.PORT),
            "-U",
            self.USER,
            "toeplitz",
        )

    def url(self, database: str = "toeplitz") -> str:
        return f"postgresql://{self.USER}@/{database}?host={self.base}&port={self.PORT}"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(
                    str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
                )
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    pytest.importorskip(
        "psycopg", reason="psycopg 3 is what SQLAlchemy 2.1 uses for postgresql:// URLs"
    )
    bindir = server_binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql, or set PG_BIN)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no user 'postgres' to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser(1) is missing")
    server = Server(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def graded(postgres, tmp_path_factory):
    course = tmp_path_factory.mktemp("pg") / "course"
    course.mkdir()
    shutil.copytree(ROOT / "source", course / "source")
    shutil.copytree(ROOT / "notebooks", course / "notebooks")  # hostile_class reads it
    config = (ROOT / "nbgrader_config.py").read_text()
    config += TEST_LIMITS + f"c.CourseDirectory.db_url = {postgres.url()!r}\n"
    (course / "nbgrader_config.py").write_text(config)
    generate_release(course)  # nbgrader generate_assignment, into PostgreSQL
    cases = {
        c.student: handins.only(c, CLASS[c.student])
        for c in examples.hostile_class(course)
        if c.student in CLASS
    }
    for case in cases.values():
        examples.write_case(case, course)
    run = grade(course, jobs=2, progress=False)
    return course, cases, run


def test_the_gradebook_is_in_postgres(graded, postgres):
    from nbgrader.api import Gradebook

    course, _, _ = graded
    assert db_url(course) == postgres.url()
    assert not (course / "gradebook.db").exists()
    with Gradebook(db_url(course)) as gb:
        assert gb.engine.dialect.name == "postgresql"
        assert [n.name for n in gb.find_assignment(ASSIGNMENT).notebooks] == list(NOTEBOOKS)


def test_parallel_grading_into_postgres(graded):
    from nbgrader.api import Gradebook, Student, SubmittedAssignment, SubmittedNotebook

    course, cases, run = graded
    assert run.errors == {}
    assert set(run.records) == set(cases)
    with Gradebook(db_url(course)) as gb:
        for student, case in cases.items():
            sub = gb.find_submission(ASSIGNMENT, student)
            grades = [g for nb in sub.notebooks for g in nb.grades]
            scores = {g.name: g.score for g in grades if g.name.endswith("_test")}
            assert scores == case.expected(), student
            assert {g.name for g in grades if g.needs_manual_grade} <= {"ex3_4"}, student
        assert gb.db.query(Student).count() == len(cases)
        assert gb.db.query(SubmittedAssignment).count() == len(cases)
        assert gb.db.query(SubmittedNotebook).count() == len(cases) * len(NOTEBOOKS)


def test_the_crashed_notebook_is_recorded(graded):
    _, _, run = graded
    flags = {f["kind"] for f in run.records["s11_kernel_crash"]["flags"]}
    assert "kernel_died" in flags


# --- several processes opening the gradebook at once (toeplitz_course.grader.gradebook)


def test_open_gradebook_survives_the_race_in_postgres(graded, postgres):
    for i in range(8):
        assert open_at_once(postgres.url(), f"retry{i}", retry=True, processes=3) == []


def test_prepare_in_postgres(graded):
    from nbgrader.api import Course, Gradebook

    from toeplitz_course.grader.gradebook import prepare

    course, _, _ = graded
    prepare(course)
    with Gradebook(db_url(course), "toeplitz-convolution") as gb:
        ids = {c.id for c in gb.db.query(Course)}
    assert {"toeplitz-convolution", "default_course"} <= ids


# --- a cluster's results written in batches (toeplitz_course.grader.cluster.write_results)


def _submission_rows(gb, student: str) -> dict:
    sub = gb.find_submission(ASSIGNMENT, student)
    return {
        "timestamp": sub.timestamp,
        "notebooks": {
            nb.name: (
                nb.late_submission_penalty,
                {
                    g.name: (g.auto_score, g.manual_score, bool(g.needs_manual_grade))
                    for g in nb.grades
                },
                {c.name: c.auto_comment for c in nb.comments},
            )
            for nb in sub.notebooks
        },
    }


def test_batched_results_into_postgres(graded):
    """Each graded student's results, as a worker would send them, written under a new name in
    one batch: the new rows equal the graded ones; written again with other results, the rows
    are updated in place."""
    import copy
    import json

    from nbgrader.api import Comment, Grade, Gradebook, SubmittedNotebook

    from toeplitz_course.grader import cluster
    from toeplitz_course.grader.gradebook import autograde_rows

    course, cases, _ = graded
    batch = []
    with Gradebook(db_url(course)) as gb:
        for student in cases:
            folder = course / "autograded" / student / ASSIGNMENT
            files = {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}
            record = json.loads((course / "grading" / f"{student}.json").read_text())
            result = {
                "record": {**record, "student": f"copy_{student}"},
                "files": files,
                "cells": {n: cluster._cells(files.get(f"{n}.ipynb")) for n in NOTEBOOKS},
                "rows": autograde_rows(gb, ASSIGNMENT, student),
                "log": "",
            }
            batch.append((f"copy_{student}", result))
    written = cluster.write_results(course, batch)

    def counts(gb):
        return [gb.db.query(m).count() for m in (SubmittedNotebook, Grade, Comment)]

    with Gradebook(db_url(course)) as gb:
        assert gb.engine.dialect.name == "postgresql"
        for student in cases:
            assert _submission_rows(gb, f"copy_{student}") == _submission_rows(gb, student)
            original = json.loads((course / "grading" / f"{student}.json").read_text())
            assert written[f"copy_{student}"]["total"] == original["total"], student
        before = counts(gb)
    # The update path: each copy now gets the next student's results; no row is added.
    students = list(cases)
    shifted = []
    for i, (name, _) in enumerate(batch):
        result = copy.deepcopy(batch[(i + 1) % len(batch)][1])
        result["record"]["student"] = name
        shifted.append((name, result))
    cluster.write_results(course, shifted)
    with Gradebook(db_url(course)) as gb:
        assert counts(gb) == before
        for i, student in enumerate(students):
            now = _submission_rows(gb, f"copy_{student}")["notebooks"]
            assert now == _submission_rows(gb, students[(i + 1) % len(students)])["notebooks"]
