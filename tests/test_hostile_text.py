"""Everything a student hands in is hostile (issue 20): text out, and cheating the self-checks.

Text out: a student's id, file names, grade ids, flag details and messages reach ``grade``,
``report``, ``export`` and ``feedback``; on a terminal they must be shown, never obeyed (an
escape sequence like ``\\x1b[8m`` would hide the rest of the report, the student's own flags
included), and in grades.csv no cell may be read as a formula. The sinks are tested on crafted
gradebooks and records (student ids ``collect``/``grade`` would refuse still reach them through
the exchange and the records), and once end to end on a graded class.

Self-checks: the self-checks cell holds each answer as a salted hash; an answer cell can search
a small answer space with the cell's own key function. Such cells are flagged
``uses_selfcheck``; the other ways of reaching into the grading (``exec``, ``sys.modules``, ...)
``patching``, and looking at where the code runs ``nbgrader_env``. Honest work raises none.
"""

from __future__ import annotations

import ast
import copy
import csv
import functools
import json
import os
import shutil
import sys
import unicodedata
from pathlib import Path

import handins
import nbformat
import pytest

from toeplitz_course.course import colab, contract
from toeplitz_course.course.untrusted import csv_cell, for_terminal
from toeplitz_course.grader import integrity, visible
from toeplitz_course.grader.grade import GradeRun, grade
from toeplitz_course.instructor import examples
from toeplitz_course.instructor.export import export
from toeplitz_course.instructor.feedback import FeedbackRun
from toeplitz_course.instructor.report import report

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "release" / contract.ASSIGNMENT
A = contract.ASSIGNMENT
CHEATS = {"patching", "uses_selfcheck", "nbgrader_env"}

# Text a terminal would obey: hide the rest (SGR 8), clear the screen, rewrite the line, forge
# a new line, reorder (bidi override); and cells a spreadsheet would evaluate.
HIDE = "\x1b[8m"
HOSTILE_IDS = (
    '=HYPERLINK("http://x")',
    "@SUM(1)",
    "-2+3",
    "+cmd",
    f"eve{HIDE}hidden",
    "two\nlines",
    "bidi\u202eevil",
    "\x1b[2J\x1b[Hclear",
)
EVIL_TEXT = f"{HIDE}all is well\r\x1b[2Kforged\u202e"


def obeyable(text: str) -> list[str]:
    """Characters of ``text`` a terminal would act on (newline aside: lines are the output's)."""
    return [
        c
        for c in text
        if c != "\n" and (unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in "\u202a\u202e")
    ]


# --- part A: the sinks on crafted gradebooks and records ---------------------------------------


@pytest.fixture(scope="module")
def empty_gradebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nbgrader.api import Gradebook

    path = tmp_path_factory.mktemp("gradebook") / "gradebook.db"
    with pytest.MonkeyPatch.context() as mp:
        # An unactivated venv (.venv/bin/pytest) does not put `alembic` on PATH.
        mp.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        Gradebook(f"sqlite:///{path}").close()
    return path


def hostile_course(root: Path, empty_gradebook: Path) -> Path:
    """A gradebook of hostile ids (nbgrader's exchange takes any folder name) and their
    records, each carrying hostile text in every field a student shapes."""
    from nbgrader.api import Gradebook

    shutil.copyfile(empty_gradebook, root / "gradebook.db")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        gb.add_assignment(A)
        for notebook in contract.NOTEBOOKS:
            gb.add_notebook(notebook, A)
        for e in contract.EXERCISES:
            gb.add_solution_cell(e.answer_id, e.notebook, A)
            gid = e.test_id or e.answer_id
            kind = "code" if e.autograded else "markdown"
            gb.add_grade_cell(gid, e.notebook, A, max_score=e.points, cell_type=kind)
        for student in HOSTILE_IDS:
            gb.add_student(student)
            gb.add_submission(A, student)
            for e in contract.AUTOGRADED:
                g = gb.find_grade(e.test_id, e.notebook, A, student)
                g.auto_score, g.needs_manual_grade = 0.0, False
        gb.db.commit()
    grading = root / "grading"
    grading.mkdir()
    nb1 = contract.NOTEBOOKS[0]
    for number, student in enumerate(HOSTILE_IDS):
        record = {
            "student": student,
            "sandboxed": False,
            "notebooks": {
                nb1: {
                    "status": "graded",
                    "detail": "",
                    "cells": {
                        f"ex1_1_test{EVIL_TEXT}": {"score": 0, "max": 1, "message": EVIL_TEXT}
                    },
                },
                f"nb{EVIL_TEXT}": {"status": "failed", "detail": EVIL_TEXT, "cells": {}},
            },
            "flags": [
                {"notebook": f"evil{HIDE}.ipynb", "kind": "renamed", "detail": EVIL_TEXT},
                {"notebook": nb1, "kind": f"tag{HIDE}", "detail": f"x{EVIL_TEXT} tagged"},
                # last, so that a hiding sequence before it would hide it
                {"notebook": nb1, "kind": "patching", "detail": f"ex1_1 assigns to torch.{number}"},
            ],
        }
        (grading / f"s{number}.json").write_text(json.dumps(record), encoding="utf-8")
    return root


@pytest.fixture
def crafted(tmp_path: Path, empty_gradebook: Path) -> Path:
    return hostile_course(tmp_path, empty_gradebook)


def test_grades_csv_has_no_formula_and_keeps_every_id(crafted: Path) -> None:
    result = export(crafted)
    with result.csv_path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    # Each id is there, neutralised by the one rule, not dropped or rewritten otherwise.
    assert sorted(row[0] for row in rows[1:]) == sorted(csv_cell(s) for s in HOSTILE_IDS)


def test_export_summary_and_page_show_hostile_text_without_obeying_it(crafted: Path) -> None:
    result = export(crafted)
    assert not obeyable(result.summary), result.summary
    page = result.html_path.read_text(encoding="utf-8")
    assert not obeyable(page.replace("\n", ""))
    assert for_terminal(HIDE) in page  # the flag's hidden-text sequence is shown, as text


def test_report_shows_every_flag_of_every_hostile_student(crafted: Path) -> None:
    text = report(crafted)
    assert not obeyable(text), text
    for number, student in enumerate(HOSTILE_IDS):
        # the id as one visible word: a newline in it forges no line of its own
        assert f"{for_terminal(student)}:" in text.splitlines()
        # the flag after the hiding sequence is there, in the clear
        assert f"ex1_1 assigns to torch.{number}" in text
    assert for_terminal(EVIL_TEXT) in text


def test_grade_and_feedback_summaries_show_hostile_text_without_obeying_it() -> None:
    records = {
        student: {
            "notebooks": {"01_conv1d_toeplitz": {"status": "graded"}},
            "flags": [
                {"kind": "hand_grade_reset", "detail": EVIL_TEXT},
                {"kind": f"patching{HIDE}", "detail": "x"},
            ],
            "total": 1.0,
            "max_total": 17.0,
        }
        for student in HOSTILE_IDS
    }
    text = GradeRun(records, {f"err{HIDE}": EVIL_TEXT}, 1.0, len(HOSTILE_IDS)).format()
    assert not obeyable(text), text
    assert len(text.splitlines()) == 2 + len(HOSTILE_IDS)  # no line forged
    for student in HOSTILE_IDS:
        assert for_terminal(student) in text
    run = FeedbackRun(errors={f"{HOSTILE_IDS[4]}/{HIDE}.html": EVIL_TEXT})
    assert not obeyable(run.format()) and for_terminal(EVIL_TEXT) in run.format()


# --- part B: integrity, without grading ---------------------------------------------------------


@functools.cache
def _released() -> dict[str, dict]:
    return {
        name: json.loads((RELEASE / f"{name}.ipynb").read_text()) for name in contract.NOTEBOOKS
    }


def _release() -> dict[str, dict]:
    """The release notebooks' JSON, a copy to change."""
    return copy.deepcopy(_released())


def _scan(name: str, nb: dict) -> list[dict]:
    return integrity.scan(name, submitted=nb, release=RELEASE / f"{name}.ipynb", autograded=None)


def _scan_files(files: dict[str, str]) -> list[dict]:
    """The flags of a hand-in, its notebooks normalised as staging does."""
    flags = []
    for filename, text in files.items():
        name = filename.removesuffix(".ipynb")
        if name not in contract.NOTEBOOKS:
            continue
        try:
            raw = json.loads(text)
        except ValueError:
            continue
        nb = json.loads(nbformat.writes(colab.normalize(nbformat.from_dict(raw))))
        flags += _scan(name, nb)
    return flags


def test_honest_hand_ins_raise_no_cheating_flag() -> None:
    cases = examples.hostile_class(ROOT) + examples.form_cases(ROOT)
    for case in cases:
        kinds = {f["kind"] for f in _scan_files(case.files)}
        # s08 and s09 patch and look at NBGRADER_EXECUTION: they must still be flagged so
        assert kinds & CHEATS == case.flags & CHEATS, (case.student, kinds)


def test_the_self_checks_names_are_all_watched() -> None:
    # A name the generated cell binds that integrity does not know would be a blind spot.
    for notebook in contract.NOTEBOOKS:
        tree = ast.parse(visible.cell_source(notebook))
        bound = set()
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                bound.add(node.name)
            elif isinstance(node, ast.Import):
                bound |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Assign):
                bound |= {
                    n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)
                }
        assert bound <= integrity.SELF_CHECK_NAMES | integrity.SELF_CHECK_CALLS, bound
        assert f'"{integrity.SELF_CHECK_MODULE}"' in visible.cell_source(notebook)


def _exercise(answer_id: str) -> contract.Exercise:
    return next(e for e in contract.EXERCISES if e.answer_id == answer_id)


def brute_force_by_key(answer_id: str) -> str:
    """A student's answer cell that finds the answer with the self-checks' own key function."""
    e = _exercise(answer_id)
    if answer_id.startswith("ex3_"):
        search = (
            f"{e.name} = {{n for n in range(-5, 6)\n"
            f"    if keys.key('s', table['padding'], n) in table['members']}}\n"
        )
    else:
        search = (
            f"{e.name} = next(n for n in range(100_000) if keys.key('c', n) == table['right'])\n"
        )
    return (
        "# why count when the checks know?\n"
        "import sys\n"
        "keys = sys.modules['toeplitz_self_checks.selfcheck']\n"
        f"table = _self_checks.tables[{answer_id!r}]\n" + search
    )


def brute_force_by_judge(answer_id: str) -> str:
    """A student's answer cell that asks the visible check until it says yes."""
    return (
        f"for {_exercise(answer_id).name} in range(1000):\n"
        "    try:\n"
        f"        self_check({answer_id!r})\n"
        "        break\n"
        "    except AssertionError:\n"
        "        pass\n"
    )


#: The value exercises the brute force scored (5 of 18 points with nothing else answered); the
#: output lengths are functions now, judged on cases the self-checks cell does not hold.
SEARCHABLE = ("ex3_2", "ex3_3", "ex5_1a", "ex5_1b", "ex5_1c")


@pytest.mark.parametrize("cheat", [brute_force_by_key, brute_force_by_judge])
def test_a_brute_force_answer_really_finds_the_answer(cheat) -> None:
    # Not a strawman: run the release's self-checks cell and the cell, as the kernel would.
    answer_id = "ex5_1a" if cheat is brute_force_by_key else "ex5_1b"
    name = _exercise(answer_id).notebook
    cells = _release()[name]["cells"]
    setup = next(integrity.cell_source(c) for c in cells if "_install_self_checks" in str(c))
    namespace: dict = {}
    exec(setup, namespace)
    exec(cheat(answer_id), namespace)
    namespace["self_check"](answer_id, namespace)  # raises unless the answer is right


@pytest.mark.parametrize("where", ["answer cell", "added cell"])
@pytest.mark.parametrize("cheat", [brute_force_by_key, brute_force_by_judge])
@pytest.mark.parametrize("answer_id", SEARCHABLE)
def test_a_brute_force_answer_is_flagged(answer_id: str, cheat, where: str) -> None:
    e = _exercise(answer_id)
    nb = copy.deepcopy(_release()[e.notebook])
    if where == "answer cell":
        cell = next(
            c for c in nb["cells"] if integrity.nbgrader_meta(c).get("grade_id") == answer_id
        )
        cell["source"] = cheat(answer_id)
        name = answer_id
    else:
        at = next(
            i
            for i, c in enumerate(nb["cells"])
            if integrity.nbgrader_meta(c).get("grade_id") == answer_id
        )
        added = nbformat.v4.new_code_cell(cheat(answer_id))
        nb["cells"].insert(at, json.loads(json.dumps(added)))
        name = f"cell {at}"
    flags = [f for f in _scan(e.notebook, nb) if f["kind"] == "uses_selfcheck"]
    assert len(flags) == 1, flags
    detail = flags[0]["detail"]
    assert detail.startswith(f"{name} "), detail
    assert ("_self_checks" if cheat is brute_force_by_key else "self_check(...) in a") in detail


def test_copied_hashes_and_key_function_are_flagged() -> None:
    nb = copy.deepcopy(_release()["05_parameter_counts"])
    setup = next(c for c in nb["cells"] if "_install_self_checks" in str(c))
    right = json.loads(
        ast.literal_eval(ast.parse(integrity.cell_source(setup)).body[-2].value.args[1])
    )
    target = right["ex5_1a"]["right"]
    cell = next(c for c in nb["cells"] if integrity.nbgrader_meta(c).get("grade_id") == "ex5_1a")
    # the key function retyped from the notebook, and the hash pasted: no name of the cell used
    cell["source"] = (
        "import hashlib, struct\n"
        "def k(n):\n"
        "    h = hashlib.sha256(b'toeplitz-' + b'course')\n"
        "    h.update(b'sc\\0' + b'n1:' + struct.pack('<q', n * 1000))\n"
        "    return h.hexdigest()[:24]\n"
        f"n_params_dense = next(n for n in range(10_000) if k(n) == {target!r})\n"
    )
    flags = [f for f in _scan("05_parameter_counts", nb) if f["kind"] == "uses_selfcheck"]
    assert flags and "hash of the self-checks' tables" in flags[0]["detail"], flags


PATCHING = {
    "vars(import_module('torch'))": (
        "from importlib import import_module\n"
        "vars(import_module('torch'))['allclose'] = lambda *a, **k: True\n"
    ),
    "setattr(operator": "import operator\nsetattr(operator, 'eq', lambda a, b: True)\n",
    "exec(...)": "exec('import torch; torch.equal = lambda *a: True')\n",
    "eval(...)": "n_out_valid = eval('8')\n",
    "compile(...)": "code = compile('x = 1', '<answer>', 'single')\n",
    "__import__(...)": "__import__('math').isclose = lambda *a, **k: True\n",
    "importlib": "import importlib\nimportlib.reload(torch)\n",
    "globals()": "globals()['n_out_valid'] = 8\n",
    "globals().update": "globals().update(n_out_valid=8)\n",
    "sys.modules": "from sys import modules\nmodules['numpy'] = None\n",
    "get_ipython().run_cell": "get_ipython().run_cell('n_out_valid = 8')\n",
    # IPython syntax: still read, the magic's own code too
    "exec(...) ": "%time exec('n_out_valid = 8')\n",
    # not Python at all: the words are still found
    "exec(": "n_out_valid = = 8\nexec('n_out_valid = 8')\n",
}

ENVIRONMENT = {
    "socket.gethostname": "import socket\nif socket.gethostname() != 'me':\n    pass\n",
    "platform.node": "import platform\nn_out_valid = 8 if platform.node() else 0\n",
    "os.uname": "import os\ngraded = os.uname().nodename\n",
    "os.environ": "import os\ngraded = 'NBGRADER_VALIDATING' in os.environ\n",
    "HOSTNAME": "from os import getenv\nhost = getenv('HOSTNAME')\n",
    "getpass.getuser": "import getpass\nme = getpass.getuser() == 'nobody'\n",
    "/proc": "from pathlib import Path\nboxed = Path('/proc/1/cgroup').exists()\n",
    "os.getpid": "import os\nboxed = os.getpid() == 1\n",
}


@pytest.mark.parametrize(
    ("kind", "form", "code"),
    [("patching", form, code) for form, code in PATCHING.items()]
    + [("nbgrader_env", form, code) for form, code in ENVIRONMENT.items()],
)
def test_each_form_is_flagged_and_named(kind: str, form: str, code: str) -> None:
    nb = copy.deepcopy(_release()["01_conv1d_toeplitz"])
    cell = next(c for c in nb["cells"] if integrity.nbgrader_meta(c).get("grade_id") == "ex1_1")
    cell["source"] = code + integrity.cell_source(cell)
    flags = [f for f in _scan("01_conv1d_toeplitz", nb) if f["kind"] == kind]
    assert len(flags) == 1, _scan("01_conv1d_toeplitz", nb)
    assert flags[0]["detail"].startswith("ex1_1 ") and form.strip() in flags[0]["detail"], flags


# --- a graded class: the whole chain ------------------------------------------------------------

EVIL_FILE = f"evil{HIDE}.ipynb"
EVIL_GRADE_ID = f"mine{HIDE}\x1b[2J"


@pytest.fixture(scope="module")
def graded(course_template: Path, tmp_path_factory: pytest.TempPathFactory):
    course = tmp_path_factory.mktemp("hostile") / "course"
    shutil.copytree(course_template, course)
    # Grade ids and file names a student chose, with escapes in them.
    nbs = examples.correct(course)
    nb1 = nbs[contract.NOTEBOOKS[0]]
    for _ in range(2):  # twice: a duplicate flag and a tag flag, both naming the grade id
        cell = nbformat.v4.new_code_cell("pass")
        cell.metadata["nbgrader"] = {
            "grade_id": EVIL_GRADE_ID,
            "grade": False,
            "solution": False,
            "locked": False,
            "schema_version": 3,
        }
        cell.metadata["tags"] = ["raises-exception"]
        nb1.cells.append(cell)
    # Each student hands in the notebooks its text or answers are in (a kernel each).
    folder = handins.write(nbs, course, "s_evil_text", [contract.NOTEBOOKS[0]])
    (folder / EVIL_FILE).write_text(nbformat.writes(nb1), encoding="utf-8")
    # Nothing answered but what the self-checks give away.
    nbs = examples.blank(course)
    for answer_id in SEARCHABLE:
        cheat = brute_force_by_judge if answer_id == "ex5_1b" else brute_force_by_key
        examples.answer(nbs, answer_id, cheat(answer_id))
    searched = {_exercise(a).notebook for a in SEARCHABLE}
    handins.write(nbs, course, "s_brute_force", searched)
    handins.write(examples.correct(course), course, "s_honest", searched)
    run = grade(course, jobs=1, progress=False)
    return course, run


def test_graded_hostile_text_reaches_the_sinks_shown_not_obeyed(graded) -> None:
    course, run = graded
    details = json.dumps(run.records["s_evil_text"]["flags"])
    # The sinks really get hostile text (else this test would prove nothing): the grade id raw.
    # (Staging may already show the file name escaped; the sinks must not care which.)
    assert json.dumps(EVIL_GRADE_ID)[1:-1] in details
    text = report(course)
    summary = run.format()
    exported = export(course).summary
    for output in (text, summary, exported):
        assert not obeyable(output), output
    assert for_terminal(EVIL_FILE) in text and for_terminal(EVIL_GRADE_ID) in text


def test_the_brute_force_is_flagged_in_the_report_and_the_summary(graded) -> None:
    course, run = graded
    record = run.records["s_brute_force"]
    flagged = {f["detail"].split()[0] for f in record["flags"] if f["kind"] == "uses_selfcheck"}
    assert flagged == set(SEARCHABLE)
    # The grader verified the answers itself: they are right, so they score (the flag, not the
    # score, is what tells).
    points = sum(_exercise(a).points for a in SEARCHABLE)
    assert record["total"] == points
    line = next(row for row in run.format().splitlines() if "s_brute_force" in row)
    assert "uses_selfcheck" in line
    text = report(course)
    assert "s_brute_force:" in text and "uses_selfcheck" in text
    honest = run.records["s_honest"]["flags"]
    assert not [f for f in honest if f["kind"] in CHEATS], honest


@pytest.mark.parametrize("depth", [900, 100_000])
def test_a_cell_nested_past_the_parser_is_read_not_a_grader_error(depth) -> None:
    # ast.parse raises RecursionError past its depth, ast.unparse below it: neither may escape.
    source = "import torch\ntorch" + ".b" * depth + " = 1\nexec('x')\n"
    found = integrity.findings(source, modules={"torch"})
    assert ("patching", "exec(...)") in found or any(k == "patching" for k, _ in found)


def test_export_counts_only_real_folders_of_notebooks_as_handed_in(tmp_path) -> None:
    from toeplitz_course.instructor.export import _has_notebooks

    sub = tmp_path / "submitted"
    (sub / "s01" / "toeplitz").mkdir(parents=True)
    (sub / "s01" / "toeplitz" / "01_conv1d_toeplitz.ipynb").write_text("{}")
    other = tmp_path / "elsewhere" / "toeplitz"
    other.mkdir(parents=True)
    (other / "01_conv1d_toeplitz.ipynb").write_text("{}")
    (sub / "s02").symlink_to(tmp_path / "elsewhere")  # a linked student folder
    (sub / "s03" / "toeplitz").mkdir(parents=True)  # a linked notebook
    (sub / "s03" / "toeplitz" / "01_conv1d_toeplitz.ipynb").symlink_to(
        other / "01_conv1d_toeplitz.ipynb"
    )
    assert _has_notebooks(tmp_path, "s01", "toeplitz")
    assert not _has_notebooks(tmp_path, "s02", "toeplitz")
    assert not _has_notebooks(tmp_path, "s03", "toeplitz")
    assert not _has_notebooks(tmp_path, "../elsewhere", "toeplitz")
