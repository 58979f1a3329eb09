"""Regenerate the student notebooks from ``source/``: one command, and a check for drift.

First the one generated cell of each source notebook, its self-checks (``grader.visible``); then
``release/toeplitz/``, what ``nbgrader generate_assignment toeplitz`` writes; then ``notebooks/``,
the Colab edition made from it (``colab.edition``). All are committed and generated only here.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from ..course import colab
from ..course.contract import ASSIGNMENT, NOTEBOOKS
from ..grader import visible
from ..grader.config import ensure_tools_on_path


class BuildError(RuntimeError):
    pass


def write_self_checks(root: Path) -> list[Path]:
    """Regenerate the self-checks cell of every source notebook; the notebooks it changed."""
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
        source = visible.cell_source(name)
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


def build(root: Path | str = ".") -> list[Path]:
    """Regenerate ``release/`` and ``notebooks/`` under the course directory ``root``."""
    root = Path(root).resolve()
    write_self_checks(root)
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
        write_self_checks(scratch)
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
