"""Grading in parallel changes nothing but the time it takes.

One class (hostile and broken hand-ins among honest ones, and three students who probe for state
left by others) is graded twice from the same submissions, in two copies of the course: once by a
single process (jobs=1), once by two workers (jobs=2). Gradebooks, autograded notebooks and
grading records must agree; grading again must change nothing and add no rows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import handins
import nbformat
import pytest
from nbgrader.api import (
    Comment,
    Grade,
    Gradebook,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
)
from racing import open_at_once

from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS, VERDICT_KEY, exercises_in
from toeplitz_course.grader.coursedir import db_url
from toeplitz_course.grader.grade import grade
from toeplitz_course.grader.gradebook import prepare
from toeplitz_course.instructor import examples

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parent.parent

# Short limits so the hostile cases cost little; the course's own are in config.py.
TEST_LIMITS = """
c.HardenedExecute.timeout = 6
c.HardenedExecute.notebook_deadline = 60
"""

NB1, NB2, NB3, NB4, NB5, _ = NOTEBOOKS

#: hostile_class's students, each handing in the notebooks its hostility is in (a kernel each;
#: the others are missing and score 0): a notebook after the crash, a valid one beside the
#: invalid one, so that each shows the rest of its hand-in graded.
HOSTILE = {
    "s03_mistakes": (NB1,),
    "s04_skip_tags": (NB2,),
    "s06_duplicates": (NB1, NB5),
    "s11_kernel_crash": (NB2, NB3),
    "s13_invalid_json": (NB3, NB4),
}


def hostile(course: Path) -> dict[str, examples.Case]:
    """HOSTILE's cases (hostile_class reads the committed edition from ``course/notebooks``)."""
    return {
        c.student: handins.only(c, HOSTILE[c.student])
        for c in examples.hostile_class(course)
        if c.student in HOSTILE
    }


# Every place a kernel could leave state for the next one, if kernels shared anything: a module
# they both import (torch, our own package), builtins, the environment, the working directory's
# module search path. The check comes first, so that whichever student runs second fails
# exercise 1.1 if anything leaked; then the student leaves its own mark.
PROBE = """\
import builtins, os, sys
import torch
import toeplitz_course
assert not hasattr(torch, "_leak"), f"torch._leak = {torch._leak!r}"
assert not hasattr(builtins, "_leak"), "builtins._leak"
assert not hasattr(toeplitz_course, "_leak"), "toeplitz_course._leak"
assert "TOEPLITZ_LEAK" not in os.environ, "os.environ['TOEPLITZ_LEAK']"
assert "_leak_module" not in sys.modules, "sys.modules['_leak_module']"
assert "_leak_global" not in globals(), "a global"
"""

MARK = """\
torch._leak = builtins._leak = toeplitz_course._leak = {who!r}
os.environ["TOEPLITZ_LEAK"] = {who!r}
sys.modules["_leak_module"] = sys
_leak_global = {who!r}
"""

NB1_TESTS = {e.test_id for e in exercises_in(NB1) if e.test_id}


def leak_cases(course: Path) -> list[examples.Case]:
    """Two students who each probe, then mark (notebook 1 only), and a control.

    The control marks in exercise 1.1 and probes in 1.2 *of the same kernel*: it shows the probe
    sees state when there is some to see, so that full marks for the other two mean something.
    """
    solutions = examples.solutions(course)
    cases = []
    for who in ("leak_a", "leak_b"):
        nbs = examples.correct(course)
        examples.answer(nbs, "ex1_1", PROBE + MARK.format(who=who) + solutions["ex1_1"])
        cases.append(
            examples.Case(
                who,
                {f"{NB1}.ipynb": nbformat.writes(nbs[NB1])},
                missing_notebooks=set(NOTEBOOKS[1:]),
            )
        )
    nbs = examples.correct(course)
    examples.answer(nbs, "ex1_1", PROBE + MARK.format(who="control") + solutions["ex1_1"])
    examples.answer(nbs, "ex1_2", PROBE + solutions["ex1_2"])
    cases.append(
        examples.Case(
            "leak_control",
            {f"{NB1}.ipynb": nbformat.writes(nbs[NB1])},
            wrong={"ex1_2_test"},
            missing_notebooks=set(NOTEBOOKS[1:]),
        )
    )
    return cases


@pytest.fixture(scope="module")
def graded(tmp_path_factory, course_template):
    """The same class graded sequentially and in parallel, each in its own course copy."""
    base = tmp_path_factory.mktemp("parallel")
    courses = {}
    for name in ("sequential", "parallel"):
        course = base / name
        shutil.copytree(course_template, course)
        with open(course / "nbgrader_config.py", "a") as f:
            f.write(TEST_LIMITS)
        courses[name] = course
    # hostile_class builds every case, the Colab round trip too, from the committed edition.
    shutil.copytree(ROOT / "notebooks", courses["sequential"] / "notebooks")
    wanted = hostile(courses["sequential"])
    cases = {**wanted, **{c.student: c for c in leak_cases(courses["sequential"])}}
    assert set(HOSTILE) <= set(cases)
    for course in courses.values():
        for case in cases.values():
            examples.write_case(case, course)
    # The sequential run is the command an instructor types, in a process of its own, so that
    # both runs share the two cores instead of taking turns.
    with open(base / "sequential.log", "w") as log:
        sequential = subprocess.Popen(
            [sys.executable, "-m", "toeplitz_course", "--root", str(courses["sequential"])]
            + ["grade", "--jobs", "1", "--quiet"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            run = grade(courses["parallel"], jobs=2, progress=False)
        finally:
            returncode = sequential.wait(timeout=500)
    assert returncode == 0, (base / "sequential.log").read_text()[-3000:]
    return courses, cases, run


# --- what a gradebook, an autograded notebook and a record hold, without what may vary


def gradebook(course: Path) -> dict:
    """student -> notebook -> grade cell -> (score, needs_manual_grade)."""
    with Gradebook(db_url(course)) as gb:
        return {
            sub.student.id: {
                nb.name: {g.name: (g.score, bool(g.needs_manual_grade)) for g in nb.grades}
                for nb in sub.notebooks
            }
            for sub in gb.assignment_submissions(ASSIGNMENT)
        }


def row_counts(course: Path) -> dict[str, int]:
    with Gradebook(db_url(course)) as gb:
        return {
            model.__name__: gb.db.query(model).count()
            for model in (Student, SubmittedAssignment, SubmittedNotebook, Grade, Comment)
        }


def _text(value, course: Path) -> str:
    text = "".join(value) if isinstance(value, list) else str(value)
    text = text.replace(str(course), "<course>")
    text = re.sub(r"0x[0-9a-f]{6,}", "0x?", text)  # object addresses in reprs
    return re.sub(r"ipykernel_\d+", "ipykernel_?", text)  # a kernel's pid in traceback file names


def _outputs(cell, course: Path, exact: bool) -> list[tuple]:
    """Outputs in comparable form. Consecutive stream outputs are merged: how a cell's printing
    is split into messages depends on timing. Of cells that are not graded only the kinds of
    output are compared: notebook 3 draws from an unseeded generator, which is the point of it."""
    out: list[tuple] = []
    for o in cell.get("outputs", []):
        kind = o["output_type"]
        if kind == "stream":
            text = _text(o["text"], course) if exact else ""
            if out and out[-1][:2] == ("stream", o["name"]):
                out[-1] = ("stream", o["name"], out[-1][2] + text)
            else:
                out.append(("stream", o["name"], text))
        elif kind == "error":
            out.append(("error", o["ename"], _text(o["evalue"], course)))
        else:
            data = o.get("data", {})
            plain = _text(data.get("text/plain", ""), course) if exact else ""
            out.append((kind, tuple(sorted(data)), plain))
    return out


def autograded(course: Path, student: str) -> dict[str, list]:
    found = {}
    for path in sorted((course / "autograded" / student / ASSIGNMENT).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cells = []
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            outputs = _outputs(cell, course, exact=bool(meta.get("grade")))
            # Whether the kernel announced the cell it died in before it died is a race.
            died = any(o[:2] == ("error", "DeadKernelError") for o in outputs)
            cells.append(
                {
                    "type": cell.cell_type,
                    "source": cell.source,
                    "nbgrader": meta,
                    "verdict": cell.metadata.get(VERDICT_KEY),
                    "execution_count": "died" if died else cell.get("execution_count"),
                    "outputs": outputs,
                }
            )
        found[path.stem] = cells
    return found


def record(course: Path, student: str) -> dict:
    text = (course / "grading" / f"{student}.json").read_text()
    return json.loads(text.replace(str(course), "<course>"))


# --- the tests


def test_both_runs_graded_everyone(graded):
    courses, cases, run = graded
    assert run.errors == {}
    assert set(run.records) == set(cases)
    for course in courses.values():
        assert {p.stem for p in (course / "grading").glob("*.json")} == set(cases)


def test_parallel_gradebook_equals_sequential(graded):
    courses, cases, _ = graded
    sequential, parallel = gradebook(courses["sequential"]), gradebook(courses["parallel"])
    assert set(sequential) == set(cases)
    for student in cases:
        assert parallel[student] == sequential[student], student


def test_scores_are_the_expected_ones(graded):
    courses, cases, _ = graded
    for course in courses.values():
        book = gradebook(course)
        for student, case in cases.items():
            scores = {cell: s for nb in book[student].values() for cell, (s, _) in nb.items()}
            assert {k: scores[k] for k in case.expected()} == case.expected(), student


def test_parallel_autograded_notebooks_equal_sequential(graded):
    courses, cases, _ = graded
    for student in cases:
        sequential = autograded(courses["sequential"], student)
        parallel = autograded(courses["parallel"], student)
        assert sorted(parallel) == sorted(sequential), student
        for name in sequential:
            assert parallel[name] == sequential[name], (student, name)


def test_parallel_records_equal_sequential(graded):
    courses, cases, _ = graded
    for student in cases:
        assert record(courses["parallel"], student) == record(courses["sequential"], student)


def answer_errors(course: Path, student: str, grade_id: str) -> list[str]:
    nb = nbformat.read(course / "autograded" / student / ASSIGNMENT / f"{NB1}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]


def test_kernels_share_no_state(graded):
    """Graded one after the other by one process (jobs=1), neither student sees the other's
    marks; the control, which marks and probes in one kernel,
    does."""
    courses, cases, _ = graded
    course = courses["sequential"]  # graded by one process, one student after the other
    book = gradebook(course)
    for student in ("leak_a", "leak_b"):
        assert answer_errors(course, student, "ex1_1") == []
        scores = {t: book[student][NB1][t][0] for t in NB1_TESTS}
        assert scores == {t: cases[student].expected()[t] for t in NB1_TESTS}
        assert all(scores.values())
    assert book["leak_control"][NB1]["ex1_1_test"][0] > 0
    assert book["leak_control"][NB1]["ex1_2_test"][0] == 0
    assert answer_errors(course, "leak_control", "ex1_2") == [
        "AssertionError: torch._leak = 'control'"
    ]


def test_regrading_changes_nothing_and_adds_no_rows(graded):
    courses, cases, _ = graded
    course = courses["parallel"]
    before = gradebook(course), row_counts(course)
    records = {s: record(course, s) for s in cases}
    # Notebooks graded, and notebooks zeroed (invalid, missing): both ways of writing grades.
    again = ["s06_duplicates", "s13_invalid_json"]
    run = grade(course, again, jobs=1, progress=False)  # one process: no pool to start again
    assert run.errors == {}
    assert (gradebook(course), row_counts(course)) == before
    assert before[1]["SubmittedAssignment"] == len(cases)
    assert before[1]["SubmittedNotebook"] == len(cases) * len(NOTEBOOKS)
    assert {s: record(course, s) for s in cases} == records


# --- opening the gradebook from several processes at once (toeplitz_course.grader.gradebook)


def test_open_gradebook_survives_the_race(tmp_path):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}?timeout=120"
    Gradebook(url, "setup").close()
    for i in range(5):
        assert open_at_once(url, f"course{i}", retry=True, processes=3) == []


def test_prepare_creates_every_course_row_grading_opens(course):
    from nbgrader.api import Course

    prepare(course)
    with Gradebook(db_url(course), "toeplitz-convolution") as gb:
        assert {c.id for c in gb.db.query(Course)} == {"toeplitz-convolution", "default_course"}


# Run as a child subreaper, so that any process of the run left unreaped (the warm parent of a
# worker that ended in os._exit, say) becomes this script's child and is seen.
UNREAPED = """\
import ctypes, json, os, sys
from toeplitz_course.grader.grade import grade
assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
run = grade(sys.argv[1], jobs=2, progress=False)
left = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\\0", b" ").decode()
    except OSError:
        continue
    # multiprocessing's resource tracker lives as long as the process that started it.
    if int(fields[1]) == os.getpid() and "resource_tracker" not in cmd:
        left.append([pid, fields[0], cmd[:100]])
print(json.dumps({"errors": run.errors, "left": left, "graded": len(run.records)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreaper: Linux")
def test_a_parallel_run_reaps_every_process_it_started(course):
    from toeplitz_course.instructor import bench

    for student, kind in bench.class_mix(2).items():  # a kernel each is enough to leave any
        handins.write(getattr(examples, kind)(course), course, student, NOTEBOOKS[:1])
    out = subprocess.run(
        [sys.executable, "-c", UNREAPED, str(course)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {} and result["graded"] == 2
    assert result["left"] == []


def _worker_view() -> dict:
    from toeplitz_course.grader import warmkernel
    from toeplitz_course.grader.config import KERNEL_PRELOAD

    zygote = warmkernel._zygotes[tuple(KERNEL_PRELOAD)]
    return {
        "env": {k: os.environ.get(k) for k in ("TOEPLITZ_MARKER", "OPENBLAS_NUM_THREADS")},
        "zygote": type(zygote.proc).__name__,
        "torch_preloaded": "torch" in sys.modules,
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forkserver and forked zygotes")
def test_workers_are_forked_with_the_callers_environment_and_fork_their_warm_parents(
    monkeypatch,
):
    from concurrent.futures import ProcessPoolExecutor

    from toeplitz_course.grader.grade import _worker_context, _worker_init

    monkeypatch.setenv("TOEPLITZ_MARKER", "the caller's")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)  # the server imports with it set
    with (
        _worker_context() as (context, initargs),
        ProcessPoolExecutor(
            1, mp_context=context, initializer=_worker_init, initargs=initargs
        ) as pool,
    ):
        assert context.get_start_method() == "forkserver"
        view = pool.submit(_worker_view).result(timeout=120)
    assert view == {
        "env": {"TOEPLITZ_MARKER": "the caller's", "OPENBLAS_NUM_THREADS": None},
        "zygote": "_ForkedZygote",
        "torch_preloaded": True,
    }


@pytest.mark.parametrize(
    ("cores", "memory_gib", "expected"),
    [
        (2, 24, 4),  # this machine: two per core
        (2, 4, 2),  # too little memory for a second worker per core: one per core, as before
        (32, 40, 32),  # memory covers 16 workers at worst: never below one per core
        (8, 30, 12),  # 2.5 GiB each: 12 workers, between one and two per core
        (1, 1, 1),
    ],
)
def test_the_default_is_two_workers_per_core_as_memory_allows(
    monkeypatch, cores, memory_gib, expected
):
    from toeplitz_course.grader import grade as grading

    page = 4096
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    pages = {"SC_PAGE_SIZE": page, "SC_PHYS_PAGES": memory_gib * (1 << 30) // page}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert grading.default_jobs() == expected
