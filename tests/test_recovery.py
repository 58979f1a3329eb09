"""Notebooks whose editor threw away the nbgrader metadata are graded by matching the release.

The alignment itself (``grader/recovery.recover``) is tested on JSON alone, against the committed
release; one class of stripped hand-ins (correct, code cells only, one blank exercise, mistakes,
an edited test, two swapped answers, part 2 under part 1's name) is then graded once with real
nbgrader and real kernels, and each must score exactly what it earned.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import handins
import nbformat
import pytest

from toeplitz_course.course.contract import ASSIGNMENT, AUTOGRADED, NOTEBOOKS, exercises_in
from toeplitz_course.grader import integrity
from toeplitz_course.grader.coursedir import RECORDS
from toeplitz_course.grader.grade import grade
from toeplitz_course.grader.recovery import recover
from toeplitz_course.grader.staging import stage
from toeplitz_course.instructor import examples

ROOT = Path(__file__).resolve().parent.parent
NB1, NB2, NB3 = NOTEBOOKS[:3]


# --- building hand-ins


def as_json(nb) -> dict:
    """Plain JSON, sources as strings (as nbformat reads them)."""
    return json.loads(json.dumps(nb))


def nbgrader_meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader") or {}


def gid(cell: dict) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def strip(nb, *, code_only: bool = False, outputs: bool = False) -> dict:
    """``nb`` as an editor that drops every cell's metadata hands it back.

    ``code_only``: the cells pasted into a fresh notebook (markdown gone, new cell ids, no
    outputs); ``outputs``: every code cell carries the outputs of a run, as a saved notebook does.
    """
    out = as_json(nb)
    cells = []
    for k, cell in enumerate(out["cells"]):
        if code_only and cell["cell_type"] != "code":
            continue
        cell["metadata"] = {}
        if code_only:
            cell["id"] = f"pasted-{k}"
            cell["outputs"], cell["execution_count"] = [], None
        elif outputs and cell["cell_type"] == "code":
            cell["execution_count"] = k + 1
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": f"run {k}\n"}]
        cells.append(cell)
    out["cells"] = cells
    return out


def release_json(root: Path = ROOT) -> dict[str, dict]:
    return {n: as_json(nb) for n, nb in examples.release(root).items()}


def answer_ids(release: dict, kind: str | None = None) -> list[str]:
    """The release's answer cells (nbgrader ``solution``), of one cell type if given."""
    return [
        gid(c)
        for c in release["cells"]
        if nbgrader_meta(c).get("solution") and kind in (None, c["cell_type"])
    ]


def stub(release: dict, grade_id: str) -> str:
    return next("".join(c["source"]) for c in release["cells"] if gid(c) == grade_id)


def detail(placed: int, of: int, unplaced: list[str] = ()) -> str:
    """The record's line, written out from the issue's wording."""
    text = f"metadata lost, recovered by matching the release: {placed} of {of} answer cells placed"
    return text + (f"; not placed: {', '.join(unplaced)}" if unplaced else "")


def index_of(nb: dict, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb["cells"]) if gid(c) == grade_id)


# --- the alignment, on JSON alone


@pytest.fixture(scope="module")
def release():
    return release_json()


@pytest.fixture(scope="module")
def correct():
    return {n: as_json(nb) for n, nb in examples.correct(ROOT).items()}


def test_a_notebook_with_its_metadata_is_returned_unchanged(release, correct):
    for name in NOTEBOOKS:
        before = copy.deepcopy(correct[name])
        result = recover(correct[name], release[name])
        assert result.applied is False
        assert result.notebook == before == correct[name]


def test_every_stripped_cell_gets_its_release_metadata_back(release, correct):
    for name in NOTEBOOKS:
        submitted = strip(correct[name], outputs=True)
        before = copy.deepcopy(submitted)
        result = recover(submitted, release[name])
        assert submitted == before, "recover modified its argument"
        assert result.applied
        assert result.placed == tuple(answer_ids(release[name])) and result.unplaced == ()
        assert result.held_back == ()
        assert result.detail == detail(len(answer_ids(release[name])), len(result.placed))
        for rel_cell, cell, sub_cell in zip(
            release[name]["cells"], result.notebook["cells"], submitted["cells"], strict=True
        ):
            assert cell.get("metadata", {}).get("nbgrader") == rel_cell["metadata"].get("nbgrader")
            # Only metadata is given back: sources, ids and outputs stay the student's.
            assert {k: v for k, v in cell.items() if k != "metadata"} == {
                k: v for k, v in sub_cell.items() if k != "metadata"
            }


def test_partial_loss_recovers_only_the_cells_that_lost_it(release, correct):
    submitted = copy.deepcopy(correct[NB1])
    lost = {"ex1_2", "ex1_2_test", "nb01_data"}
    for cell in submitted["cells"]:
        if gid(cell) in lost:
            cell["metadata"] = {}
    # A cell keeps whatever nbgrader metadata it still has, even if it differs from the release.
    kept = submitted["cells"][index_of(submitted, "ex1_1")]
    kept["metadata"]["nbgrader"]["points"] = 7
    result = recover(submitted, release[NB1])
    assert result.applied
    assert (result.placed, result.unplaced) == (("ex1_2",), ())
    assert set(result.locked) == lost - {"ex1_2"}
    assert result.detail == detail(1, 1)
    for i, cell in enumerate(result.notebook["cells"]):
        if i == index_of(submitted, "ex1_1"):
            assert nbgrader_meta(cell)["points"] == 7
        else:
            assert nbgrader_meta(cell) == nbgrader_meta(release[NB1]["cells"][i])


def test_whitespace_edited_locked_cells_still_match(release, correct):
    submitted = strip(correct[NB1])
    for cell in submitted["cells"]:
        lines = cell["source"].split("\n")
        # trailing blanks, a changed indentation, blank lines, Windows line ends
        cell["source"] = "\r\n".join(["", *(f"  {line}   " for line in lines), "", ""])
    result = recover(submitted, release[NB1])
    locked = [gid(c) for c in release[NB1]["cells"] if nbgrader_meta(c).get("locked")]
    assert result.applied
    assert set(result.locked) == set(locked)
    assert result.placed == tuple(answer_ids(release[NB1]))
    assert [c["source"] for c in result.notebook["cells"]] == [
        c["source"] for c in submitted["cells"]
    ]


def test_code_cells_only_place_every_code_answer_and_name_the_written_one(release, correct):
    for name in NOTEBOOKS:
        result = recover(strip(correct[name], code_only=True), release[name])
        written = answer_ids(release[name], "markdown")
        assert result.applied
        assert result.placed == tuple(answer_ids(release[name], "code"))
        assert result.unplaced == tuple(written)
        assert result.detail == detail(len(result.placed), len(answer_ids(release[name])), written)
    assert answer_ids(release[NB3], "markdown"), "the written answer ex3_4 should be in part 3"


def test_a_blank_answer_is_placed_blank(release, correct):
    submitted = strip(correct[NB1])
    at = index_of(correct[NB1], "ex1_3")
    submitted["cells"][at]["source"] = stub(release[NB1], "ex1_3")
    result = recover(submitted, release[NB1])
    assert result.placed == tuple(answer_ids(release[NB1]))
    assert gid(result.notebook["cells"][at]) == "ex1_3"


def test_a_copy_of_a_locked_cell_is_that_cell_not_an_answer(release, correct):
    submitted = strip(correct[NB1])
    at = index_of(correct[NB1], "ex1_1")
    test = copy.deepcopy(submitted["cells"][index_of(correct[NB1], "ex1_1_test")])
    test["id"] = "a-copy"
    submitted["cells"][at] = test  # the answer replaced by a copy of its test
    result = recover(submitted, release[NB1])
    assert result.applied
    assert "ex1_1" in result.unplaced and "ex1_1" not in result.placed
    ids = [gid(c) for c in result.notebook["cells"]]
    assert ids.count("ex1_1_test") == 1 and "ex1_1" not in ids
    assert result.detail == detail(2, 3, ["ex1_1"])


def test_swapped_answers_are_not_placed_and_do_not_run(release, correct):
    submitted = strip(correct[NB1])
    a, b = index_of(correct[NB1], "ex1_1"), index_of(correct[NB1], "ex1_2")
    cells = submitted["cells"]
    cells[a]["source"], cells[b]["source"] = cells[b]["source"], cells[a]["source"]
    result = recover(submitted, release[NB1])
    assert result.applied
    assert (result.placed, result.unplaced) == (("ex1_3",), ("ex1_1", "ex1_2"))
    assert result.detail == detail(1, 3, ["ex1_1", "ex1_2"])
    assert result.held_back == (a, b)
    for j in (a, b):
        cell = result.notebook["cells"][j]
        assert cell["cell_type"] == "raw" and cell["source"] == submitted["cells"][j]["source"]
        assert "outputs" not in cell and "nbgrader" not in cell["metadata"]
    nbformat.validate(nbformat.from_dict(result.notebook))


def test_an_extra_cell_beside_an_answer(release, correct):
    scratch = {
        "cell_type": "code",
        "id": "scratch",
        "metadata": {},
        "execution_count": None,
        "outputs": [],
        "source": "print(linear_layer.weight)\n",
    }
    at = index_of(correct[NB1], "ex1_2")
    # The answer still looks like its stub: it is placed, and the scratch cell left to run.
    submitted = strip(correct[NB1])
    submitted["cells"].insert(at, copy.deepcopy(scratch))
    result = recover(submitted, release[NB1])
    assert result.placed == tuple(answer_ids(release[NB1]))
    assert gid(result.notebook["cells"][at + 1]) == "ex1_2"
    assert result.notebook["cells"][at] == scratch
    # An answer that no longer resembles its stub cannot be told from the scratch cell.
    submitted = strip(correct[NB1])
    submitted["cells"][at]["source"] = "n = 3\nlinear_layer = make(n)\n"
    submitted["cells"].insert(at, copy.deepcopy(scratch))
    result = recover(submitted, release[NB1])
    assert result.unplaced == ("ex1_2",)
    assert result.held_back == (at, at + 1)


def test_an_edited_test_is_matched_and_still_flagged_edited(release, correct, tmp_path):
    submitted = strip(correct[NB1], code_only=True)
    at = next(
        i for i, c in enumerate(submitted["cells"]) if "Check for Exercise 1.2" in c["source"]
    )
    original = submitted["cells"][at]["source"]
    edited = original.replace("self_check(", "# self_check(")
    assert edited != original
    submitted["cells"][at]["source"] = edited
    result = recover(submitted, release[NB1])
    assert "ex1_2_test" in result.locked
    assert gid(result.notebook["cells"][at]) == "ex1_2_test"
    assert result.notebook["cells"][at]["source"] == edited  # nbgrader restores it, not recovery
    assert result.placed == tuple(answer_ids(release[NB1]))
    path = tmp_path / f"{NB1}.ipynb"
    path.write_text(json.dumps(release[NB1]))
    flags = integrity.scan(NB1, submitted=result.notebook, release=path, autograded=None)
    assert {(f["kind"], f["detail"]) for f in flags} == {
        ("edited_test", "test cell ex1_2_test was edited")
    }
    before = integrity.scan(NB1, submitted=submitted, release=path, autograded=None)
    assert {f["kind"] for f in before} == {"deleted_test"}


def test_another_part_is_not_recovered_into_this_one(release, correct):
    for name in NOTEBOOKS:
        for other in NOTEBOOKS:
            if other == name:
                continue
            submitted = strip(correct[other])
            result = recover(submitted, release[name])
            assert result.applied is False, (other, name)
            assert result.notebook == strip(correct[other])
            locked = [c for c in release[name]["cells"] if nbgrader_meta(c).get("locked")]
            assert result.total == len(locked) and result.found * 3 < 2 * result.total


def test_recovery_is_a_standard_library_module():
    import ast
    import sys

    tree = ast.parse((ROOT / "toeplitz_course" / "grader" / "recovery.py").read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# --- staging


def staging_course(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "course"
    shutil.copytree(ROOT / "release", root / "release")
    dest = root / "submitted" / "s" / ASSIGNMENT
    dest.mkdir(parents=True)
    for name, text in files.items():
        (dest / name).write_text(text)
    return root


def test_staging_leaves_notebooks_with_metadata_unchanged(tmp_path, correct):
    root = staging_course(tmp_path, {f"{n}.ipynb": json.dumps(nb) for n, nb in correct.items()})
    staged = stage(root, "s")
    assert not [f for f in staged.flags if f["kind"] == "recovered"]
    for name in NOTEBOOKS:
        assert staged.raw[name] == correct[name]
        out = json.loads((staged.directory / "s" / ASSIGNMENT / f"{name}.ipynb").read_text())
        assert out["cells"] == correct[name]["cells"]


def test_staging_recovers_and_flags(tmp_path, correct, release):
    files = {f"{n}.ipynb": json.dumps(strip(nb)) for n, nb in correct.items()}
    root = staging_course(tmp_path, files)
    staged = stage(root, "s")
    recovered = [f for f in staged.flags if f["kind"] == "recovered"]
    assert recovered == [
        {"notebook": n, "kind": "recovered", "detail": detail(len(a), len(a))}
        for n in NOTEBOOKS
        for a in [answer_ids(release[n])]
    ]
    for name in NOTEBOOKS:
        out = json.loads((staged.directory / "s" / ASSIGNMENT / f"{name}.ipynb").read_text())
        assert [gid(c) for c in out["cells"]] == [gid(c) for c in release[name]["cells"]]
        assert [gid(c) for c in staged.raw[name]["cells"]] == [gid(c) for c in out["cells"]]
    # submitted/ is what the student handed in, for stock nbgrader and for the next run
    for name, text in files.items():
        assert (root / "submitted" / "s" / ASSIGNMENT / name).read_text() == text


# --- a class of stripped hand-ins, graded


def _files(nbs: dict[str, dict]) -> dict[str, str]:
    return {f"{name}.ipynb": json.dumps(nb, indent=1) for name, nb in nbs.items()}


def stripped_class(course: Path) -> tuple[list[examples.Case], dict[str, dict[str, str]]]:
    """The cases, and per student per notebook the recovery line its record must hold."""
    release = release_json(course)
    solutions = examples.solutions(course)
    full = {n: detail(len(answer_ids(release[n])), len(answer_ids(release[n]))) for n in NOTEBOOKS}
    cases, lines = [], {}

    def add(case: examples.Case, recovered: dict[str, str], parts=NOTEBOOKS) -> None:
        """``parts``: the notebooks handed in (a kernel each): those the case is about."""
        cases.append(handins.only(case, parts))
        lines[case.student] = {n: line for n, line in recovered.items() if n in parts}

    nbs = {n: strip(nb, outputs=True) for n, nb in examples.correct(course).items()}
    add(examples.Case("r1_stripped", _files(nbs), flags={"recovered"}), full)

    nbs = {n: strip(nb, code_only=True) for n, nb in examples.correct(course).items()}
    written = {n: answer_ids(release[n], "markdown") for n in NOTEBOOKS}
    code_only = {
        n: detail(len(answer_ids(release[n], "code")), len(answer_ids(release[n])), written[n])
        for n in NOTEBOOKS
    }
    add(examples.Case("r2_code_cells_only", _files(nbs), flags={"recovered"}), code_only)

    blank = next(e for e in AUTOGRADED if e.points == 2)
    nbs = examples.correct(course)
    examples.answer(nbs, blank.answer_id, stub(release[blank.notebook], blank.answer_id))
    nbs = {n: strip(nb) for n, nb in nbs.items()}
    add(
        examples.Case("r3_one_blank", _files(nbs), wrong={blank.test_id}, flags={"recovered"}),
        full,
        [blank.notebook],
    )

    nbs = {n: strip(nb) for n, nb in examples.mistakes(course).items()}
    wrong = examples.mistake_test_ids()
    case = examples.Case("r4_mistakes", _files(nbs), wrong=wrong, flags={"recovered"})
    add(case, full, [NB1, NB2])

    nbs = {n: strip(nb) for n, nb in examples.correct(course).items()}
    test = nbs[NB1]["cells"][index_of(as_json(examples.correct(course)[NB1]), "ex1_2_test")]
    test["source"] = test["source"].replace("self_check(", "# self_check(") + "\n\n"
    add(
        examples.Case("r5_edited_test", _files(nbs), flags={"recovered", "edited_test"}),
        full,
        [NB1],
    )

    nbs = examples.correct(course)
    examples.answer(nbs, "ex1_1", solutions["ex1_2"])
    examples.answer(nbs, "ex1_2", solutions["ex1_1"])
    nbs = {n: strip(nb) for n, nb in nbs.items()}
    swapped = {"ex1_1_test", "ex1_2_test"}
    add(
        examples.Case("r6_swapped", _files(nbs), wrong=swapped, flags={"recovered"}),
        {**full, NB1: detail(1, 3, ["ex1_1", "ex1_2"])},
        [NB1],
    )

    part2 = strip(examples.correct(course)[NB2])
    files = {f"{NB1}.ipynb": json.dumps(part2), f"{NB2}.ipynb": json.dumps(part2)}
    add(
        examples.Case(
            "r7_part2_as_part1",
            files,
            missing_notebooks=set(NOTEBOOKS) - {NB2},
            flags={"recovered", "missing"},
        ),
        {NB2: full[NB2]},
    )
    return cases, lines


@pytest.fixture(scope="module")
def graded(tmp_path_factory, course_template):
    course = tmp_path_factory.mktemp("recovery") / "course"
    shutil.copytree(course_template, course)
    cases, lines = stripped_class(course)
    for case in cases:
        examples.write_case(case, course)
    run = grade(course, jobs=2, progress=False)
    return course, {c.student: c for c in cases}, lines, run


def record(course: Path, student: str) -> dict:
    return json.loads((course / RECORDS / f"{student}.json").read_text())


def test_every_case_was_graded(graded):
    course, cases, _, run = graded
    assert run.errors == {}
    assert set(run.records) == set(cases)


@pytest.mark.parametrize(
    "student",
    [
        "r1_stripped",
        "r2_code_cells_only",
        "r3_one_blank",
        "r4_mistakes",
        "r5_edited_test",
        "r6_swapped",
        "r7_part2_as_part1",
    ],
)
def test_each_case_scores_what_it_earned(graded, student):
    course, cases, _, _ = graded
    notebooks = record(course, student)["notebooks"]
    scores = {cell: c["score"] for nb in notebooks.values() for cell, c in nb["cells"].items()}
    assert {k: scores[k] for k in cases[student].expected()} == cases[student].expected()


def test_full_marks_for_the_key_without_metadata(graded):
    course, _, _, _ = graded
    rec = record(course, "r1_stripped")
    assert rec["total"] == sum(e.points for e in AUTOGRADED) == rec["max_total"] - 1
    written = record(course, "r1_stripped")["notebooks"][NB3]["cells"]["ex3_4"]
    assert written["needs_manual_grade"] is True


def test_records_say_what_recovery_did_and_nothing_was_deleted(graded):
    course, cases, lines, _ = graded
    for student, case in cases.items():
        flags = record(course, student)["flags"]
        recovered = {f["notebook"]: f["detail"] for f in flags if f["kind"] == "recovered"}
        assert recovered == lines[student], student
        kinds = {f["kind"] for f in flags}
        assert case.flags <= kinds, (student, flags)
        if student != "r7_part2_as_part1":
            assert "deleted_test" not in kinds, (student, flags)
    r5 = [f for f in record(course, "r5_edited_test")["flags"] if f["kind"] == "edited_test"]
    assert r5 == [
        {"notebook": NB1, "kind": "edited_test", "detail": "test cell ex1_2_test was edited"}
    ]
    assert not [f for f in record(course, "r1_stripped")["flags"] if f["kind"] != "recovered"]


def test_another_part_is_graded_as_nothing(graded):
    course, _, _, _ = graded
    rec = record(course, "r7_part2_as_part1")
    part1 = rec["notebooks"][NB1]
    assert part1["status"] == "graded"
    tests = {e.test_id for e in exercises_in(NB1) if e.test_id}
    assert {
        cell: c["score"] for cell, c in part1["cells"].items() if cell in tests
    } == dict.fromkeys(tests, 0.0)
    deleted = {
        f["detail"] for f in rec["flags"] if f["kind"] == "deleted_test" and f["notebook"] == NB1
    }
    assert deleted == {f"test cell {t} was deleted" for t in tests}
