"""``make demo``: the whole workflow on the bundled examples, in a scratch course under ``demo/``.

build -> an LMS zip of the examples -> collect -> grade -> feedback -> export, then a table of
students by exercise. The scratch course copies ``source/`` and ``nbgrader_config.py`` so the
instructor's own gradebook and submissions are never touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..course.contract import EXERCISES
from . import examples
from .build import build


def table(records: dict[str, dict]) -> str:
    ids = [e.test_id or e.answer_id for e in EXERCISES]
    short = [i.removesuffix("_test") for i in ids]
    head = f"{'student':<18}" + "".join(f"{s:>7}" for s in short) + f"{'total':>9}"
    lines = [head, "-" * len(head)]
    for student, record in sorted(records.items()):
        cells = {k: v for nb in record["notebooks"].values() for k, v in nb["cells"].items()}
        row = f"{student:<18}"
        for gid in ids:
            cell = cells.get(gid)
            if cell is None:
                row += f"{'?':>7}"
            elif cell["needs_manual_grade"]:
                row += f"{'manual':>7}"
            else:
                row += f"{cell['score'] or 0:>7g}"
        row += f"{record['total']:>5g}/{record['max_total']:g}"
        lines.append(row)
    return "\n".join(lines)


def demo(root: Path | str = ".", course: Path | str | None = None) -> int:
    from ..grader.grade import grade
    from .collect import collect
    from .export import export
    from .feedback import feedback

    root = Path(root).resolve()
    course = Path(course) if course else root / "demo"
    if course.exists():
        shutil.rmtree(course)
    (course / "downloaded").mkdir(parents=True)
    shutil.copytree(root / "source", course / "source")
    shutil.copy(root / "nbgrader_config.py", course / "nbgrader_config.py")

    print("1. build: nbgrader generate_assignment + Colab edition")
    build(course)
    archive = examples.lms_zip(course, course / "downloaded" / "lms_download.zip")
    print(f"2. collect {archive.relative_to(course)}")
    print(collect(archive, course).format())
    print("3. grade")
    run = grade(course)
    print(run.format())
    print("4. feedback")
    print(feedback(course).format())
    print("5. export")
    export(course)  # prints its own summary
    print()
    print(table(run.records))
    print(f"\nEverything is in {course}/ (feedback/, exports/grades.csv, exports/summary.html)")
    return 1 if run.errors else 0
