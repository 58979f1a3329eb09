"""Feedback alone: stock ``nbgrader generate_feedback`` against ``python -m toeplitz_course
feedback``, optionally against an earlier version of ours too, on one graded class.

    .venv/bin/python benchmarks/feedback_bench.py [--students 20] [--before DIR] [--jobs N [N ...]]

Builds a scratch class (``bench.scratch_course``, correct / mistakes / blank students), grades it
with ``grade`` (not timed), then times feedback on copies of it as ``bench.bench_feedback`` does:
each command as a subprocess, CPU of its whole process tree (``getrusage``). ``--before DIR``
also runs ``feedback`` with ``DIR`` first on ``PYTHONPATH`` (a checkout of ``toeplitz_course``
from an earlier commit: ``git archive COMMIT toeplitz_course | tar -x -C DIR``), before and
after ours, so that both see the same load. Several ``--jobs`` values instead run ours once per
value, twice over, interleaved (worker counts compared on one class). Every page of ours must be
stock's, byte for byte.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.course.contract import ASSIGNMENT  # noqa: E402
from toeplitz_course.grader.config import ensure_tools_on_path  # noqa: E402
from toeplitz_course.instructor import bench  # noqa: E402


def _copy(graded: Path, dest: Path) -> Path:
    shutil.copytree(graded, dest)
    shutil.rmtree(dest / "feedback", ignore_errors=True)
    bench.pin(dest)
    return dest


def _pages(course: Path) -> dict[Path, bytes]:
    folder = course / "feedback"
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.html")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--before", type=Path, help="an earlier toeplitz_course's parent folder")
    parser.add_argument(
        "--jobs",
        type=int,
        nargs="+",
        help="feedback --jobs (default: its own choice); several values are each run twice, "
        "interleaved, to compare worker counts on one class",
    )
    args = parser.parse_args()
    ensure_tools_on_path()
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="toeplitz-feedback-") as tmp:
        graded = bench.scratch_course(root, Path(tmp) / "graded")
        bench.write_class(graded, bench.class_mix(args.students))
        from toeplitz_course.grader.grade import grade

        run = grade(graded, jobs=2, progress=False)
        assert not run.errors, run.errors
        load = os.getloadavg()[0]
        ours_cmd = [sys.executable, "-m", "toeplitz_course", "feedback"]
        stock_cmd = [sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--force"]
        runs = [("stock generate_feedback", stock_cmd, None)]
        if args.jobs and len(args.jobs) > 1:
            for again in ("", " (again)"):
                for jobs in args.jobs:
                    cmd = [*ours_cmd, "--jobs", str(jobs)]
                    runs.append((f"feedback --jobs {jobs}{again}", cmd, None))
        else:
            if args.jobs:
                ours_cmd += ["--jobs", str(args.jobs[0])]
            if args.before:
                runs.append(("feedback, before", ours_cmd, args.before))
            runs.append(("feedback, now", ours_cmd, None))
            if args.before:
                runs.append(("feedback, before (again)", ours_cmd, args.before))
                runs.append(("feedback, now (again)", ours_cmd, None))
        phases, pages = [], {}
        saved = os.environ.get("PYTHONPATH")
        for i, (name, cmd, path) in enumerate(runs):
            course = _copy(graded, Path(tmp) / f"run{i}")
            os.environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in (path, root, saved) if p)
            phase, problem = bench._timed(name, cmd, course, "feedback.log")
            assert problem is None, problem
            phases.append(phase)
            pages[name] = _pages(course)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    stock = phases[0]
    print(
        f"{args.students} students, {stock.notebooks} pages; load average {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    for phase in phases:
        print(
            f"{phase.format()}   {stock.cpu / phase.cpu:5.1f}x machine time,"
            f" {stock.wall / phase.wall:5.1f}x wall against stock"
        )
    reference = pages["stock generate_feedback"]
    for name, found in pages.items():
        same = found == reference
        print(f"  {name}: {len(found)} pages, {'identical to stock' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
