"""Demonstration cells: which ones grading may skip, and that skipping them changes nothing.

The analysis (``toeplitz_course.grader.demos``) is tested on small cell lists; the course's own
demonstrations are tested by running every instructor notebook with and without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from toeplitz_course.course.contract import ASSIGNMENT, EXERCISES, NOTEBOOKS
from toeplitz_course.grader import demos
from toeplitz_course.grader.demos import Names, skippable

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "source, reads, binds",
    [
        ("x = 1", set(), {"x"}),
        ("x = x + 1", {"x"}, {"x"}),
        ("W = layer.weight\nprint(W)", {"layer", "print"}, {"W"}),
        ("def f(w, n):\n    return w + n + g", {"g"}, {"f"}),
        ("y = [v * k for v in W]", {"W", "k"}, {"y"}),
        ("class A:\n    k = K\n    def f(self):\n        return G", {"K", "G"}, {"A"}),
        ("def f():\n    global W\n    W = 1", set(), {"f", "W"}),
        ("import numpy as np\nnp.zeros(3)", set(), {"np"}),
        ("%matplotlib inline\nplt.show()", {"plt"}, set()),
        ("for w in ws:\n    print(w)\nprint(w)", {"w", "ws", "print"}, {"w"}),
        ("if c:\n    W = 1\nprint(W)", {"c", "W", "print"}, {"W"}),
        ("if c:\n    W = 1\nelse:\n    W = 2\nprint(W)", {"c", "print"}, {"W"}),
        (
            "for k, (d, t) in enumerate(ps):\n    show(d, t, k)",
            {"enumerate", "ps", "show"},
            {"k", "d", "t"},
        ),
        (
            "with open(f) as fh:\n    text = fh.read()\nprint(text)",
            {"open", "f", "print"},
            {"fh", "text"},
        ),
        ("while n:\n    n = n - 1", {"n"}, {"n"}),
    ],
)
def test_names_a_cell_reads_and_binds(source, reads, binds):
    names = Names(source)
    assert names.reads == reads
    assert names.binds == binds


@pytest.mark.parametrize(
    "source",
    ["globals()['W']", "eval('W')", "get_ipython().user_ns['W']", "from m import *", "x = (", ""],
)
def test_dynamic_or_unparsable_cells_read_unknown_names(source):
    names = Names(source)
    if source:
        assert names.reads is None
    else:
        assert names.reads == set()


DEMO = "W = a\nprint(W)"


@pytest.mark.parametrize(
    "cells, demo_sources, expected",
    [
        (["a = 1", DEMO, "b = 2"], {DEMO}, {1}),
        (["a = 1", DEMO, "print(W)"], {DEMO}, set()),  # a later cell reads what it bound
        (["a = 1", DEMO, "W = 3\nprint(W)"], {DEMO}, {1}),  # rebound before read
        (["a = 1", DEMO, "if c:\n    W = 3", "print(W)"], {DEMO}, set()),  # maybe rebound
        (["a = 1", DEMO, "def f():\n    return W"], {DEMO}, set()),  # read when called
        (["a = 1", DEMO, "x = eval('W')"], {DEMO}, set()),  # cannot tell: run it
        (["a = 1", DEMO + "\nprint('edited')"], {DEMO}, set()),  # not the instructor's
        (["a = 1", DEMO.replace("\n", "\r\n") + "\n\n"], {DEMO}, {1}),  # CRLF, blank lines
        (["a = 1", "q = a", "W = q", "print(W)"], {"q = a", "W = q"}, set()),  # a chain
        (["a = 1", "q = a", "W = q", "print(a)"], {"q = a", "W = q"}, {1, 2}),
        (["x = eval('a')", "print(x)"], {"x = eval('a')"}, set()),  # a demo it cannot read
        # a test cell reads an answer by name: a read of that name, not an unknown one
        (["a = 1", DEMO, 'check(globals().get("W"))'], {DEMO}, set()),
        (["a = 1", DEMO, 'check(globals().get("a"))'], {DEMO}, {1}),
        (["a = 1", DEMO, 'check(globals().get("a"), globals())'], {DEMO}, set()),  # unknown
    ],
)
def test_skippable(cells, demo_sources, expected):
    assert skippable(cells, demo_sources) == expected


def _code_sources(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_demonstration_of_the_solutions_is_skippable(notebook):
    nb = nbformat.read(ROOT / "source" / ASSIGNMENT / f"{notebook}.ipynb", as_version=4)
    found = demos.demo_sources(nb)
    assert found, f"{notebook} has no demonstration"
    sources = _code_sources(nb)
    tagged = {i for i, s in enumerate(sources) if demos.normalized(s) in found}
    assert skippable(sources, found) == tagged


def _nbgrader_cell(cell_type: str, **meta) -> dict:
    return {"cell_type": cell_type, "source": "", "metadata": {"nbgrader": meta}}


@pytest.mark.parametrize(
    "cells, expected",
    [
        ([_nbgrader_cell("markdown", grade=True, solution=True)], True),  # a written answer
        ([_nbgrader_cell("code", grade=True, solution=True)], True),  # code graded by hand
        ([_nbgrader_cell("markdown", task=True, grade=False, solution=False)], True),
        ([_nbgrader_cell("code", grade=True, solution=False)], False),  # an autograder test
        ([_nbgrader_cell("code", grade=False, solution=True)], False),  # an answer it tests
        ([{"cell_type": "code", "source": "", "metadata": {}}], False),
    ],
)
def test_graded_by_hand(cells, expected):
    assert demos.graded_by_hand({"cells": cells}) is expected


def test_the_release_is_graded_by_hand_where_the_contract_says():
    release = ROOT / "release" / ASSIGNMENT
    found = {
        nb for nb in NOTEBOOKS if demos.graded_by_hand(nbformat.read(release / f"{nb}.ipynb", 4))
    }
    assert found == {e.notebook for e in EXERCISES if not e.autograded}


SEED = "import random, numpy, torch\nrandom.seed(0); numpy.random.seed(0); torch.manual_seed(0)"
PROBE = (
    "import hashlib as _h, numpy as _np, torch as _t\n"
    "print('rng', _h.sha1(_t.get_rng_state().numpy().tobytes()"
    " + _np.random.get_state()[1].tobytes()).hexdigest())"
)


def _run(nb, skip_demos: bool) -> list[str]:
    """Execute a copy of an instructor notebook; the text of every non-demo cell and probe."""
    cells = [nbformat.v4.new_code_cell(SEED)]
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        is_demo = demos.DEMO_TAG in cell.metadata.get("tags", [])
        if is_demo and skip_demos:
            continue
        cells.append(nbformat.v4.new_code_cell(cell.source, metadata={"demo": is_demo}))
        if not is_demo:
            cells.append(nbformat.v4.new_code_cell(PROBE))
    run = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    NotebookClient(
        run,
        timeout=60,
        kernel_name="python3",
        kernel_manager_class="toeplitz_course.grader.warmkernel.WarmKernelManager",
        allow_errors=True,
    ).execute()
    shown = []
    for cell in run.cells[1:]:
        if cell.metadata.get("demo"):
            continue
        text = []
        for out in cell.outputs:
            if out.output_type == "stream":
                text.append(out.text)
            elif out.output_type == "execute_result":
                text.append(out.data.get("text/plain", ""))
            elif out.output_type == "error":
                text.append(f"{out.ename}: {out.evalue}")
        shown.append("".join(text))
    return shown


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_skipping_the_demonstrations_changes_no_other_cell(notebook, monkeypatch):
    """Every other cell prints the same, and the random generators are in the same state
    after it, whether the demonstrations ran or not (what the static analysis cannot see:
    mutated objects, random numbers drawn)."""
    monkeypatch.setenv("MPLBACKEND", "agg")  # the kernels draw nothing
    nb = nbformat.read(ROOT / "source" / ASSIGNMENT / f"{notebook}.ipynb", as_version=4)
    full, skipped = _run(nb, skip_demos=False), _run(nb, skip_demos=True)
    assert len(full) == len(skipped)
    for i, (a, b) in enumerate(zip(full, skipped, strict=True)):
        assert a == b, f"{notebook}: output {i} differs when demonstrations are skipped"
    assert json.dumps(full).count("rng ") >= 5


def _cell(source: str, *, demo: bool = False, **nbgrader) -> dict:
    meta = {"tags": ["demo"]} if demo else {}
    if nbgrader:
        meta["nbgrader"] = nbgrader
    kind = "markdown" if nbgrader.get("solution") and nbgrader.get("grade") else "code"
    return {"cell_type": kind, "source": source, "metadata": meta}


def test_the_figures_graded_by_hand_are_the_drawings_above_the_cell_and_what_they_need():
    """Of the demonstrations above a written answer, those that draw run, with a demonstration
    they read a name from (even before the previous test); one that only prints, one that draws
    elsewhere, and one no figure needs, are skipped."""
    cells = [
        _cell("from matplotlib import pyplot as pp\nimport numpy as np"),
        _cell("grid = np.zeros((3, 3))\nprint(grid)", demo=True),  # a figure below needs it
        _cell("pp.imshow(np.eye(3))\npp.show()", demo=True),  # draws, not above the answer
        _cell("check()", grade=True, solution=False, grade_id="t"),
        _cell("print(sorted(answer))", demo=True),  # only prints
        _cell("pp.imshow(grid)\npp.show()", demo=True),  # the picture the answer is about
        _cell("YOUR ANSWER HERE", grade=True, solution=True, grade_id="written"),
        _cell("pp.plot([1, 2])", demo=True),  # after the answer
    ]
    nb = {"cells": cells}
    sources = [demos.source_of(c) for c in cells if c["cell_type"] == "code"]
    figures = demos.figures_graded_by_hand(nb)
    assert figures == {"pp.imshow(grid)\npp.show()"}
    skipped = {sources[i] for i in skippable(sources, demos.demo_sources(nb) - figures)}
    assert skipped == {
        "pp.imshow(np.eye(3))\npp.show()",
        "print(sorted(answer))",
        "pp.plot([1, 2])",
    }


@pytest.mark.parametrize(
    "source, names",
    [
        ("import matplotlib.pyplot as plt", {"plt"}),
        ("from matplotlib import pyplot as pp, cm", {"pp"}),
        ("from matplotlib import pyplot", {"pyplot"}),
        ("import matplotlib", {"matplotlib"}),
        ("import numpy as np\nimport matplotlib.colors as mc", set()),
    ],
)
def test_pyplot_names(source, names):
    assert demos.pyplot_names([source]) == names


def test_where_a_person_grades_only_the_drawings_above_the_cell_run():
    """03: of the demonstrations between ex3_3's test and ex3_4, those that draw run (the bars
    and the panels: "the two pictures above"); the scan that prints, the shifts picture, the
    printout of tau and the circular-padding demonstration are skipped."""
    release = nbformat.read(ROOT / "release" / ASSIGNMENT / "03_equivariance.ipynb", as_version=4)
    figures = demos.figures_graded_by_hand(release)
    assert figures == _drawings_above_the_written_answer(release)
    assert len(figures) >= 2
    sources = _code_sources(release)
    skipped = skippable(sources, demos.demo_sources(release) - figures)
    assert not any(demos.normalized(sources[i]) in figures for i in skipped)
    assert len(skipped) == len(demos.demo_sources(release)) - len(figures)


def _section_above_the_written_answer(release) -> list:
    cells = release.cells
    by_hand = next(i for i, c in enumerate(cells) if demos._by_hand(c))
    last_test = max(
        i for i, c in enumerate(cells[:by_hand]) if c.metadata.get("nbgrader", {}).get("grade")
    )
    return [c for c in cells[last_test + 1 : by_hand] if "demo" in c.metadata.get("tags", [])]


def _drawings_above_the_written_answer(release) -> set[str]:
    """Found by text, not by the analysis under test: the demonstrations that call plt."""
    section = _section_above_the_written_answer(release)
    return {demos.normalized(c.source) for c in section if "plt." in c.source}


def test_a_real_grade_runs_the_drawings_above_the_written_answer_and_skips_the_rest(graded_class):
    """In a class graded by ``grade``: in 03, the demonstrations that draw above ex3_4 ran and
    have their figures; the one between them that only prints, and every other demonstration,
    did not run."""
    from test_grading import MISTAKES

    from toeplitz_course.grader.preprocessors import SkipDemoCells

    course = graded_class.course
    release = nbformat.read(course / "release" / ASSIGNMENT / "03_equivariance.ipynb", 4)
    drawings = _drawings_above_the_written_answer(release)
    printing = [c for c in _section_above_the_written_answer(release) if "plt." not in c.source]
    assert drawings and printing  # the notebook still has both kinds above ex3_4
    graded = nbformat.read(
        course / "autograded" / MISTAKES / ASSIGNMENT / "03_equivariance.ipynb", 4
    )
    note = SkipDemoCells().note
    ran, skipped = set(), set()
    for cell in graded.cells:
        if "demo" not in cell.metadata.get("tags", []):
            continue
        source = demos.normalized(cell.source)
        if cell.execution_count and not any(o.get("text") == note for o in cell.outputs):
            ran.add(source)
            if source in drawings:
                assert any("image/png" in o.get("data", {}) for o in cell.outputs), source[:60]
        else:
            skipped.add(source)
    assert ran == drawings
    assert demos.normalized(printing[0].source) in skipped
    assert skipped == demos.demo_sources(release) - drawings
