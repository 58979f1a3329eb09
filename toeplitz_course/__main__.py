"""``python -m toeplitz_course <step>``: the instructor's workflow, one command per step.

Argument parsing only; each step is a function of its own module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _build(args, course=None) -> int:
    from .grader.coursedir import Course
    from .instructor.build import build, shared_with_previous

    course = Course.of(args.root)  # once, for the build and its warnings
    for path in build(course):
        print(f"wrote {path.relative_to(course.root)}")
    for line in shared_with_previous(course):
        print(f"warning: {line}", file=sys.stderr)
    return 0


def _drift(args, course=None) -> int:
    from .instructor.build import drift

    problems = drift(args.root)
    print("\n".join(problems) or "release/ and notebooks/ match source/")
    return 1 if problems else 0


def _strip(args, course=None) -> int:
    from .instructor.build import strip_outputs

    for path in strip_outputs(args.paths or None, root=args.root):
        print(f"stripped {path}")
    return 0


def _fail(step: str, message: object) -> None:
    """The one line a misuse gets, on stderr (student text in it shown, never obeyed)."""
    from .course.untrusted import for_terminal

    print(f"{step}: {for_terminal(message)}", file=sys.stderr)


#: Steps that work on a course directory: the CLI loads it once (``Course.load``: there is one,
#: and its configuration loads) and hands it to the step.
COURSE_STEPS = (
    "collect",
    "collect-exchange",
    "grade",
    "feedback",
    "export",
    "report",
    "extend",
    "similarity",
)


def _collect(args, course) -> int:
    from .instructor.collect import CollectError, collect

    try:
        report = collect(args.path, course, student=args.student, times=args.times)
    except CollectError as exc:
        _fail("collect", exc)
        return 2
    print(report.format())
    if not report.placed:
        _fail("collect", f"placed nothing: {len(report.rejected)} files rejected (listed above)")
        return 1
    return 0


def _collect_exchange(args, course) -> int:
    from .instructor.exchange import ExchangeCollectError, collect_exchange

    try:
        report = collect_exchange(course, student=args.student)
    except ExchangeCollectError as exc:
        print(f"collect-exchange: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0


def _grade(args, course) -> int:
    from .grader.assignment import AssignmentError
    from .grader.coursedir import submitted_students
    from .grader.grade import Interrupted, grade
    from .grader.sandbox import SandboxUnavailable

    refused: list[str] = []
    if not args.student and not submitted_students(course.root, refused):
        if not refused:
            _fail("grade", "nothing to grade: submitted/ holds no student folder (run collect)")
            return 1
    sandbox = False if args.no_sandbox else None  # None: as nbgrader_config.py says
    try:
        run = grade(
            course,
            args.student or None,
            jobs=args.jobs,
            progress=not args.quiet,
            sandbox=sandbox,
            scheduler=args.scheduler,
        )
    except (AssignmentError, SandboxUnavailable) as exc:
        _fail("grade", exc)
        return 2
    except Interrupted as exc:
        print(exc.run.format())
        return 130  # as a shell reports a command Ctrl-C stopped
    print(run.format())
    if not run.records and not run.errors:
        _fail("grade", "nothing graded: no folder under submitted/ is a student's (see above)")
        return 1
    return 1 if run.errors else 0


def _feedback(args, course) -> int:
    from .instructor.feedback import FeedbackInterrupted, feedback

    try:
        run = feedback(course, args.student or None, jobs=args.jobs)
    except FeedbackInterrupted as exc:
        print(exc.run.format(), file=sys.stderr)
        return 130
    print(run.format())
    return 1 if run.errors else 0


def _export(args, course) -> int:
    from .instructor.export import ExportError, export

    try:
        export(
            course,
            out_dir=args.out,
            canvas_assignment=args.canvas_assignment,
            blackboard_column=args.blackboard_column,
            brightspace_item=args.brightspace_item,
        )  # prints its own summary
    except ExportError as exc:
        _fail("export", exc)
        return 1
    return 0


def _extend(args, course) -> int:
    from .instructor.extend import ExtendError, extend

    try:
        done = extend(course, args.student, days=args.days, hours=args.hours, until=args.until)
    except ExtendError as exc:
        _fail("extend", exc)
        return 1
    print(done.format())
    return 0


def _report(args, course) -> int:
    from .instructor.report import report

    print(report(course))
    return 0


def _similarity(args, course) -> int:
    from .instructor.similarity import similarity

    print(similarity(course, out_dir=args.out).format())
    return 0


def _demo(args, course=None) -> int:
    from .instructor.demo import demo

    return demo(args.root)


def _bench(args, course=None) -> int:
    from .instructor.bench import main as bench_main

    return bench_main(students=args.students, jobs=args.jobs, root=args.root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toeplitz_course", description=__doc__)
    parser.add_argument("--root", default=".", help="the course directory (default: .)")
    steps = parser.add_subparsers(dest="step", required=True)

    steps.add_parser("build", help="regenerate release/ and notebooks/ from source/").set_defaults(
        run=_build
    )
    steps.add_parser(
        "drift", help="fail if release/ or notebooks/ differ from source/"
    ).set_defaults(run=_drift)
    p = steps.add_parser("strip", help="remove outputs from source notebooks (authors)")
    p.add_argument("paths", nargs="*", type=Path)
    p.set_defaults(run=_strip)

    p = steps.add_parser(
        "collect", help="lay an LMS download (zip, folder or one notebook) into submitted/"
    )
    p.add_argument("path", type=Path)
    p.add_argument("--student", help="whose files these are, whatever their names say")
    p.add_argument(
        "--times",
        metavar="FILE",
        type=Path,
        help="the LMS's own record: Moodle's grading worksheet (CSV) or Canvas's submissions "
        "(API JSON), whose times beat every other source; Brightspace's grades export (CSV), "
        "for the ids its grade import matches on",
    )
    p.set_defaults(run=_collect)

    p = steps.add_parser(
        "collect-exchange",
        help="collect nbgrader's exchange into submitted/ without following students' links "
        "(use instead of nbgrader collect)",
    )
    p.add_argument("--student", help="only this student")
    p.set_defaults(run=_collect_exchange)

    p = steps.add_parser("grade", help="autograde submitted/ (hardened, parallel)")
    p.add_argument("--student", action="append", help="only this student (repeatable)")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes (default: two per core, as the machine's memory allows)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code unconfined, with your rights (c.Sandbox.enabled = False)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="grade on the Dask cluster of this scheduler, one task per student "
        "(c.Cluster.scheduler)",
    )
    p.set_defaults(run=_grade)

    p = steps.add_parser("feedback", help="per-student HTML feedback without hidden tests")
    p.add_argument("--student", action="append")
    p.add_argument(
        "--jobs", type=int, default=None, help="worker processes (default: cores, 10 students each)"
    )
    p.set_defaults(run=_feedback)

    p = steps.add_parser(
        "export", help="grades CSV, each LMS's grade file, feedback pages, HTML summary"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: exports/)")
    p.add_argument(
        "--canvas-assignment",
        metavar="'NAME (ID)'",
        help="Canvas's column header of the assignment (c.LmsExport.canvas_assignment)",
    )
    p.add_argument(
        "--blackboard-column",
        metavar="'NAME |ID'",
        help="the Grade Center column's header, with its id (c.LmsExport.blackboard_column)",
    )
    p.add_argument(
        "--brightspace-item",
        metavar="ITEM",
        help="the Brightspace grade item's name (c.LmsExport.brightspace_item)",
    )
    p.set_defaults(run=_export)

    p = steps.add_parser(
        "extend", help="give a student more time (nbgrader's extension) and recompute the penalty"
    )
    p.add_argument("student")
    p.add_argument("--days", type=float, default=None, help="days past the due date")
    p.add_argument("--hours", type=float, default=None, help="hours past the due date")
    p.add_argument(
        "--until", metavar="DATETIME", help="the student's new due date (UTC if no zone)"
    )
    p.set_defaults(run=_extend)

    steps.add_parser("report", help="integrity flags per student").set_defaults(run=_report)
    p = steps.add_parser(
        "similarity",
        help="compare the class pairwise (answers, written answer, notebook traces) into "
        "exports/similarity.json and .html",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: exports/)")
    p.set_defaults(run=_similarity)
    steps.add_parser("demo", help="build, grade the bundled examples, print a table").set_defaults(
        run=_demo
    )
    p = steps.add_parser("bench", help="stock nbgrader autograde vs grade --jobs")
    p.add_argument("--students", type=int, default=40)
    p.add_argument("--jobs", type=int, default=None)
    p.set_defaults(run=_bench)

    args = parser.parse_args(argv)
    if args.step == "extend":
        if (args.until is None) == (args.days is None and args.hours is None):
            parser.error("extend: give --days/--hours or --until (--days 0 removes an extension)")
    from .grader.config import ensure_tools_on_path

    if args.step not in COURSE_STEPS:
        ensure_tools_on_path()
        return args.run(args)
    from .grader.coursedir import Course, CourseProblem

    try:
        course = Course.load(args.root)
    except CourseProblem as exc:
        _fail(args.step, exc)
        return 2
    ensure_tools_on_path()
    with course.in_use():
        return args.run(args, course)


if __name__ == "__main__":
    sys.exit(main())
