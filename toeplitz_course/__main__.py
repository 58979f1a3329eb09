"""``python -m toeplitz_course <step>``: the instructor's workflow, one command per step.

Argument parsing only; each step is a function of its own module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _build(args) -> int:
    from .instructor.build import build

    for path in build(args.root):
        print(f"wrote {path.relative_to(Path(args.root).resolve())}")
    return 0


def _drift(args) -> int:
    from .instructor.build import drift

    problems = drift(args.root)
    print("\n".join(problems) or "release/ and notebooks/ match source/")
    return 1 if problems else 0


def _strip(args) -> int:
    from .instructor.build import strip_outputs

    for path in strip_outputs(args.paths or None, root=args.root):
        print(f"stripped {path}")
    return 0


def _collect(args) -> int:
    from .instructor.collect import CollectError, collect

    try:
        report = collect(args.path, args.root, student=args.student)
    except CollectError as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0


def _collect_exchange(args) -> int:
    from .instructor.exchange import ExchangeCollectError, collect_exchange

    try:
        report = collect_exchange(args.root, student=args.student)
    except ExchangeCollectError as exc:
        print(f"collect-exchange: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0


def _grade(args) -> int:
    from .grader.assignment import AssignmentError
    from .grader.grade import Interrupted, grade
    from .grader.sandbox import SandboxUnavailable

    sandbox = False if args.no_sandbox else None  # None: as nbgrader_config.py says
    try:
        run = grade(
            args.root,
            args.student or None,
            jobs=args.jobs,
            progress=not args.quiet,
            sandbox=sandbox,
            scheduler=args.scheduler,
        )
    except (AssignmentError, SandboxUnavailable) as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(exc.run.format())
        return 130  # as a shell reports a command Ctrl-C stopped
    print(run.format())
    return 1 if run.errors else 0


def _feedback(args) -> int:
    from .instructor.feedback import feedback

    run = feedback(args.root, args.student or None)
    print(run.format())
    return 1 if run.errors else 0


def _export(args) -> int:
    from .instructor.export import export

    export(args.root, out_dir=args.out)  # prints its own summary
    return 0


def _report(args) -> int:
    from .instructor.report import report

    print(report(args.root))
    return 0


def _similarity(args) -> int:
    from .instructor.similarity import similarity

    print(similarity(args.root, out_dir=args.out).format())
    return 0


def _demo(args) -> int:
    from .instructor.demo import demo

    return demo(args.root)


def _bench(args) -> int:
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
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
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
    p.set_defaults(run=_feedback)

    p = steps.add_parser("export", help="grades CSV, terminal summary and HTML summary")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: exports/)")
    p.set_defaults(run=_export)

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
    from .grader.config import ensure_tools_on_path

    ensure_tools_on_path()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
