"""Grading on a Dask cluster gives what grading here gives, and survives the loss of a worker.

A real `dask scheduler` and two `dask worker` processes are started on 127.0.0.1 from this venv,
each worker in a scratch directory of its own that holds nothing of the course; the class
(right, wrong, blank, hostile) is graded through `grade --scheduler`, and the gradebook, the
grading records and the autograded notebooks must equal those of a local run of the same class.
Another run loses a worker to SIGKILL in the middle of the batch. Every process is stopped in
the teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import handins
import pytest
from nbgrader.api import Gradebook
from test_parallel import TEST_LIMITS, autograded, gradebook, hostile, record, row_counts

from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS
from toeplitz_course.grader.coursedir import db_url
from toeplitz_course.grader.grade import grade
from toeplitz_course.instructor import examples

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).with_name("dask")
#: What the honest students of the tests with workers killed hand in (a kernel each notebook).
PARTS = NOTEBOOKS[:2]


class LocalCluster:
    """A scheduler and workers as separate processes, as `dask scheduler` / `dask worker` start
    them on a real cluster, each worker in its own scratch directory."""

    def __init__(self, base: Path, workers: int, nanny: bool = False, env: dict | None = None):
        self.base = base
        self.nanny = nanny
        self.env = {**os.environ, **(env or {})}
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        info = base / "scheduler.json"
        self.procs.append(self._start("scheduler", [str(DASK), "scheduler", "--host", "127.0.0.1"]
                                      + ["--port", "0", "--no-dashboard", "--scheduler-file",
                                         str(info)], base))  # fmt: skip
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.address = json.loads(info.read_text())["address"]
        for i in range(workers):
            self.add_worker(f"worker{i}")
        self.wait_for(workers)

    def _start(self, name: str, cmd: list[str], cwd: Path) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        proc.log = log
        return proc

    def add_worker(self, name: str) -> subprocess.Popen:
        scratch = self.base / name
        scratch.mkdir()
        cmd = [str(DASK), "worker", self.address, "--nthreads", "1"]
        cmd += [] if self.nanny else ["--no-nanny"]
        cmd += ["--no-dashboard", "--local-directory", str(scratch), "--name", name]
        # Each worker makes its warm parent as it starts (cluster.dask_setup).
        cmd += ["--preload", "toeplitz_course.grader.cluster"]
        proc = self._start(name, cmd, scratch)
        self.procs.append(proc)
        self.workers.append(proc)
        return proc

    def wait_for(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n, timeout=120)

    def busy_worker_pid(self) -> int | None:
        """The pid of a worker that is running a task now."""
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            busy = {addr for addr, keys in client.processing().items() if keys}
            info = client.scheduler_info()["workers"]
        names = {info[a]["name"] for a in busy if a in info}
        for proc in self.workers:
            if proc.poll() is None and Path(proc.args[proc.args.index("--name") + 1]).name in names:
                return proc.pid
        return None

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.log.close()


def _grade_on(course: Path, address: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "toeplitz_course", "--root", str(course), "grade", "--quiet"]
    cmd += list(extra)
    log = open(course / "grade-cluster.log", "w")  # noqa: SIM115
    return subprocess.Popen(cmd + ["--scheduler", address], stdout=log, stderr=subprocess.STDOUT)


def _class(course: Path) -> dict[str, examples.Case]:
    shutil.copytree(ROOT / "notebooks", course / "notebooks")
    cases = hostile(course)
    shutil.rmtree(course / "notebooks")
    return cases


def _full_gradebook(course: Path) -> dict:
    """Every field grading writes: scores, manual-grade states, comments, timestamps, penalties."""
    with Gradebook(db_url(course)) as gb:
        out = {}
        for sub in gb.assignment_submissions(ASSIGNMENT):
            out[sub.student.id] = {
                "timestamp": sub.timestamp,
                "notebooks": {
                    nb.name: {
                        "penalty": nb.late_submission_penalty,
                        "grades": {
                            g.name: (g.auto_score, g.manual_score, bool(g.needs_manual_grade))
                            for g in nb.grades
                        },
                        "comments": {c.name: c.auto_comment for c in nb.comments},
                    }
                    for nb in sub.notebooks
                },
            }
        return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    running = LocalCluster(base, workers=2)
    yield running
    running.close()
    # Dask deletes a worker's directory, and the scratch course in it, when the worker ends
    # (one killed outright leaves it to the next worker started in that directory to purge).
    for proc in running.workers:
        if proc.returncode != -signal.SIGKILL:
            scratch = Path(proc.args[proc.args.index("--local-directory") + 1])
            assert not list(scratch.rglob("toeplitz-course-*")), scratch


@pytest.fixture(scope="module")
def both(tmp_path_factory, course_template, cluster):
    """The same class graded here (jobs=2) and on the cluster, each in its own course copy."""
    base = tmp_path_factory.mktemp("cluster-vs-local")
    courses = {}
    for name in ("local", "cluster"):
        course = base / name
        shutil.copytree(course_template, course)
        with open(course / "nbgrader_config.py", "a") as f:
            f.write(TEST_LIMITS)
        courses[name] = course
    cases = _class(courses["local"])
    for course in courses.values():
        for case in cases.values():
            examples.write_case(case, course)
    remote = _grade_on(courses["cluster"], cluster.address)
    try:
        local = grade(courses["local"], jobs=2, progress=False)
    finally:
        code = remote.wait(timeout=600)
    assert code == 0, (courses["cluster"] / "grade-cluster.log").read_text()[-3000:]
    assert local.errors == {}
    return courses, cases


def test_the_cluster_grades_everyone_as_earned(both):
    courses, cases = both
    book = gradebook(courses["cluster"])
    assert set(book) == set(cases)
    for student, case in cases.items():
        scores = {cell: s for nb in book[student].values() for cell, (s, _) in nb.items()}
        assert {k: scores[k] for k in case.expected()} == case.expected(), student


def test_the_gradebook_equals_a_local_run(both):
    courses, _ = both
    assert _full_gradebook(courses["cluster"]) == _full_gradebook(courses["local"])
    assert row_counts(courses["cluster"]) == row_counts(courses["local"])


def test_records_and_autograded_notebooks_equal_a_local_run(both):
    courses, cases = both
    for student in cases:
        assert record(courses["cluster"], student) == record(courses["local"], student), student
        remote = autograded(courses["cluster"], student)
        here = autograded(courses["local"], student)
        assert sorted(remote) == sorted(here), student
        for name in here:
            assert remote[name] == here[name], (student, name)
        files = sorted(p.name for p in (courses["local"] / "autograded" / student).rglob("*"))
        assert (
            sorted(p.name for p in (courses["cluster"] / "autograded" / student).rglob("*"))
            == files
        )


def test_workers_keep_nothing_of_the_course(both, cluster):
    """Between tasks a worker holds no student's hand-in, files or rows: only its scratch course
    (in the worker's own directory), the release and a gradebook of the assignment alone."""
    from nbgrader.api import Student, SubmittedAssignment

    courses, _ = both
    release = {
        p.name: p.read_bytes() for p in (courses["local"] / "release" / ASSIGNMENT).iterdir()
    }
    scratches = [
        Path(proc.args[proc.args.index("--local-directory") + 1]) for proc in cluster.workers
    ]
    found = [p for scratch in scratches for p in scratch.rglob("toeplitz-course-*")]
    assert found, "no worker made a scratch course"
    for course in found:
        left = [p for p in course.rglob("*") if p.is_file()]
        assert {p.name for p in left if p.suffix == ".ipynb"} == set(release)
        for path in left:
            assert path.relative_to(course).parts[0] in (
                "release", "gradebook.db", "config.pickle", "nbgrader_config.py", "__pycache__"
            ), path  # fmt: skip
            if path.suffix == ".ipynb":
                assert path.read_bytes() == release[path.name]
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            assert gb.db.query(Student).count() == 0
            assert gb.db.query(SubmittedAssignment).count() == 0


def test_the_preloaded_workers_idle_quietly(cluster):
    """`--preload toeplitz_course.grader.cluster`: no statistical profiler, and the callbacks
    that run whether a worker grades or not slowed down; the memory monitor untouched."""
    from distributed import Client

    from toeplitz_course.grader.cluster import IDLE_CALLBACKS_MS

    def callbacks(dask_worker):
        return {name: pc.callback_time for name, pc in dask_worker.periodic_callbacks.items()}

    with Client(cluster.address, timeout="30s") as client:
        per_worker = client.run(callbacks)
    assert len(per_worker) == 2
    for found in per_worker.values():
        assert "profile" not in found and "profile-cycle" not in found
        assert {name: found[name] for name in IDLE_CALLBACKS_MS} == IDLE_CALLBACKS_MS
        assert found["memory_monitor"] == 100  # distributed.worker.memory.monitor-interval


def test_a_worker_killed_mid_batch_loses_no_student(tmp_path, course_template, cluster):
    course = tmp_path / "course"
    shutil.copytree(course_template, course)
    mix = {f"k{i:02d}": kind for i, kind in enumerate(["correct", "mistakes", "blank"] * 3)}
    for student, kind in mix.items():  # two kernels a student: the batch outlasts the kill
        handins.write(getattr(examples, kind)(course), course, student, PARTS)
    spare = cluster.add_worker(f"spare-{os.getpid()}")  # so that two remain after the kill
    cluster.wait_for(3)
    remote = _grade_on(course, cluster.address)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and remote.poll() is None:
        killed = cluster.busy_worker_pid()
        if killed is None:
            time.sleep(0.2)
    assert killed is not None, "no worker was ever busy"
    os.kill(killed, signal.SIGKILL)
    assert remote.wait(timeout=600) == 0, (course / "grade-cluster.log").read_text()[-3000:]
    assert spare is not None
    book = gradebook(course)
    assert set(book) == set(mix)  # everyone, once: one submission per student
    assert row_counts(course)["SubmittedAssignment"] == len(mix)
    for student, kind in mix.items():
        expected = handins.expected(f"example_{kind}", PARTS)
        scores = {cell: s for nb in book[student].values() for cell, (s, _) in nb.items()}
        assert {k: scores[k] for k in expected} == expected, student
    assert {p.stem for p in (course / "grading").glob("*.json")} == set(mix)


# Walks up from the kernel to the Dask worker process that runs the task, and kills it.
KILL_WORKER = """
import os, signal
pid = os.getpid()
while pid > 1:
    with open(f"/proc/{pid}/stat") as f:
        pid = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read()
    if b"distributed" in cmdline or b"dask" in cmdline:
        os.kill(pid, signal.SIGKILL)
        break
"""


def test_a_student_who_keeps_killing_workers_is_failed_and_the_batch_goes_on(
    tmp_path, course_template
):
    """Unconfined (the sandbox would stop it), a notebook kills the worker grading it, each
    time the scheduler retries it; after the scheduler's allowed failures it is recorded as
    failed, and the others are graded (nannies bring the workers back)."""
    import nbformat

    course = tmp_path / "course"
    shutil.copytree(course_template, course)
    handins.write(examples.correct(course), course, "a_honest", PARTS)
    nbs = examples.correct(course)
    examples.answer(nbs, "ex1_1", KILL_WORKER + examples.solutions(course)["ex1_1"])
    examples.write_case(
        examples.Case("b_killer", {f"{NOTEBOOKS[0]}.ipynb": nbformat.writes(nbs[NOTEBOOKS[0]])}),
        course,
    )
    handins.write(examples.blank(course), course, "c_blank", PARTS)
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    running = LocalCluster(tmp_path, workers=2, nanny=True, env=env)
    try:
        remote = _grade_on(course, running.address, "--no-sandbox")
        assert remote.wait(timeout=600) == 0, (course / "grade-cluster.log").read_text()[-3000:]
    finally:
        running.close()
    killer = json.loads((course / "grading" / "b_killer.json").read_text())
    assert {nb["status"] for nb in killer["notebooks"].values()} == {"failed"}
    assert any("workers died" in f["detail"] for f in killer["flags"])
    assert killer["total"] == 0
    book = gradebook(course)
    for student, kind in (("a_honest", "correct"), ("c_blank", "blank")):
        expected = handins.expected(f"example_{kind}", PARTS)
        scores = {cell: s for nb in book[student].values() for cell, (s, _) in nb.items()}
        assert {k: scores[k] for k in expected} == expected, student


def test_a_batch_that_cannot_be_written_is_written_student_by_student(monkeypatch):
    """One result that cannot be written fails its own student, not the whole batch."""
    from toeplitz_course.grader import cluster, handgrades

    attempts = []

    def write_results(root, graded, previous=None):
        attempts.append([student for student, _ in graded])
        if len(graded) > 1 or graded[0][0] == "bad":
            raise RuntimeError("cannot write")
        return {graded[0][0]: {"student": graded[0][0]}}

    monkeypatch.setattr(cluster, "write_results", write_results)
    monkeypatch.setattr(handgrades, "recorded_answers", lambda root, student: {})
    records, errors, steps = {}, {}, []
    batch = [("a", {}), ("bad", {}), ("c", {})]
    cluster._write_batch(Path("."), batch, records, errors, steps.append)
    assert attempts == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert set(records) == {"a", "c"}
    assert errors == {"bad": "RuntimeError: cannot write"}
    assert steps == ["a", "bad", "c"]  # each student once on the progress bar
