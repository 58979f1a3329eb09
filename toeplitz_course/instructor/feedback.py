"""Per-student HTML feedback with nbgrader's ``GenerateFeedback``, students in parallel, and a leak
check on every page.

The feedback pipeline (``nbgrader_config.py``) hides hidden-test source and shortens tracebacks to
the test's own message. As a second line of defence, every page written is searched for each line
of every hidden test; a page that contains one is deleted and reported, never handed out.

Speed. Stock ``nbgrader generate_feedback`` builds a converter, an HTML exporter and its Jinja
environment (every template compiled again) for each student, opens the gradebook (a new engine,
its schema checked) for each notebook and looks each cell's grade and comment up in a query of
its own, validates the notebook after every preprocessor, highlights every code cell with
pygments, and then parses the whole page with BeautifulSoup (``html.parser``, in Python) only to
add ``alt`` to images that lack one and write it out again: half of its time. Here each process
keeps one converter (so one exporter and one compiled template) for all its students, the
gradebook engine is shared (``gradebook.share_engines``) and each notebook's grades and comments
are read in one query per kind (``gradebook.NotebookRows``), the notebook is validated once after
its preprocessors, a code cell's highlighting is computed once per distinct source, and the page's
BeautifulSoup pass is done per cell and remembered (``_SoupPass``): a cell that every student's
page shares (the course's text, its locked code, a right answer's test) is parsed once per
process, never again, and a cell of the student's own is written as html.parser reads it,
without building BeautifulSoup's tree (``soup_stream``), unless it holds markup whose text that
cannot reproduce exactly. The page written is the one stock writes, byte for byte
(``tests/test_feedback.py``); whatever ``_SoupPass`` cannot prove it renders the same way goes
through nbconvert's own code. Students are spread over worker processes as ``grade`` spreads them
(``grade.run_in_pool``), with the same progress bar, quiet terminal and Ctrl-C; the workers are
forks of this process after it has written the first student's pages (``_feedback_forked``), so
the warm-up (imports, compiled templates, the course's cells parsed) is paid once, not once per
worker after a server's imports.
"""

from __future__ import annotations

import collections
import copy
import functools
import html
import json
import logging
import os
import re
import signal
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import nbformat

from ..course.contract import ASSIGNMENT
from ..course.untrusted import for_terminal, is_student_id
from ..grader.coursedir import LOGS, Course, course_config, db_url
from .soup_stream import JUPYTERLAB_CLASS, NO_ALT, stream

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


#: Where each student's feedback log goes (nbgrader's messages, warnings), under the course.
FEEDBACK_LOGS = Path(LOGS) / "feedback"

#: What a feedback worker needs, imported once by the server the workers are forked from where
#: they cannot be forks of the command's own warmed process (``_feedback_forked``).
#: (``grader.preprocessors`` imports torch, through ``grader.verdicts``: 3 s that stock
#: ``GenerateFeedback`` with the course's configuration pays as well.)
FEEDBACK_PRELOAD = (
    "toeplitz_course.instructor.feedback",
    "toeplitz_course.grader.grade",
    "toeplitz_course.grader.preprocessors",
    "toeplitz_course.grader.sanitize",
    "toeplitz_course.grader.pages",
    "toeplitz_course.grader.formgrade",
    "nbgrader.converters",
    "nbgrader.preprocessors",
    "nbconvert.exporters",
    "nbconvert.filters",
    "nbconvert.preprocessors",
    "bs4",
    "soupsieve",
    "pygments.lexers.python",
    "pygments.formatters.html",
    "IPython.lib.lexers",
    "jinja2",
    "mistune",
    "sqlalchemy.dialects.sqlite",
    "sqlite3",
    "psutil",
)


#: Students per worker when ``jobs`` is not given. A worker costs about 2 s of machine time to
#: import (its server) and 2.5 s to write its first student's pages (every distinct cell of the
#: class parsed, the templates compiled), then about 0.25 s per student: below ten students a
#: second worker costs more than it saves, in machine time always and on the clock too
#: (benchmarks/README.md, 2026-12-07: at 6 students 6.9 s of machine time with one process
#: against 12.4-13.8 s with two workers). Measured again once workers became forks of the warmed
#: process (``_feedback_forked``, 2026-12-08): a second worker now costs no machine time, but at
#: 6 students it gains nothing on the clock either (4.4-4.9 s against 4.7-4.8 s); at 12 it is
#: 15 % faster, which this figure already gives. So it stands.
STUDENTS_PER_WORKER = 10


def default_jobs(students: int) -> int:
    """Worker processes for ``students`` students: one per ``STUDENTS_PER_WORKER`` students,
    at most one per core (one: no worker, the students one after another in this process)."""
    return max(1, min(os.cpu_count() or 1, -(-students // STUDENTS_PER_WORKER)))


def hidden_lines(source_dir: Path) -> set[str]:
    """Every non-blank line inside a hidden-test region of the instructor notebooks."""
    lines: set[str] = set()
    for path in sorted(source_dir.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                if line.strip() == BEGIN:
                    inside = True
                elif line.strip() == END:
                    inside = False
                elif inside and line.strip():
                    lines.add(line.strip())
    return lines


def page_text(page: str) -> str:
    """What a reader of an HTML page sees: tags removed, entities decoded."""
    text = re.sub(r"<style.*?</style>|<script.*?</script>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def leaks(page: str, secret_lines: set[str]) -> list[str]:
    text = page_text(page)
    squashed = re.sub(r"\s+", "", text)
    return sorted(s for s, bare in _squashed(frozenset(secret_lines)) if bare in squashed)


@functools.lru_cache(maxsize=4)
def _squashed(secret_lines: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """Each line with its whitespace removed, once per set of lines (not once per page)."""
    return tuple((s, re.sub(r"\s+", "", s)) for s in secret_lines)


@dataclass
class FeedbackRun:
    written: list[Path] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    students: int = 0  # how many the batch was to give feedback
    interrupted: bool = False  # stopped by Ctrl-C: ``written`` holds the pages written before

    def format(self) -> str:
        if self.interrupted:
            return (
                f"interrupted: {len(self.written)} feedback pages written before Ctrl-C, "
                f"of {self.students} students; run feedback again to write them all"
            )
        lines = [f"wrote {len(self.written)} feedback pages"]
        if self.students:
            students = "student" if self.students == 1 else "students"
            lines[0] += f" for {self.students} {students} in {self.seconds:.1f} s"
        # Student ids, page names and error texts are the student's: shown, never obeyed.
        for who, err in sorted(self.errors.items()):
            lines.append(f"  {for_terminal(who)}: {for_terminal(err)}")
        return "\n".join(lines)


class FeedbackInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``feedback``; every process it started is stopped, ``run`` says what was
    written. A KeyboardInterrupt, so that a caller that does not expect it stops too."""

    def __init__(self, run: FeedbackRun):
        super().__init__(run.format())
        self.run = run


# ---------------------------------------------------------------------------------------------
# the page: nbconvert's HTMLExporter, the same output with less work


class _SoupPass:
    """``str(BeautifulSoup(page, "html.parser"))`` with nbconvert's ``alt`` and ``tabindex``
    edits, as ``HTMLExporter.from_notebook_node`` does, done cell by cell and remembered.

    A page is its head, then its cells (each ``<div class="cell ...">`` at the start of a line,
    as nbconvert's classic template writes them), then its foot. BeautifulSoup's tree of the page
    is the tree of the head and foot with each cell's subtree in its place, and the page it
    writes is the same text with each cell's text in its place, whenever each cell's markup
    stands on its own: every tag it opens it closes, it closes no tag it did not open, the
    parser ends it in its plain text state (no tag, comment or ``<script>`` left open), and it
    does not start inside ``<pre>`` or a ``<script>``/``<style>`` (whose text BeautifulSoup
    keeps as is). Each of these is checked as the cell is parsed; whitespace between tags stays
    with the cell before it, so no text run of BeautifulSoup's is split. The ``tabindex`` edits
    apply only to JupyterLab's classes (``jp-Notebook`` and inside it), which classic pages do
    not have: a page in which any element's class names one goes the stock way. So does any page
    a check fails for. Results are kept per cell text (at most ``limit`` of them).
    """

    CELL = '\n<div class="cell border-box-sizing '
    MARK = "toeplitz-course-cells-go-here-8f2c1e"

    def __init__(self, limit: int = 4000):
        self.cells: collections.OrderedDict[str, tuple[str, int] | None] = collections.OrderedDict()
        self.limit = limit
        self.fast = self.stock = 0  # pages done each way

    # -- stock -----------------------------------------------------------------------------------

    @staticmethod
    def stock_pass(page: str, log: logging.Logger) -> str:
        """nbconvert 7's ``HTMLExporter.from_notebook_node`` after the template, verbatim."""
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(page, features="html.parser")
        missing_alt = 0
        for elem in soup.select("img:not([alt])"):
            elem.attrs["alt"] = "No description has been provided for this image"
            missing_alt += 1
        if missing_alt:
            log.warning("Alternative text is missing on %s image(s).", missing_alt)
        for elem in soup.select(".jp-Notebook div.jp-Cell-inputWrapper"):
            elem.attrs["tabindex"] = "0"
        for elem in soup.select(".jp-Notebook div.jp-OutputArea-output"):
            elem.attrs["tabindex"] = "0"
        return str(soup)

    # -- cell by cell ----------------------------------------------------------------------------

    def __call__(self, page: str, log: logging.Logger) -> str:
        out = self._fast(page)
        if out is None:
            self.stock += 1
            return self.stock_pass(page, log)
        text, missing_alt = out
        if missing_alt:
            log.warning("Alternative text is missing on %s image(s).", missing_alt)
        self.fast += 1
        return text

    def _fast(self, page: str) -> tuple[str, int] | None:
        starts, at = [], page.find(self.CELL)
        while at >= 0:
            starts.append(at + 1)
            at = page.find(self.CELL, at + 1)
        if len(starts) < 2:
            return None
        # The last cell stays with the foot: where it ends is not known without parsing.
        pieces = []
        missing = 0
        for begin, end in zip(starts, starts[1:], strict=False):
            done = self._remembered(page[begin:end])
            if done is None:
                return None
            pieces.append(done[0])
            missing += done[1]
        frame = self._remembered(
            page[: starts[0]] + f"<!--{self.MARK}-->" + page[starts[-1] :], self.MARK
        )
        if frame is None:
            return None
        text, frame_missing = frame
        marker = f"<!--{self.MARK}-->"
        if text.count(marker) != 1:
            return None
        return text.replace(marker, "".join(pieces)), missing + frame_missing

    def _remembered(self, markup: str, mark: str | None = None) -> tuple[str, int] | None:
        """``_parse(markup, mark)``, remembered (a frame, marked, is never a cell's text)."""
        if markup in self.cells:
            self.cells.move_to_end(markup)
            return self.cells[markup]
        done = _parse(markup, mark)
        self.cells[markup] = done
        if len(self.cells) > self.limit:
            self.cells.popitem(last=False)
        return done


def _parse(markup: str, mark: str | None = None) -> tuple[str, int] | None:
    """BeautifulSoup's text of ``markup`` with the ``alt`` edit, and the images it edited; None
    unless ``markup`` stands on its own (``_SoupPass``), or, with ``mark``, unless the comment
    ``mark`` is outside ``<pre>``, ``<script>`` and ``<style>``."""
    if mark is None:
        streamed = stream(markup)
        if streamed is not None:
            return streamed
    return _through_the_tree(markup, mark)


def _through_the_tree(markup: str, mark: str | None = None) -> tuple[str, int] | None:
    """``_parse`` by BeautifulSoup's tree, what ``soup_stream`` must equal where it answers."""
    soup = _fragment_soup()(markup, mark)
    if not soup.standalone:
        return None
    if any(
        JUPYTERLAB_CLASS.match(c)
        for tag in soup.find_all(class_=True)
        for c in tag.get_attribute_list("class")
    ):
        return None  # JupyterLab's classes: nbconvert's tabindex edits may apply
    missing = 0
    for elem in soup.select("img:not([alt])"):
        elem.attrs["alt"] = NO_ALT
        missing += 1
    return str(soup), missing


_FRAGMENT_SOUP = None


def _fragment_soup():
    """The BeautifulSoup subclass that checks a fragment stands on its own (built on first use:
    it imports bs4)."""
    global _FRAGMENT_SOUP
    if _FRAGMENT_SOUP is not None:
        return _FRAGMENT_SOUP
    from bs4 import BeautifulSoup, Comment
    from bs4.builder._htmlparser import BeautifulSoupHTMLParser, HTMLParserTreeBuilder

    class Parser(BeautifulSoupHTMLParser):
        def close(self):
            # Before the end of input flushes it: anything left unparsed (a tag, a comment,
            # a character reference cut short) or a <script>/<style> still open.
            self.soup.standalone &= not self.rawdata and self.cdata_elem is None
            super().close()

    class Builder(HTMLParserTreeBuilder):
        def feed(self, markup, _parser_class=Parser):
            super().feed(markup, _parser_class=Parser)

    class Fragment(BeautifulSoup):
        def __init__(self, markup: str, mark: str | None = None):
            self.standalone = True
            self._mark = mark
            self._mark_seen = mark is None
            super().__init__(markup, builder=Builder())

        def handle_endtag(self, name, nsprefix=None):
            # A tag closed that this fragment did not open would close one of the page's.
            if self._mark is None and not self.open_tag_counter.get(name):
                self.standalone = False
            super().handle_endtag(name, nsprefix)

        def endData(self, containerClass=None):
            if self._mark is not None and containerClass is Comment and self.current_data:
                if "".join(self.current_data) == self._mark:
                    self._mark_seen = True
                    if self.preserve_whitespace_tag_stack or self.string_container_stack:
                        self.standalone = False
            super().endData(containerClass)

        def _feed(self):
            self.builder.reset()
            if self.markup is not None:
                self.builder.feed(self.markup)
            self.endData()
            if self._mark is None and self.currentTag is not self:
                self.standalone = False  # a tag left open
            self.standalone &= self._mark_seen
            while self.currentTag is not None and self.currentTag.name != self.ROOT_TAG_NAME:
                self.popTag()

    _FRAGMENT_SOUP = Fragment
    return Fragment


@dataclass
class _Classes:
    exporter: Any
    converter: Any


_CLASSES: _Classes | None = None


def _classes() -> _Classes:
    """nbgrader's GenerateFeedback and nbconvert's HTMLExporter, adapted (built on first use:
    they import nbconvert and nbgrader)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import jinja2
    import nbformat as nbf
    from nbconvert.exporters import HTMLExporter, TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
    from nbgrader.converters import GenerateFeedback
    from nbgrader.preprocessors import GetGrades
    from traitlets import Type

    from ..grader.preprocessors import _RowsOfOneNotebook

    class RowsGetGrades(_RowsOfOneNotebook, GetGrades):
        """nbgrader's GetGrades, each notebook's grades and comments read in one query per
        kind (``gradebook.NotebookRows``): the same rows, found the same way; one ``Gradebook``
        per process (nbgrader opens one per notebook; closing it ends its session, and the
        next notebook's starts a new one)."""

        def preprocess(self, nb, resources):
            # GetGrades.preprocess, verbatim but for where the Gradebook comes from.
            self.notebook_id = resources["nbgrader"]["notebook"]
            self.assignment_id = resources["nbgrader"]["assignment"]
            self.student_id = resources["nbgrader"]["student"]
            self.db_url = resources["nbgrader"]["db_url"]
            if self.db_url not in _GRADEBOOKS:
                from ..grader.gradebook import open_gradebook

                _GRADEBOOKS[self.db_url] = open_gradebook(self.db_url)
            self.gradebook = _GRADEBOOKS[self.db_url]
            with self.gradebook:
                self._load_rows()
                nb, resources = super(GetGrades, self).preprocess(nb, resources)
                notebook = self.gradebook.find_submission_notebook(
                    self.notebook_id, self.assignment_id, self.student_id
                )
                late_penalty = notebook.late_submission_penalty
                if late_penalty is None:
                    late_penalty = 0
                else:
                    self.log.warning(f"Late submission penalty: {late_penalty}")
                resources["nbgrader"]["score"] = notebook.score - late_penalty
                resources["nbgrader"]["max_score"] = notebook.max_score
                resources["nbgrader"]["late_penalty"] = late_penalty
            return nb, resources

        def _load_rows(self) -> None:
            """The notebook's grades (score, max_score) and comments by cell name, one query
            each, with the values nbgrader's ``find_grade`` and ``find_comment`` rows give (the
            same column expressions; where two cells of a notebook share a name, the one they
            look up first wins: a grade cell's grade, a solution cell's comment). nbgrader
            looks each cell up on its own, and ``Grade.max_score`` is a deferred column: a
            query more per grade cell."""
            from nbgrader import api

            from ..grader.gradebook import of_submission

            db = self.gradebook.db
            found = {}
            for row, columns, first in (
                (api.Grade, (api.Grade.score, api.Grade.max_score), "GradeCell"),
                (api.Comment, (api.Comment.comment,), "SolutionCell"),
            ):
                query = (
                    db.query(api.BaseCell.name, *columns)
                    .join(api.BaseCell, api.BaseCell.id == row.cell_id)
                    .order_by(api.BaseCell.type == first)  # the one looked up first, last
                )
                query = of_submission(query, row, self.assignment_id, self.student_id)
                found[row] = {
                    name: values
                    for name, *values in query.filter(api.Notebook.name == self.notebook_id)
                }
            self._grades, self._comments = found[api.Grade], found[api.Comment]

        def _get_score(self, cell, resources):
            found = self._grades.get(cell.metadata["nbgrader"]["grade_id"])
            if found is None:  # nbgrader's own lookup, and its MissingEntry
                return super()._get_score(cell, resources)
            cell.metadata.nbgrader["score"], cell.metadata.nbgrader["points"] = found
            return None

        def _get_comment(self, cell, resources):
            found = self._comments.get(cell.metadata["nbgrader"]["grade_id"])
            if found is None:
                return super()._get_comment(cell, resources)
            (cell.metadata.nbgrader["comment"],) = found
            return None

    class SameHighlight:
        """nbconvert's ``highlight_code`` filter, computed once per (source, language)."""

        def __init__(self, highlight):
            self.highlight = highlight
            self.done: dict[tuple, str] = {}

        def __call__(self, source, language=None, metadata=None):
            magic = (metadata or {}).get("magics_language")
            key = (source, language, magic, self.highlight.pygments_lexer)
            if key not in self.done:
                if len(self.done) > 20000:
                    self.done.clear()
                self.done[key] = self.highlight(source, language, metadata)
            return self.done[key]

    class SameMarkdown:
        """The ``markdown2html`` filter (nbconvert's, or ours that cleans its result), computed
        once per (source, the cell's attachments): all it reads, with the notebook's folder
        when the exporter embeds images (``embed_images``: it reads the files they name)."""

        jinja_pass_arg = jinja2.pass_context(lambda: None).jinja_pass_arg

        def __init__(self, markdown):
            self.markdown = markdown
            self.done: dict[tuple, str] = {}

        def __call__(self, context, source):
            cell = context.get("cell", {})
            attachments = json.dumps(cell.get("attachments", {}), sort_keys=True)
            path = ""
            exporter = getattr(self.markdown, "__self__", None) or self.markdown.parent
            if exporter.embed_images:
                path = context.get("resources", {}).get("metadata", {}).get("path", "")
            key = (source, attachments, path)
            if key not in self.done:
                if len(self.done) > 20000:
                    self.done.clear()
                self.done[key] = self.markdown(context, source)
            return self.done[key]

    class FeedbackExporter(HTMLExporter):
        """nbconvert's HTMLExporter, writing the same page: validated once, after the last
        preprocessor (stock: after each, and the page is the same when the last passes),
        highlighting remembered, BeautifulSoup's pass per cell (``_SoupPass``)."""

        def _preprocess(self, nb, resources):
            # Exporter._preprocess with ``optimistic_validation`` (nbconvert's own switch:
            # validated after the last preprocessor, not after each), and without its deep copy
            # of the notebook, which is already Exporter.from_notebook_node's deep copy.
            resc = copy.deepcopy(resources)
            _, nbc = nbf.validator.normalize(nb)
            for preprocessor in self._preprocessors:
                nbc, resc = preprocessor(nbc, resc)
            self._validate_preprocessor(nbc, preprocessor)
            return nbc, resc

        def _create_environment(self):
            environment = super()._create_environment()
            markdown = environment.filters.get("markdown2html")
            if type(markdown).__name__ == "SafeMarkdown" or (
                getattr(markdown, "__func__", None) is HTMLExporter.markdown2html
            ):
                environment.filters["markdown2html"] = SameMarkdown(markdown)
            return environment

        def from_notebook_node(self, nb, resources=None, **kw):
            # HTMLExporter.from_notebook_node, with the two changes above.
            langinfo = nb.metadata.get("language_info", {})
            lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
            highlights = self.__dict__.setdefault("_toeplitz_highlights", {})
            if lexer not in highlights:
                highlights[lexer] = SameHighlight(Highlight2HTML(pygments_lexer=lexer, parent=self))
            highlight_code = self.filters.get("highlight_code", highlights[lexer])
            resources = self._init_resources(resources)
            filter_data_type = WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self, resources=resources
            )
            self.register_filter("highlight_code", highlight_code)
            self.register_filter("filter_data_type", filter_data_type)
            page, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
            soup_pass = self.__dict__.setdefault("_toeplitz_soup", _SoupPass())
            return soup_pass(page, self.log), resources

    class ReusedFeedback(GenerateFeedback):
        """nbgrader's GenerateFeedback for one student after another: ``start()`` for the
        student ``coursedir.student_id`` names, with the exporter (its templates compiled, its
        preprocessors constructed) and the writer of the first."""

        exporter_class = Type(FeedbackExporter, klass=HTMLExporter).tag(config=True)
        _built = False

        def start(self) -> None:
            self.init_notebooks()
            if not self._built:
                from nbconvert.writers import FilesWriter

                self.writer = FilesWriter(parent=self, config=self.config)
                self.exporter = self.exporter_class(parent=self, config=self.config)
                for pp in self.preprocessors:
                    if pp in (GetGrades, "nbgrader.preprocessors.GetGrades"):
                        pp = RowsGetGrades  # noqa: PLW2901
                    self.exporter.register_preprocessor(pp)
                self._built = True
            currdir = os.getcwd()
            os.chdir(self.coursedir.root)
            try:
                self.convert_notebooks()
            finally:
                os.chdir(currdir)

    _CLASSES = _Classes(FeedbackExporter, ReusedFeedback)
    return _CLASSES


#: The gradebook GetGrades reads, one per process: {url: Gradebook}.
_GRADEBOOKS: dict[str, Any] = {}

#: One converter per process and course: {root: converter}.
_CONVERTERS: dict[Path, Any] = {}


def _converter(root: Path) -> Any:
    if root not in _CONVERTERS:
        from nbgrader.coursedir import CourseDirectory

        cfg = course_config(
            root,
            **{
                "CourseDirectory.db_url": db_url(root),
                "CourseDirectory.assignment_id": ASSIGNMENT,
                "GenerateFeedback.force": True,
            },
        )
        log = _current_log()
        coursedir = CourseDirectory(config=cfg, log=log)
        _CONVERTERS[root] = _classes().converter(coursedir=coursedir, config=cfg, log=log)
    return _CONVERTERS[root]


def _current_log() -> logging.Logger:
    """The logger of the process's converter, its exporter and preprocessors: it writes to the
    log of the student whose feedback is being written (``feedback_student``)."""
    log = logging.getLogger("toeplitz_course.feedback")
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def feedback_student(root: Course | Path | str, student: str, secrets: set[str]) -> dict:
    """Write one student's feedback pages and check each for hidden tests; never raises for
    anything the student's notebooks hold. Returns ``{"written": [...], "errors": {...}}``.

    ``root``: the course (a worker is handed the ``Course`` with each student, so it never
    executes ``nbgrader_config.py`` itself) or its folder."""
    course = Course.of(root)
    with course.in_use():
        return _feedback_student(course.root, student, secrets)


def _feedback_student(root: Path, student: str, secrets: set[str]) -> dict:
    from ..grader import grade as grading

    log = grading._logger(root, student, FEEDBACK_LOGS, step="feedback")
    # nbgrader's messages about this student go to the student's log.
    _current_log().handlers[:] = log.handlers
    converter = _converter(root)
    converter.coursedir.student_id = student
    errors: dict[str, str] = {}
    written: list[str] = []
    try:
        converter.start()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one student's feedback never stops the rest
        log.exception("feedback for %s failed", student)
        errors[student] = f"{type(exc).__name__}: {str(exc)[:300]}"
    for page in sorted((root / "feedback" / student / ASSIGNMENT).glob("*.html")):
        found = leaks(page.read_text(encoding="utf-8"), secrets)
        if found:
            page.unlink()
            errors[f"{student}/{page.name}"] = f"withheld: shows hidden test {found[0]!r}"
        else:
            written.append(str(page))
    return {"written": written, "errors": errors}


# ---------------------------------------------------------------------------------------------
# a class


def _graded_students(root: Path) -> list[str]:
    graded = root / "autograded"
    if not graded.is_dir():
        return []
    return sorted(p.name for p in graded.iterdir() if (p / ASSIGNMENT).is_dir())


def feedback(
    root: Course | Path | str = ".",
    students: list[str] | None = None,
    *,
    jobs: int | None = None,
    progress: bool = True,
) -> FeedbackRun:
    """Feedback pages for ``students`` (default: everyone in ``autograded/``) in ``jobs`` worker
    processes (default: ``default_jobs``, one per core for a class of 20 or more), with a
    progress bar on a terminal (``progress``).
    ``root``: the course (``Course``, handed to every worker) or its folder (loaded here, once).

    Ctrl-C stops every worker within seconds and raises :class:`FeedbackInterrupted`.
    """
    course = Course.of(root)
    with course.in_use():
        return _feedback(course, students, jobs, progress)


def _feedback(
    course: Course, students: list[str] | None, jobs: int | None, progress: bool
) -> FeedbackRun:
    from ..grader import grade as grading

    root = course.root
    run = FeedbackRun()
    if students is None:
        students = _graded_students(root)
    for student in students:
        if not is_student_id(student):
            run.errors[student] = "no feedback: not a student id"
    students = sorted(s for s in students if is_student_id(s))
    run.students = len(students)
    secrets = hidden_lines(root / "source" / ASSIGNMENT)
    jobs = max(1, min(jobs or default_jobs(len(students)), len(students) or 1))
    bar = grading.Progress(len(students) if progress else 0)
    results: dict[str, dict] = {}
    start = time.monotonic()
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    bar.show()
    try:
        if jobs == 1:
            _feedback_here(course, students, secrets, results, run.errors, bar.step)
        else:
            _feedback_forked(course, students, secrets, jobs, results, run.errors, bar.step)
    except KeyboardInterrupt:
        bar.close()
        _collect(results, run)
        run.seconds, run.interrupted = time.monotonic() - start, True
        raise FeedbackInterrupted(run) from None
    finally:
        if signal.getsignal(signal.SIGINT) is not on_ctrl_c and grading._main_thread():
            signal.signal(signal.SIGINT, on_ctrl_c)
    _collect(results, run)
    run.seconds = time.monotonic() - start
    return run


def _collect(results: dict[str, dict], run: FeedbackRun) -> None:
    for student in sorted(results):
        run.written += [Path(p) for p in results[student]["written"]]
        run.errors.update(results[student]["errors"])


def _feedback_forked(
    course: Course,
    students: list[str],
    secrets: set[str],
    jobs: int,
    results: dict[str, dict],
    errors: dict[str, str],
    step,
) -> None:
    """The first student in this process, the others in ``jobs`` workers forked from it.

    The first student is the warm-up every process needs (the imports, the converter and its
    compiled templates, the page frame and the course's cells through ``_SoupPass``, pygments'
    and mistune's expressions compiled): done once here, every worker inherits it, where each
    worker forked from a server used to pay it again. The gradebook engine is not inherited
    (``run_here`` disposes of it; each worker opens its own). Where this process cannot fork
    (a thread, no ``fork``), the workers come from the server as ``grade``'s do.
    """
    from ..grader import grade as grading

    first, rest = students[:1], students[1:]
    try:
        _feedback_here(course, first, secrets, results, errors, step, keep_converter=True)
        _close_student_logs(first)
        grading.run_in_pool(
            feedback_student,
            course,
            rest,
            (secrets,),
            jobs,
            results,
            errors,
            step,
            initializer=partial(grading._worker_init, kernels=False, forked_here=True),
            preload=FEEDBACK_PRELOAD,
            died="the feedback worker died three times on this student",
            fork_here=True,
        )
    finally:
        _CONVERTERS.pop(course.root, None)
        _GRADEBOOKS.clear()


def _close_student_logs(students: list[str]) -> None:
    """Close the log files this process wrote for ``students``: no worker inherits them open."""
    for logger in (
        _current_log(),
        *(logging.getLogger(f"toeplitz_course.feedback.{s}") for s in students),
    ):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def _feedback_here(
    course: Course,
    students: list[str],
    secrets: set[str],
    results: dict[str, dict],
    errors: dict[str, str],
    step,
    keep_converter: bool = False,
) -> None:
    """One student after the other in this process (grade's ``run_here``); ``keep_converter``:
    the converter (its templates compiled, its caches) stays for the workers forked next."""
    from ..grader.grade import run_here

    try:
        run_here(feedback_student, course, students, (secrets,), results, errors, step)
    finally:
        # Their gradebook engine is disposed of with run_here's block: forget it (the converter
        # finds a new one in _GRADEBOOKS on its next notebook).
        if not keep_converter:
            _CONVERTERS.pop(course.root, None)
        _GRADEBOOKS.clear()
