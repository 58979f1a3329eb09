"""Our additions to nbgrader's pipelines, written like nbgrader's own preprocessors.

Each class has one job and is wired in ``nbgrader_config.py`` (``Autograde.sanitize_preprocessors``,
``Autograde.autograde_preprocessors``, ``GenerateFeedback.preprocessors``):

sanitize (before execution)
    ``CheckCellMetadata``    nbgrader's, remembering metadata it already validated (also after
                             execution)
    ``ResetExecutionTags``   drop the tags that make nbclient skip a cell or forgive its error
    ``DeduplicateGradeIds``  keep one cell per grade id; copies become plain cells (nbgrader #1083)
    ``RestoreCells``         nbgrader's OverwriteCells, re-adding deleted grade cells (#1682),
                             reading the notebook's cells once
autograde (execution and scoring)
    ``SkipDemoCells``        leave the instructor's demonstrations unexecuted when no score can
                             depend on them (``demos``)
    ``HardenedExecute``      nbgrader's Execute with an output cap, a notebook deadline and a
                             dead kernel recorded as an error instead of failing the notebook
    ``VerifyAnswers``        the grader's own verdict on every autograded test cell
    ``SaveAutoGrades``       nbgrader's, one transaction per notebook
feedback
    ``HideHiddenTests``      hidden-test source removed from every cell
    ``ShortenTracebacks``    an error in a test cell shows only its own message
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader import preprocessors as nbgrader_preprocessors
from nbgrader import utils
from nbgrader.preprocessors import Execute, NbGraderPreprocessor, OverwriteCells
from traitlets import Bool, Float, Integer, List, Unicode

from ..course.contract import EXECUTION_TAGS, VERDICT_KEY
from ..kernel import channel
from . import answers, demos, sandbox
from .gradebook import NotebookRows
from .warmkernel import WarmKernelManager

#: The error name a failed verdict is shown under, as ``hidden.check`` raises it unconfined.
_FAILURE = "CheckFailure"  # verdicts.CheckFailure.__name__ (a test holds them equal)


def _error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(
        output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]
    )


def is_autograder_test(cell: dict) -> bool:
    return utils.is_grade(cell) and not utils.is_solution(cell) and cell["cell_type"] == "code"


class ResetExecutionTags(NbGraderPreprocessor):
    """Remove cell tags that change how a cell executes.

    nbclient skips cells tagged ``skip-execution`` and lets ``raises-exception`` cells fail without
    stopping; a student can add either to any cell, and nbgrader never resets tags.
    """

    execution_tags = List(
        Unicode(),
        list(EXECUTION_TAGS),
        help="Tags removed from every cell before execution.",
    ).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        tags = cell.metadata.get("tags")
        if tags:
            kept = [t for t in tags if t not in self.execution_tags]
            if kept:
                cell.metadata["tags"] = kept
            else:
                del cell.metadata["tags"]
        return cell, resources


class DeduplicateGradeIds(NbGraderPreprocessor):
    """Keep one cell per nbgrader grade id; earlier copies become ordinary cells.

    nbgrader's DeduplicateIds empties the copy's metadata to ``{}``, which CheckCellMetadata then
    rejects as old metadata and the notebook fails (nbgrader #1083). Removing the key instead keeps
    the copy as a plain cell: it still runs, but it neither earns nor loses points. As in
    nbgrader, the last occurrence is the one kept.
    """

    def preprocess(self, nb, resources):
        seen: set[str] = set()
        for cell in reversed(nb.cells):
            meta = cell.metadata.get("nbgrader")
            if not isinstance(meta, dict) or "grade_id" not in meta:
                continue
            if meta["grade_id"] in seen:
                self.log.warning("Cell with id '%s' exists multiple times!", meta["grade_id"])
                del cell.metadata["nbgrader"]
                cell.metadata.pop("editable", None)
                cell.metadata.pop("deletable", None)
            else:
                seen.add(meta["grade_id"])
        return nb, resources


class _RowsOfOneNotebook:
    """Mixin: the ``gradebook`` nbgrader's preprocessor opens is wrapped in ``NotebookRows``.

    nbgrader's ``preprocess`` assigns ``self.gradebook = Gradebook(...)`` after setting the ids of
    the notebook (and student), and its per-cell methods look rows up through it.
    """

    one_transaction = False
    _rows: NotebookRows | None = None

    @property
    def gradebook(self) -> NotebookRows | None:
        return self._rows

    @gradebook.setter
    def gradebook(self, gradebook) -> None:
        self._rows = NotebookRows(
            gradebook,
            self.notebook_id,
            self.assignment_id,
            getattr(self, "student_id", None),
            one_transaction=self.one_transaction,
        )


class RestoreCells(_RowsOfOneNotebook, OverwriteCells):
    """nbgrader's OverwriteCells, re-adding every deleted grade cell.

    Stock ``add_missing_grade_cells`` places a missing cell after the previous source cell and fails
    with a KeyError when that one was deleted too; this version walks back to the nearest source
    cell still present (or the top of the notebook). The source and graded cells are read once per
    notebook, not twice per cell (``NotebookRows``).

    The gradebook keeps a test cell's source *with* its hidden tests (generate_assignment saves
    the cells before ``ClearHiddenTests``), so stock OverwriteCells warns "checksum has
    changed" for every untouched test cell with hidden tests, which drowns the warning for a
    cell a student did edit. Here a locked cell whose checksum is that of its released version
    is restored without the warning; any other difference still warns.
    """

    _cell = None
    _release_clearers = None

    def preprocess_cell(self, cell, resources, index):
        self._cell = cell  # report_change is told the checksums, not the cell
        return super().preprocess_cell(cell, resources, index)

    def report_change(self, name, attr, old, new):
        if attr == "checksum" and new == self._released_checksum(name):
            self.log.debug("Cell %s: hidden tests restored (unchanged since the release)", name)
            return
        super().report_change(name, attr, old, new)

    def _released_checksum(self, name: str) -> str | None:
        """The checksum of the cell as generate_assignment released it, from the gradebook's
        source (never from the submission's metadata, which a student can rewrite)."""
        if self._cell is None:
            return None
        if self._release_clearers is None:
            self._release_clearers = [
                nbgrader_preprocessors.ClearHiddenTests(parent=self),
                nbgrader_preprocessors.ClearMarkScheme(parent=self),
            ]
        source = self.gradebook.find_source_cell(name, self.notebook_id, self.assignment_id)
        released = NotebookNode(
            cell_type=self._cell.cell_type,
            source=source.source,
            metadata=NotebookNode(nbgrader=NotebookNode(self._cell.metadata.nbgrader)),
        )
        try:
            for clearer in self._release_clearers:
                released, _ = clearer.preprocess_cell(released, {}, 0)
        except RuntimeError:  # unbalanced markers: a cell generate_assignment never released
            return None
        return utils.compute_checksum(released)

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_ids = [c.name for c in source_nb.source_cells]
        source_by_id = {c.name: c for c in source_nb.source_cells}
        solution_ids = {c.name for c in source_nb.solution_cells}

        def present() -> dict[str, int]:
            ids = ((c.metadata.get("nbgrader") or {}).get("grade_id") for c in nb.cells)
            return {gid: i for i, gid in enumerate(ids) if gid}

        # Source order, so that a run of deleted cells comes back in its original order.
        for grade_cell in sorted(source_nb.grade_cells, key=lambda g: source_ids.index(g.name)):
            where = present()
            if grade_cell.name in where:
                continue
            self.log.warning(
                "Missing grade cell %s encountered, adding to notebook", grade_cell.name
            )
            cell = self.missing_cell_transform(
                source_by_id[grade_cell.name],
                grade_cell.max_score,
                is_solution=grade_cell.name in solution_ids,
            )
            cell["id"] = f"restored-{grade_cell.name}"[:64]  # nbformat 4.5 requires cell ids
            before = source_ids[: source_ids.index(grade_cell.name)]
            anchor = next((where[name] for name in reversed(before) if name in where), -1)
            nb.cells.insert(anchor + 1, cell)
        return nb, resources


class SaveAutoGrades(_RowsOfOneNotebook, nbgrader_preprocessors.SaveAutoGrades):
    """nbgrader's SaveAutoGrades, in one transaction per notebook.

    Stock, each graded or answer cell costs one or two queries and a commit; here a notebook's
    grades and comments are read in two queries and written in one commit (``NotebookRows``), so
    its scores land together or not at all.
    """

    one_transaction = True


class CheckCellMetadata(nbgrader_preprocessors.CheckCellMetadata):
    """nbgrader's CheckCellMetadata, run once per distinct set of cell metadata in a process.

    nbgrader re-compiles its JSON schema for every cell it validates (``jsonschema.validate``),
    twice per graded notebook; a class's notebooks mostly carry the same metadata as the release.
    The verdict depends only on each nbgrader cell's type and metadata, so a set that validated
    once validates again. A set with a changed cell type is always re-validated, so that its
    warning is logged for every student.
    """

    _valid: set[str] = set()

    def preprocess(self, nb, resources):
        cells = [(c.cell_type, c.metadata.get("nbgrader")) for c in nb.cells]
        cells = [(kind, meta) for kind, meta in cells if meta is not None]
        changed = any(isinstance(m, dict) and m.get("cell_type", k) != k for k, m in cells)
        try:
            key = json.dumps(cells, sort_keys=True)
        except (TypeError, ValueError):
            key = None
        if key is not None and key in self._valid:
            return nb, resources
        nb, resources = super().preprocess(nb, resources)
        if key is not None and not changed:
            self._valid.add(key)
        return nb, resources


#: ``resources`` key by which ``SkipDemoCells`` asks ``HardenedExecute`` to draw this notebook's
#: figures (``render_plots`` for one notebook).
RENDER_PLOTS = "toeplitz_render_plots"


def awaits_a_person(nb) -> bool:
    """Whether a person will grade a cell of the (restored) notebook ``nb``: a task, or a
    manually graded answer nbgrader does not score by itself. nbgrader's own rule
    (``utils.determine_grade``) scores an answer still as released (its checksum the release's)
    0, and so nobody is shown it for grading. A cell it cannot judge counts as a person's."""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader") or {}
        if meta.get("task"):
            return True
        if meta.get("grade") and meta.get("solution"):
            try:
                if utils.determine_grade(cell)[0] is None:
                    return True
            except (KeyError, TypeError, ValueError):
                return True
    return False


class SkipDemoCells(NbGraderPreprocessor):
    """Tag the instructor's demonstration cells so that nbclient does not execute them.

    Demonstrations (cells tagged ``demo`` in ``source/``, and so in the release students start
    from, which is where they are read: grading needs nothing of ``source/``, which a grading
    machine on a cluster does not have) draw and print for the student and earn nothing;
    building their figures is most of a notebook's grading time. A cell is skipped only
    when its source is the instructor's demonstration, unchanged, and no cell that runs reads a
    name it would have bound (``demos.skippable``). It gets nbclient's skip tag (the same
    ``skip-execution`` that ``ResetExecutionTags`` removed from every student cell before) and a
    one-line note as its output, which the student sees in the feedback.

    A notebook in which a person grades a cell (``demos.graded_by_hand`` on the release: ex3_4)
    is the exception: the demonstrations that draw the pictures that cell is about run (those
    using pyplot between the last autograded test and that cell: ``demos.figures_graded_by_hand``),
    with any other demonstration they read a name from, and figures are drawn
    (``RENDER_PLOTS`` for ``HardenedExecute``), so that the formgrader and the feedback show the
    grader's own pictures of the student's code, the ones the written answer is about. The
    student's outputs are never kept: ``ClearOutput`` removed them, and a picture in a hand-in
    proves nothing. A written answer the student left as released is nobody's to read (nbgrader
    scores it 0 by itself: ``awaits_a_person``), so its pictures are skipped like any other
    demonstration.
    """

    enabled = Bool(True, help="Skip demonstrations; off: run every cell.").tag(config=True)
    run_where_graded_by_hand = Bool(
        True,
        help="In a notebook with a manually graded cell, run the demonstrations that draw above "
        "that cell (since the last autograded test), with what they need, and draw their "
        "figures, so that the person grading sees them.",
    ).tag(config=True)
    demo_tag = Unicode(demos.DEMO_TAG, help="The tag of a demonstration in the release.").tag(
        config=True
    )
    skip_tag = Unicode(
        "skip-execution", help="The tag nbclient skips (Execute.skip_cells_with_tag)."
    ).tag(config=True)
    note = Unicode(
        "(A demonstration: the grader does not run it. Run it yourself to see it.)\n"
    ).tag(config=True)

    _cache: dict[tuple[str, int], tuple[set[str], bool]] = {}

    def preprocess(self, nb, resources):
        if not self.enabled:
            return nb, resources
        found, by_hand, figures = self._release_info(resources)
        if by_hand and self.run_where_graded_by_hand and awaits_a_person(nb):
            # The figures the person grading looks at run and are drawn, with whatever they
            # need; the notebook's other demonstrations are skipped as anywhere else.
            resources[RENDER_PLOTS] = True
            found = found - figures
        # Every code cell counts for what it reads; only plain cells can be skipped.
        code = [c for c in nb.cells if c.cell_type == "code"]
        for i in demos.skippable([c.source for c in code], found) if found else ():
            cell = code[i]
            if utils.is_grade(cell) or utils.is_solution(cell):
                continue
            cell.metadata["tags"] = [*cell.metadata.get("tags", []), self.skip_tag]
            cell.outputs = [NotebookNode(output_type="stream", name="stdout", text=self.note)]
            cell.execution_count = None
        return nb, resources

    def _release_info(self, resources) -> tuple[set[str], bool, set[str]]:
        """The release notebook's demonstrations, whether a person grades a cell of it, and
        the demonstrations that person looks at (read once per version)."""
        from nbgrader.coursedir import CourseDirectory

        info = resources.get("nbgrader", {})
        coursedir = CourseDirectory(config=self.config)
        folder = coursedir.format_path(coursedir.release_directory, ".", info.get("assignment", ""))
        path = os.path.join(folder, f"{info.get('notebook', '')}.ipynb")
        try:
            key = (path, os.stat(path).st_mtime_ns)
        except OSError:
            self.log.warning("No release notebook %s: every cell runs", path)
            return set(), False, set()
        if key not in self._cache:
            with open(path, encoding="utf-8") as f:
                release = json.load(f)
            self._cache[key] = (
                demos.demo_sources(release, self.demo_tag),
                demos.graded_by_hand(release),
                demos.figures_graded_by_hand(release, self.demo_tag),
            )
        return self._cache[key]


class HardenedExecute(Execute):
    """nbgrader's Execute that always returns a scored notebook.

    * outputs beyond ``max_output_bytes`` per cell are dropped as they arrive, so a print loop can
      neither fill the grader's memory nor the autograded file;
    * a dead kernel (``os._exit``, a crash) or a cell that outlives its timeout even after an
      interrupt is recorded as an error on that cell, and the cells after it are left unexecuted,
      instead of failing the notebook and the student's other work with it;
    * ``notebook_deadline`` bounds the whole notebook;
    * a kernel that dies before it answers its first request is replaced, up to
      ``startup_attempts`` kernels: no cell has run yet, so it is never the student's doing (a
      port taken by another process between jupyter_client choosing it and the kernel binding
      it, with several graders on one machine).

    Unexecuted test cells earn nothing: VerifyAnswers requires each to have reported an answer.
    """

    max_output_bytes = Integer(
        200_000, help="Output kept per cell, in bytes of text; the rest is dropped."
    ).tag(config=True)
    max_answers = Integer(
        4,
        help="Answer-channel outputs per cell kept outside max_output_bytes (a test cell sends "
        "one; VerifyAnswers refuses a cell with more than one).",
    ).tag(config=True)
    max_answer_bytes = Integer(
        4_000_000,
        help="Largest answer-channel output kept outside max_output_bytes (the course's largest "
        "payload, a function probed on every case, is well under a tenth of this).",
    ).tag(config=True)
    max_notebook_output_bytes = Integer(
        4_000_000,
        help="Output kept per notebook, in bytes of text, answers aside: max_output_bytes per "
        "cell alone would let a notebook of many cells fill the autograded file and its "
        "feedback page.",
    ).tag(config=True)
    notebook_deadline = Float(
        300.0, help="Seconds after which the remaining cells of a notebook are not executed."
    ).tag(config=True)
    render_plots = Bool(
        False,
        help="Render matplotlib figures into the autograded notebook. Off: kernels use the Agg "
        "backend, figures are built but never drawn, which halves the time of this course's "
        "notebooks. Grades never depend on plots.",
    ).tag(config=True)

    startup_attempts = Integer(
        3, help="Kernels started for a notebook when they die before answering (no cell ran)."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # nbgrader's Execute passes kernel_manager_class=AsyncKernelManager as a keyword argument,
        # which beats config: honour the configured class (warm kernels) explicitly.
        from .warmkernel import configured_kernel_manager_class

        cls = configured_kernel_manager_class(self)
        if cls is not None:
            self.kernel_manager_class = cls
        self._sandbox = sandbox.Sandbox(parent=self)
        if self._sandbox.enabled and not issubclass(self.kernel_manager_class, WarmKernelManager):
            # Only warm kernels are confined: never run student code unconfined by accident.
            raise sandbox.SandboxUnavailable(
                f"c.HardenedExecute.kernel_manager_class = {self.kernel_manager_class!r} cannot "
                "be sandboxed; use toeplitz_course.grader.warmkernel.WarmKernelManager"
            )

    async def async_start_new_kernel_client(self):
        for attempt in range(1, self.startup_attempts + 1):
            try:
                return await super().async_start_new_kernel_client()
            except RuntimeError as exc:  # nbclient: "Kernel died before replying to kernel_info"
                # nbclient has shut the dead kernel down and dropped its client and manager. A
                # manager passed in by the caller is the caller's to replace.
                if attempt == self.startup_attempts or not self.owns_km:
                    raise
                self.log.warning(
                    "The kernel died while starting (%s); starting kernel %d of at most %d",
                    exc,
                    attempt + 1,
                    self.startup_attempts,
                )
                if self.km is None:
                    self.km = self.create_kernel_manager()
                await self.async_start_new_kernel()
        raise AssertionError("unreachable")

    # nbclient binds the synchronous form, which nbconvert's preprocess uses, to its own method.
    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def preprocess(self, nb, resources=None, km=None):
        self._stopped: str | None = None
        self._started = time.monotonic()
        self._sizes: dict[int, int] = {}
        self._total = 0  # bytes of output, answers aside, of the whole notebook
        self._truncated: set[int] = set()  # cells told their output was cut
        self._answers: dict[int, int] = {}
        # The kernel reads its backend from the environment it is started with.
        saved = os.environ.get("MPLBACKEND")
        if not (self.render_plots or (resources or {}).get(RENDER_PLOTS)):
            os.environ["MPLBACKEND"] = "agg"
        try:
            return super().preprocess(nb, resources, km)
        finally:
            if saved is None:
                os.environ.pop("MPLBACKEND", None)
            else:
                os.environ["MPLBACKEND"] = saved

    def preprocess_cell(self, cell, resources, index):
        if self._stopped:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
            return cell, resources
        if time.monotonic() - self._started > self.notebook_deadline:
            self._stop(cell, "NotebookTimeout", "the notebook ran past the grader's time limit")
            return cell, resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            if self._kernel_exit() in (sandbox.CPU_LIMIT_EXIT, -signal.SIGXCPU):
                self._stop(cell, "SandboxLimit", self._limit_text("cpu", index))
            else:
                self._stop(cell, "DeadKernelError", "the kernel died while running this cell")
            return cell, resources
        except (CellTimeoutError, TimeoutError, RuntimeError) as exc:
            self._stop(cell, "CellTimeoutError", f"the cell did not finish in time ({exc})")
            return cell, resources
        if cell.cell_type == "code":
            self._explain_timeout(cell, index)
        if self._sandbox.enabled and cell.cell_type == "code":
            for out in cell.get("outputs", []):
                kind = out.get("output_type") == "error" and sandbox.limit_hit(
                    str(out.get("ename", "")), str(out.get("evalue", ""))
                )
                if kind:
                    self._stop(cell, "SandboxLimit", self._limit_text(kind, index))
                    break
        return cell, resources

    def _explain_timeout(self, cell, index: int) -> None:
        """nbgrader's timeout error (an empty ``CellTimeoutError``, after the interrupt's
        ``KeyboardInterrupt``) as one error that names the limit, the cell and what to do."""
        outputs = cell.get("outputs", [])
        if not any(o.get("ename") == "CellTimeoutError" for o in outputs):
            return
        evalue = (
            f"cell {index + 1} did not finish within the grader's limit of {self.timeout} s per "
            "cell. Something in it runs too long: a loop that never ends, or a function that is "
            "slow (the hidden test calls it on many cases: no prints in loops, build the matrix "
            "directly). Run the cell yourself: it should finish in a second or two."
        )
        cell.outputs = [
            o
            for o in outputs
            if o.get("output_type") != "error"
            or o.get("ename") not in ("CellTimeoutError", "KeyboardInterrupt")
        ]
        cell.outputs.append(_error_output("CellTimeoutError", evalue))

    def _limit_text(self, kind: str, index: int) -> str:
        return f"{self._sandbox.describe_limit(kind)} reached in cell {index + 1}"

    def _kernel_exit(self) -> int | None:
        """The dead kernel's exit status, as a warm kernel's provisioner saw it."""
        provisioner = getattr(self.km, "provisioner", None)
        warm = getattr(provisioner, "_warm", None)
        if warm is not None:
            return warm.poll()
        return getattr(provisioner, "exit_code", None)

    def _stop(self, cell, ename: str, evalue: str) -> None:
        self._stopped = ename
        self.log.warning("Stopping execution: %s", evalue)
        cell.setdefault("outputs", []).append(_error_output(ename, evalue))

    # The hidden test's answer stays an output of its cell whatever the student's code does after
    # it: the check under it calls their function again, and a clear_output there (a progress
    # display, IPython.display.clear_output) would erase it, or clear it and leave an answer of
    # their own making as the only one. nbclient's Output-widget emulation would do the same by
    # capturing the cell's later outputs into a widget the student's code opens. So a clear keeps
    # the answers, and no widget captures outputs (grading shows no widget; their state is dropped).

    def _is_test_cell(self, cell_index: int) -> bool:
        cells = self.nb.cells
        return 0 <= cell_index < len(cells) and is_autograder_test(cells[cell_index])

    def on_comm_open_jupyter_widget(self, msg):
        return None

    def clear_output(self, outs, msg, cell_index):
        if msg.get("content", {}).get("wait"):
            self.clear_before_next_output = True  # done by output(), with the next output
        else:
            self._clear_keeping_answers(outs, cell_index)

    def _clear_keeping_answers(self, outs, cell_index) -> None:
        outs[:] = [o for o in outs if answers.is_answer(o)]
        self.clear_display_id_mapping(cell_index)
        self.clear_before_next_output = False

    def output(self, outs, msg, display_id, cell_index):
        if self.clear_before_next_output:
            self._clear_keeping_answers(outs, cell_index)
        content = msg.get("content", {})
        size = len(str(content.get("text", ""))) + sum(
            len(str(v)) for v in content.get("data", {}).values()
        )
        # A hidden test's answer is not the student's output: their debug prints must not push it
        # past the cap. It has a budget of its own (a few answers, each at most a bounded size),
        # so a flood of forged answers is capped like any other output. Only in a test cell:
        # elsewhere an answer is no answer, and would be memory held for nothing.
        if (
            msg.get("msg_type") == "display_data"
            and channel.MIME in content.get("data", {})
            and self._is_test_cell(cell_index)
        ):
            answers_sent = self._answers.get(cell_index, 0)
            if answers_sent < self.max_answers and size <= self.max_answer_bytes:
                self._answers[cell_index] = answers_sent + 1
                return super().output(outs, msg, display_id, cell_index)
        used = self._sizes.get(cell_index, 0)
        self._sizes[cell_index] = used + size
        self._total += size
        if used + size > self.max_output_bytes or self._total > self.max_notebook_output_bytes:
            if cell_index not in self._truncated:
                self._truncated.add(cell_index)
                outs.append(
                    NotebookNode(
                        output_type="stream",
                        name="stdout",
                        text="\n... output truncated by the grader ...\n",
                    )
                )
            return None
        return super().output(outs, msg, display_id, cell_index)


class VerifyAnswers(NbGraderPreprocessor):
    """Score every autograded test cell by the grader's own verification of its answer.

    A hidden test sends the probed answer on the answer channel (``toeplitz_course.channel``). In
    the grader's process, outside the reach of student code, this preprocessor re-runs
    ``checks.verify`` on it. A test cell keeps its points only when it ran, reported exactly one
    answer for its own grade id, raised nothing, and the answer verifies. Before SaveAutoGrades it
    also rewrites the cell's outputs into what nbgrader should score: stderr becomes stdout (a
    library warning is not a failure), results and displays that could carry a partial-credit
    number are dropped, and a failed verdict becomes one error output with the teaching message.

    Answers are judged for the course's variant (``c.Course.variant``); an answer that is right
    for another one (``c.Course.previous_variants``, the default) fails like any wrong answer and
    its verdict names that variant (``old_variant``, flagged by ``integrity.scan``).
    """

    def preprocess_cell(self, cell, resources, index):
        if not is_autograder_test(cell):
            return cell, resources
        grade_id = cell.metadata.nbgrader["grade_id"]
        messages = answers.payloads(cell)
        answers.strip(cell)

        outputs, errors = [], []
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                outputs.append(NotebookNode(output_type="stream", name="stdout", text=out.text))
            elif kind == "error":
                errors.append(out)
            elif kind == "display_data" and "image/png" in out.get("data", {}):
                outputs.append(out)
        verdict = self._verdict(grade_id, messages, errors, executed=cell.get("execution_count"))
        judged = verdict.pop("judged", None)
        if verdict["passed"]:
            cell.outputs = outputs
        elif judged is not None and not any(e.get("evalue") == judged for e in errors):
            # The grader's own diagnosis replaces whatever the kernel raised (a sandboxed kernel
            # cannot verify, and its visible tests may have failed with a vaguer message).
            cell.outputs = outputs + [_error_output(_FAILURE, judged)]
        elif errors:
            cell.outputs = outputs + errors
        else:
            cell.outputs = outputs + [_error_output("AssertionError", verdict["message"])]
        cell.metadata[VERDICT_KEY] = verdict
        return cell, resources

    def _variants(self):
        from pathlib import Path

        from . import verdicts
        from .coursedir import variant_settings

        if getattr(self, "_given", None) is None:
            name, previous = variant_settings(self.config)
            root = self.config.get("CourseDirectory", {}).get("root")
            record = verdicts.built_record(Path(root)) if root else None
            built = None if record is None else record[0]
            if record is not None and verdicts.drawn_otherwise(*record):
                raise RuntimeError(verdicts.drawn_otherwise_message(root, built))
            if built is not None and built != name:
                # Judging the release of one variant by another's numbers would fail every
                # right answer to 1.2, 3.2 and 3.3 (and flag it an old answer): refuse.
                raise RuntimeError(
                    f"c.Course.variant is {name!r} but source/ is in variant {built!r}: run "
                    "`make build` (and release the notebooks it makes) before grading"
                )
            self._given = verdicts.course_variants(name, previous)
        return self._given

    def _verdict(self, grade_id, messages, errors, executed) -> dict[str, Any]:
        from . import verdicts  # at first use, not at import: feedback needs neither it nor torch

        mine = [m for m in messages if m["grade_id"] == grade_id]
        reported_once = len(mine) == 1 and len(messages) == 1
        if reported_once:
            given, others = self._variants()
            try:
                verdicts.verify(grade_id, mine[0]["payload"], given, others)
            except verdicts.OldAnswer as exc:
                return {
                    "passed": False,
                    "message": f"{_FAILURE}: {exc}",
                    "judged": str(exc),
                    "old_variant": exc.variant,
                }
            except AssertionError as exc:
                return {"passed": False, "message": f"{_FAILURE}: {exc}", "judged": str(exc)}
            except Exception as exc:  # a malformed payload is a failed answer, never a grader crash
                return {
                    "passed": False,
                    "message": f"answer could not be checked ({type(exc).__name__})",
                }
        if errors:
            err = errors[-1]
            return {"passed": False, "message": f"{err.get('ename')}: {err.get('evalue')}"}
        if not executed and not messages:
            return {"passed": False, "message": "this test cell did not run"}
        if not reported_once:
            return {
                "passed": False,
                "message": "the hidden test did not report exactly one answer to the grader",
            }
        return {"passed": True, "message": ""}


class HideHiddenTests(NbGraderPreprocessor):
    """Remove hidden-test regions from every cell's source (feedback goes to students)."""

    begin = Unicode("### BEGIN HIDDEN TESTS").tag(config=True)
    end = Unicode("### END HIDDEN TESTS").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if self.begin not in cell.source:
            return cell, resources
        kept, hiding = [], False
        for line in cell.source.splitlines():
            if line.strip() == self.begin:
                hiding = True
            elif line.strip() == self.end:
                hiding = False
            elif not hiding:
                kept.append(line)
        cell.source = "\n".join(kept).rstrip()
        return cell, resources


class ShortenTracebacks(NbGraderPreprocessor):
    """An error in a graded cell shows ``Name: message`` only.

    IPython's traceback quotes the lines around the failing one, which in a test cell are the
    hidden tests (nbgrader #917, #1156, #1363).
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not utils.is_grade(cell):
            return cell, resources
        for out in cell.outputs:
            if out.output_type == "error":
                out.traceback = [f"{out.ename}: {out.evalue}"]
        return cell, resources
