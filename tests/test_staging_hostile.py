"""Everything a student hands in is hostile (issue 20): links, special files, sizes, folder names
and timestamps under ``submitted/``, and nbgrader's exchange.

One class of attackers, beside honest students, is graded once (real nbgrader, real kernels), in the
class other modules hand their students in to (``conftest.graded_class``); each test then asserts
one thing about these students. The exchange tests run nbgrader's own release and submit.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from traitlets.config import Config

from toeplitz_course.course.contract import ASSIGNMENT, AUTOGRADED, NOTEBOOKS
from toeplitz_course.grader.coursedir import course_config, db_url
from toeplitz_course.grader.grade import grade
from toeplitz_course.grader.staging import Refused, Staging, parse_notebook, stage
from toeplitz_course.instructor import examples

ROOT = Path(__file__).resolve().parent.parent
SECRET = "HOST-SECRET-3f9c1e"  # what no file the grader writes may ever hold
LEDGER_TIME = "2025-03-01 10:00:00.000000 UTC"
RELEASED = "2025-01-01 00:00:00 UTC"

# A FIFO read the old way blocks forever: fail instead.
pytestmark = pytest.mark.timeout(600)

# Short limits: nothing here needs a long cell.
TEST_CONFIG = f"""
c.HardenedExecute.timeout = 10
c.HardenedExecute.notebook_deadline = 60
c.Staging.released = {RELEASED!r}
"""

#: Folder names that must never become a student: a spreadsheet formula, a terminal escape, a
#: forged line, bytes that are no UTF-8.
BAD_NAMES = [
    '=HYPERLINK("http://evil.example","x")',
    "evil\x1b[2J\x1b]0;pwned\x07",
    "two\nlines",
    os.fsdecode(b"latin\xff"),
]


def _nb_text(nb) -> str:
    return nbformat.writes(nb)


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def _only(correct, course: Path, student: str, *names: str) -> Path:
    """``student`` handing in the correct answer to ``names`` only."""
    folder = course / "submitted" / student / ASSIGNMENT
    for name in names:
        _write(folder, f"{name}.ipynb", _nb_text(correct[name]))
    return folder


def _deep(depth: int) -> str:
    return '{"cells": ' + "[" * depth + "]" * depth + "}"


def _attackers(course: Path, outside: Path) -> None:
    correct = examples.correct(course)
    source = course / "source" / ASSIGNMENT
    for student in ("s01_honest", "s02_victim"):
        examples.write(correct, course, student)

    # Links: to a host file, to the instructor's source, to another student; a FIFO.
    folder = _only(correct, course, "s03_links", "05_parameter_counts")
    os.symlink(source / "01_conv1d_toeplitz.ipynb", folder / "01_conv1d_toeplitz.ipynb")
    os.symlink(
        course / "submitted" / "s02_victim" / ASSIGNMENT / "02_padding.ipynb",
        folder / "02_padding.ipynb",
    )
    os.symlink(outside, folder / "03_equivariance.ipynb")
    os.mkfifo(folder / "04_conv2d_block_toeplitz.ipynb")
    os.symlink(outside, folder / "timestamp.txt")
    os.symlink(source / "03_equivariance.ipynb", folder / "submission_secret.txt")
    os.symlink(outside, folder / "data.csv")
    os.mkfifo(folder / "pipe")

    # A student folder, and an assignment folder, that are links to another student's.
    os.symlink(course / "submitted" / "s02_victim", course / "submitted" / "s04_linked_student")
    (course / "submitted" / "s05_linked_assignment").mkdir()
    os.symlink(
        course / "submitted" / "s02_victim" / ASSIGNMENT,
        course / "submitted" / "s05_linked_assignment" / ASSIGNMENT,
    )

    # Sizes: a file over the cap, JSON nested 100,000 deep, too many cells, huge attachments;
    # and one honest notebook that must still be graded.
    folder = _only(correct, course, "s06_large", "05_parameter_counts")
    settings = Staging()
    with open(folder / "01_conv1d_toeplitz.ipynb", "wb") as f:
        f.write(b" " * (settings.max_notebook_bytes + 1))
    _write(folder, "02_padding.ipynb", _deep(100_000))
    many = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("x") for _ in range(settings.max_cells + 1)]
    )
    _write(folder, "03_equivariance.ipynb", _nb_text(many))
    pasted = json.loads(_nb_text(correct["04_conv2d_block_toeplitz"]))
    blob = "A" * (settings.max_attachment_bytes + 1)
    pasted["cells"].append(
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": "![photo](attachment:photo.png)",
            "attachments": {"photo.png": {"image/png": blob}},
        }
    )
    _write(folder, "04_conv2d_block_toeplitz.ipynb", json.dumps(pasted))

    # Timestamps a student can write.
    stamps = {
        "s07_future": "2099-01-01 00:00:00.000000 UTC",
        "s08_garbage": "yesterday, honest",
        "s09_ledger": "2025-03-01 09:00:00.000000 UTC",  # earlier than collect recorded
        "s10_before_release": "2024-06-01 00:00:00.000000 UTC",
        "s11_on_time": "2025-03-01 09:30:00.000000 UTC",
    }
    for student, text in stamps.items():
        _write(_only(correct, course, student, "01_conv1d_toeplitz"), "timestamp.txt", text)
    # Beside what collect recorded of the other students in the class, if anything.
    ledger = course / "downloaded" / ASSIGNMENT / "collected.json"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(ledger.read_text()) if ledger.exists() else {"assignment": ASSIGNMENT}
    known.setdefault("students", {})["s09_ledger"] = {"timestamp": LEDGER_TIME}
    ledger.write_text(json.dumps(known))

    for name in BAD_NAMES:
        _only(correct, course, name, "01_conv1d_toeplitz")


#: This module's students: the 11 folders that are student ids.
STUDENTS = (
    "s01_honest",
    "s02_victim",
    "s03_links",
    "s04_linked_student",
    "s05_linked_assignment",
    "s06_large",
    "s07_future",
    "s08_garbage",
    "s09_ledger",
    "s10_before_release",
    "s11_on_time",
)


def hand_in(course: Path, base: Path) -> None:
    """This module's attackers, into ``course`` (the session's class, ``conftest.graded_class``,
    which is graded with ``TEST_CONFIG``); the host's secret in ``base``, outside the course."""
    outside = base / "host_secret.txt"
    outside.write_text(SECRET)
    _attackers(course, outside)


@pytest.fixture(scope="module")
def graded(graded_class):
    return graded_class.course, graded_class.run, graded_class.refused


def record(course: Path, student: str) -> dict:
    return json.loads((course / "grading" / f"{student}.json").read_text())


def scores(course: Path, student: str) -> dict[str, float]:
    with Gradebook(db_url(course)) as gb:
        sub = gb.find_submission(ASSIGNMENT, student)
        return {g.name: g.score for nb in sub.notebooks for g in nb.grades}


def submitted_at(course: Path, student: str):
    with Gradebook(db_url(course)) as gb:
        return gb.find_submission(ASSIGNMENT, student).timestamp


def flags(course: Path, student: str, kind: str) -> list[dict]:
    return [f for f in record(course, student)["flags"] if f["kind"] == kind]


def status(course: Path, student: str) -> dict[str, str]:
    return {name: nb["status"] for name, nb in record(course, student)["notebooks"].items()}


FULL = {e.test_id: float(e.points) for e in AUTOGRADED}


def test_the_batch_graded_everyone(graded):
    course, run, _ = graded
    assert run.errors == {}
    assert set(STUDENTS) <= set(run.records)
    assert not set(BAD_NAMES) & set(run.records)


def test_honest_students_get_every_point(graded):
    course, _, _ = graded
    for student in ("s01_honest", "s02_victim"):
        got = {k: v for k, v in scores(course, student).items() if k in FULL}
        assert got == FULL, student
        assert not [f for f in record(course, student)["flags"] if f["kind"] != "missing"]


def test_no_file_the_grader_writes_holds_what_a_link_points_to(graded):
    course, _, _ = graded
    for folder in ("autograded", ".grading", "grading"):
        for path in (course / folder).rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert SECRET.encode() not in path.read_bytes(), path
    # What reaches the kernel's working copy beside the notebooks: the staged time, nothing of
    # the instructor's source the secret was linked to.
    beside = course / "autograded" / "s03_links" / ASSIGNMENT
    assert {p.name for p in beside.iterdir() if p.suffix != ".ipynb"} == {"timestamp.txt"}
    assert (beside / "timestamp.txt").read_text().strip().endswith("UTC")


def test_links_and_special_files_are_refused_with_a_flag(graded):
    course, _, _ = graded
    got = status(course, "s03_links")
    linked = ["01_conv1d_toeplitz", "02_padding", "03_equivariance", "04_conv2d_block_toeplitz"]
    assert {name: got[name] for name in linked} == dict.fromkeys(linked, "invalid")
    assert got["05_parameter_counts"] == "graded"
    refused = {f["notebook"]: f["detail"] for f in flags(course, "s03_links", "special_file")}
    assert set(refused) == {*linked, "timestamp.txt", "submission_secret.txt", "data.csv", "pipe"}
    assert "FIFO" in refused["04_conv2d_block_toeplitz"]
    assert "symbolic link" in refused["01_conv1d_toeplitz"]
    earned = scores(course, "s03_links")
    # Linked to the source, it would have earned every point; to the victim, the victim's.
    assert all(earned[e.test_id] == 0 for e in AUTOGRADED if e.notebook in linked)


@pytest.mark.parametrize("student", ["s04_linked_student", "s05_linked_assignment"])
def test_a_linked_folder_scores_nothing_of_whose_it_is(graded, student):
    course, _, _ = graded
    assert set(status(course, student).values()) == {"invalid"}
    assert [f["notebook"] for f in flags(course, student, "special_file")] == [""]
    assert all(score == 0 for name, score in scores(course, student).items() if name in FULL)


def test_caps_refuse_a_notebook_not_the_student(graded):
    course, _, _ = graded
    got = status(course, "s06_large")
    assert got["05_parameter_counts"] == "graded"
    capped = {f["notebook"]: f["detail"] for f in flags(course, "s06_large", "too_large")}
    assert set(capped) == {
        "01_conv1d_toeplitz",
        "02_padding",
        "03_equivariance",
        "04_conv2d_block_toeplitz",
    }
    assert all(got[name] == "invalid" for name in capped)
    assert "nested deeper" in capped["02_padding"]
    assert "cells" in capped["03_equivariance"]
    assert "attachments" in capped["04_conv2d_block_toeplitz"]


def test_folders_that_are_no_student_id_are_refused_in_one_printable_line(graded):
    course, run, refused = graded
    assert len(refused) == len(BAD_NAMES)
    for line in refused:
        assert line.isprintable() and "\x1b" not in line
        line.encode("utf-8")  # prints on any UTF-8 terminal: no lone surrogate left
    assert any("\\x1b" in line for line in refused)
    assert any("\\xff" in line for line in refused)
    graded_names = set(run.records) | {p.stem for p in (course / "grading").glob("*.json")}
    assert not graded_names & set(BAD_NAMES)
    # grade's own summary names each refused folder, printably, under its first line.
    assert set(refused) <= set(run.format().splitlines()[1:])


def test_a_timestamp_in_the_future_is_not_trusted(graded):
    course, _, _ = graded
    (flag,) = flags(course, "s07_future", "timestamp")
    assert "2099" in flag["detail"]
    when = submitted_at(course, "s07_future")
    assert when.year < 2099 and abs(time.time() - when.timestamp()) < 24 * 3600


def test_an_unreadable_timestamp_stops_nothing(graded):
    course, _, _ = graded
    assert flags(course, "s08_garbage", "timestamp")
    # Stock nbgrader fails the whole submission ("Invalid timestamp string").
    assert status(course, "s08_garbage")["01_conv1d_toeplitz"] == "graded"
    assert submitted_at(course, "s08_garbage") is not None


def test_the_collect_ledger_wins_over_timestamp_txt(graded):
    course, _, _ = graded
    (flag,) = flags(course, "s09_ledger", "timestamp")
    assert "09:00:00" in flag["detail"] and "10:00:00" in flag["detail"]
    assert str(submitted_at(course, "s09_ledger")) == "2025-03-01 10:00:00"


def test_a_timestamp_before_the_release_is_flagged(graded):
    course, _, _ = graded
    (flag,) = flags(course, "s10_before_release", "timestamp")
    assert "before the release" in flag["detail"]
    assert submitted_at(course, "s10_before_release").year > 2024


def test_a_plausible_timestamp_is_kept(graded):
    course, _, _ = graded
    assert flags(course, "s11_on_time", "timestamp") == []
    assert str(submitted_at(course, "s11_on_time")) == "2025-03-01 09:30:00"


# --------------------------------------------------------------------------- without grading


def test_deep_json_is_refused_before_anything_recurses():
    settings = Staging()
    for depth in (65, 900, 100_000):
        with pytest.raises(Refused, match="nested deeper"):
            parse_notebook(_deep(depth).encode(), "x.ipynb", settings)


def test_staging_a_fifo_returns(course):
    folder = course / "submitted" / "s01" / ASSIGNMENT
    folder.mkdir(parents=True)
    for name in NOTEBOOKS:
        os.mkfifo(folder / f"{name}.ipynb")
    os.mkfifo(folder / "timestamp.txt")
    staged = stage(course, "s01", Staging(config=course_config(course)))
    assert {s for s, _ in staged.status.values()} == {"invalid"}


# ------------------------------------------------------------------------ nbgrader's exchange

COURSE_ID = "toeplitz-convolution"  # config.configure's c.CourseDirectory.course_id
BACKDATED = "2000-01-01 00:00:00.000000 UTC"


def _exchange(step: str, config: Config) -> None:
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import default as nbexchange

    coursedir = CourseDirectory(config=config)
    getattr(nbexchange, step)(
        coursedir=coursedir, authenticator=Authenticator(config=config), config=config
    ).start()


@pytest.fixture
def exchanged(course, tmp_path):
    """s01 and s02 submitted through nbgrader's exchange; then s02, whose inbound folder stays
    writable, links a notebook to the instructor's source and a file to a host secret, and
    back-dates her timestamp."""
    root = tmp_path / "exchange"
    root.mkdir()
    root.chmod(0o777)
    with open(course / "nbgrader_config.py", "a") as f:
        # One user submits for everyone here, as on a single-user machine.
        f.write(f"\nc.Exchange.root = {str(root)!r}\nc.ExchangeCollect.check_owner = False\n")
    instructor = course_config(course, **{"CourseDirectory.assignment_id": ASSIGNMENT})
    _exchange("ExchangeReleaseAssignment", instructor)
    correct = examples.correct(course)
    for student in ("s01", "s02"):
        work = tmp_path / student
        config = Config()
        config.Exchange.root = str(root)
        config.Exchange.cache = str(work / ".nbgrader_cache")
        config.Exchange.assignment_dir = str(work)
        config.CourseDirectory.course_id = COURSE_ID
        config.CourseDirectory.assignment_id = ASSIGNMENT
        config.CourseDirectory.student_id = student
        _exchange("ExchangeFetchAssignment", config)
        for name, nb in correct.items():
            nbformat.write(nb, work / ASSIGNMENT / f"{name}.ipynb")
        _exchange("ExchangeSubmit", config)
    (folder,) = (root / COURSE_ID / "inbound").glob(f"s02+{ASSIGNMENT}+*")
    outside = tmp_path / "host_secret.txt"
    outside.write_text(SECRET)
    (folder / "03_equivariance.ipynb").unlink()
    os.symlink(
        course / "source" / ASSIGNMENT / "03_equivariance.ipynb", folder / "03_equivariance.ipynb"
    )
    os.symlink(outside, folder / "data.csv")
    (folder / "timestamp.txt").write_text(BACKDATED)
    return course, instructor


def test_stock_nbgrader_collect_falls_for_links_in_the_exchange(exchanged):
    course, instructor = exchanged
    _exchange("ExchangeCollect", instructor)
    got = course / "submitted" / "s02" / ASSIGNMENT
    source = course / "source" / ASSIGNMENT / "03_equivariance.ipynb"
    assert not (got / "03_equivariance.ipynb").is_symlink()  # a regular file, past any check
    assert (got / "03_equivariance.ipynb").read_bytes() == source.read_bytes()
    assert (got / "data.csv").read_text() == SECRET
    assert (got / "timestamp.txt").read_text() == BACKDATED


def test_collect_exchange_copies_regular_files_only_at_the_time_they_changed(exchanged):
    from toeplitz_course.instructor.exchange import collect_exchange

    course, _ = exchanged
    report = collect_exchange(course)
    assert [c.student for c in report.collected] == ["s01", "s02"]
    refused = "\n".join(report.refused)
    assert "03_equivariance.ipynb is a symbolic link" in refused
    assert "data.csv is a symbolic link" in refused
    for path in (course / "submitted").rglob("*"):
        assert not path.is_symlink(), path
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    s02 = course / "submitted" / "s02" / ASSIGNMENT
    assert not (s02 / "03_equivariance.ipynb").exists()
    when = (s02 / "timestamp.txt").read_text().strip()
    assert not when.startswith("2000") and abs(time.time() - _epoch(when)) < 3600
    s01 = course / "submitted" / "s01" / ASSIGNMENT
    assert {p.name for p in s01.iterdir()} == {
        *(f"{name}.ipynb" for name in NOTEBOOKS),
        "timestamp.txt",
        "submission_secret.txt",
    }

    run = grade(course, jobs=1, progress=False)
    assert run.errors == {}
    assert {k: v for k, v in scores(course, "s01").items() if k in FULL} == FULL
    assert [f for f in record(course, "s01")["flags"] if f["kind"] != "missing"] == []
    # s02 earns what she handed in as her own, and her time is not questioned: collect wrote it.
    assert status(course, "s02")["03_equivariance"] == "missing"
    assert flags(course, "s02", "timestamp") == []
    earned = scores(course, "s02")
    assert all(
        earned[e.test_id] == (0 if e.notebook == "03_equivariance" else e.points)
        for e in AUTOGRADED
    )


def test_collect_exchange_checks_who_owns_a_submission(exchanged):
    from toeplitz_course.instructor.exchange import collect_exchange

    course, _ = exchanged
    with open(course / "nbgrader_config.py", "a") as f:
        f.write("\nc.ExchangeCollect.check_owner = True\n")
    report = collect_exchange(course)
    # Everything here is owned by the user running the tests, who is neither s01 nor s02.
    assert report.collected == []
    assert sum("owned by" in line for line in report.refused) == 2


def _epoch(text: str) -> float:
    from toeplitz_course.grader.staging import parse_time

    return parse_time(text).replace(tzinfo=datetime.timezone.utc).timestamp()
