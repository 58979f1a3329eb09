"""Integrity flags: what a person should look at in a submission. Flags never change a score.

``scan`` compares a submitted notebook with the release students started from, and reads the
autograded copy for what happened when it ran:

================  ================================================================================
kind              meaning
================  ================================================================================
tag               a cell carries a tag that changes execution (skip-execution, raises-exception)
edited_test       a locked test cell's source differs from the release (restored before grading)
deleted_test      a test cell of the release is missing (re-added before grading)
duplicate         a grade id appears more than once (a copied cell)
patching          student code assigns to attributes of torch, numpy, math, builtins or our package
nbgrader_env      student code mentions NBGRADER_EXECUTION (behaves differently when graded?)
timeout           a cell ran out of time when graded
kernel_died       the kernel died when graded
limit             the kernel reached a sandbox limit (memory, processes, disk, CPU time, open files)
not_sandboxed     the run did not confine student code (``grade --no-sandbox``), in every record
recovered         the editor dropped nbgrader metadata; staging recovered it from the release
                  (``recovery``): "N of M answer cells placed", and which were not (they score 0)
hand_grade_reset  a hand grade (formgrader) was cleared by a regrade: the answer it was given for
                  changed, or the notebook could not be graded this time (``handgrades``)
================  ================================================================================

A recovered notebook is scanned as recovered (``Staged.raw``): the tests recovery matched are not
"deleted", and a matched test whose source differs from the release is still ``edited_test``.
"""

from __future__ import annotations

import ast
import functools
import json
from collections import Counter
from pathlib import Path

from ..course.contract import EXECUTION_TAGS

WATCHED_MODULES = {
    "torch",
    "np",
    "numpy",
    "math",
    "builtins",
    "__builtins__",
    "F",
    "nn",
    "toeplitz_course",
    "hidden",
    "checks",
    "probe",
    "verdicts",
    "channel",
    "IPython",
    "sys",
}


def nbgrader_meta(cell: dict) -> dict:
    """A cell's nbgrader metadata ({} when it has none or it is not a dict)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def cell_source(cell: dict) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _parse(source: str) -> ast.AST | None:
    try:
        return ast.parse(source)
    except SyntaxError:  # IPython magics, broken code
        return None


@functools.lru_cache(maxsize=4096)
def _analyse(source: str) -> tuple[frozenset[str], tuple[tuple[str, str], ...]] | None:
    """One parse of ``source``: the names its imports bind to watched modules, and every
    (root name, text) it assigns to, deletes or ``setattr``s through. None when unparsable.

    Cached: the instructor's own unlocked cells come back unchanged in every submission.
    """
    tree = _parse(source)
    if tree is None:
        return None
    aliases: set[str] = set()
    targets: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in WATCHED_MODULES and alias.asname:
                    aliases.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in WATCHED_MODULES:
                aliases |= {a.asname or a.name for a in node.names}
        elif isinstance(node, (ast.Assign, ast.Delete)):
            targets.extend(_rooted(t) for t in node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets.append(_rooted(node.target))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in {"setattr", "delattr"} and node.args:
                name = _root_name(node.args[0])
                if name is not None:
                    targets.append((name, f"{node.func.id}({name}, ...)"))
    return frozenset(aliases), tuple(t for t in targets if t[0])


def _rooted(target: ast.AST) -> tuple[str, str]:
    if isinstance(target, (ast.Attribute, ast.Subscript)):
        name = _root_name(target)
        if name is not None:
            return name, ast.unparse(target)
    return "", ""


def module_aliases(source: str) -> set[str]:
    """Names ``source`` binds to watched modules (``import toeplitz_course.kernel.hidden as h``
    binds h)."""
    analysis = _analyse(source)
    return set(analysis[0]) if analysis else set()


def patched_names(source: str, aliases: set[str] = frozenset()) -> list[str]:
    """Attribute assignments, ``setattr`` calls and ``del`` on watched modules in ``source``."""
    watched = WATCHED_MODULES | set(aliases)
    analysis = _analyse(source)
    if analysis is None:
        return [m for m in watched if f"{m}." in source and "setattr" in source]
    return [text for name, text in analysis[1] if name in watched]


@functools.lru_cache(maxsize=64)
def _release_tests(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """grade id -> source of the release's locked test cells (cached per file version)."""
    released = json.loads(Path(path).read_text(encoding="utf-8"))
    tests = {}
    for cell in released.get("cells", []):
        meta = nbgrader_meta(cell)
        if meta.get("grade") and not meta.get("solution") and cell.get("cell_type") == "code":
            tests[meta["grade_id"]] = cell_source(cell)
    return tests


@functools.lru_cache(maxsize=64)
def _release_locked(path: str, mtime_ns: int, size: int) -> frozenset[str]:
    """The sources of the release's locked code cells: the instructor's code, wherever it sits.

    A cell that still holds one of them is not the student's, even where an editor dropped its
    metadata (the self-checks cell installs modules into sys.modules, by design)."""
    released = json.loads(Path(path).read_text(encoding="utf-8"))
    return frozenset(
        cell_source(cell).strip()
        for cell in released.get("cells", [])
        if cell.get("cell_type") == "code" and nbgrader_meta(cell).get("locked")
    )


def scan(
    notebook: str,
    *,
    submitted: dict | None,
    release: Path,
    autograded: dict | None,
) -> list[dict]:
    """The flags of one notebook of one student.

    ``submitted`` is the handed-in notebook's JSON (None if unreadable), ``release`` the path of
    the release notebook, ``autograded`` the autograded notebook's JSON (None if not graded).
    """
    flags: list[dict] = []

    def flag(kind: str, detail: str) -> None:
        flags.append({"notebook": notebook, "kind": kind, "detail": detail})

    if submitted is not None:
        cells = submitted.get("cells", [])
        release_tests: dict[str, str] = {}
        instructors: frozenset[str] = frozenset()
        if release.exists():
            stat = release.stat()
            release_tests = _release_tests(str(release), stat.st_mtime_ns, stat.st_size)
            instructors = _release_locked(str(release), stat.st_mtime_ns, stat.st_size)

        def students(cell: dict) -> bool:
            return (
                cell.get("cell_type") == "code"
                and not nbgrader_meta(cell).get("locked")
                and cell_source(cell).strip() not in instructors
            )

        ids = Counter(
            nbgrader_meta(c).get("grade_id") for c in cells if nbgrader_meta(c).get("grade_id")
        )
        for grade_id, count in sorted(ids.items()):
            if count > 1:
                flag("duplicate", f"cell {grade_id} appears {count} times")
        for grade_id, source in sorted(release_tests.items()):
            copies = [c for c in cells if nbgrader_meta(c).get("grade_id") == grade_id]
            if not copies:
                flag("deleted_test", f"test cell {grade_id} was deleted")
            elif any(cell_source(c).strip() != source.strip() for c in copies):
                flag("edited_test", f"test cell {grade_id} was edited")
        student_code = [cell_source(c) for c in cells if students(c)]
        aliases = set().union(*(module_aliases(src) for src in student_code))
        for i, cell in enumerate(cells):
            tags = set(cell.get("metadata", {}).get("tags", []) or [])
            bad = sorted(tags & set(EXECUTION_TAGS))
            name = nbgrader_meta(cell).get("grade_id") or f"cell {i}"
            if bad:
                flag("tag", f"{name} tagged {', '.join(bad)}")
            if not students(cell):
                continue
            source = cell_source(cell)
            patched = patched_names(source, aliases)
            if patched:
                flag("patching", f"{name} assigns to {', '.join(sorted(set(patched))[:5])}")
            if "NBGRADER_EXECUTION" in source:
                flag("nbgrader_env", f"{name} refers to NBGRADER_EXECUTION")

    if autograded is not None:
        for i, cell in enumerate(autograded.get("cells", [])):
            for out in cell.get("outputs", []):
                if out.get("output_type") != "error":
                    continue
                name = nbgrader_meta(cell).get("grade_id") or f"cell {i}"
                if out.get("ename") in {"CellTimeoutError", "NotebookTimeout"}:
                    flag("timeout", f"{name} ran out of time")
                elif out.get("ename") == "DeadKernelError":
                    flag("kernel_died", f"the kernel died in {name}")
                elif out.get("ename") == "SandboxLimit":
                    flag("limit", f"{out.get('evalue')} ({name})")
    return flags
