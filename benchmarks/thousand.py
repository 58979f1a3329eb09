"""1,000 students x 5 notebooks graded on this machine, once (issue 25), beside stock nbgrader.

    .venv/bin/python benchmarks/thousand.py [--students 1000] [--stock-students 10] [--jobs N]

A scratch class (``bench.scratch_course``, ``bench.class_mix``: seven correct, two with the
typical mistakes, one blank in every ten) whose students hand in the five parts of the course
(Part 6 is optional, README; nobody hands it in, so each student's 06 is recorded missing as it
is for a real class). Then, as an instructor types them:

* ``python -m toeplitz_course grade --jobs N`` (default: ``grade``'s), the sandbox on, 03's
  figures drawn for the person grading ex3_4 (the course's own configuration), over the whole
  class;
* stock ``nbgrader autograde`` (``bench.run_stock``: a fresh kernel per notebook) over the first
  ``--stock-students`` of the same class, and ``grade`` again over those same students, so the
  two are compared on one set of hand-ins in the same run (stock over 1,000 students would take
  about nine hours here; its time per notebook is what scales).

It prints wall and machine time (CPU of the whole process tree, ``bench._cpu``) for each run,
the 1,000-student wall time, and stock's time for the whole class at its measured rate. Scores
must agree, cell by cell, between stock and ours on the students both graded; every autograded
notebook of ours must be graded, and 06 recorded missing (``bench.run_ours``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.course.contract import NOTEBOOKS  # noqa: E402
from toeplitz_course.grader.config import ensure_tools_on_path  # noqa: E402
from toeplitz_course.grader.grade import default_jobs  # noqa: E402
from toeplitz_course.instructor import bench  # noqa: E402

OPTIONAL = NOTEBOOKS[-1]  # 06_using_the_matrix: not handed in


def _class(root: Path, dest: Path, students: int) -> dict[str, str]:
    """The scratch class at ``dest``: ``students`` students, five notebooks each."""
    mix = bench.class_mix(students)
    course = bench.scratch_course(root, dest)
    bench.write_class(course, mix, not_handed_in=frozenset({OPTIONAL}))
    return mix


def _copy(template: Path, dest: Path, keep: set[str] | None = None) -> Path:
    shutil.copytree(template, dest)
    bench.pin(dest)
    if keep is not None:
        for folder in (dest / "submitted").iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--stock-students", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=None, help="default: grade's own")
    args = parser.parse_args()
    ensure_tools_on_path()
    args.jobs = args.jobs or default_jobs()
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="toeplitz-thousand-") as tmp:
        started = time.perf_counter()
        mix = _class(root, Path(tmp) / "template", args.students)
        template = Path(tmp) / "template"
        print(f"class of {len(mix)} students written in {time.perf_counter() - started:.0f} s")
        sample = set(sorted(mix)[: args.stock_students])
        load_before = os.getloadavg()[0]

        print(f"grade --jobs {args.jobs}: {len(mix)} students ...", flush=True)
        ours, problem = bench.run_ours(
            _copy(template, Path(tmp) / "ours"), args.jobs, not_handed_in=frozenset({OPTIONAL})
        )
        print(f"stock nbgrader autograde: {len(sample)} students ...", flush=True)
        stock, stock_problem = bench.run_stock(_copy(template, Path(tmp) / "stock", sample))
        print(f"grade --jobs {args.jobs}: the same {len(sample)} students ...", flush=True)
        ours_sample, sample_problem = bench.run_ours(
            _copy(template, Path(tmp) / "ours-sample", sample),
            args.jobs,
            not_handed_in=frozenset({OPTIONAL}),
        )
        load_after = os.getloadavg()[0]

        # The notebooks handed in; how a missing one is recorded is not what is compared.
        ours_scores, stock_scores, sample_scores = (
            {
                student: {k: v for k, v in cells.items() if k[0] != OPTIONAL}
                for student, cells in bench.gradebook_scores(Path(tmp) / name).items()
            }
            for name in ("ours", "stock", "ours-sample")
        )
        mismatches = bench.compare(stock_scores, sample_scores)
        mismatches += bench.compare(sample_scores, {s: ours_scores.get(s, {}) for s in sample})
        problems = [p for p in (problem, stock_problem, sample_problem) if p]
        if set(ours_scores) != set(mix):
            problems.append(f"ours: {len(ours_scores)} of {len(mix)} students in the gradebook")

    # run_ours counts every notebook file handed in: five a student.
    per_notebook_stock = stock.cpu_per_notebook
    print(
        f"\n{len(mix)} students x 5 notebooks ({ours.notebooks} notebooks); {os.cpu_count()} "
        f"cores, load average {load_before:.2f} before, {load_after:.2f} after"
    )
    print(ours.format())
    print(f"  the whole class in {ours.wall / 60:.1f} min of wall time (target: under 10)")
    print(stock.format() + f"  ({len(sample)} students)")
    print(ours_sample.format() + f"  (the same {len(sample)} students)")
    stock_wall = stock.wall / stock.notebooks * ours.notebooks
    print(
        f"stock at its measured rate: {per_notebook_stock * ours.notebooks / 3600:.1f} h of "
        f"machine time for the whole class, {stock_wall / 3600:.1f} h of wall time; machine "
        f"time ratio {per_notebook_stock / ours.cpu_per_notebook:.1f}x"
    )
    cells = sum(len(c) for c in sample_scores.values())
    if not mismatches and not problems:
        print(
            f"scores agree on all {cells} grade cells of the {len(sample)} students stock graded,"
            f" and all {len(mix)} students' notebooks were graded"
        )
    for p in problems[:20]:
        print(f"FAILED: {p}")
    for m in mismatches[:20]:
        print(f"SCORES DISAGREE: {m}")
    return 0 if not mismatches and not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
