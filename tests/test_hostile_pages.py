"""A hostile submission in the instructor's browser: the formgrader and the feedback run nothing.

One student hands in the correct answers plus every form of active content a student controls:
markdown (in the written answer ex3_4 and in cells of their own), attachments, cell and notebook
metadata, and code whose outputs the graded run records (HTML, JavaScript, markdown, SVG, widget
views, an "isolated" HTML output). Each attack, if it ran, would request a URL of a listener on
127.0.0.1 and change ``document.title``. The pages are opened in headless Chromium as the
instructor opens them: the formgrader's page in a real ``jupyter server`` (the one of
``test_formgrader``), the feedback page from disk.

The control: the same notebook rendered by stock nbconvert (no sanitiser, no policy) and opened in
the same browser must call the listener and change the title, so the attacks are live and the
listener hears them.

The hostile student is graded, and given feedback, in the class other modules hand their students
in to (``conftest.graded_class``); the honest one is test_grading's correct student.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from test_formgrader import CHROMEDRIVER, CHROMIUM, WAIT, browser, server  # noqa: F401

from toeplitz_course.course.contract import ASSIGNMENT
from toeplitz_course.grader import pages, sanitize
from toeplitz_course.grader.coursedir import db_url
from toeplitz_course.instructor import examples

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver"
)

HOSTILE, HONEST = "s02_hostile", "s01_correct"
WRITTEN_NB = "03_equivariance"
OTHER_NB = "01_conv1d_toeplitz"
PWNED = "pwned"
SETTLE = 2.0  # seconds for timers, onerror handlers and MathJax to have fired


def _markdown_attacks(url: str) -> list[str]:
    run = f"fetch('{url}/{{}}');document.title='{PWNED}'"
    return [
        f'<img src=x onerror="{run.format("img-onerror")}">',
        f"<script>{run.format('script')}</script>",
        f'<iframe srcdoc="<script>parent.{run.format("srcdoc")}</script>"></iframe>',
        f'<svg><image href=x onerror="{run.format("svg")}"/></svg>',
        f'<svg onload="{run.format("svg-onload")}"></svg>',
        f'<details open ontoggle="{run.format("ontoggle")}"><summary>x</summary></details>',
        f'<img src="{url}/remote-image">',
        f"<style>@import url({url}/css-import);</style>",
        f'<link rel="stylesheet" href="{url}/link-css">',
        f'<object data="{url}/object"></object><embed src="{url}/embed">',
        f'<meta http-equiv="refresh" content="0;url={url}/refresh">',
        f'<base href="{url}/base/"><img src="relative.png">',
        f'<form action="{url}/form"><button id="go">go</button></form>',
        f"[a link](javascript:{run.format('js-link')})",
        "```\nfence\n\n" + f"[inside](javascript:{run.format('fence')})\n```",
        f'<a href="javascript:{run.format("a-href")}" id="jslink">click</a>',
        f'<div style="background:url({url}/style-url)">styled</div>',
        f'<math><mtext><table><mglyph><style><img src=x onerror="{run.format("mxss")}">',
        f"$\\href{{javascript:{run.format('mathjax-href')}}}{{x}}$",
    ]


def _output_attacks(url: str) -> str:
    """A code cell whose outputs, when the grader runs it, carry active content."""
    run = f"fetch('{url}/{{}}');document.title='{PWNED}'"
    return "\n".join(
        [
            "from IPython.display import HTML, Javascript, Markdown, SVG, display",
            f"display(HTML('<img src=x onerror=\"{run.format('out-html')}\">'))",
            f'display(Javascript("{run.format("out-js")}"))',
            f"display(Markdown('<img src=x onerror=\"{run.format('out-md')}\">'))",
            f'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" '
            f'onload="{run.format("out-svg")}"><circle r="4"/></svg>\'))',
            "display({'text/html': '<script>"
            + run.format("out-isolated")
            + "</script>'}, raw=True, metadata={'text/html': {'isolated': True}})",
            "display({'application/vnd.jupyter.widget-view+json': {'model_id': 'x'},"
            " 'text/plain': 'widget'}, raw=True)",
            f"print('<img src=x onerror=\"{run.format('stream')}\">')",
        ]
    )


#: TeX that MathJax draws far outside its line: a white sheet over whatever is above and to the
#: left, and a verdict of the student's own words over it (MathJax's Safe extension allows both).
PAINT_OVER = (
    r"$$\smash{\rlap{\kern-40em\color{white}{\rule{120em}{60em}}}}"
    r"\smash{\rlap{\kern-30em\raise{20em}{\color{green}{\text{All hidden tests passed}}}}}$$"
)

#: Tags that, written into the cell's class attribute, would give it the page's own classes:
#: a fixed banner over the score, a full-page backdrop over every score box, a hidden cell.
CLASS_TAGS = ["x navbar-fixed-top alert alert-success", "w modal-backdrop in", "y hidden"]


def _hostile(course: Path, url: str) -> examples.Notebooks:
    nbs = examples.correct(course)
    attacks = "\n\n".join(_markdown_attacks(url))
    examples.answer(
        nbs, "ex3_4", "Shifts near the edges break equivariance.\n\n" + PAINT_OVER + attacks
    )
    for grade_id in ("ex1_2", "ex1_2_test"):
        cell = next(
            c
            for nb in nbs.values()
            for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
        )
        cell.metadata["tags"] = list(CLASS_TAGS)
    for name in (WRITTEN_NB, OTHER_NB):
        nb = nbs[name]
        md = nbformat.v4.new_markdown_cell(
            PAINT_OVER + attacks + "\n\n![att](attachment:page.html)"
        )
        md.attachments = {
            "page.html": {"text/html": f"<script>{PWNED}</script>"},
            "evil.svg": {"image/svg+xml": f"<svg onload=\"fetch('{url}/att-svg')\"></svg>"},
        }
        md.metadata["tags"] = ['"><img src=x onerror=alert(1)>']
        code = nbformat.v4.new_code_cell(_output_attacks(url))
        code.metadata["tags"] = list(CLASS_TAGS)
        nb.cells[3:3] = [md, code]
        nb.metadata["widgets"] = {
            "application/vnd.jupyter.widget-state+json": {"state": {}, "x": f"</script>{PWNED}"}
        }
    return nbs


def hand_in(course: Path, url: str) -> None:
    """The hostile student, its attacks calling ``url``, into ``course`` (the session's class,
    ``conftest.graded_class``, in which HONEST is test_grading's correct student)."""
    examples.write(_hostile(course, url), course, HOSTILE)


@pytest.fixture(scope="module")
def course(graded_class) -> Path:
    """The class, graded and given feedback (``feedback`` for everyone, HOSTILE and HONEST
    among them)."""
    assert graded_class.run.errors == {}
    assert not {HOSTILE, HONEST} & set(graded_class.feedback.errors)
    return graded_class.course


def test_both_students_are_graded_as_earned(course):
    expected = examples.expected_scores("example_correct")
    with Gradebook(db_url(course)) as gb:
        for student in (HONEST, HOSTILE):
            scores = {
                g.name: g.score
                for nb in gb.find_submission(ASSIGNMENT, student).notebooks
                for g in nb.grades
                if g.name in expected
            }
            assert scores == expected, student


def _settle_and_check(driver, listener, page_title: str) -> None:
    time.sleep(SETTLE)
    # Click what a person might click: a javascript: link must not survive to be clicked.
    links = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
        ".filter(h => h.toLowerCase().startsWith('javascript:'))"
    )
    assert links == []
    handlers = driver.execute_script(
        "return Array.from(document.querySelectorAll('#notebook-container *'))"
        ".flatMap(e => Array.from(e.attributes).map(a => a.name))"
        ".filter(n => n.startsWith('on'))"
    )
    assert handlers == []
    frames = driver.execute_script(
        "return document.querySelectorAll('iframe, object, embed').length"
    )
    assert frames == 0
    assert listener.hits == []
    assert driver.title == page_title


#: What a person reads or clicks: every cell, every panel's heading (a notebook's score, a graded
#: cell's score and label), every score box and comment. Each one is shown, and the topmost thing
#: at its centre (at most 40 by 12 pixels in) is itself or inside it: no student content covers it.
_COVERED = """
const wanted = 'div.cell, .panel-heading, input:not([type=hidden]), textarea, nav a';
// The formgrader's own navigation bar is fixed at the top: what is under it is looked at below it.
const nav = document.querySelector('nav.navbar-fixed-top');
const found = [];
for (const t of document.querySelectorAll(wanted)) {
  t.scrollIntoView({block: 'center', inline: 'nearest'});
  const r = t.getBoundingClientRect();
  const name = t.tagName + '.' + t.className + '#' + t.id;
  const top = Math.max(r.top, nav && !nav.contains(t) ? nav.getBoundingClientRect().bottom : 0);
  const bottom = Math.min(r.bottom, window.innerHeight);
  const left = Math.max(r.left, 0), right = Math.min(r.right, window.innerWidth);
  if (bottom - top < 1 || right - left < 1) {
    // A control the page itself hides (the formgrader's "show names" eye has two states).
    if (!t.matches('div.cell, .panel-heading') && t.getClientRects().length === 0) continue;
    found.push('not shown: ' + name);
    continue;
  }
  const hit = document.elementFromPoint(
    left + Math.min((right - left) / 2, 40), top + Math.min((bottom - top) / 2, 12));
  if (!hit || !(hit === t || t.contains(hit))) {
    found.push('covered: ' + name + ' by ' + (hit ? hit.tagName + '.' + hit.className : 'nothing'));
  }
}
window.scrollTo(0, 0);
return found;
"""

#: The classes the page gives its cells, other than the ones made from their tags.
_CELL_CLASSES = """
return Array.from(new Set(Array.from(document.querySelectorAll('div.cell'))
  .flatMap(c => Array.from(c.classList)).filter(k => !k.startsWith('celltag_')))).sort();
"""


def _check_the_page_is_the_graders(driver, honest_cell_classes: list[str]) -> None:
    """The student's content stays in its cell: nothing covers what a person reads or clicks, and
    the cells carry no class the honest student's page does not give its own."""
    if pages.local_mathjax() is not None:
        from selenium.webdriver.support.ui import WebDriverWait

        # The paint-over TeX is drawn by MathJax: wait until it has typeset the page.
        WebDriverWait(driver, WAIT).until(
            lambda d: d.execute_script("return document.querySelectorAll('.MathJax_CHTML').length")
        )
    assert driver.execute_script(_COVERED) == []
    assert set(driver.execute_script(_CELL_CLASSES)) <= set(honest_cell_classes)


def _open_formgrader(browser, server, course: Path, notebook: str, student: str = HOSTILE) -> None:  # noqa: F811
    from selenium.webdriver.support.ui import WebDriverWait

    base, token = server
    with Gradebook(db_url(course)) as gb:
        submission = gb.find_submission_notebook(notebook, ASSIGNMENT, student).id
    browser.get(f"{base}/api/status?token={token}")
    browser.get(f"{base}/formgrader/submissions/{submission}/")
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script(
            "return typeof formgrader !== 'undefined' && formgrader.grades !== undefined"
            " && formgrader.grades.loaded && formgrader.comments.loaded"
        )
    )


@pytest.mark.parametrize("notebook", [WRITTEN_NB, OTHER_NB])
def test_the_formgrader_runs_nothing_of_the_submission(
    course,
    server,  # noqa: F811
    browser,  # noqa: F811
    listener,
    notebook,
):
    _open_formgrader(browser, server, course, notebook, HONEST)
    time.sleep(SETTLE)
    assert browser.execute_script(_COVERED) == []  # the check holds on an honest page
    honest_classes = browser.execute_script(_CELL_CLASSES)
    listener.hits.clear()
    _open_formgrader(browser, server, course, notebook)
    _settle_and_check(browser, listener, notebook)
    _check_the_page_is_the_graders(browser, honest_classes)
    # The page still works: the score box of a graded cell is there and bound.
    if notebook == WRITTEN_NB:
        assert browser.execute_script("return document.getElementById('ex3_4').tagName") == "INPUT"
        # The written answer is shown, as text.
        assert "Shifts near the edges break equivariance." in browser.page_source


@pytest.mark.parametrize("notebook", [WRITTEN_NB, OTHER_NB])
def test_the_feedback_page_runs_nothing_of_the_submission(
    course,
    browser,  # noqa: F811
    listener,
    notebook,
):
    browser.get((course / "feedback" / HONEST / ASSIGNMENT / f"{notebook}.html").as_uri())
    time.sleep(SETTLE)
    assert browser.execute_script(_COVERED) == []  # the check holds on an honest page
    honest_classes = browser.execute_script(_CELL_CLASSES)
    listener.hits.clear()
    page = course / "feedback" / HOSTILE / ASSIGNMENT / f"{notebook}.html"
    browser.get(page.as_uri())
    _settle_and_check(browser, listener, notebook)
    _check_the_page_is_the_graders(browser, honest_classes)


def test_the_autograded_notebook_holds_nothing_active(course, listener):
    """The source every page renders from (and JupyterLab opens) is clean itself."""
    for name in (WRITTEN_NB, OTHER_NB):
        nb = nbformat.read(course / "autograded" / HOSTILE / ASSIGNMENT / f"{name}.ipynb", 4)
        assert "widgets" not in nb.metadata
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                rendered = sanitize.render_markdown(cell.source, cell.get("attachments"))
                assert sanitize.shape(sanitize.clean_html(rendered)) == sanitize.shape(rendered)
                assert all(
                    m.startswith("image/") for b in cell.get("attachments", {}).values() for m in b
                )
            for output in cell.get("outputs", []):
                for mime, value in output.get("data", {}).items():
                    assert mime in {
                        "text/plain",
                        "text/html",
                        "image/png",
                        "image/svg+xml",
                        "text/latex",
                        "image/jpeg",
                    }, mime
                    if mime == "text/html":
                        assert sanitize.clean_html(value) == value
                assert not any(
                    isinstance(m, dict) and "isolated" in m
                    for m in output.get("metadata", {}).values()
                )


def test_control_the_attacks_run_where_nothing_protects(tmp_path, browser, listener):  # noqa: F811
    """Stock nbconvert on the hostile notebook, with its outputs as the graded run makes them."""
    from nbconvert.exporters import HTMLExporter

    listener.hits.clear()
    nb = examples.release(Path(__file__).resolve().parent.parent)[WRITTEN_NB]
    # All but the refresh, which would navigate away before the title could be read.
    attacks = [a for a in _markdown_attacks(listener.url) if "refresh" not in a]
    nb.cells.append(nbformat.v4.new_markdown_cell("\n\n".join(attacks)))
    run = f"fetch('{listener.url}/out-js');document.title='{PWNED}'"
    code = nbformat.v4.new_code_cell("")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"application/javascript": run}),
        nbformat.v4.new_output("display_data", data={"text/html": f'<img src=x onerror="{run}">'}),
    ]
    # Before the markdown, whose unclosed <style> (the mXSS form) swallows what follows it.
    nb.cells.insert(len(nb.cells) - 1, code)
    html, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    page = tmp_path / "stock.html"
    page.write_text(html, encoding="utf-8")
    browser.get(page.as_uri())
    time.sleep(SETTLE)
    assert browser.title == PWNED
    assert {"img-onerror", "script", "srcdoc", "out-js", "remote-image"} <= {
        h.strip("/") for h in listener.hits
    }


def test_the_policy_leaves_the_pages_working(course, browser):  # noqa: F811
    """Under the policy, a feedback page opened from disk still typesets its formulas."""
    from selenium.webdriver.support.ui import WebDriverWait

    if pages.local_mathjax() is None:
        pytest.skip("no local MathJax (Debian's libjs-mathjax); the CDN may be unreachable here")
    browser.get((course / "feedback" / HONEST / ASSIGNMENT / f"{WRITTEN_NB}.html").as_uri())
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script("return document.querySelectorAll('.MathJax_CHTML').length > 0")
    )
    policy = browser.execute_script(
        "return document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]').content"
    )
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
