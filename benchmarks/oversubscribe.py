"""Whether more grading workers than cores keep the cores busier (issue 25, the 1,000 x 5 run).

    .venv/bin/python benchmarks/oversubscribe.py [--students 60] [--jobs 2 3 4] [--rounds 2]

The 1,000-student run kept its two cores 1.34 busy on average: each worker grades one notebook
at a time and waits while its kernel runs, while the gradebook commits, while a kernel is forked.
One scratch class (``bench``'s mix, five notebooks a student, Part 6 not handed in), graded by
``python -m toeplitz_course grade --jobs J`` for each J in turn, rounds interleaved so each J sees
the same background. Prints wall time, machine time per notebook and cores busy (machine time
over wall time) for each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.course.contract import NOTEBOOKS  # noqa: E402
from toeplitz_course.grader.config import ensure_tools_on_path  # noqa: E402
from toeplitz_course.instructor import bench  # noqa: E402

OPTIONAL = NOTEBOOKS[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--jobs", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ensure_tools_on_path()
    root = Path(__file__).resolve().parent.parent
    failed = False
    with tempfile.TemporaryDirectory(prefix="toeplitz-oversubscribe-") as tmp:
        template = bench.scratch_course(root, Path(tmp) / "template")
        mix = bench.class_mix(args.students)
        bench.write_class(template, mix, not_handed_in=frozenset({OPTIONAL}))
        print(f"{len(mix)} students x 5 notebooks; {os.cpu_count()} cores", flush=True)
        for r in range(args.rounds):
            for jobs in args.jobs:
                course = Path(tmp) / f"j{jobs}-r{r}"
                shutil.copytree(template, course)
                bench.pin(course)
                phase, problem = bench.run_ours(course, jobs, not_handed_in=frozenset({OPTIONAL}))
                busy = phase.cpu / phase.wall if phase.wall else 0.0
                print(f"round {r}  {phase.format()}  cores busy {busy:.2f}", flush=True)
                if problem:
                    print(f"FAILED: {problem[:500]}")
                    failed = True
                shutil.rmtree(course)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
