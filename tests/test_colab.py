"""The Colab edition: badges, runtime check, a torch/numpy/matplotlib-only runtime, round trip."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from toeplitz_course.course import colab
from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS, exercises_in
from toeplitz_course.instructor import examples

ROOT = Path(__file__).resolve().parent.parent
COLAB_VENV = ROOT / ".cache" / "colab-runtime"
STUDENT_MODULES = {"torch", "numpy", "matplotlib"}


def edition_cells(nb):
    return [c for c in nb.cells if colab.EDITION_TAG in c.metadata.get("tags", [])]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_badge_points_at_configured_repository_and_existing_file(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    first = nb.cells[0]
    assert colab.BADGE_IMAGE in first.source
    url = first.source.split("](")[-1].rstrip(")")
    parsed = urllib.parse.urlparse(url)
    where = colab.links()
    owner_repo = where.repository.removeprefix("https://github.com/")
    assert parsed.netloc == "colab.research.google.com"
    prefix = f"/github/{owner_repo}/blob/{where.branch}/"
    assert parsed.path.startswith(prefix), parsed.path
    assert (ROOT / parsed.path.removeprefix(prefix)).is_file()


def test_readme_links_every_part_with_its_badge():
    readme = (ROOT / "README.md").read_text()
    where = colab.links()
    for name in NOTEBOOKS:
        assert where.colab_url(name) in readme, name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_edition_keeps_every_nbgrader_cell_of_the_release(name):
    release = nbformat.read(ROOT / "release" / ASSIGNMENT / f"{name}.ipynb", as_version=4)
    edition = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    graded = [c for c in edition.cells if colab.EDITION_TAG not in c.metadata.get("tags", [])]
    assert graded == release.cells
    assert len(edition_cells(edition)) == 3
    assert "torch" in edition.cells[1].source and "Download" in edition.cells[-1].source


def _imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_student_notebooks_import_only_torch_numpy_matplotlib_and_stdlib(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        # Colab's oldest Python: fails on syntax newer than 3.10.
        ast.parse(cell.source, feature_version=(3, 10))
        outside = _imports(cell.source) - STUDENT_MODULES - set(sys.stdlib_module_names)
        assert not outside, f"{name}: imports {outside}"


def _colab_runtime() -> Path:
    """A virtual environment with torch, numpy, matplotlib and a kernel: nothing of ours."""
    python = COLAB_VENV / "bin" / "python"
    marker = COLAB_VENV / ".ready"
    COLAB_VENV.parent.mkdir(parents=True, exist_ok=True)
    # One maker at a time (two pytest runs, or xdist workers); a runtime whose install was cut
    # short (an interrupted run) is made again, not trusted.
    with open(COLAB_VENV.parent / "colab-runtime.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        usable = marker.exists() and (
            subprocess.run(
                [str(python), "-c", "import torch, numpy, matplotlib, ipykernel"],
                capture_output=True,
                cwd="/",
            ).returncode
            == 0
        )
        if not usable:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(COLAB_VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "torch==2.13.0", "numpy"]
                + ["matplotlib", "ipykernel"],
                check=True,
            )
            marker.touch()
    # cwd "/": the repository root would put this project on sys.path
    probe = subprocess.run(
        [str(python), "-c", "import nbgrader"], capture_output=True, text=True, cwd="/"
    )
    assert probe.returncode != 0, "the Colab-like runtime must not have nbgrader"
    probe = subprocess.run(
        [str(python), "-c", "import toeplitz_course"], capture_output=True, text=True, cwd="/"
    )
    assert probe.returncode != 0, "the Colab-like runtime must not have this project"
    return python


@pytest.fixture(scope="module")
def colab_kernel(tmp_path_factory):
    python = _colab_runtime()
    jupyter_path = tmp_path_factory.mktemp("jupyter")
    spec = jupyter_path / "kernels" / "colab-sim"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Colab-like",
                "language": "python",
            }
        )
    )
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(jupyter_path)
    yield "colab-sim"
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


def _solved_edition(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    examples.fill({name: nb}, ROOT)
    return nb


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_solved_edition_runs_in_a_runtime_with_only_torch_numpy_matplotlib(
    name, colab_kernel, tmp_path
):
    nb = _solved_edition(name)
    hidden = [c for c in nb.cells if "BEGIN HIDDEN TESTS" in c.source]
    assert not hidden
    NotebookClient(
        nb, kernel_name=colab_kernel, timeout=60, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Ready: Python" in text
    for exercise in exercises_in(name):
        if exercise.autograded:
            assert f"✔ {exercise.answer_id}" in text, f"no passed line for {exercise.answer_id}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_untouched_edition_fails_only_at_answer_cells(name, colab_kernel, tmp_path):
    """Before any answer: each answer cell stops at its stub, each check says "not answered
    yet", every picture built on an answer says so too, and nothing else fails."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=colab_kernel,
        timeout=60,
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    answers = {e.answer_id for e in exercises_in(name) if e.autograded}
    guarded = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if gid in answers:
            # a stub raises at once; a function's stub when it is called
            expected = [] if cell.source.lstrip().startswith("def ") else ["NotImplementedError"]
            assert [e.ename for e in errors] == expected, gid
        elif gid.removesuffix("_test") in answers:
            assert [e.ename for e in errors] == ["CheckFailure"], gid  # an AssertionError
            assert "not answered yet" in errors[0].evalue, (gid, errors[0].evalue)
            assert "✔" not in text
        else:
            assert errors == [], (gid, [(e.ename, e.evalue) for e in errors])
            guarded += "not answered yet" in text
    demos_on_answers = sum(
        "answered(" in c.source for c in nb.cells if "demo" in c.metadata.get("tags", [])
    )
    assert guarded == demos_on_answers
