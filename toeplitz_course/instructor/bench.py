"""``make bench``: stock ``nbgrader autograde`` against ``grade`` on the same scratch class.

A scratch course (sources and config copied from the course directory, release and gradebook
generated, in a temporary directory) gets N students: mostly correct, some blank, some with the
typical mistakes of ``examples``. Two fresh copies of it are graded:

stock
    ``nbgrader autograde toeplitz`` as a subprocess, with a config that sets the course id and
    nothing else, so nbgrader's default preprocessors run (``Execute``: a fresh kernel per
    notebook, which imports torch again each time);
ours
    ``python -m toeplitz_course grade --jobs N`` (that is, ``grade(course, jobs=N)``) as a
    subprocess: the course's own ``nbgrader_config.py``, students in parallel, kernels forked
    from a warm parent, figures built but not drawn.

Then feedback for the class ours graded, on two more copies: stock ``nbgrader generate_feedback``
(the course's own configuration, one process) against ``python -m toeplitz_course feedback``
(``bench_feedback``); every page must be the same, byte for byte.

Every grade cell of every student must get the same score and manual-grade state under both
(these are honest submissions; the hostile ones are where the two are meant to differ). Both
runs are commands an instructor would type, so both pay for their own start-up and imports.
Machine time is CPU seconds of the whole process tree, which ``getrusage(RUSAGE_CHILDREN)``
counts for every descendant once it has been waited for: nbgrader and its kernels; our command,
its pool workers, their zygotes and the kernels the zygotes reap.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..course.contract import ASSIGNMENT, NOTEBOOKS

#: One block of ten students: seven correct, two with the typical mistakes, one blank. The
#: first three cover every kind, so a small run still compares all of them.
MIX = ("correct", "mistakes", "blank", "correct", "correct", "correct", "mistakes", "correct",
       "correct", "correct")  # fmt: skip

STOCK_CONFIG = '''\
"""Stock nbgrader, written by `python -m toeplitz_course bench`.

Only the course id is set: Autograde runs nbgrader's default sanitize and autograde
preprocessors, including its own Execute (a fresh `python -m ipykernel_launcher` per notebook).
"""

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "toeplitz-convolution"
'''

#: Per grade cell: (score, needs_manual_grade), keyed by student, then (notebook, grade id).
Scores = dict[str, dict[tuple[str, str], tuple[float | None, bool]]]


def class_mix(students: int) -> dict[str, str]:
    """student id -> kind of hand-in (correct, mistakes, blank)."""
    return {f"student{i + 1:03d}": MIX[i % len(MIX)] for i in range(students)}


def _cpu() -> float:
    """CPU seconds of this process and of every descendant that has been waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class Phase:
    name: str
    wall: float
    cpu: float
    notebooks: int

    @property
    def rate(self) -> float:
        return self.notebooks / self.wall if self.wall else 0.0

    @property
    def cpu_per_notebook(self) -> float:
        return self.cpu / self.notebooks if self.notebooks else 0.0

    def format(self) -> str:
        return (
            f"{self.name:<26} {self.wall:7.1f} s wall  {self.rate:5.2f} notebooks/s  "
            f"{self.cpu_per_notebook:5.2f} s machine time per notebook"
        )


@dataclass
class BenchResult:
    mix: dict[str, str]
    jobs: int
    stock: Phase
    ours: Phase
    cells: int  # grade cells compared
    mismatches: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a run that failed outright
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after
    small: Phase | None = None  # ours again, on the first quarter of the class
    unconfined: Phase | None = None  # ours again, the whole class, --no-sandbox
    feedback: FeedbackBench | None = None  # feedback on our graded class, stock and ours

    @property
    def sandbox_cost(self) -> float | None:
        """Machine time the sandbox adds per notebook: ours against ours --no-sandbox."""
        if self.unconfined is None or not self.ours.notebooks:
            return None
        return (self.ours.cpu - self.unconfined.cpu) / self.ours.notebooks

    @property
    def marginal(self) -> float | None:
        """Machine time of one more notebook: ours on the class against ours on a quarter of it.

        The difference cancels what a run pays once whatever its size (starting the command,
        the workers, their warm parents, their first imports).
        """
        if self.small is None or self.ours.notebooks <= self.small.notebooks:
            return None
        return (self.ours.cpu - self.small.cpu) / (self.ours.notebooks - self.small.notebooks)

    @property
    def ok(self) -> bool:
        feedback_ok = self.feedback is None or self.feedback.ok
        return not self.mismatches and not self.problems and feedback_ok

    @property
    def ratio(self) -> float:
        return self.stock.wall / self.ours.wall if self.ours.wall else 0.0

    def format(self) -> str:
        kinds = {k: list(self.mix.values()).count(k) for k in dict.fromkeys(MIX)}
        lines = [
            f"{len(self.mix)} students ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
            f"{self.stock.notebooks} notebooks; {os.cpu_count()} cores, "
            f"load average {self.load[0]:.2f} before, {self.load[1]:.2f} after",
            self.stock.format(),
            self.ours.format(),
            f"throughput ratio {self.ratio:.1f}x, machine time ratio "
            f"{self.stock.cpu / self.ours.cpu if self.ours.cpu else 0:.1f}x",
        ]
        if self.small is not None and self.marginal is not None:
            lines += [
                self.small.format() + f"  ({len(self.mix) // 4} students)",
                f"marginal machine time per notebook {self.marginal:.2f} s "
                f"(the two runs of ours: {self.ours.notebooks} against {self.small.notebooks} "
                "notebooks)",
            ]
        if self.unconfined is not None and self.sandbox_cost is not None:
            lines += [
                self.unconfined.format(),
                f"sandbox cost per notebook {self.sandbox_cost * 1000:+.0f} ms of machine time "
                f"(sandboxed against --no-sandbox, same class; wall ratio "
                f"{self.unconfined.wall / self.ours.wall if self.ours.wall else 0:.2f})",
            ]
        if self.feedback is not None:
            lines += self.feedback.lines()
        if self.ok:
            lines.append(f"scores agree on all {self.cells} grade cells")
        for problem in self.problems:
            lines.append(f"FAILED: {problem}")
        if self.mismatches:
            lines.append(f"SCORES DISAGREE on {len(self.mismatches)} grade cells:")
            lines += [f"  {m}" for m in self.mismatches[:20]]
            if len(self.mismatches) > 20:
                lines.append(f"  ... and {len(self.mismatches) - 20} more")
        return "\n".join(lines)


@dataclass
class FeedbackBench:
    """Feedback pages for one graded class: stock ``nbgrader generate_feedback`` against
    ``python -m toeplitz_course feedback``, each on its own copy, and the pages compared."""

    stock: Phase
    ours: Phase
    pages: int  # pages compared, byte for byte
    differ: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differ and not self.problems and self.pages > 0

    @property
    def ratio(self) -> float:
        return self.stock.wall / self.ours.wall if self.ours.wall else 0.0

    def lines(self) -> list[str]:
        lines = [
            self.stock.format(),
            self.ours.format(),
            f"feedback throughput ratio {self.ratio:.1f}x, machine time ratio "
            f"{self.stock.cpu / self.ours.cpu if self.ours.cpu else 0:.1f}x",
        ]
        if self.ok:
            lines.append(f"feedback pages identical to stock's: all {self.pages}")
        lines += [f"FEEDBACK FAILED: {p}" for p in self.problems]
        if self.differ:
            lines.append(f"FEEDBACK PAGES DIFFER: {len(self.differ)}, e.g. {self.differ[:5]}")
        return lines


def bench_feedback(graded: Path, workdir: Path, say=print) -> FeedbackBench:
    """Time feedback on two copies of the graded course ``graded`` (under ``workdir``).

    stock: ``nbgrader generate_feedback toeplitz --force`` with the course's own configuration
    (the command an instructor would type; the pages it writes are the ones handed out);
    ours: ``python -m toeplitz_course feedback``. Every page must be the same, byte for byte.
    """
    stock_course, our_course = workdir / "feedback-stock", workdir / "feedback-ours"
    for course in (stock_course, our_course):
        shutil.copytree(graded, course)
        shutil.rmtree(course / "feedback", ignore_errors=True)
        pin(course)
    students = len(list((graded / "autograded").glob(f"*/{ASSIGNMENT}")))
    say(f"feedback for {students} students with stock nbgrader generate_feedback ...", flush=True)
    cmd = [sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--force"]
    stock, stock_problem = _timed("stock generate_feedback", cmd, stock_course, "feedback.log")
    say(f"feedback for {students} students with toeplitz_course feedback ...", flush=True)
    # The feedback command as an instructor types it: its own number of workers.
    from .feedback import default_jobs

    workers = default_jobs(students)
    label = f"{workers} workers" if workers > 1 else "one process"
    cmd = [sys.executable, "-m", "toeplitz_course", "feedback"]
    ours, our_problem = _timed(f"feedback ({label})", cmd, our_course, "feedback.log")
    theirs = {
        p.relative_to(stock_course / "feedback"): p for p in (stock_course / "feedback").rglob("*")
    }
    mine = {p.relative_to(our_course / "feedback"): p for p in (our_course / "feedback").rglob("*")}
    differ = sorted(str(k) for k in set(theirs) ^ set(mine))
    pages = 0
    for key in sorted(set(theirs) & set(mine)):
        if theirs[key].is_file():
            pages += key.suffix == ".html"
            if theirs[key].read_bytes() != mine[key].read_bytes():
                differ.append(str(key))
    problems = [p for p in (stock_problem, our_problem) if p]
    return FeedbackBench(stock, ours, pages, differ, problems)


def scratch_course(root: Path, dest: Path) -> Path:
    """A course at ``dest`` made from ``root``'s sources and config, with its own gradebook."""
    from .build import generate_release

    dest.mkdir(parents=True)
    shutil.copytree(root / "source", dest / "source")
    shutil.copy(root / "nbgrader_config.py", dest / "nbgrader_config.py")
    pin(dest)
    generate_release(dest)
    return dest


def pin(course: Path) -> None:
    """Point ``course``'s config at ``course`` itself and a gradebook of its own.

    The instructor's config may name their real gradebook (a PostgreSQL URL, say) or course
    root; the last assignment in the file wins, so these lines override both.
    """
    config = course / "nbgrader_config.py"
    text = config.read_text(encoding="utf-8").split(_PINNED)[0]
    text += (
        f"{_PINNED}"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(course / 'gradebook.db')!r}\n"
    )
    config.write_text(text, encoding="utf-8")


_PINNED = "\n# Added by `python -m toeplitz_course bench`: this scratch course's own gradebook.\n"


def write_class(
    course: Path, mix: dict[str, str], not_handed_in: frozenset[str] = frozenset()
) -> None:
    """Each student of ``mix`` hands in an example of their kind, without the notebooks named in
    ``not_handed_in``."""
    from . import examples

    made = {kind: getattr(examples, kind)(course) for kind in set(mix.values())}
    for student, kind in mix.items():
        examples.write(in_own_words(made[kind], student), course, student)
        for name in not_handed_in:
            (course / "submitted" / student / ASSIGNMENT / f"{name}.ipynb").unlink()


#: What an answer cell a student has not touched says (nbgrader's stubs).
_STUBS = ("YOUR CODE HERE", "YOUR ANSWER HERE")


def in_own_words(nbs: dict, student: str) -> dict:
    """``nbs`` as ``student`` hands them in: every answer cell they filled carries a line of
    their own (a comment in code, a sentence in a written answer), so no two students' answer
    cells are the same text, as in a real class. Identical hand-ins would flatter every cache
    keyed by a cell's text (feedback's per-cell pass, say). Scores do not change: a comment
    after a cell's last line neither runs nor changes what the cell shows. A blank hand-in
    stays the release's cells, as a real blank one is."""
    from ..grader.demos import source_of

    own = copy.deepcopy(nbs)
    for nb in own.values():
        for cell in nb["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader") or {}
            source = source_of(cell)
            if not meta.get("solution") or any(stub in source for stub in _STUBS):
                continue
            if cell["cell_type"] == "code":
                cell["source"] = f"{source.rstrip()}\n# {student}: my own work, run top to end.\n"
            else:
                cell["source"] = f"{source.rstrip()}\n\n(Written by {student}.)\n"
    return own


def gradebook_scores(course: Path) -> Scores:
    from nbgrader.api import Gradebook

    from ..grader.coursedir import db_url

    scores: Scores = {}
    with Gradebook(db_url(course)) as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            scores[sub.student.id] = {
                (nb.name, grade.name): (grade.score, bool(grade.needs_manual_grade))
                for nb in sub.notebooks
                for grade in nb.grades
            }
    return scores


def compare(stock: Scores, ours: Scores) -> list[str]:
    mismatches = []
    for student in sorted(set(stock) | set(ours)):
        a, b = stock.get(student, {}), ours.get(student, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                notebook, cell = key
                mismatches.append(
                    f"{student} {notebook} {cell}: stock {a.get(key)}, ours {b.get(key)}"
                )
    return mismatches


def _timed(name: str, cmd: list[str], course: Path, log_name: str) -> tuple[Phase, str | None]:
    """Run ``cmd`` in ``course``: wall time, and CPU time of it and all its descendants."""
    notebooks = len(list((course / "submitted").glob(f"*/{ASSIGNMENT}/*.ipynb")))
    log_path = course / log_name
    with open(log_path, "w", encoding="utf-8") as log:
        cpu, start = _cpu(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=course, stdout=log, stderr=subprocess.STDOUT)
        phase = Phase(name, time.perf_counter() - start, _cpu() - cpu, notebooks)
    if proc.returncode == 0:
        return phase, None
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
    return phase, f"{' '.join(cmd[1:])} exited with {proc.returncode}:\n{tail}"


def run_stock(course: Path) -> tuple[Phase, str | None]:
    (course / "nbgrader_config.py").write_text(STOCK_CONFIG, encoding="utf-8")
    cmd = [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT]
    return _timed("stock nbgrader autograde", cmd, course, "autograde.log")


def run_ours(
    course: Path, jobs: int, sandbox: bool = True, not_handed_in: frozenset[str] = frozenset()
) -> tuple[Phase, str | None]:
    """``python -m toeplitz_course grade``, the command an instructor runs (it calls ``grade``).

    A subprocess like the stock run, so that both pay for their own start-up and imports and are
    timed and accounted the same way. Every notebook must be graded, but those named in
    ``not_handed_in``, which must be recorded missing.
    """
    cmd = [sys.executable, "-m", "toeplitz_course", "grade", "--quiet", "--jobs", str(jobs)]
    name = f"grade --jobs {jobs}"
    if not sandbox:
        cmd.append("--no-sandbox")
        name += " --no-sandbox"
    phase, problem = _timed(name, cmd, course, "grade.log")
    if problem:
        return phase, problem
    failed = []
    for path in sorted((course / "grading").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        failed += [
            f"{record['student']} {nb}: {entry['status']} {entry['detail']}"
            for nb, entry in record["notebooks"].items()
            if entry["status"] != ("missing" if nb in not_handed_in else "graded")
        ]
    return phase, ("grade: " + "; ".join(failed)) if failed else None


def run(
    students: int = 40,
    jobs: int | None = None,
    root: Path | str = ".",
    workdir: Path | str | None = None,
    say=print,
) -> BenchResult:
    """Build the scratch class under ``workdir`` (default: a temporary directory) and grade it
    both ways."""
    from ..grader.config import ensure_tools_on_path
    from ..grader.grade import default_jobs

    ensure_tools_on_path()
    root = Path(root).resolve()
    mix = class_mix(students)
    jobs = max(1, min(jobs or default_jobs(), len(mix)))
    with tempfile.TemporaryDirectory(prefix="toeplitz-bench-", dir=workdir) as tmp:
        template = scratch_course(root, Path(tmp) / "template")
        write_class(template, mix)
        stock_course, our_course = Path(tmp) / "stock", Path(tmp) / "ours"
        shutil.copytree(template, stock_course)
        shutil.copytree(template, our_course)
        pin(our_course)  # the copy still names the template's gradebook
        unconfined_course = Path(tmp) / "ours-unconfined"
        shutil.copytree(template, unconfined_course)
        pin(unconfined_course)
        quarter = sorted(mix)[: len(mix) // 4]
        small_course = Path(tmp) / "ours-quarter"
        if quarter:
            shutil.copytree(template, small_course)
            pin(small_course)
            for student in set(mix) - set(quarter):
                shutil.rmtree(small_course / "submitted" / student)
        load_before = os.getloadavg()[0]
        n = len(mix) * len(NOTEBOOKS)
        say(f"grading {n} notebooks with stock nbgrader autograde ...", flush=True)
        stock, stock_problem = run_stock(stock_course)
        say(f"grading {n} notebooks with toeplitz_course grade --jobs {jobs} ...", flush=True)
        ours, our_problem = run_ours(our_course, jobs)
        small = small_problem = None
        if quarter:
            say(
                f"grading {len(quarter) * len(NOTEBOOKS)} notebooks (a quarter) again ...",
                flush=True,
            )
            small, small_problem = run_ours(small_course, jobs)
        say(f"grading {n} notebooks again, --no-sandbox ...", flush=True)
        unconfined, unconfined_problem = run_ours(unconfined_course, jobs, sandbox=False)
        feedback = bench_feedback(our_course, Path(tmp), say)
        load_after = os.getloadavg()[0]
        stock_scores, our_scores = gradebook_scores(stock_course), gradebook_scores(our_course)
        problems = [p for p in (stock_problem, our_problem, small_problem, unconfined_problem) if p]
        for name, scores in (("stock", stock_scores), ("ours", our_scores)):
            if set(scores) != set(mix):
                problems.append(f"{name}: {len(scores)} of {len(mix)} students in the gradebook")
        return BenchResult(
            mix=mix,
            jobs=jobs,
            stock=stock,
            ours=ours,
            cells=sum(len(cells) for cells in our_scores.values()),
            mismatches=compare(stock_scores, our_scores),
            problems=problems,
            load=(load_before, load_after),
            small=small,
            unconfined=unconfined,
            feedback=feedback,
        )


def main(students: int = 40, jobs: int | None = None, root: Path | str = ".") -> int:
    result = run(students, jobs, root)
    print(result.format())
    return 0 if result.ok else 1
