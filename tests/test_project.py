"""The course as files: the exercise contract, clean sources, no drift, no leak, pinned deps."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import tomllib
import yaml
from nbgrader.nbgraderformat import MetadataValidator

from toeplitz_course.course import colab
from toeplitz_course.course.contract import ASSIGNMENT, EXERCISES, NOTEBOOKS, exercises_in
from toeplitz_course.instructor import build

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "source" / ASSIGNMENT


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def nbgrader_cells(nb):
    return {
        c.metadata["nbgrader"]["grade_id"]: c
        for c in nb.cells
        if "grade_id" in c.metadata.get("nbgrader", {})
    }


def test_one_source_notebook_per_part():
    assert sorted(p.stem for p in SOURCE.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_is_stored_clean_with_valid_nbgrader_metadata(name):
    nb = read(SOURCE / f"{name}.ipynb")
    nbformat.validate(nb)
    MetadataValidator().validate_nb(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "run `make strip`"
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "duplicate grade ids"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.answer_id)
def test_exercise_contract_holds_exactly(exercise):
    cells = nbgrader_cells(read(SOURCE / f"{exercise.notebook}.ipynb"))
    answer = cells[exercise.answer_id]
    meta = answer.metadata["nbgrader"]
    assert meta["solution"] is True and meta["locked"] is False
    if not exercise.autograded:
        assert answer.cell_type == "markdown"
        assert meta["grade"] is True and meta["points"] == exercise.points
        return
    assert answer.cell_type == "code" and meta["grade"] is False
    # the answer cell defines its names by itself
    assert re.search(rf"^\s*(def\s+{exercise.name}\b|{exercise.name}\s*=)", answer.source, re.M)
    test = cells[exercise.test_id]
    tmeta = test.metadata["nbgrader"]
    assert test.cell_type == "code"
    assert tmeta["grade"] is True and tmeta["solution"] is False and tmeta["locked"] is True
    assert tmeta["points"] == exercise.points
    hidden = re.search(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", test.source, re.S)
    assert hidden, "every test cell has hidden tests"
    # The answer by name: one never defined is None ("not answered yet"), not a NameError.
    call = f'hidden.check("{exercise.test_id}", globals().get("{exercise.name}"))'
    assert call in hidden.group(1)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_graded_cells_beyond_the_contract(name):
    cells = nbgrader_cells(read(SOURCE / f"{name}.ipynb"))
    graded = {gid for gid, c in cells.items() if c.metadata["nbgrader"].get("grade")}
    expected = {e.test_id or e.answer_id for e in exercises_in(name)}
    assert graded == expected


def _secret_lines() -> list[tuple[str, str]]:
    """(kind, line) for every solution and hidden-test line of the instructor notebooks."""
    secrets, public = [], set()
    for path in SOURCE.glob("*.ipynb"):
        for cell in read(path).cells:
            meta = cell.metadata.get("nbgrader", {})
            outside = re.sub(
                r"### BEGIN (SOLUTION|HIDDEN TESTS)\n.*?### END (SOLUTION|HIDDEN TESTS)",
                "",
                cell.source,
                flags=re.S,
            )
            if not (meta.get("solution") and cell.cell_type == "markdown"):
                public |= {line.strip() for line in outside.splitlines()}
            if meta.get("solution") and cell.cell_type == "markdown":
                secrets += [("solution", line) for line in cell.source.splitlines()]
                continue
            for kind, begin, end in (
                ("solution", "### BEGIN SOLUTION", "### END SOLUTION"),
                ("hidden", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
            ):
                for block in re.findall(rf"{begin}\n(.*?){end}", cell.source, re.S):
                    secrets += [(kind, line) for line in block.splitlines()]
    # Lines the notebooks show anyway (given code) and lines too generic to be a leak by
    # themselves ("return T", "]") are not secrets.
    return [(k, s.strip()) for k, s in secrets if len(s.strip()) >= 12 and s.strip() not in public]


@pytest.mark.parametrize("folder", ["release/toeplitz", "notebooks"])
def test_no_solution_or_hidden_test_reaches_students(folder):
    secrets = _secret_lines()
    assert len(secrets) > 30  # the scan sees the solutions at all
    for path in sorted((ROOT / folder).glob("*.ipynb")):
        text = "\n".join(c.source for c in read(path).cells)
        student_lines = {line.strip() for line in text.splitlines()}
        leaked = [(k, s) for k, s in secrets if s in student_lines]
        assert not leaked, f"{path.name}: {leaked[:3]}"
        assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text


def test_release_and_notebooks_match_a_fresh_build():
    assert build.drift(ROOT) == []


def test_drift_is_detected(tmp_path):
    import shutil

    course = tmp_path / "course"
    for sub in ("source", "release", "notebooks"):
        shutil.copytree(ROOT / sub, course / sub)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    nb_path = course / "source" / ASSIGNMENT / f"{NOTEBOOKS[0]}.ipynb"
    nb = read(nb_path)
    nb.cells[0].source += "\n\nA sentence added by an author."
    nbformat.write(nb, nb_path)
    problems = build.drift(course)
    assert any(NOTEBOOKS[0] in p for p in problems)
    assert len(problems) == 2  # the release file and its Colab edition


def test_strip_outputs_cleans_an_executed_source(tmp_path):
    path = tmp_path / "nb.ipynb"
    nb = read(SOURCE / f"{NOTEBOOKS[0]}.ipynb")
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi")]
    code.execution_count = 3
    nbformat.write(nb, path)
    assert build.strip_outputs([path]) == [path]
    cleaned = read(path)
    assert all(c.outputs == [] for c in cleaned.cells if c.cell_type == "code")
    assert build.strip_outputs([path]) == []


def _requirements_pyproject() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d.replace(" ", "") for d in deps}


def test_environment_yml_lists_the_same_pins_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {
        re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d.replace(" ", "")
        for d in pip
        if not d.startswith("-e")
    }
    assert listed == _requirements_pyproject()
    assert _requirements_pyproject()["torch"] == "torch==2.13.0"


def test_colab_links_come_from_pyproject():
    where = colab.links()
    assert where.repository.startswith("https://github.com/") and where.branch
