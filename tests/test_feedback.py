"""What the feedback shows: the grader's pictures where a person grades, messages that wrap, and
MathJax from this machine where it has one.

One student with typical mistakes, of the class graded once per session by the project's ``grade``
and given nbgrader's feedback (``python -m toeplitz_course feedback``'s function, two workers;
``conftest.graded_class``), is read.
"""

from __future__ import annotations

import logging
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from conftest import BROKEN_FEEDBACK
from test_grading import MISTAKES

from toeplitz_course.course.contract import ASSIGNMENT, EXERCISES, NOTEBOOKS
from toeplitz_course.grader import demos, pages
from toeplitz_course.grader.preprocessors import SkipDemoCells

STUDENT = MISTAKES  # test_grading's student with the typical mistakes

#: The notebooks in which a person grades a cell, from the contract.
BY_HAND = {e.notebook for e in EXERCISES if not e.autograded}


@pytest.fixture(scope="module")
def graded(graded_class):
    """The class's course: STUDENT graded, and everyone given feedback by ``feedback``."""
    assert graded_class.run.errors == {}
    assert STUDENT not in graded_class.feedback.errors
    return graded_class.course


def _autograded(course: Path, notebook: str):
    return nbformat.read(course / "autograded" / STUDENT / ASSIGNMENT / f"{notebook}.ipynb", 4)


def _page(course: Path, notebook: str) -> str:
    return (course / "feedback" / STUDENT / ASSIGNMENT / f"{notebook}.html").read_text()


def _release(course: Path, notebook: str):
    return nbformat.read(course / "release" / ASSIGNMENT / f"{notebook}.ipynb", 4)


def _pngs(cell) -> list[str]:
    return [
        out["data"]["image/png"].replace("\n", "")
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]


def _is_demo(cell) -> bool:
    return demos.DEMO_TAG in cell.metadata.get("tags", [])


def test_demonstrations_run_where_a_person_grades_and_nowhere_else(graded):
    note = SkipDemoCells().note
    for notebook in NOTEBOOKS:
        cells = [c for c in _autograded(graded, notebook).cells if _is_demo(c)]
        assert cells, notebook
        texts = ["".join(o.get("text", "") for o in c.outputs) for c in cells]
        if notebook in BY_HAND:
            # The figures above the cell a person grades run; the other demonstrations do not.
            figures = demos.figures_graded_by_hand(_release(graded, notebook))
            shown = [c for c in cells if demos.normalized(c.source) in figures]
            assert shown and all(c.execution_count for c in shown), notebook
            others = [t for c, t in zip(cells, texts, strict=True) if c not in shown]
            assert others and others == [note] * len(others), notebook
        else:
            assert texts == [note] * len(cells), notebook
            assert not any(_pngs(c) for c in cells), notebook


def test_the_pictures_a_written_answer_refers_to_are_drawn(graded):
    """ex3_4: "the two pictures above ... are all you need": the demonstrations that draw
    (``plt.show()``) between the previous exercise and the written answer have their figures."""
    for notebook in BY_HAND:
        release = _release(graded, notebook).cells
        answer = next(
            i
            for i, c in enumerate(release)
            if (c.metadata.get("nbgrader") or {}).get("solution") and c.cell_type == "markdown"
        )
        previous = max(
            i for i, c in enumerate(release[:answer]) if c.metadata.get("nbgrader", {}).get("grade")
        )
        drawing = [
            c.source for c in release[previous:answer] if _is_demo(c) and "plt.show()" in c.source
        ]
        assert len(drawing) >= 2, notebook
        by_source = {c.source: c for c in _autograded(graded, notebook).cells}
        for source in drawing:
            assert _pngs(by_source[source]), source[:60]


def test_feedback_shows_every_figure_of_the_graded_notebook(graded):
    for notebook in NOTEBOOKS:
        figures = [png for c in _autograded(graded, notebook).cells for png in _pngs(c)]
        page = _page(graded, notebook)
        if notebook in BY_HAND:
            assert len(figures) >= 2
        assert page.count("data:image/png;base64,") == len(figures), notebook
        for png in figures:
            assert png in page


class _Elements(HTMLParser):
    """Each ``<pre>`` inside an error output (its style), and each ``<script>``'s attributes."""

    def __init__(self):
        super().__init__()
        self.open: list[str] = []
        self.error_pres: list[str] = []
        self.scripts: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "pre" and any("output_error" in c for c in self.open):
            self.error_pres.append(attrs.get("style", ""))
        if tag == "script":
            self.scripts.append(attrs)
        if tag == "div":
            self.open.append(attrs.get("class", ""))

    def handle_endtag(self, tag):
        if tag == "div" and self.open:
            self.open.pop()


def _elements(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def _style(declarations: str) -> dict[str, str]:
    pairs = (d.split(":", 1) for d in declarations.split(";") if ":" in d)
    return {k.strip(): v.strip() for k, v in pairs}


def test_a_failure_message_wraps(graded):
    for notebook in NOTEBOOKS:
        errors = [
            o for c in _autograded(graded, notebook).cells for o in c.get("outputs", [])
            if o.output_type == "error"
        ]  # fmt: skip
        pres = _elements(_page(graded, notebook)).error_pres
        assert len(pres) == len(errors), notebook
        for style in map(_style, pres):
            assert style.get("white-space") == "pre-wrap"
            assert style.get("overflow-wrap") in ("anywhere", "break-word")
    assert any(len(_elements(_page(graded, nb)).error_pres) for nb in NOTEBOOKS)


def test_feedback_loads_mathjax_from_this_machine_where_it_has_one(graded):
    from nbconvert.exporters import HTMLExporter

    cdn = HTMLExporter.mathjax_url.default_value
    local = pages.local_mathjax()
    for notebook in NOTEBOOKS:
        scripts = [s for s in _elements(_page(graded, notebook)).scripts if "src" in s]
        mathjax = [s for s in scripts if "mathjax" in s["src"].lower()]
        assert len(mathjax) == 1, notebook
        if local is None:  # nbconvert's CDN, nothing else to try
            assert mathjax[0]["src"] == cdn and "onerror" not in mathjax[0]
        else:
            assert mathjax[0]["src"] == local.as_uri() + pages.MATHJAX_QUERY
            assert cdn not in mathjax[0]["src"]
            # The CDN only if the local copy does not load (on a student's machine).
            assert cdn in mathjax[0]["onerror"]
        assert not any(cdn in s["src"] for s in scripts if s is not mathjax[0])


# --- the same pages as stock nbgrader, faster ---------------------------------------------------


def _stock_feedback(course: Path, student: str) -> None:
    """nbgrader's own GenerateFeedback, as ``feedback`` ran it before it was made faster."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    from toeplitz_course.grader.coursedir import course_config, db_url

    cfg = course_config(
        course,
        **{
            "CourseDirectory.db_url": db_url(course),
            "CourseDirectory.assignment_id": ASSIGNMENT,
            "CourseDirectory.student_id": student,
            "GenerateFeedback.force": True,
        },
    )
    GenerateFeedback(coursedir=CourseDirectory(config=cfg), config=cfg).start()


def test_pages_are_stock_nbgraders_byte_for_byte(graded, tmp_path):
    """Nothing on a page is random: nbconvert's only ``uuid4()`` ids are for JavaScript and
    widget outputs, which the sanitised pages do not have."""
    ours = {p.name: p.read_bytes() for p in (graded / "feedback" / STUDENT / ASSIGNMENT).iterdir()}
    stock = tmp_path / "stock"

    def only_what_feedback_reads(folder: str, names: list[str]) -> set[str]:
        # Not the hand-ins (the class's hold links and FIFOs) nor other students' notebooks.
        if Path(folder) == graded:
            return {"submitted", "feedback"} & set(names)
        if Path(folder) == graded / "autograded":
            return set(names) - {STUDENT}
        return set()

    shutil.copytree(graded, stock, ignore=only_what_feedback_reads)
    _stock_feedback(stock, STUDENT)
    theirs = {p.name: p.read_bytes() for p in (stock / "feedback" / STUDENT / ASSIGNMENT).iterdir()}
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert ours[name] == theirs[name], name


def test_the_cell_by_cell_soup_pass_is_beautifulsoups(graded):
    from toeplitz_course.instructor.feedback import _SoupPass

    log = logging.getLogger("test")
    soup = _SoupPass()
    for notebook in NOTEBOOKS:
        page = _page(graded, notebook)
        assert soup(page, log) == _SoupPass.stock_pass(page, log)
    assert soup.fast == len(NOTEBOOKS) and soup.stock == 0
    # Markup that does not stand on its own goes the stock way, and still comes out the same.
    cell = '\n<div class="cell border-box-sizing text_cell rendered">'
    for odd in ("</div></div>", "<pre>", "<!-- open", "<b>unclosed", "<script>x", "</br>&amp"):
        page = f"<html><body><div>{cell}a</div>{cell}{odd}</div>{cell}c</div></div></body></html>"
        assert soup(page, log) == _SoupPass.stock_pass(page, log), odd
    assert soup.stock >= 3  # a stray end tag, an open comment, an open <script>


def test_a_bad_student_is_recorded_and_the_others_get_their_pages(graded, graded_class):
    """The class's feedback ran in two workers with BROKEN_FEEDBACK's first notebook cut short;
    its pages are stock's (``test_pages_are_stock_nbgraders_byte_for_byte``)."""
    run = graded_class.feedback
    assert set(run.errors) == {BROKEN_FEEDBACK}, run.errors
    assert not (graded / "feedback" / BROKEN_FEEDBACK).exists()
    pages = {p.relative_to(graded / "feedback") for p in run.written}
    for notebook in NOTEBOOKS:
        assert Path(STUDENT, ASSIGNMENT, f"{notebook}.html") in pages
    assert (graded / ".grading" / "logs" / "feedback" / f"{BROKEN_FEEDBACK}.log").read_text()
    students = len(list((graded / "autograded").glob(f"*/{ASSIGNMENT}")))
    assert BROKEN_FEEDBACK in run.format()
    assert f"wrote {len(run.written)} feedback pages for {students} students" in run.format()


# Awkward markup, in the pieces html.parser and BeautifulSoup treat specially: whitespace-only
# text inside and outside <pre>/<textarea>, named, unknown and unterminated entities, numeric
# references in the windows-1252 and surrogate ranges, stray brackets; void elements with and
# without a slash; multi-valued attributes with odd spacing, repeated attributes, both kinds of
# quote, upper-case names; and what the stream must decline: end tags of void elements, tags
# closed out of order, comments, <script>, <meta>, JupyterLab's classes.
_TEXT = (
    "   ", "\n  \n", "\t", "x < y", "a > b", "&amp;", "&lt;", "&quot;", "&#39;", "&nbsp;",
    "&foo;", "&amp", "&#65;", "&#x41;", "&#150;", "&#0;", "&#55296;", "&#1114112;", "&#12a;",
    "text", "é ü €", "<", "", "\r\n \r", "\xa0", " \xa0 ",
)  # fmt: skip
_VOID = ("<img src='x.png'>", "<IMG SRC=\"y\" alt=''>", "<img src=z/>", "<br>", "<br/>",
         "<div/>", "<input disabled>", "<hr class='  rule '>")  # fmt: skip
_OPEN = (
    ("div", "<div>"), ("span", "<span class=' a  b\tc '>"), ("pre", "<pre>"),
    ("textarea", "<textarea>"), ("p", "<p title=\"say &quot;hi&quot; it's\">"),
    ("a", "<a href=\"?a=1&b=2\">"), ("td", "<td headers=' h1  h2 '>"), ("b", "<b id=1 id=2>"),
    ("i", "<i class=\"\">"), ("div", "<DIV CLASS='Up' data-x='1 > 0'>"),
)  # fmt: skip
_DECLINED = ("</br>", "</div>", "<!-- c -->", "<script>1<2</script>", "<meta charset='latin-1'>",
             "<style>a>b</style>", "<div class='jp-Notebook'></div>", "<b>")  # fmt: skip


def _markup(rng, depth=3) -> str:
    pieces = []
    for _ in range(rng.randint(0, 4)):
        roll = rng.random()
        if roll < 0.35:
            pieces.append(rng.choice(_TEXT))
        elif roll < 0.55:
            pieces.append(rng.choice(_VOID))
        elif roll < 0.97 and depth:
            name, tag = rng.choice(_OPEN)
            pieces.append(
                f"{tag}{_markup(rng, depth - 1)}</{name.upper() if rng.random() < 0.1 else name}>"
            )
        else:
            pieces.append(rng.choice(_DECLINED))
    return "".join(pieces)


def test_the_streamed_pass_writes_what_beautifulsoup_writes():
    """``soup_stream.stream`` either declines markup or gives exactly BeautifulSoup's text and
    count of images given ``alt``, as ``_parse`` computes them through the tree."""
    import random

    from toeplitz_course.instructor import feedback
    from toeplitz_course.instructor.soup_stream import stream

    rng = random.Random(25)
    accepted = declined = 0
    for _ in range(3000):
        markup = _markup(rng)
        streamed = stream(markup)
        if streamed is None:
            declined += 1
            continue
        accepted += 1
        # the tree's text; None there would mean the stream accepted what _parse must not
        # (a fragment that does not stand on its own, a JupyterLab class)
        assert streamed == feedback._through_the_tree(markup), markup
    # The corpus reaches both: what the stream writes, and what it leaves to BeautifulSoup.
    assert accepted > 1000 and declined > 300, (accepted, declined)
    # Where BeautifulSoup cannot write its tree out (nested too deep for its recursive tag
    # comparison), stock writes no page; the stream writes none either.
    deep = "<div><span>" * 300 + "</span>x</div>" * 300
    with pytest.raises(RecursionError):
        str(feedback._fragment_soup()(deep, None))
    assert stream(deep) is None
