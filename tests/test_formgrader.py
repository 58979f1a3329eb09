"""nbgrader's formgrader in a real browser: grade the written answer ex3_4 by hand, then export.

A student is graded by the project's ``grade`` in a scratch course; the test starts
``jupyter server`` with nbgrader's formgrader extension on 127.0.0.1 (a free port, a token) and
drives Debian's headless ``chromium`` through its ``chromedriver`` (``.ci/run`` installs both):
a score and a comment for ex3_4, saved as the formgrader saves them, must reach the gradebook and
``python -m toeplitz_course export``'s ``grades.csv``. The pages must also be readable: the
demonstrations' figures ex3_4 is about, failure messages not cut, MathJax from this machine.
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import handins
import nbformat
import pytest
from nbgrader.api import Gradebook

from toeplitz_course.course.contract import ASSIGNMENT, EXERCISES
from toeplitz_course.grader import pages
from toeplitz_course.grader.coursedir import db_url
from toeplitz_course.grader.grade import grade
from toeplitz_course.instructor import examples
from toeplitz_course.instructor.export import GRADES_CSV

STUDENT = "s01_mistakes"
WRITTEN = next(e for e in EXERCISES if not e.autograded)  # ex3_4
SCORE = WRITTEN.points / 2
COMMENT = "Right shifts, right positions; say why zero padding is the culprit."

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver; .ci/run installs them)",
)

WAIT = 60  # seconds for the server, a page or a save


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def course(tmp_path_factory, course_template) -> Path:
    course = tmp_path_factory.mktemp("formgrader") / "course"
    shutil.copytree(course_template, course)
    # The notebooks the pages are opened on (a kernel each): the written answer's and the first
    # with a mistake.
    first_mistake = next(e.notebook for e in EXERCISES if e.answer_id in examples.MISTAKES)
    handins.write(examples.mistakes(course), course, STUDENT, {WRITTEN.notebook, first_mistake})
    run = grade(course, jobs=1, progress=False)
    assert run.errors == {}
    return course


@pytest.fixture(scope="module")
def server(course, tmp_path_factory):
    """``jupyter server`` with the formgrader on the course; stopped at the end."""
    port, token = _free_port(), secrets.token_hex(16)
    jupyter = tmp_path_factory.mktemp("jupyter")
    env = {
        **os.environ,
        # Nothing of the user's own Jupyter: its config, data and runtime files are the test's.
        "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
        "JUPYTER_DATA_DIR": str(jupyter / "data"),
        "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
    }
    log = open(jupyter / "server.log", "w+b")  # noqa: SIM115 - closed in the teardown
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("jupyter-server")),
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={course}",
            # The local MathJax, at the URL the course's formgrader pages load it from.
            f"--ServerApp.extra_static_paths={pages.FORMGRADER_STATIC}",
            "--ServerApp.jpserver_extensions=nbgrader.server_extensions.formgrader=True",
            *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),  # CI runs as root
        ],
        cwd=course,  # nbgrader reads nbgrader_config.py from here
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited {proc.returncode}: {_tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter server did not answer: {_tail(log)}") from None
                time.sleep(0.3)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _tail(log) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # chromium's own sandbox needs user namespaces it may not have as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    # The system driver: Selenium Manager would try to download one.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _submission_id(course: Path, notebook: str) -> str:
    with Gradebook(db_url(course)) as gb:
        return gb.find_submission_notebook(notebook, ASSIGNMENT, STUDENT).id


def _open(browser, server, course: Path, notebook: str):
    """The formgrader's page for the student's notebook, once its grading form is live."""
    from selenium.webdriver.support.ui import WebDriverWait

    base, token = server
    # Log in on a page of Jupyter's own: the login cookie it sets is for the whole server. One set
    # by a formgrader page would be for that page's folder only (nbgrader's handlers strip the
    # base URL's "/"), and the page's own API calls would be redirected to the login page.
    browser.get(f"{base}/api/status?token={token}")
    browser.get(f"{base}/formgrader/submissions/{_submission_id(course, notebook)}/")
    # formgrade.js has fetched the grades and comments and bound a view to each box, and MathJax
    # (where it loaded) has finished: at its end formgrade.js moves the focus.
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script(
            "return typeof formgrader !== 'undefined' && formgrader.grades !== undefined"
            " && formgrader.grades.loaded && formgrader.comments.loaded"
            " && (typeof MathJax === 'undefined' || MathJax.loaded === true)"
        )
    )


def _autograded(course: Path, notebook: str):
    return nbformat.read(course / "autograded" / STUDENT / ASSIGNMENT / f"{notebook}.ipynb", 4)


def test_grade_the_written_answer_in_the_formgrader_then_export(course, server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, server, course, WRITTEN.notebook)
    # Count the formgrader's acknowledgements: it triggers "finished_saving" when the server
    # has answered a save (Backbone's "sync").
    browser.execute_script(
        "window.savesAcknowledged = 0;"
        "$(document).on('finished_saving', function () { window.savesAcknowledged += 1; });"
    )
    score = browser.find_element(By.ID, WRITTEN.answer_id)
    score.clear()
    score.send_keys(f"{SCORE:g}", Keys.TAB)  # a change event: formgrade.js saves
    comment = browser.find_element(By.ID, f"{WRITTEN.answer_id}-comment")
    comment.clear()
    comment.send_keys(COMMENT, Keys.TAB)
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script("return window.savesAcknowledged") >= 2
    )

    with Gradebook(db_url(course)) as gb:
        grade_row = gb.find_grade(WRITTEN.answer_id, WRITTEN.notebook, ASSIGNMENT, STUDENT)
        assert grade_row.manual_score == SCORE
        assert not grade_row.needs_manual_grade
        comment_row = gb.find_comment(WRITTEN.answer_id, WRITTEN.notebook, ASSIGNMENT, STUDENT)
        assert comment_row.manual_comment == COMMENT

    out = course / "exports-test"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "toeplitz_course",
            "--root",
            str(course),
            "export",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    with open(out / GRADES_CSV, newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert float(rows[STUDENT][WRITTEN.answer_id]) == SCORE
    assert WRITTEN.answer_id not in rows[STUDENT].get("needs_manual_grading", "").split()


def test_the_grader_sees_the_figures_the_written_answer_is_about(course, server, browser):
    _open(browser, server, course, WRITTEN.notebook)
    figures = [
        out["data"]["image/png"].replace("\n", "")
        for cell in _autograded(course, WRITTEN.notebook).cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert len(figures) >= 2  # the two pictures above ex3_4, at least
    shown = browser.execute_script(
        "return Array.from(document.images)"
        ".filter(i => i.src.startsWith('data:image/png') && i.complete && i.naturalWidth > 0)"
        ".map(i => i.src.slice('data:image/png;base64,'.length))"
    )
    assert sorted(shown) == sorted(figures)


def test_failure_messages_are_not_cut(course, server, browser):
    notebook = next(e.notebook for e in EXERCISES if e.answer_id in examples.MISTAKES)
    errors = [
        o
        for c in _autograded(course, notebook).cells
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert errors
    _open(browser, server, course, notebook)
    boxes = browser.execute_script(
        "return Array.from(document.querySelectorAll('div.output_error pre'))"
        ".map(p => [p.scrollWidth, p.clientWidth, p.textContent.trim()])"
    )
    assert len(boxes) == len(errors)
    for (scroll, client, text), error in zip(boxes, errors, strict=True):
        assert error.evalue in text
        assert client > 0 and scroll <= client, text


def test_mathjax_comes_from_this_machine(course, server, browser):
    from nbconvert.exporters import HTMLExporter
    from selenium.webdriver.support.ui import WebDriverWait

    local = pages.local_mathjax()
    _open(browser, server, course, WRITTEN.notebook)
    base, _ = server
    if local is None:  # nbconvert's CDN, as stock nbgrader (this machine may be offline)
        sources = browser.execute_script(
            "return Array.from(document.scripts).map(s => s.getAttribute('src') || '')"
        )
        assert HTMLExporter.mathjax_url.default_value in sources
        return
    # MathJax has typeset the notebook's formulas (CommonHTML output in the page).
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script(
            "return window.MathJax !== undefined && MathJax.Hub !== undefined"
            " && document.querySelectorAll('.MathJax_CHTML').length > 0"
        )
    )
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('MathJax.js'))"
    )
    assert loaded and all(n.startswith(f"{base}/static/{local.parent.name}/") for n in loaded)


def test_the_written_answer_is_near_the_top(course, server, browser):
    """The self-checks machinery takes one line: ex3_4's score box is within two screens."""
    _open(browser, server, course, WRITTEN.notebook)
    top, screen, height = browser.execute_script(
        f"return [document.getElementById('{WRITTEN.answer_id}').getBoundingClientRect().top"
        " + window.scrollY, window.innerHeight, document.body.scrollHeight]"
    )
    print(f"ex3_4's score box at y = {top:.0f} px of {height} (screen {screen} px)")
    assert top < 2 * screen
