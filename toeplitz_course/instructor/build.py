"""Regenerate the student notebooks from ``source/``: one command, and a check for drift.

First ``source/`` is moved, in place, to the course's variant (``c.Course.variant``) when a
notebook is in another one (``to_variant``: every phrase that quotes the data or an answer built
from them, ``phrases.phrases``, replaced by the configured variant's); then the one generated cell
of each source notebook, its self-checks (``grader.visible``); then
``release/toeplitz/``, what ``nbgrader generate_assignment toeplitz`` writes; then ``notebooks/``,
the Colab edition made from it (``colab.edition``). All are committed and generated only here.
"""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from ..course import colab, phrases, variant
from ..course.contract import ASSIGNMENT, NOTEBOOKS
from ..course.variant import GivenData
from ..grader import verdicts, visible
from ..grader.config import ensure_tools_on_path
from ..grader.coursedir import Course


class BuildError(RuntimeError):
    pass


METADATA = variant.METADATA

#: Cells that must hold a phrase of the configured variant after a build: the model answers
#: ``build`` keeps in step with the data (by grade id, the phrases' names).
REQUIRED = {
    "ex1_2": ("T_1d",),
    "ex2_2": ("padded solution",),
    "ex3_2": ("ex3_2 set",),
    "ex3_3": ("ex3_3 set",),
    "ex3_4": ("padded set prose", "valid set prose", "edge zeros"),
    "ex4_1": ("block_matrix solution",),
    "ex5_1a": ("ex5_1a answer",),
    "ex5_1b": ("ex5_1b answer",),
}


def recorded_variant(nb) -> str:
    """The variant a source notebook's numbers are in (its metadata; absent: the default)."""
    return variant.canonical(nb.metadata.get(METADATA, {}).get("variant"))


def course_data(root: Path) -> GivenData:
    """The data of the variant the course directory ``root`` is configured for."""
    return verdicts.given_data(Course.of(root).variant)


def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def to_variant(root: Path, given: GivenData) -> list[Path]:
    """Rewrite ``source/`` in place into variant ``given``: in each notebook recorded in another
    variant, every phrase of that variant (``phrases.phrases``: the data in code and prose, the
    model answers built from them) becomes ``given``'s. The notebooks it changed."""
    changed = []
    for name in NOTEBOOKS:
        path = root / "source" / ASSIGNMENT / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        was = recorded_variant(nb)
        if verdicts.drawn_otherwise(was, nb.metadata.get(METADATA, {}).get("data")):
            raise BuildError(verdicts.drawn_otherwise_message(path, was))
        new = phrases.phrases(given, name)
        if was != given.name:
            old = phrases.phrases(verdicts.given_data(was), name)
            swap = {old[k]: new[k] for k in old if old[k] != new[k]}
            clashes = sorted(k for k in old if swap.get(old[k], new[k]) != new[k])
            if clashes:  # one text, two meanings: which replacement it needs cannot be told
                raise BuildError(
                    f"{path}: variants {was!r} and {given.name!r} cannot be told apart in "
                    f"{', '.join(clashes)} (the same text stands for two things in {was!r})"
                )
            longest_first = sorted(swap, key=len, reverse=True)
            pattern = re.compile("|".join(re.escape(t) for t in longest_first))
            for cell in nb.cells:
                # One pass over each cell: a new phrase is never read again as an old one.
                cell.source = pattern.sub(lambda m, swap=swap: swap[m.group(0)], cell.source)
            if given.is_default:
                nb.metadata.pop(METADATA, None)
            else:
                nb.metadata[METADATA] = {
                    "variant": given.name,
                    "data": variant.fingerprint(given),
                }
            nbformat.write(nb, path)
            changed.append(path)
        for cell in nb.cells:
            for key in REQUIRED.get(_grade_id(cell), ()):
                if new[key] not in cell.source:
                    raise BuildError(
                        f"{path}: cell {_grade_id(cell)} does not hold {new[key]!r}, what "
                        f"`make build` keeps in step with variant {given.name!r} ({key}): write "
                        "it as the committed notebook does, then build again"
                    )
    return changed


def write_self_checks(root: Path, given: GivenData | None = None) -> list[Path]:
    """Regenerate the self-checks cell of every source notebook; the notebooks it changed."""
    given = course_data(root) if given is None else given
    changed = []
    for name in NOTEBOOKS:
        path = root / "source" / ASSIGNMENT / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        wanted = visible.grade_id(name)
        cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == wanted]
        if len(cells) != 1:
            raise BuildError(
                f"{path}: expected one locked cell with grade_id {wanted!r} (the self-checks, "
                f"filled in by `make build`), found {len(cells)}"
            )
        cell = cells[0]
        source = visible.cell_source(name, given)
        # Folded on Colab (a form) and in JupyterLab: students run it, they need not read it.
        metadata = {"cellView": "form", "jupyter": {"source_hidden": True}}
        if cell.source != source or any(cell.metadata.get(k) != v for k, v in metadata.items()):
            cell.source = source
            cell.metadata.update(metadata)
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def generate_release(root: Path) -> None:
    """Run nbgrader's own ``generate_assignment`` in the course directory ``root``."""
    ensure_tools_on_path()
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BuildError(f"nbgrader generate_assignment failed in {root}:\n{proc.stderr[-4000:]}")


def write_colab_edition(root: Path, where: colab.Links | None = None) -> list[Path]:
    where = where or colab.links()
    out_dir = root / "notebooks"
    out_dir.mkdir(exist_ok=True)
    written = []
    for name in NOTEBOOKS:
        release_nb = nbformat.read(root / "release" / ASSIGNMENT / f"{name}.ipynb", as_version=4)
        path = out_dir / f"{name}.ipynb"
        nbformat.write(colab.edition(release_nb, name, where), path)
        written.append(path)
    stale = {p for p in out_dir.glob("*.ipynb")} - set(written)
    for path in stale:
        path.unlink()
    return written


def shared_with_previous(where: Course | Path | str = ".") -> list[str]:
    """One line per earlier variant (``c.Course.previous_variants`` and the default) that has
    the same right answer as the configured variant for some exercise: those answers cannot show
    as old (two terms share a length of x_1d, an image size or a set of shifts about half the
    time), and another name for this term may share none."""
    course = Course.of(where)
    given, others = verdicts.course_variants(course.variant, course.previous_variants)
    lines = []
    for other in others:
        shared = verdicts.shared_answers(given, other)
        if shared:
            exercises = ", ".join(g.removesuffix("_test") for g in shared)
            lines.append(
                f"variant {given.name!r} has the answers of variant {other.name!r} for "
                f"{exercises}: copies of them are right here and cannot show as old answers "
                "(another name for this term may share none)"
            )
    return lines


def build(where: Course | Path | str = ".") -> list[Path]:
    """Regenerate ``release/`` and ``notebooks/`` under the course directory ``where``."""
    course = Course.of(where)
    root, given = course.root, verdicts.given_data(course.variant)
    to_variant(root, given)
    write_self_checks(root, given)
    generate_release(root)
    return write_colab_edition(root)


def drift(root: Path | str = ".") -> list[str]:
    """Files of ``release/`` and ``notebooks/`` that differ from a fresh build of ``source/``.

    The fresh build runs in a scratch copy of the course (config and sources only), so neither the
    committed files nor the instructor's gradebook are touched.
    """
    root = Path(root).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        shutil.copytree(root / "source", scratch / "source")
        shutil.copy(root / "nbgrader_config.py", scratch / "nbgrader_config.py")
        given = course_data(scratch)
        to_variant(scratch, given)
        write_self_checks(scratch, given)
        generate_release(scratch)
        write_colab_edition(scratch)
        problems = []
        for sub in (Path("source") / ASSIGNMENT, Path("release") / ASSIGNMENT, Path("notebooks")):
            fresh, committed = scratch / sub, root / sub
            names = {p.name for p in fresh.iterdir()} | (
                {p.name for p in committed.iterdir()} if committed.exists() else set()
            )
            for name in sorted(names):
                a, b = fresh / name, committed / name
                if not b.exists():
                    problems.append(f"{sub / name}: missing (run `make build`)")
                elif not a.exists():
                    problems.append(f"{sub / name}: not generated from source/ (stale file)")
                elif not filecmp.cmp(a, b, shallow=False):
                    problems.append(f"{sub / name}: differs from a fresh build (run `make build`)")
        return problems


def strip_outputs(paths: list[Path] | None = None, root: Path | str = ".") -> list[Path]:
    """Clear outputs and execution counts of source notebooks in place (what authors commit)."""
    root = Path(root).resolve()
    paths = paths or sorted((root / "source" / ASSIGNMENT).glob("*.ipynb"))
    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        dirty = False
        for cell in nb.cells:
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
                cell.outputs, cell.execution_count = [], None
                dirty = True
            if "execution" in cell.metadata:
                del cell.metadata["execution"]
                dirty = True
        if dirty:
            nbformat.write(nb, path)
            changed.append(Path(path))
    return changed
