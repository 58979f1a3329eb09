"""Grades and feedback back into the LMS: one file per LMS that the LMS imports unedited.

``export`` calls :func:`write_lms_files` with its rows. Each LMS gets only the students whose
collect ledger entry carries an id of that LMS (``"lms": {"system": ..., "user_id": ...}``), the
id the LMS matches on; everyone else is named in the one line the file's summary prints. A file
whose LMS needs the instructor to name the column (Canvas, Blackboard, Brightspace) is not
written until that name is configured, and the line says how. Students whose grade still waits
for a hand grade are left out of every LMS file (an LMS would take the partial total as the
grade) and named too. The score sent is ``score``: the total after nbgrader's late penalty.

The formats, each from the LMS's own source or documentation:

Canvas, "Import grades in the Gradebook" (canvas-lms ``app/models/gradebook_importer.rb``):
    the header must start ``Student``, ``ID``; with ``SIS User ID`` and ``SIS Login ID`` next
    (``update_column_count``), the column after them must be ``Section`` (``header?``), and every
    later column is an assignment. An assignment column is matched by the number in
    ``"Name (12345)"`` (``Assignment.title_and_id``), else by its exact title, else Canvas
    creates a new assignment, which is why the column is written only as configured
    (``c.LmsExport.canvas_assignment``, the header of the assignment's column in Canvas's own
    gradebook export). A row is matched on ``ID``, Canvas's numeric user id (``process_student``:
    ``row[1].to_i``), the number Canvas puts in its submission download names
    (``login_USERID_SUBMISSIONID_file``). Comma separated, UTF-8.
Moodle, assignment "Upload grading worksheet" (moodle ``mod/assign/feedback/offline/
    importgradeslib.php``): the columns are found by their English names ``Identifier``
    (``recordid``), ``Grade`` and ``Last modified (grade)`` (``lastmodifiedgrade``); without all
    three the import fails. ``Identifier`` is ``"Participant N"``: the importer strips
    ``get_string('hiddenuser')`` (``"Participant "``) and looks N up with
    ``get_user_id_for_uniqueid``. N is the assignment's participant number, the same number
    Moodle writes into its download folder names (``mod/assign/locallib.php``
    ``download_submissions``: ``fullname . '_' . get_uniqueid_for_user($userid)``, with blind
    marking ``'Participant_' . uniqueid``), so the ledger's Moodle ``user_id`` is that number.
    A grade is skipped when Moodle's grade changed more than 60 s after ``Last modified
    (grade)`` (``assignfeedback_offline`` ``process_import_grades``), so the export time is
    written there, and when it exceeds the assignment's maximum grade: set it to the course's
    maximum (23). Other columns (``Full name``, ``Email address``, ``Maximum Grade``) are ignored
    by the importer and kept for the person reading the file. No ``Feedback comments`` column:
    the importer overwrites the comment with whatever the column holds, empty included.
Moodle, "Upload multiple feedback files in a zip" (moodle ``mod/assign/feedback/file/
    importziplib.php`` ``is_valid_filename_for_import``): a path part split at ``_`` into at
    least four pieces ``fullname_participant_plugintype_pluginname`` whose second piece is the
    participant number; the rest of the path is the feedback file's name. The folders are
    written as Moodle 3.1 and later write them in the download
    (``Full Name_N_assignsubmission_file_/``; a full name has no ``_``, Moodle replaces them).
Blackboard Learn (Original), Grade Center "Work Offline > Upload" (Blackboard Help,
    "Uploading External Grade Center Items", library.blackboard.com): a header row, one record
    per line; students matched on ``Username``; a column matched by the Column ID after ``|`` in
    its header (``"Toeplitz [Total Pts: 23 Score] |123456"``, as Blackboard's own download
    writes it); a column without one creates a new text column, so the column is written only
    as configured (``c.LmsExport.blackboard_column``). Comma delimited ``.csv`` with every value
    in quotes, as that page asks of comma-delimited files.
Brightspace (D2L), Grades "Import" (D2L Brightspace help, "Importing grades",
    community.d2l.com/brightspace/kb/articles/3538): ``OrgDefinedId`` or ``Username`` (or both)
    to match the user, ``<Item> Points Grade`` for a numeric item, and the sample file's last
    column ``End-of-Line Indicator`` holding ``#`` on every row. The item is named as configured
    (``c.LmsExport.brightspace_item``); the key column as ``c.LmsExport.brightspace_key``.

Everything a student can influence (names, e-mails, ids) is written through
``untrusted.csv_cell`` (no spreadsheet formula) and, in pages, HTML-escaped.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from traitlets import Enum, Unicode
from traitlets.config import Configurable

from ..course.contract import ASSIGNMENT, EXERCISES, NOTEBOOKS
from ..course.untrusted import csv_cell, for_terminal, is_student_id
from ..grader.coursedir import Course, CourseProblem

CANVAS_CSV = "canvas_grades.csv"
MOODLE_CSV = "moodle_grading_worksheet.csv"
MOODLE_FEEDBACK_ZIP = "moodle_feedback_files.zip"
BLACKBOARD_CSV = "blackboard_grade_center.csv"
BRIGHTSPACE_CSV = "brightspace_grades.csv"
FEEDBACK_DIR = "feedback"
#: The per-student page in ``exports/feedback/{student}/`` and in each Moodle feedback folder.
STUDENT_PAGE = "feedback.html"

#: Canvas's header for one assignment: its title, a space, its id in parentheses
#: (canvas-lms ``Assignment.title_and_id``).
CANVAS_COLUMN = re.compile(r".*\S \((\d+)\)")
#: Blackboard's header for an existing column: anything, then ``|`` and the column id.
BLACKBOARD_COLUMN = re.compile(r".*\|\s*(\d+)\s*")
#: Moodle's participant number and Canvas's user id are whole numbers.
NUMBER = re.compile(r"[0-9]{1,18}")
#: Moodle's clean_filename removes these from a folder name; "_" separates the id from the name.
_MOODLE_NAME_DROP = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')

# Moodle's English strings the importers look the columns up by (mod/assign/lang/en/assign.php)
MOODLE_ID = "Identifier"  # recordid
MOODLE_PARTICIPANT = "Participant "  # hiddenuser, with its space: substr() strips exactly this
MOODLE_GRADE = "Grade"  # core 'grade'
MOODLE_MODIFIED = "Last modified (grade)"  # lastmodifiedgrade


class LmsExport(Configurable):
    """Where each LMS's grade file puts the grade (``nbgrader_config.py``: ``c.LmsExport.*``)."""

    canvas_assignment = Unicode(
        "",
        help="The assignment's column header in Canvas's gradebook export, 'Name (id)', e.g. "
        "'Toeplitz (12345)'. Canvas matches the number; without it the Canvas file is not written "
        "(a column Canvas cannot match creates a new assignment).",
    ).tag(config=True)
    blackboard_column = Unicode(
        "",
        help="The Grade Center column's header as Blackboard's download writes it, ending in "
        "'|' and the column id, e.g. 'Toeplitz [Total Pts: 23 Score] |123456'.",
    ).tag(config=True)
    brightspace_item = Unicode(
        "", help="The name of the Brightspace grade item (a numeric item), e.g. 'Toeplitz'."
    ).tag(config=True)
    brightspace_key = Enum(
        ["OrgDefinedId", "Username"],
        default_value="OrgDefinedId",
        help="Which Brightspace user field the ledger's Brightspace user_id is.",
    ).tag(config=True)


@dataclass(frozen=True)
class Identity:
    """Who a student is in the LMS they handed in through (the collect ledger's ``lms``)."""

    system: str = ""
    user_id: str = ""
    name: str = ""
    email: str = ""
    anonymous: bool = False

    @classmethod
    def from_ledger(cls, entry: Any) -> Identity:
        lms = entry.get("lms") if isinstance(entry, dict) else None
        if not isinstance(lms, dict):
            return cls()

        def text(key: str) -> str:
            value = lms.get(key)
            return value if isinstance(value, str) else "" if value is None else str(value)

        return cls(
            text("system"),
            text("user_id"),
            text("name"),
            text("email"),
            lms.get("anonymous") is True,
        )


@dataclass(frozen=True)
class Graded:
    """What an LMS file needs of one student (built by ``export`` from its rows)."""

    student_id: str
    identity: Identity
    score: float
    max_total: float
    #: Why no LMS gets this grade yet ("" when it may): a hand grade still to give (an LMS
    #: would take the partial total), or files collected that grade has not graded.
    hold: str = ""


@dataclass
class LmsFile:
    system: str
    path: Path | None  # None: not written (see ``line``)
    written: list[str] = field(default_factory=list)  # student ids in the file
    line: str = ""  # the one line the summary prints


def settings(root: Course | Path, **overrides: str | None) -> LmsExport:
    """``c.LmsExport`` of the course (``Course``, or its folder's ``nbgrader_config.py``); a flag
    overrides it."""
    try:
        lms = Course.of(root).settings(LmsExport)
    except CourseProblem:  # export already warns about a broken config
        lms = LmsExport()
    for name, value in overrides.items():
        if value:
            setattr(lms, name, value)
    return lms


def _num(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _csv(rows: Sequence[Sequence[Any]], **dialect: Any) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", **dialect)
    for row in rows:
        writer.writerow([csv_cell(value) if isinstance(value, str) else value for value in row])
    return buffer.getvalue()


def _write(path: Path, text: str | bytes) -> None:
    # A half-written file uploaded to the LMS would be worse than the previous one.
    partial = path.with_name(path.name + ".partial")
    if isinstance(text, bytes):
        partial.write_bytes(text)
    else:
        partial.write_text(text, encoding="utf-8", newline="")
    os.replace(partial, path)


def _left_out(system: str, students: Sequence[Graded], chosen: set[str]) -> str:
    """The students not in ``system``'s file, grouped by why, for the one summary line."""
    others: dict[str, list[str]] = {}
    shared = _shared_ids(system, students)
    for s in students:
        if s.student_id in chosen:
            continue
        if s.identity.system != system:
            why = f"no {system} id" + (f" ({s.identity.system})" if s.identity.system else "")
        elif s.hold:
            why = s.hold
        elif s.identity.anonymous and system in ("canvas", "blackboard", "brightspace"):
            why = "anonymous id"
        elif s.identity.user_id in shared:
            why = f"one {system} id under two student ids (map them in LmsCollectorPlugin)"
        else:
            why = f"{system} id not usable"
        others.setdefault(why, []).append(for_terminal(s.student_id))
    if not others:
        return ""
    return "; not in it: " + "; ".join(
        f"{why}: {', '.join(names)}" for why, names in sorted(others.items())
    )


def _members(system: str, students: Sequence[Graded], usable) -> list[Graded]:
    """The students of ``system``'s file: of that LMS, not held, with an id it can use, and the
    only one of the class with that id. One LMS account under two student ids (a name changed
    between two downloads, blind marking lifted) would be two rows for one person in the import,
    each with a total of part of the work: neither is written (``_left_out`` says why)."""
    shared = _shared_ids(system, students)
    return [
        s
        for s in students
        if s.identity.system == system
        and not s.hold
        and usable(s.identity)
        and s.identity.user_id not in shared
    ]


def _shared_ids(system: str, students: Sequence[Graded]) -> set[str]:
    """``system``'s user ids that more than one student id holds (held or not: the other one's
    row would still carry part of the work)."""
    ids = Counter(s.identity.user_id for s in students if s.identity.system == system)
    return {user_id for user_id, n in ids.items() if user_id and n > 1}


def canvas(students: Sequence[Graded], column: str, out: Path) -> LmsFile:
    # Canvas anonymous-grading downloads carry no user id the gradebook import knows.
    members = _members(
        "canvas",
        students,
        lambda i: not i.anonymous and NUMBER.fullmatch(i.user_id) is not None,
    )
    result = LmsFile("canvas", None)
    if not CANVAS_COLUMN.fullmatch(column):
        result.line = (
            f'{CANVAS_CSV} not written: set c.LmsExport.canvas_assignment = "NAME (ID)" in '
            "nbgrader_config.py (or export --canvas-assignment), the assignment's column header "
            "in Canvas's gradebook export"
        )
        return result
    rows: list[list[Any]] = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column]]
    for s in members:
        rows.append(
            [s.identity.name or s.student_id, s.identity.user_id, "", "", "", _num(s.score)]
        )
    result.path = out / CANVAS_CSV
    _write(result.path, _csv(rows))
    result.written = [s.student_id for s in members]
    return result


def moodle(students: Sequence[Graded], out: Path, now: datetime) -> LmsFile:
    members = _members("moodle", students, lambda i: NUMBER.fullmatch(i.user_id) is not None)
    # Moodle compares it with its own grade's time (strtotime): the moment of this export.
    modified = now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    rows: list[list[Any]] = [
        [MOODLE_ID, "Full name", "Email address", MOODLE_GRADE, "Maximum Grade", MOODLE_MODIFIED]
    ]
    for s in members:
        rows.append(
            [
                MOODLE_PARTICIPANT + s.identity.user_id,
                s.identity.name,
                s.identity.email,
                _num(s.score),
                _num(s.max_total),
                modified,
            ]
        )
    result = LmsFile("moodle", out / MOODLE_CSV, [s.student_id for s in members])
    _write(result.path, _csv(rows))
    return result


#: The assignment's maximum, the LMS column's (23, Part 6 included).
TOTAL_POINTS = sum(e.points for e in EXERCISES)


def blackboard(students: Sequence[Graded], column: str, out: Path) -> LmsFile:
    members = _members("blackboard", students, lambda i: bool(i.user_id) and not i.anonymous)
    result = LmsFile("blackboard", None)
    if not BLACKBOARD_COLUMN.fullmatch(column):
        result.line = (
            f"{BLACKBOARD_CSV} not written: set c.LmsExport.blackboard_column = "
            f'"NAME [Total Pts: {TOTAL_POINTS} Score] |COLUMN_ID" (or export '
            "--blackboard-column), the column's header in Blackboard's Grade Center download"
        )
        return result
    rows: list[list[Any]] = [["Username", column]]
    rows += [[s.identity.user_id, _num(s.score)] for s in members]
    result.path = out / BLACKBOARD_CSV
    # Blackboard: each value of a comma-delimited file within quotes.
    _write(result.path, _csv(rows, quoting=csv.QUOTE_ALL))
    result.written = [s.student_id for s in members]
    return result


def brightspace(students: Sequence[Graded], item: str, key: str, out: Path) -> LmsFile:
    members = _members("brightspace", students, lambda i: bool(i.user_id) and not i.anonymous)
    result = LmsFile("brightspace", None)
    if not item.strip():
        result.line = (
            f'{BRIGHTSPACE_CSV} not written: set c.LmsExport.brightspace_item = "ITEM" (or '
            "export --brightspace-item), the name of the numeric grade item in Brightspace"
        )
        return result
    rows: list[list[Any]] = [[key, f"{item.strip()} Points Grade", "End-of-Line Indicator"]]
    rows += [[s.identity.user_id, _num(s.score), "#"] for s in members]
    result.path = out / BRIGHTSPACE_CSV
    _write(result.path, _csv(rows))
    result.written = [s.student_id for s in members]
    return result


def write_lms_files(
    students: Sequence[Graded], out: Path, lms: LmsExport, now: datetime | None = None
) -> list[LmsFile]:
    """One grade file per LMS some student handed in through; each with its summary line."""
    now = now or datetime.now(timezone.utc)
    systems = {s.identity.system for s in students}
    files = []
    if "canvas" in systems:
        files.append(canvas(students, lms.canvas_assignment, out))
    if "moodle" in systems:
        files.append(moodle(students, out, now))
    if "blackboard" in systems:
        files.append(blackboard(students, lms.blackboard_column, out))
    if "brightspace" in systems:
        files.append(brightspace(students, lms.brightspace_item, lms.brightspace_key, out))
    for f in files:
        if f.path is not None:
            f.line = (
                f"{f.path.name}: {len(f.written)} student{'s' if len(f.written) != 1 else ''} "
                f"for {f.system}'s grade import" + _left_out(f.system, students, set(f.written))
            )
    return files


# --- feedback pages ---------------------------------------------------------------------------

#: Nothing runs, nothing loads: styles inline, images embedded; links are plain navigation.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)
_PAGE_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:48rem;margin:1.5rem auto;color:#222}"
    "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.25rem .6rem;"
    "text-align:left}td.n{text-align:right}.note{color:#555}"
)


def _e(value: Any) -> str:
    return html.escape(for_terminal(value), quote=True)


@dataclass(frozen=True)
class PageInput:
    student_id: str
    identity: Identity
    total: float
    late_penalty: float
    score: float
    max_total: float
    lateness: str  # "on time", "2 h 24 min late", "unknown (...)", ...
    notebooks: dict[str, tuple[float, float, str]]  # notebook -> (score, max, status)
    pending: tuple[str, ...] = ()


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def student_page(page: PageInput, pages: Sequence[str]) -> str:
    """One student's page: total, each notebook's score with a link to its feedback page (a file
    beside this one), and lateness. Text only, no script; a strict policy besides."""
    who = page.identity.name or page.student_id
    rows = []
    for notebook in NOTEBOOKS:
        score, max_score, status = page.notebooks.get(notebook, (0.0, 0.0, "missing"))
        name = f"{notebook}.html"
        link = f'<a href="{_e(name)}">{_e(notebook)}</a>' if name in pages else _e(notebook)
        shown = _num(score) if status == "graded" else status
        rows.append(
            f'<tr><td>{link}</td><td class="n">{_e(shown)}</td>'
            f'<td class="n">{_num(max_score)}</td></tr>'
        )
    pending = (
        f'<p class="note">Still to be graded by hand: {_e(", ".join(page.pending))}.</p>'
        if page.pending
        else ""
    )
    penalty = (
        f"<tr><th>late penalty</th><td>-{_num(page.late_penalty)}</td></tr>"
        if page.late_penalty
        else ""
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">',
            f"<title>{_e(ASSIGNMENT)}: feedback for {_e(who)}</title>",
            f"<style>{_PAGE_CSS}</style></head><body>",
            f"<h1>{_e(ASSIGNMENT)}: feedback for {_e(who)}</h1>",
            "<table>",
            f"<tr><th>total</th><td>{_num(page.total)} of {_num(page.max_total)}</td></tr>",
            penalty,
            f"<tr><th>score</th><td><b>{_num(page.score)}</b> of {_num(page.max_total)}</td></tr>",
            f"<tr><th>submission</th><td>{_e(page.lateness)}</td></tr>",
            "</table>",
            pending,
            "<h2>Notebooks</h2>",
            '<p class="note">Each notebook links to its feedback: every test, its message, '
            "without the hidden tests.</p>",
            "<table><tr><th>notebook</th><th>score</th><th>of</th></tr>",
            *rows,
            "</table>",
            "</body></html>",
            "",
        ]
    )


def moodle_folder(identity: Identity) -> str:
    """The folder Moodle writes for this participant in its download (3.1 and later):
    ``Full Name_N_assignsubmission_file_``; with blind marking ``Participant_N_...``."""
    name = "Participant" if identity.anonymous else identity.name
    name = _MOODLE_NAME_DROP.sub("", name.replace("_", " ")).strip() or "Participant"
    return f"{name}_{identity.user_id}_assignsubmission_file_"


def write_feedback(
    root: Path, out: Path, pages: Sequence[PageInput]
) -> tuple[list[Path], Path | None]:
    """``out/feedback/{student}/feedback.html`` with copies of the student's notebook feedback
    pages (``feedback/{student}/toeplitz/*.html``, made by ``feedback``) beside it, so the folder
    stands alone; and Moodle's feedback-files zip for the Moodle students."""
    written = []
    moodle_entries: list[tuple[str, bytes]] = []
    for page in pages:
        if not is_student_id(page.student_id):
            continue  # never a folder name (export's summary lists every student anyway)
        source = root / "feedback" / page.student_id / ASSIGNMENT
        folder = out / FEEDBACK_DIR / page.student_id
        folder.mkdir(parents=True, exist_ok=True)
        copies: dict[str, bytes] = {}
        for notebook in NOTEBOOKS:
            path = source / f"{notebook}.html"
            if _regular_file(path):  # the instructor's own output; no link is followed
                copies[path.name] = path.read_bytes()
        text = student_page(page, list(copies))
        for name, data in copies.items():
            _write(folder / name, data)
        _write(folder / STUDENT_PAGE, text)
        written.append(folder / STUDENT_PAGE)
        identity = page.identity
        if identity.system == "moodle" and NUMBER.fullmatch(identity.user_id):
            prefix = moodle_folder(identity)
            moodle_entries.append((f"{prefix}/{STUDENT_PAGE}", text.encode("utf-8")))
            moodle_entries += [(f"{prefix}/{name}", data) for name, data in copies.items()]
    zip_path = None
    if moodle_entries:
        zip_path = out / MOODLE_FEEDBACK_ZIP
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in moodle_entries:
                zf.writestr(name, data)
        _write(zip_path, buffer.getvalue())
    return written, zip_path
