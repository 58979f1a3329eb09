"""A variant per term (issue 24): ``c.Course.variant`` draws the course's numbers from a name,
``build`` moves ``source/`` to them and regenerates the rest, and the answers of another variant
score 0 and are flagged.

One scratch course in variant ``VARIANT`` is built once for the module (``variant_course``);
the default course is the repository itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from toeplitz_course.course import phrases, variant
from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS, exercises_in
from toeplitz_course.course.variant import DEFAULT_DATA
from toeplitz_course.grader import answers, verdicts
from toeplitz_course.grader.coursedir import Course
from toeplitz_course.grader.preprocessors import is_autograder_test
from toeplitz_course.instructor import build, examples
from toeplitz_course.kernel import probe
from toeplitz_course.kernel.cases import CASES_KERNEL_1D as CASES_1D
from toeplitz_course.kernel.cases import CASES_KERNEL_2D as CASES_2D

ROOT = Path(__file__).resolve().parent.parent
VARIANT = "2027-spring"
FOLDERS = (Path("source") / ASSIGNMENT, Path("release") / ASSIGNMENT, Path("notebooks"))


def _scratch(dest: Path, name: str | None, previous: list[str] | None = None) -> Path:
    """A course directory with the repository's sources, configured for variant ``name``."""
    dest.mkdir(parents=True)
    shutil.copytree(ROOT / "source", dest / "source")
    config = (ROOT / "nbgrader_config.py").read_text()
    if name is not None:
        config += f"\nc.Course.variant = {name!r}\n"
    if previous:
        config += f"c.Course.previous_variants = {previous!r}\n"
    (dest / "nbgrader_config.py").write_text(config)
    return dest


@pytest.fixture(scope="module")
def variant_course(tmp_path_factory) -> Path:
    root = _scratch(tmp_path_factory.mktemp("variant") / "course", VARIANT)
    build.build(root)
    return root


@pytest.fixture(scope="module")
def given() -> variant.GivenData:
    return verdicts.given_data(VARIANT)


# -- the draw ---------------------------------------------------------------------------------


def test_the_default_variant_is_the_committed_data_and_the_config_default():
    assert verdicts.given_data(None) == verdicts.given_data("default") == DEFAULT_DATA
    assert Course.load(ROOT).variant == "default"
    assert Course.load(ROOT).previous_variants == ()


def test_a_draw_is_deterministic_across_processes(given):
    code = (
        "from toeplitz_course.grader import verdicts\n"
        f"print(repr(verdicts.given_data({VARIANT!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert out == repr(given)


@pytest.mark.parametrize("name", [VARIANT, "2027-fall", "2028-spring", "x"])
def test_every_variant_dependent_answer_differs_and_every_mistake_is_told(name):
    g = verdicts.given_data(name)
    assert g.name == name
    assert 0 not in g.w_1d and list(g.w_1d) != list(g.w_1d)[::-1]
    assert all(0 not in row for row in g.kernel_2d)
    assert g.x_1d[0] == g.x_1d[-1] == 0
    assert verdicts.distinct(g)
    for grade_id in verdicts.VARIANT_DEPENDENT:
        mine, default = verdicts.table(grade_id, given=g), verdicts.table(grade_id)
        assert mine != default, grade_id
        # The default's right answer is an old answer here, never the right one.
        right_default = _right_payload(grade_id, DEFAULT_DATA)
        with pytest.raises(verdicts.OldAnswer) as caught:
            verdicts.verify(grade_id, right_default, g, (DEFAULT_DATA,))
        assert caught.value.variant == "default"
        verdicts.verify(grade_id, _right_payload(grade_id, g), g, (DEFAULT_DATA,))


@pytest.mark.parametrize("name", ["default", VARIANT, "2026-fall", "2028-spring", "x"])
def test_the_panels_of_part_3_show_shifts_that_break_in_every_variant(name):
    """03's panels ("each panel compares the two sides for one broken shift") show, in every
    variant, a shift where the two sides differ: the unpadded layer's, then the padded layer's
    on the left and on the right (what Exercise 3.4 asks about)."""
    import re

    import torch
    import torch.nn.functional as F

    def shift(t, n):  # the course's tau_n: zeros come in, what passes the end is lost
        out = torch.zeros_like(t)
        if n >= 0:
            out[..., n:] = t[..., : t.shape[-1] - n]
        else:
            out[..., :n] = t[..., -n:]
        return out

    g = verdicts.given_data(name)
    line = phrases.phrases(g)["broken panels"]
    panels = [(layer, int(n)) for layer, n in re.findall(r'\("(\w+)", \w+, (-?\d+)\)', line)]
    assert [layer for layer, _ in panels] == ["conv1d_layer", "conv1d_pad", "conv1d_pad"]
    assert panels[1][1] < 0 < panels[2][1]
    w = torch.tensor(g.w_1d, dtype=torch.float64).view(1, 1, -1)
    x = torch.tensor([[g.x_1d]], dtype=torch.float64)
    for layer, n in panels:
        assert n in g.shifts
        padding = 0 if layer == "conv1d_layer" else 1
        gap = F.conv1d(shift(x, n), w, padding=padding) - shift(F.conv1d(x, w, padding=padding), n)
        assert float(gap.abs().max()) > 0, (name, layer, n)


def test_distinct_sees_a_collision():
    # A palindromic kernel: its flipped matrix is the right one, which no table can tell.
    palindrome = variant.GivenData(
        "p",
        DEFAULT_DATA.x_1d,
        (1, 2, 1),
        DEFAULT_DATA.img_2d,
        DEFAULT_DATA.kernel_2d,
        DEFAULT_DATA.max_shift,
    )
    assert not verdicts.distinct(palindrome)
    assert verdicts.distinct(DEFAULT_DATA)


def _right_payload(grade_id: str, g: variant.GivenData):
    """The probed right answer of a variant-dependent exercise, computed from torch itself."""
    import torch
    import torch.nn.functional as F

    if grade_id == "ex1_2_test":
        n = len(g.x_1d)
        eye = torch.eye(n).unsqueeze(1)
        w = torch.tensor(g.w_1d, dtype=torch.float32).view(1, 1, -1)
        layer = torch.nn.Linear(n, n - len(g.w_1d) + 1, bias=False)
        with torch.no_grad():
            layer.weight.copy_(F.conv1d(eye, w)[:, 0, :].T)
        return probe.probe(grade_id, layer)
    if grade_id == "ex2_2_test":
        n = len(g.x_1d)
        eye = torch.eye(n).unsqueeze(1)

        def padded(w):  # column j: the padded convolution's response to unit input j
            return F.conv1d(eye, torch.as_tensor(w).view(1, 1, -1).float(), padding=1)[:, 0].T

        known = {str(torch.tensor(c.kernel).tolist()): padded(c.kernel) for c in CASES_1D}
        return probe.probe(grade_id, lambda w: known[str(w.tolist())])
    if grade_id in ("ex4_1_test", "ex5_1a_test", "ex5_1b_test"):
        h, w = g.height, g.width
        pixels = torch.eye(h * w).view(h * w, 1, h, w)  # image p: 1 at pixel p

        def matrix(kernel):  # column p: the convolution's response to image p
            kernel = torch.as_tensor(kernel, dtype=torch.float32).view(1, 1, 3, 3)
            return F.conv2d(pixels, kernel).view(h * w, -1).T

        if grade_id == "ex4_1_test":
            # The probe switches the convolutions off while the answer runs: computed before.
            known = {str(torch.tensor(c.kernel).tolist()): matrix(c.kernel) for c in CASES_2D}
            return probe.probe(grade_id, lambda kernel: known[str(kernel.tolist())])
        t = matrix(g.kernel_2d)
        count = t.numel() if grade_id == "ex5_1a_test" else int((t != 0).sum())
        return probe.probe(grade_id, count)
    padding = 0 if grade_id == "ex3_2_test" else 1
    w = torch.tensor(g.w_1d, dtype=torch.float64).view(1, 1, -1)
    x = torch.tensor([g.x_1d], dtype=torch.float64)
    shifts = set()
    for n in g.shifts:
        shifted = torch.zeros_like(x)
        if n >= 0:
            shifted[..., n:] = x[..., : x.shape[-1] - n]
        else:
            shifted[..., :n] = x[..., -n:]
        y, y_shifted = F.conv1d(x, w, padding=padding), F.conv1d(shifted, w, padding=padding)
        moved = torch.zeros_like(y)
        if n >= 0:
            moved[..., n:] = y[..., : y.shape[-1] - n]
        else:
            moved[..., :n] = y[..., -n:]
        if float((y_shifted - moved).abs().max()) == 0:
            shifts.add(n)
    return probe.probe(grade_id, shifts)


# -- the build --------------------------------------------------------------------------------


def default_leftovers(root: Path) -> list[str]:
    """Where the notebooks under ``root`` quote the default variant's numbers or an answer built
    from them, in the formats the notebooks write them (code, prose, model answers, the
    self-checks' inlined data and shown calls)."""
    base = DEFAULT_DATA
    texts = set(phrases.phrases(base).values())
    texts |= {
        f"X_1D = {list(base.x_1d)}",
        f"W_1D = {list(base.w_1d)}",
        f"MAX_SHIFT = {base.max_shift}",
        "w=" + str(list(base.w_1d)),  # a visible case's call, toeplitz_1d(w=[1, 1, -2], ...)
        str([float(v) for v in base.x_1d]),  # a table's example input
        str([list(r) for r in base.kernel_2d]),
        # The sizes, written out here and not taken from the phrases: a size no phrase covers
        # would otherwise go unseen.
        "$N = 10$",
        "length=10",
        "$8 \\times 10$",
        "$10 \\times 10$",
        "(8, 10)",
        "$4 \\times 5$",
        "$6 \\times 20$",
        "$2 \\times 3$",
        "torch.zeros(6, 20)",
        "torch.zeros(10, 10)",
        "= 120",
        "= 54",
    }
    # A text can be right in both (a variant whose output is 3 wide writes "$3i + j$" too).
    texts -= set(phrases.phrases(verdicts.given_data(Course.load(root).variant)).values())
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).glob("*.ipynb")):
            for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
                where = f"{folder}/{path.name} cell {i}"
                found += [f"{where}: {t!r}" for t in texts if t in cell.source]
    return found


def test_no_number_of_the_default_variant_is_left(variant_course):
    # The check finds the default's numbers where they are (the committed course) ...
    assert len(default_leftovers(ROOT)) > 30
    # ... and none in the variant's notebooks (the shift range among them: this variant's
    # differs from the default's).
    assert verdicts.given_data(VARIANT).max_shift != DEFAULT_DATA.max_shift
    assert default_leftovers(variant_course) == []


def test_the_variant_is_recorded_in_the_source_notebooks(variant_course, given):
    for name in NOTEBOOKS:
        nb = nbformat.read(variant_course / "source" / ASSIGNMENT / f"{name}.ipynb", as_version=4)
        assert build.recorded_variant(nb) == VARIANT
        text = "\n".join(c.source for c in nb.cells)
        if name == "03_equivariance":
            assert phrases.phrases(given)["ex3_2 set"] in text
    committed = nbformat.read(ROOT / "source" / ASSIGNMENT / f"{NOTEBOOKS[0]}.ipynb", as_version=4)
    assert build.recorded_variant(committed) == "default"


def test_a_second_build_of_the_variant_is_identical_and_the_way_back_is_the_default(
    variant_course, tmp_path
):
    again = _scratch(tmp_path / "again", VARIANT)
    build.to_variant(again, verdicts.given_data(VARIANT))
    build.write_self_checks(again)
    back = tmp_path / "back"
    shutil.copytree(variant_course / "source", back / "source")
    shutil.copy(ROOT / "nbgrader_config.py", back / "nbgrader_config.py")  # the default
    build.to_variant(back, DEFAULT_DATA)
    build.write_self_checks(back)
    for name in NOTEBOOKS:
        path = Path("source") / ASSIGNMENT / f"{name}.ipynb"
        assert (again / path).read_bytes() == (variant_course / path).read_bytes(), name
        # The instructor edits one notebook: moved to a variant and back, it is the same file.
        assert (back / path).read_bytes() == (ROOT / path).read_bytes(), name


def _names_for_every_size() -> list[str]:
    """A variant for every pair of a length of x_1d and an image size (where, say, N = 12 and
    Part 4's matrix has 12 rows too, a size phrase replaced outside its notebook would show)."""
    names: dict[tuple[int, int, int], str] = {}
    for i in range(2000):
        g = verdicts.given_data(f"size-{i}")
        names.setdefault((g.length, g.height, g.width), g.name)
        if len(names) == len(variant.LENGTHS) * len(variant.IMAGE_SIZES):
            return list(names.values())
    raise AssertionError("2000 names do not draw every pair of sizes")


def test_every_size_moves_source_there_and_back_without_a_trace(tmp_path):
    """Through variants of every pair of sizes in turn and back to the default: at each step no
    phrase of the variant left behind is left in any notebook, and at the end every notebook is
    the committed file, byte for byte."""
    root = _scratch(tmp_path / "course", None)
    names = _names_for_every_size()
    quoted = {}  # the phrases each committed notebook quotes
    for notebook in NOTEBOOKS:
        nb = nbformat.read(ROOT / "source" / ASSIGNMENT / f"{notebook}.ipynb", as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        quoted[notebook] = {
            k for k, t in phrases.phrases(DEFAULT_DATA, notebook).items() if t in text
        }
    every = set().union(*quoted.values())
    assert {"T size", "block_matrix solution", "ex5_1a answer", "padded solution"} <= every
    was = DEFAULT_DATA
    for name in [*names, "default"]:
        now = verdicts.given_data(name)
        build.to_variant(root, now)
        for notebook in NOTEBOOKS:
            nb = nbformat.read(root / "source" / ASSIGNMENT / f"{notebook}.ipynb", as_version=4)
            text = "\n".join(c.source for c in nb.cells if "Self-checks" not in c.source[:80])
            old, new = phrases.phrases(was, notebook), phrases.phrases(now, notebook)
            rest = text  # what is not a phrase of the new variant (those may hold an old text)
            for phrase in sorted(new.values(), key=len, reverse=True):
                rest = rest.replace(phrase, "\0")
            stale = {k for k in old if old[k] in rest}
            assert stale == set(), (was.name, name, notebook)
            assert {k for k in quoted[notebook] if new[k] not in text} == set(), name
        was = now
    build.write_self_checks(root, DEFAULT_DATA)
    for notebook in NOTEBOOKS:
        path = Path("source") / ASSIGNMENT / f"{notebook}.ipynb"
        assert (root / path).read_bytes() == (ROOT / path).read_bytes(), notebook


def test_a_model_answer_build_cannot_keep_in_step_stops_the_build(tmp_path):
    root = _scratch(tmp_path / "course", VARIANT)
    path = root / "source" / ASSIGNMENT / "03_equivariance.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "ex3_2")
    cell.source = cell.source.replace("{0, 1, 2, 3, 4, 5}", "set(range(6))")
    nbformat.write(nb, path)
    with pytest.raises(build.BuildError, match="ex3_2"):
        build.to_variant(root, verdicts.given_data(VARIANT))


# -- the course's checks pass on the variant --------------------------------------------------


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_variant_solutions_pass_their_self_checks_and_verify(variant_course, given, name):
    folder = variant_course / "source" / ASSIGNMENT
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    # Run where the instructor runs it: the kernel finds the course (and its variant) from there.
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    tested = set()
    for cell in nb.cells:
        if not is_autograder_test(cell):
            continue
        gid = cell.metadata.nbgrader.grade_id
        messages = answers.payloads(cell)
        assert [m["grade_id"] for m in messages] == [gid]
        verdicts.verify(gid, messages[0]["payload"], given, (DEFAULT_DATA,))
        assert "✔" in "".join(o.get("text", "") for o in cell.outputs)
        tested.add(gid)
        if gid in verdicts.VARIANT_DEPENDENT:
            # The variant's right answer is wrong in the default course.
            with pytest.raises(AssertionError):
                verdicts.verify(gid, messages[0]["payload"], DEFAULT_DATA, ())
    assert tested == {e.test_id for e in exercises_in(name) if e.autograded}


def test_the_example_class_answers_the_variant(variant_course, given):
    """The example class's sets of shifts (right ones in several forms, wrong ones) follow the
    course's variant: each is right or wrong by the variant's tables as its case says."""
    import numpy as np
    import torch

    judged = 0
    for case in examples.form_cases(variant_course):
        for text in case.files.values():
            for cell in nbformat.reads(text, as_version=4).cells:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if grade_id not in ("ex3_2", "ex3_3") or "BEGIN SOLUTION" in cell.source:
                    continue
                namespace = {"np": np, "torch": torch}
                exec(cell.source, namespace)
                name = "equivariant_shifts_" + ("valid" if grade_id == "ex3_2" else "padded")
                test_id = f"{grade_id}_test"
                payload = probe.probe(test_id, namespace[name])
                if test_id in case.wrong:
                    with pytest.raises(verdicts.CheckFailure):
                        verdicts.verify(test_id, payload, given, ())
                else:
                    verdicts.verify(test_id, payload, given, ())
                judged += 1
    assert judged >= 6  # two right forms and one wrong form of each


def test_the_example_class_grades_as_its_cases_say_in_the_variant(variant_course, tmp_path):
    """The example students (right answers in many forms, wrong forms, the typical mistakes),
    built for the variant's data and sizes, graded in the variant's course: each scores what
    its case says, so the demo and the bench stay honest in every term."""
    from nbgrader.api import Gradebook

    from toeplitz_course.grader.coursedir import db_url
    from toeplitz_course.grader.grade import grade

    course = tmp_path / "course"
    shutil.copytree(variant_course, course)
    expected, handed_in = {}, {}
    for case in examples.form_cases(course):
        folder = course / "submitted" / case.student / ASSIGNMENT
        folder.mkdir(parents=True)
        for name, text in case.files.items():
            (folder / name).write_text(text)
        expected[case.student] = case.expected()
        handed_in[case.student] = {name.removesuffix(".ipynb") for name in case.files}
    examples.write(examples.mistakes(course), course, "typical_mistakes")
    expected["typical_mistakes"] = examples.expected_scores("example_mistakes")
    handed_in["typical_mistakes"] = set(NOTEBOOKS)
    run = grade(course, jobs=2, progress=False)
    assert run.errors == {}
    autograded = [e for n in NOTEBOOKS for e in exercises_in(n) if e.autograded]
    with Gradebook(db_url(course)) as gb:
        for student, want in expected.items():
            got = {
                g.name: g.score
                for nb in gb.find_submission(ASSIGNMENT, student).notebooks
                for g in nb.grades
                if g.name.endswith("_test")
            }
            graded = {e.test_id for e in autograded if e.notebook in handed_in[student]}
            assert graded <= set(got), student
            assert {g: got[g] for g in graded} == {g: want[g] for g in graded}, student


def test_the_kernel_verifies_for_the_course_it_runs_in(variant_course, given, monkeypatch):
    payload = _right_payload("ex3_2_test", DEFAULT_DATA)
    monkeypatch.chdir(variant_course / "source" / ASSIGNMENT)
    with pytest.raises(verdicts.OldAnswer):
        verdicts.verify("ex3_2_test", payload)
    verdicts.verify("ex3_2_test", _right_payload("ex3_2_test", given))
    monkeypatch.chdir(ROOT)
    verdicts.verify("ex3_2_test", payload)


# -- old answers show -------------------------------------------------------------------------

# Every variant-dependent exercise is in these.
HANDED_IN = (
    "01_conv1d_toeplitz",
    "02_padding",
    "03_equivariance",
    "04_conv2d_block_toeplitz",
    "05_parameter_counts",
)


def test_a_default_key_earns_0_on_the_variant_dependent_exercises_and_is_flagged(
    variant_course, tmp_path
):
    from nbgrader.api import Gradebook

    from toeplitz_course.grader.coursedir import db_url
    from toeplitz_course.grader.grade import grade
    from toeplitz_course.instructor.report import report

    course = tmp_path / "course"
    shutil.copytree(variant_course, course)
    default_key = examples.correct(ROOT)  # the default course's release, solved
    variant_key = examples.correct(course)
    for student, nbs in (("s01_default_key", default_key), ("s02_variant_key", variant_key)):
        examples.write({n: nbs[n] for n in HANDED_IN}, course, student)
    run = grade(course, jobs=1, progress=False)
    assert run.errors == {}

    with Gradebook(db_url(course)) as gb:
        scores = {
            student: {
                g.name: g.score
                for nb in gb.find_submission(ASSIGNMENT, student).notebooks
                for g in nb.grades
                if g.name.endswith("_test") and nb.name in HANDED_IN
            }
            for student in ("s01_default_key", "s02_variant_key")
        }
    maxima = {
        e.test_id: float(e.points) for n in HANDED_IN for e in exercises_in(n) if e.autograded
    }
    assert scores["s02_variant_key"] == maxima
    assert scores["s01_default_key"] == {
        gid: 0.0 if gid in verdicts.VARIANT_DEPENDENT else top for gid, top in maxima.items()
    }

    record = json.loads((course / "grading" / "s01_default_key.json").read_text())
    old = [f for f in record["flags"] if f["kind"] == "old_answer"]
    assert sorted(f["detail"].partition(":")[0] for f in old) == sorted(verdicts.VARIANT_DEPENDENT)
    assert {f["variant"] for f in old} == {"default"}
    cell = record["notebooks"]["01_conv1d_toeplitz"]["cells"]["ex1_2_test"]
    assert "variant 'default'" in cell["message"]
    mine = json.loads((course / "grading" / "s02_variant_key.json").read_text())
    assert not [f for f in mine["flags"] if f["kind"] == "old_answer"]

    text = report(course)
    told = len(verdicts.VARIANT_DEPENDENT)
    assert f"OLD ANSWERS: s01_default_key: {told} answers match variant 'default'" in text
    assert "s02_variant_key: " not in text.split("students flagged")[0].split("OLD ANSWERS")[-1]


def _a_term_sharing_no_answer_with(given: variant.GivenData) -> str:
    """The first of "term-0", "term-1", ... whose every variant-dependent answer differs from
    ``given``'s: two terms can share a set of shifts (the sets depend only on where x_1d's zeros
    are and on the shift range), a length or an image size."""
    for i in range(100):
        other = verdicts.given_data(f"term-{i}")
        if all(
            _right_payload(grade_id, other) != _right_payload(grade_id, given)
            for grade_id in verdicts.VARIANT_DEPENDENT
        ):
            return other.name
    raise AssertionError("no term in 100 shares no answer")


@pytest.mark.parametrize("other", ["default", "2026-fall", "2026-spring", "2027-fall", "x"])
def test_the_answers_two_variants_share_are_told_and_warned_of(other, tmp_path):
    given, them = verdicts.given_data(VARIANT), verdicts.given_data(other)
    same = [
        g for g in verdicts.VARIANT_DEPENDENT if _right_payload(g, given) == _right_payload(g, them)
    ]
    assert verdicts.shared_answers(given, them) == same
    assert verdicts.shared_answers(given, given) == list(verdicts.VARIANT_DEPENDENT)
    root = _scratch(tmp_path / "course", VARIANT, previous=[other])
    warned = [line for line in build.shared_with_previous(root) if f"variant {other!r}" in line]
    assert len(warned) == (1 if same else 0)
    if same:
        assert all(g.removesuffix("_test") in warned[0] for g in same)


def test_a_mistake_that_is_another_terms_answer_is_told_as_the_mistake():
    """A 6x4 term after a 4x6 one: a block_matrix built for 4x6 is the H/W mix-up the check
    names, and also the 4x6 term's answer. It scores 0 either way; the student is told the
    mix-up, not flagged as handing in last term's answer. An answer no check names (the 4x6
    term's counts) is still an old answer."""
    names: dict[tuple[int, int], variant.GivenData] = {}
    for i in range(500):
        g = verdicts.given_data(f"turned-{i}")
        names.setdefault((g.height, g.width), g)
        if (6, 4) in names and (4, 6) in names:
            break
    here, last = names[(6, 4)], names[(4, 6)]
    payload = _right_payload("ex4_1_test", last)
    with pytest.raises(AssertionError, match="H and W swapped") as caught:
        verdicts.verify("ex4_1_test", payload, here, (last,))
    assert not isinstance(caught.value, verdicts.OldAnswer)
    # Without the notebook's own table consulted, it would have been taken for the old answer.
    assert verdicts.old_answer("ex4_1_test", payload, (last,)) == last.name
    assert verdicts.old_answer("ex4_1_test", payload, (last,), here) is None
    other = next(
        verdicts.given_data(f"term-{i}")
        for i in range(200)
        if (verdicts.given_data(f"term-{i}").height, verdicts.given_data(f"term-{i}").width)
        == (5, 6)
    )
    with pytest.raises(verdicts.OldAnswer):
        verdicts.verify("ex5_1a_test", _right_payload("ex5_1a_test", other), here, (other,))


def test_previous_variants_are_read_from_the_config_and_their_answers_are_old(tmp_path):
    last_term = _a_term_sharing_no_answer_with(verdicts.given_data(VARIANT))
    root = _scratch(tmp_path / "course", VARIANT, previous=[last_term, "default"])
    course = Course.load(root)
    assert (course.variant, course.previous_variants) == (VARIANT, (last_term, "default"))
    given, others = verdicts.course_variants(course.variant, course.previous_variants)
    assert [o.name for o in others] == ["default", last_term]
    fall = verdicts.given_data(last_term)
    told = 0
    for grade_id in verdicts.VARIANT_DEPENDENT:
        payload = _right_payload(grade_id, fall)
        assert payload != _right_payload(grade_id, given), grade_id
        told += 1
        with pytest.raises(verdicts.OldAnswer, match=f"variant '{last_term}'"):
            verdicts.verify(grade_id, payload, given, others)
        # Without it among the previous variants, it is a plain wrong answer.
        with pytest.raises(AssertionError) as caught:
            verdicts.verify(grade_id, payload, given, (DEFAULT_DATA,))
        assert not isinstance(caught.value, verdicts.OldAnswer)
    assert told == len(verdicts.VARIANT_DEPENDENT)


def test_grading_refuses_a_variant_that_source_is_not_built_in(variant_course):
    from toeplitz_course.grader.preprocessors import VerifyAnswers

    course = Course.load(variant_course)
    assert VerifyAnswers(config=course.config_with())._variants()[0].name == VARIANT
    stale = course.config_with(**{"Course.variant": "2028-spring"})
    with pytest.raises(RuntimeError, match="run `make build`"):
        VerifyAnswers(config=stale)._variants()


@pytest.mark.parametrize("recorded", [None, "0123456789abcdef"])
def test_notebooks_another_version_drew_are_refused_not_judged(
    variant_course, tmp_path, recorded, monkeypatch
):
    """A source/ built when the draw of its variant's name gave other numbers (an earlier
    version, or one from before fingerprints were recorded): neither rebuilt, which would
    rewrite it from the wrong phrases or leave its old numbers beside new self-checks, nor
    graded, which would judge it against other numbers."""
    from toeplitz_course.grader.preprocessors import VerifyAnswers

    course = tmp_path / "course"
    shutil.copytree(variant_course / "source", course / "source")
    shutil.copy(variant_course / "nbgrader_config.py", course / "nbgrader_config.py")
    given = verdicts.given_data(VARIANT)
    # As built, each notebook records today's fingerprint: both accept it.
    build.to_variant(course, given)
    VerifyAnswers(config=Course.load(course).config_with())._variants()
    for name in NOTEBOOKS:
        path = course / "source" / ASSIGNMENT / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata[variant.METADATA]["data"] == variant.fingerprint(given)
        section = {"variant": VARIANT} | ({} if recorded is None else {"data": recorded})
        nb.metadata[variant.METADATA] = section
        nbformat.write(nb, path)
    with pytest.raises(build.BuildError, match="another version of toeplitz_course drew it"):
        build.to_variant(course, given)
    with pytest.raises(RuntimeError, match="another version of toeplitz_course drew it"):
        VerifyAnswers(config=Course.load(course).config_with())._variants()
    # Nor by the check a hidden test cell runs unconfined (the instructor's JupyterLab there).
    monkeypatch.chdir(course / "source" / ASSIGNMENT)
    with pytest.raises(RuntimeError, match="another version of toeplitz_course drew it"):
        verdicts.verify("ex3_2_test", _right_payload("ex3_2_test", given))
