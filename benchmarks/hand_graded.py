"""What drawing the figures of a hand-graded notebook costs, by rule, in one worker's steady state.

    .venv/bin/python benchmarks/hand_graded.py [--students 4] [--rounds 2]

Builds a scratch class (``bench.scratch_course``) whose students hand in only the notebook a
person grades a cell of (03), and grades each student in this process (``grade_student``, as a
pool worker does) under each rule in turn, rotated so that every rule sees the same students and
the same background load:

* ``none``: no demonstration runs, nothing drawn (``run_where_graded_by_hand = False``);
* ``section``: every demonstration between the last autograded test and the hand-graded cell
  runs and draws (the rule before issue 25's figure analysis);
* ``figures``: only those that draw, with what they need (``demos.figures_graded_by_hand``).

It prints, per notebook and rule, the CPU of the grading process, of the kernels (the zygote
reaps them and counts them) and their sum, and each rule's cost over ``none``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.course.contract import ASSIGNMENT, EXERCISES  # noqa: E402
from toeplitz_course.grader import demos, warmkernel  # noqa: E402
from toeplitz_course.grader import grade as grading  # noqa: E402
from toeplitz_course.grader.config import KERNEL_PRELOAD, ensure_tools_on_path  # noqa: E402
from toeplitz_course.grader.preprocessors import SkipDemoCells  # noqa: E402
from toeplitz_course.instructor import bench  # noqa: E402

BY_HAND = sorted({e.notebook for e in EXERCISES if not e.autograded})


def _section_rule(nb: dict, tag: str = demos.DEMO_TAG) -> set[str]:
    """The rule before the figure analysis: every demonstration of the section."""
    found: set[str] = set()
    section: list[str] = []
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if demos._by_hand(cell):
            found.update(section)
            section = []
        elif meta.get("grade"):
            section = []
        elif cell.get("cell_type") == "code" and tag in (
            cell.get("metadata", {}).get("tags") or []
        ):
            section.append(demos.normalized(demos.source_of(cell)))
    return found


RULES = {
    "none": (lambda nb: False, demos.figures_graded_by_hand),
    "section": (demos.graded_by_hand, _section_rule),
    "figures": (demos.graded_by_hand, demos.figures_graded_by_hand),
}


def _use(rule: str) -> None:
    demos.graded_by_hand, demos.figures_graded_by_hand = RULES[rule]
    SkipDemoCells._cache.clear()


def _kernel_cpu() -> float:
    return (warmkernel.zygote_stats(KERNEL_PRELOAD) or {}).get("children_cpu", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="times each student is graded")
    args = parser.parse_args()
    ensure_tools_on_path()
    root = Path(__file__).resolve().parent.parent
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="toeplitz-handgraded-") as tmp:
        course = bench.scratch_course(root, Path(tmp) / "course")
        bench.write_class(course, bench.class_mix(args.students))
        for folder in (course / "submitted").glob(f"*/{ASSIGNMENT}"):
            for nb in folder.glob("*.ipynb"):
                if nb.stem not in BY_HAND:
                    nb.unlink()
        grading._worker_init()
        grading.prepare(course)
        students = grading.submitted_students(course)
        for rule in RULES:  # warm-up: every rule once (first imports, first figures)
            _use(rule)
            grading.grade_student(course, students[0])
        cpu: dict[str, list[tuple[float, float]]] = {rule: [] for rule in RULES}
        names = list(RULES)
        for r in range(args.rounds):
            for i, student in enumerate(students):
                k = (i + r) % len(names)
                for rule in names[k:] + names[:k]:
                    _use(rule)
                    kernels, own = _kernel_cpu(), time.process_time()
                    grading.grade_student(course, student)
                    cpu[rule].append((time.process_time() - own, _kernel_cpu() - kernels))
    n = len(BY_HAND)
    print(
        f"{args.students} students x {args.rounds} rounds, {', '.join(BY_HAND)} only; "
        f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after (CPU s per notebook)"
    )
    base = statistics.mean(a + b for a, b in cpu["none"]) / n
    for rule, runs in cpu.items():
        own = statistics.mean(a for a, _ in runs) / n
        kern = statistics.mean(b for _, b in runs) / n
        total = [(a + b) / n for a, b in runs]
        print(
            f"  {rule:8s} grading {own:6.3f}  kernel {kern:6.3f}  sum {own + kern:6.3f}"
            f" (median {statistics.median(total):6.3f})  over none {own + kern - base:+6.3f}"
        )


if __name__ == "__main__":
    main()
