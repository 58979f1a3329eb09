"""Staging: a student's handed-in folder read, checked and normalised into a private copy.

Every notebook is read as JSON and normalised (``colab.normalize``) into ``.grading/staging/``; a
file that is not a notebook of the assignment or not valid JSON is recorded, and the student's
other notebooks go on. ``submitted/`` itself is never modified.

A notebook whose editor dropped the nbgrader metadata of some or all cells gets it back from the
release notebook (``recovery.recover``) before nbgrader sees it, and is flagged ``recovered`` with
how many answer cells could be placed; a notebook that kept its metadata is staged unchanged.
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..course import colab
from ..course.contract import ASSIGNMENT, NOTEBOOKS
from .coursedir import STAGING
from .recovery import recover

#: What nbgrader's exchange puts beside the notebooks of a submission (``nbgrader submit``). They
#: are staged as they are, so nbgrader's Autograde copies them into ``autograded/`` and
#: GenerateFeedback into ``feedback/``, where ``nbgrader release_feedback`` reads them (the
#: secret names a student's feedback files in the exchange); they are no notebook, and no flag.
EXCHANGE_FILES = ("timestamp.txt", "submission_secret.txt")


@dataclass
class Staged:
    student: str
    directory: Path  # the staged "submitted" directory nbgrader reads
    status: dict[str, tuple[str, str]] = field(default_factory=dict)  # notebook -> (status, detail)
    # notebook -> submitted JSON, as recovered if it was (for integrity)
    raw: dict[str, dict] = field(default_factory=dict)
    flags: list[dict] = field(default_factory=list)


@functools.lru_cache(maxsize=16)
def _release(path: str, mtime_ns: int, size: int) -> dict:
    """A release notebook's JSON (cached per file version; ``recover`` never modifies it)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _recovered(root: Path, name: str, nb: nbformat.NotebookNode, staged: Staged) -> dict | None:
    """``nb`` with lost nbgrader metadata recovered from the release, or None if not needed."""
    release = root / "release" / ASSIGNMENT / f"{name}.ipynb"
    try:
        stat = release.stat()
    except FileNotFoundError:
        return None
    recovery = recover(nb, _release(str(release), stat.st_mtime_ns, stat.st_size))
    if not recovery.applied:
        return None
    staged.flags.append({"notebook": name, "kind": "recovered", "detail": recovery.detail})
    return recovery.notebook


def stage(root: Path, student: str) -> Staged:
    src = root / "submitted" / student / ASSIGNMENT
    staged_root = root / STAGING / student
    if staged_root.exists():
        shutil.rmtree(staged_root)
    dest = staged_root / "submitted" / student / ASSIGNMENT
    dest.mkdir(parents=True)
    staged = Staged(student, staged_root / "submitted")
    files = sorted(src.iterdir()) if src.is_dir() else []
    for path in files:
        if path.is_dir():
            continue
        if path.name in EXCHANGE_FILES:
            shutil.copy(path, dest / path.name)
            continue
        if path.suffix != ".ipynb" or path.stem not in NOTEBOOKS:
            staged.flags.append(
                {
                    "notebook": path.name,
                    "kind": "renamed",
                    "detail": f"{path.name} is not a notebook of the assignment; not graded",
                }
            )
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            nb = colab.normalize(nbformat.from_dict(raw))
            nbformat.validate(nb)
        except Exception as exc:
            detail = f"{path.name} is not a valid notebook ({type(exc).__name__}: {str(exc)[:200]})"
            staged.status[path.stem] = ("invalid", detail)
            staged.flags.append({"notebook": path.stem, "kind": "invalid_json", "detail": detail})
            continue
        recovered = _recovered(root, path.stem, nb, staged)
        if recovered is not None:
            nb = nbformat.from_dict(recovered)
            nbformat.validate(nb)
            # Integrity compares what nbgrader grades with the release: tests recovery matched
            # are there (not "deleted"), and the ones it matched though edited are still edited.
            raw = json.loads(json.dumps(recovered))
        staged.raw[path.stem] = raw
        # Validated just above; nbformat.write would validate (and deep-copy) it again.
        (dest / path.name).write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
        staged.status[path.stem] = ("staged", "")
    for name in NOTEBOOKS:
        if name not in staged.status:
            detail = f"{name}.ipynb was not handed in"
            staged.status[name] = ("missing", detail)
            staged.flags.append({"notebook": name, "kind": "missing", "detail": detail})
    return staged
