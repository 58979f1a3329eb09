"""The instructor's pipeline on a whole class: collect, grade, feedback, export, report.

One class of hand-ins (correct, blank, typical mistakes, the instructor's own sources, and every
hostile or broken case the grader must survive) is collected from an LMS zip and graded once per
session with real nbgrader and real kernels, in the class other modules hand their students in to
(``conftest.graded_class``); each test then asserts one thing about these students.
"""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import BROKEN_FEEDBACK
from nbgrader.api import Gradebook

from toeplitz_course.course.contract import ASSIGNMENT, AUTOGRADED, EXERCISES, NOTEBOOKS
from toeplitz_course.grader.coursedir import course_config, db_url
from toeplitz_course.grader.grade import grade
from toeplitz_course.grader.preprocessors import SkipDemoCells
from toeplitz_course.instructor import examples
from toeplitz_course.instructor.collect import collect
from toeplitz_course.instructor.export import export
from toeplitz_course.instructor.feedback import hidden_lines, leaks
from toeplitz_course.instructor.report import report

ROOT = Path(__file__).resolve().parent.parent

# Short limits keep the infinite-loop cases quick; the course's own are in config.py.
TEST_LIMITS = """
c.HardenedExecute.timeout = 6
c.HardenedExecute.notebook_deadline = 60
"""


def source_case() -> examples.Case:
    """The instructor notebooks themselves, handed in: they must earn every autograded point."""
    files = {
        f"{name}.ipynb": (ROOT / "source" / ASSIGNMENT / f"{name}.ipynb").read_text()
        for name in NOTEBOOKS
    }
    # Its test cells hold the hidden tests, so they differ from the release's: flagged as edited.
    return examples.Case("s00_instructor_source", files, flags={"edited_test"})


def lms_zip(cases: list[examples.Case], path: Path) -> Path:
    """The class as a download with a folder per student; Colab files keep their "Copy of" names."""
    with zipfile.ZipFile(path, "w") as zf:
        for case in cases:
            for name, text in case.files.items():
                if "colab" in case.student:
                    name = f"Copy of {name}"
                zf.writestr(f"{case.student}/{name}", text)
    return path


#: The student with the typical mistakes, whose feedback tests/test_feedback.py reads.
MISTAKES = "s03_mistakes"


def hand_in(course: Path) -> tuple[dict[str, examples.Case], object]:
    """This module's students, collected from an LMS zip into ``course`` (the session's class,
    ``conftest.graded_class``, which is graded with ``TEST_LIMITS``); collect's report."""
    # The release and Colab edition the students started from are the committed ones.
    shutil.copytree(ROOT / "notebooks", course / "notebooks")
    cases = [source_case(), *examples.hostile_class(course), *examples.form_cases(course)]
    report_ = collect(lms_zip(cases, course / "download.zip"), course)
    return {c.student: c for c in cases}, report_


@pytest.fixture(scope="module")
def graded(graded_class):
    c = graded_class
    return c.course, c.cases, c.collected, c.run


def scores(course: Path, student: str) -> dict[str, float]:
    with Gradebook(db_url(course)) as gb:
        sub = gb.find_submission(ASSIGNMENT, student)
        return {
            g.name: g.score for nb in sub.notebooks for g in nb.grades if g.name.endswith("_test")
        }


def test_the_class_covers_every_case(graded):
    _, cases, _, _ = graded
    assert len(cases) >= 15
    kinds = set().union(*(c.flags for c in cases.values()))
    assert {
        "tag",
        "deleted_test",
        "duplicate",
        "patching",
        "nbgrader_env",
        "timeout",
        "kernel_died",
        "invalid_json",
        "missing",
    } <= kinds


def test_collect_places_every_student_and_reports_the_renamed_file(graded):
    course, cases, report_, _ = graded
    placed = {(p.student, p.notebook) for p in report_.placed}
    for case in cases.values():
        for name in case.files:
            stem = name.removesuffix(".ipynb")
            if stem in NOTEBOOKS:
                assert (case.student, stem) in placed, (case.student, stem)
    assert any("my_work" in str(r.source) for r in report_.rejected)


def test_no_student_stopped_the_batch(graded):
    course, cases, _, run = graded
    assert run.errors == {}
    assert set(cases) <= set(run.records)


def _all_students() -> list[str]:
    names = ["s00_instructor_source"]
    names += [
        "s01_correct",
        "s02_blank",
        "s03_mistakes",
        "s04_skip_tags",
        "s05_deleted_tests",
        "s06_duplicates",
        "s07_stderr",
        "s08_monkeypatch",
        "s09_only_when_graded",
        "s10_infinite_loops",
        "s11_kernel_crash",
        "s12_huge_output",
        "s13_invalid_json",
        "s14_missing_renamed",
        "s15_colab_round_trip",
        "s16_two_parts_only",
        "s17_uses_demos",
        "f01_right_forms",
        "f02_right_forms",
        "f03_wrong_forms",
        "f04_wrong_forms",
        "f05_transposed",
    ]
    return names


@pytest.mark.parametrize("student", _all_students())
def test_every_grade_cell_gets_the_score_it_earned(graded, student):
    course, cases, _, _ = graded
    case = cases[student]
    assert scores(course, student) == case.expected()


@pytest.mark.parametrize("student", _all_students())
def test_integrity_flags(graded, student):
    course, cases, _, run = graded
    kinds = {f["kind"] for f in run.records[student]["flags"]}
    assert cases[student].flags <= kinds, kinds
    if not cases[student].flags:
        assert kinds <= {"missing"}, run.records[student]["flags"]


def test_no_grade_is_left_waiting_but_the_written_answer(graded):
    course, cases, _, _ = graded
    with Gradebook(db_url(course)) as gb:
        for student in cases:
            sub = gb.find_submission(ASSIGNMENT, student)
            waiting = {g.name for nb in sub.notebooks for g in nb.grades if g.needs_manual_grade}
            assert waiting <= {"ex3_4"}, (student, waiting)


def test_huge_output_is_capped_in_the_autograded_file(graded):
    course, _, _, _ = graded
    path = course / "autograded" / "s12_huge_output" / ASSIGNMENT / f"{NOTEBOOKS[0]}.ipynb"
    assert path.stat().st_size < 1_000_000


def test_a_timeout_names_the_limit_the_cell_and_what_to_do(graded):
    course, _, _, _ = graded
    path = course / "autograded" / "s10_infinite_loops" / ASSIGNMENT / f"{NOTEBOOKS[0]}.ipynb"
    nb = nbformat.read(path, 4)
    (index, error), *_ = [
        (i, o)
        for i, c in enumerate(nb.cells)
        for o in c.get("outputs", [])
        if o.get("ename") == "CellTimeoutError"
    ]
    limit = course_config(course).HardenedExecute.timeout
    assert f"cell {index + 1} did not finish within the grader's limit of {limit} s" in error.evalue
    assert "Run the cell yourself" in error.evalue
    # One error, not the interrupt's KeyboardInterrupt beside an empty CellTimeoutError.
    assert [o.ename for o in nb.cells[index].outputs if o.output_type == "error"] == [
        "CellTimeoutError"
    ]


def test_regrading_is_idempotent(graded):
    course, cases, _, _ = graded
    # Not MISTAKES, whose pages and autograded notebooks tests/test_feedback.py compares.
    before = {s: scores(course, s) for s in ("s04_skip_tags", "s13_invalid_json")}
    run = grade(course, ["s04_skip_tags", "s13_invalid_json"], jobs=1, progress=False)
    assert run.errors == {}
    assert {s: scores(course, s) for s in before} == before


def test_feedback_shows_messages_but_no_hidden_test(graded, graded_class):
    course, _, _, _ = graded
    run = graded_class.feedback  # the class's, by ``feedback`` (its broken student aside)
    assert set(run.errors) == {BROKEN_FEEDBACK}
    secrets = hidden_lines(course / "source" / ASSIGNMENT)
    assert secrets
    pages = list((course / "feedback").rglob("*.html"))
    assert len(pages) >= 60
    for page in pages:
        assert leaks(page.read_text(), secrets) == [], page
    mistaken = course / "feedback" / "s03_mistakes" / ASSIGNMENT / f"{NOTEBOOKS[0]}.html"
    assert "flipped kernel" in mistaken.read_text()


def test_leak_check_finds_a_hidden_line(graded):
    course, _, _, _ = graded
    secrets = hidden_lines(course / "source" / ASSIGNMENT)
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    # A hidden line as a page would show it: highlighted into spans, quotes as entities.
    line = next(s for s in secrets if s.startswith('hidden.check("ex1_2_test"'))
    page = highlight(line, PythonLexer(), HtmlFormatter(nowrap=True))
    assert "<span" in page and leaks(page, secrets)


def test_export_writes_the_grades_the_gradebook_holds(graded):
    course, cases, _, _ = graded
    result = export(course)
    with open(result.csv_path, newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    with Gradebook(db_url(course)) as gb:
        assert set(rows) == {s.id for s in gb.students}
    assert set(cases) <= set(rows)
    for student, case in cases.items():
        for test_id, score in case.expected().items():
            assert float(rows[student][test_id]) == score, (student, test_id)
    html = result.html_path.read_text()
    assert "data:image/png;base64" in html and "flipped kernel" in html
    assert "s08_monkeypatch" in html  # its flags are listed


def test_report_lists_the_flags(graded):
    course, _, _, _ = graded
    text = report(course)
    assert "s08_monkeypatch" in text and "patching" in text
    assert "s01_correct" not in text


def test_records_are_json_with_a_diagnosis_per_failed_cell(graded):
    course, cases, _, _ = graded
    record = json.loads((course / "grading" / "s03_mistakes.json").read_text())
    cells = record["notebooks"][NOTEBOOKS[0]]["cells"]
    assert cells["ex1_2_test"]["score"] == 0 and "flipped" in cells["ex1_2_test"]["message"]
    assert record["total"] == sum(cases["s03_mistakes"].expected().values())


def test_a_blank_answer_reads_not_answered_yet_not_a_name_error(graded):
    """What the self-check says of a blank answer, the grader says too (issue 21)."""
    course, _, _, _ = graded
    record = json.loads((course / "grading" / "s02_blank.json").read_text())
    messages = [
        cell["message"]
        for notebook in record["notebooks"].values()
        for name, cell in notebook.get("cells", {}).items()
        if name.endswith("_test")  # the autograded cells (ex3_4 is graded by hand)
    ]
    assert messages and all("not answered yet" in m for m in messages), messages
    assert not any("NameError" in m for m in messages)


def _demo_outputs(course: Path, student: str, notebook: str) -> list[str]:
    """The text each demonstration cell of an autograded notebook shows."""
    nb = nbformat.read(
        course / "autograded" / student / ASSIGNMENT / f"{notebook}.ipynb", as_version=4
    )
    return [
        "".join(out.get("text", "") for out in cell.outputs)
        for cell in nb.cells
        if "demo" in cell.metadata.get("tags", [])
    ]


def test_demonstrations_are_skipped_unless_edited_or_needed(graded):
    course, _, _, _ = graded
    note = SkipDemoCells().note
    # Where a person grades a cell (ex3_4), the figures above it run (tests/test_feedback.py).
    by_hand = {e.notebook for e in EXERCISES if not e.autograded}
    for notebook in NOTEBOOKS:
        shown = _demo_outputs(course, "s01_correct", notebook)
        ran = sum(text != note for text in shown)
        assert shown and (ran > 0) == (notebook in by_hand), notebook
    edited = _demo_outputs(course, "s17_uses_demos", NOTEBOOKS[0])
    assert examples.EDITED_DEMO in edited[0] and edited[1:] == [note] * (len(edited) - 1)
    # The demonstration that binds y_fc2d (nb 4) ran; the others did not.
    shown = _demo_outputs(course, "s17_uses_demos", NOTEBOOKS[3])
    assert sum(text != note for text in shown) == 1 and any("fc2d output" in t for t in shown)
    assert scores(course, "s17_uses_demos") == scores(course, "s01_correct")


def test_pictures_for_a_person_are_drawn_only_where_a_person_will_read_an_answer(graded):
    """A written answer left as released scores 0 without anyone reading it, so the pictures
    drawn for the person grading it are not drawn; an answered one gets them."""
    course, _, _, _ = graded
    by_hand = [e for e in EXERCISES if not e.autograded]
    assert by_hand
    note = SkipDemoCells().note
    with Gradebook(db_url(course)) as gb:
        for student, answered in (("s02_blank", False), ("s01_correct", True)):
            for exercise in by_hand:
                grade = gb.find_grade(exercise.answer_id, exercise.notebook, ASSIGNMENT, student)
                assert grade.needs_manual_grade == answered, student
                assert answered or grade.score == 0
                shown = _demo_outputs(course, student, exercise.notebook)
                assert any(text != note for text in shown) == answered, student


def test_colab_round_trip_grades_like_jupyterlab(graded):
    course, _, _, _ = graded
    assert scores(course, "s15_colab_round_trip") == scores(course, "s01_correct")


def test_every_autograded_cell_is_in_the_gradebook(graded):
    course, _, _, _ = graded
    assert set(scores(course, "s01_correct")) == {e.test_id for e in AUTOGRADED}


def test_restored_cells_run_the_instructor_tests(graded):
    course, _, _, _ = graded
    nb = nbformat.read(
        course / "autograded" / "s05_deleted_tests" / ASSIGNMENT / f"{NOTEBOOKS[0]}.ipynb", 4
    )
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert "ex1_2_test" in ids and "ex1_1_test" in ids
