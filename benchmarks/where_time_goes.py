"""Where one notebook's grading time goes: the grading process against the kernel.

    .venv/bin/python benchmarks/where_time_goes.py [--students 6]

Builds a scratch class (``bench.scratch_course``, correct / mistakes / blank students) and grades
it in this process, one student at a time (``grade_student``, as a pool worker does), after one
student graded to warm up (zygote started, modules imported). For the students after that it
prints, per notebook: wall time, CPU of the grading process (nbgrader's converter, the gradebook,
our preprocessors) and CPU of the kernels (counted by the zygote, which reaps them) and of the
zygote itself. It is the steady-state cost of a worker; ``bench`` adds the fixed cost of the
command and of starting workers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.course.contract import NOTEBOOKS  # noqa: E402
from toeplitz_course.grader import grade as grading  # noqa: E402
from toeplitz_course.grader import warmkernel
from toeplitz_course.grader.config import KERNEL_PRELOAD, ensure_tools_on_path  # noqa: E402
from toeplitz_course.instructor import bench  # noqa: E402


def _zygote_cpu() -> tuple[float, float]:
    stats = warmkernel.zygote_stats(KERNEL_PRELOAD) or {}
    return stats.get("self_cpu", 0.0), stats.get("children_cpu", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6, help="graded after the warm-up one")
    args = parser.parse_args()
    ensure_tools_on_path()
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="toeplitz-where-") as tmp:
        course = bench.scratch_course(root, Path(tmp) / "course")
        bench.write_class(course, bench.class_mix(args.students + 1))
        grading._worker_init()
        grading.prepare(course)
        first, *rest = grading.submitted_students(course)
        grading.grade_student(course, first)
        zself, zkids = _zygote_cpu()
        cpu, wall = time.process_time(), time.perf_counter()
        for student in rest:
            grading.grade_student(course, student)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        zself2, zkids2 = _zygote_cpu()
        n = len(rest) * len(NOTEBOOKS)
        kernels, zygote = zkids2 - zkids, zself2 - zself
        print(f"{len(rest)} students, {n} notebooks, after one warm-up student; per notebook:")
        print(f"  wall time                 {wall / n:6.3f} s")
        print(f"  grading process CPU       {cpu / n:6.3f} s")
        print(f"  kernels CPU               {kernels / n:6.3f} s")
        print(f"  zygote CPU                {zygote / n:6.3f} s")
        print(f"  machine time (sum)        {(cpu + kernels + zygote) / n:6.3f} s")


if __name__ == "__main__":
    main()
