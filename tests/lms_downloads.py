"""Fixture builders: one function per LMS, writing a download of a term's hand-ins exactly as
that LMS writes its own (names, folders, side files, zip entry times), with the source of each
format. Every zip entry of Canvas and Moodle carries the time of the DOWNLOAD, as theirs do.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

#: When the instructor downloaded (the LMS server's wall-clock time; tests read it as UTC).
DOWNLOAD_TIME = dt.datetime(2026, 12, 3, 9, 30, 0)


def nb(tag: str) -> bytes:
    """A small valid notebook whose content says where it came from."""
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"answer = {tag!r}")
    cell.id = hashlib.sha1(tag.encode()).hexdigest()[:8]
    notebook.cells.append(cell)
    return nbformat.writes(notebook).encode()


@dataclass
class Attempt:
    """One submission of a student: the files as the student named them, and when."""

    submitted: dt.datetime  # the LMS's own record (server time)
    files: dict[str, bytes]
    late: bool = False


@dataclass
class Student:
    first: str
    last: str
    user_id: int  # the LMS's numeric id (Canvas user id, Moodle participant id)
    username: str  # login (Blackboard, the exchange)
    attempts: list[Attempt] = field(default_factory=list)
    online_text: str | None = None  # Moodle's online text, beside the files

    @property
    def email(self) -> str:
        return f"{self.username}@uni.example"

    @property
    def last_attempt(self) -> Attempt:
        return self.attempts[-1]


def _zip(path: Path, members: dict[str, tuple[bytes, dt.datetime]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, (data, when) in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=when.timetuple()[:6]), data)
    return path


def canvas(path: Path, students: list[Student], anonymous: bool = False) -> Path:
    """Canvas "Download Submissions" (canvas-lms lib/content_zipper.rb): flat, each file
    "{sortable name without punctuation, lower case}[_LATE]_{user id}_{attachment id}_{file}",
    under anonymous grading "[LATE_]anon_{anonymous id}_{attachment id}_{file}"; only the latest
    submission's files, a re-uploaded name renamed "x-1.ipynb" by Canvas's file store. Entries
    written when the zip is made: the download's time."""
    members = {}
    file_id = 9000
    for s in students:
        a = s.last_attempt
        # sanitize_file_name keeps [[:word:]] (Ruby's: letters, marks, digits, "_"), then
        # sanitize_user_name removes "_<digits>_"
        sortable = re.sub(r"[^\w\u0900-\u097f]", "", f"{s.last}, {s.first}".lower())
        sortable = re.sub(r"_\d+_", "", sortable)
        if anonymous:
            anon = "anon_" + hashlib.sha1(str(s.user_id).encode()).hexdigest()[:5]
            prefix = "_".join(["LATE"] * a.late + [anon])
        else:
            prefix = "_".join([sortable] + ["LATE"] * a.late + [str(s.user_id)])
        for name, data in a.files.items():
            file_id += 1
            if len(s.attempts) > 1 and name in s.attempts[0].files:
                stem, ext = name.rsplit(".", 1)
                name = f"{stem}-{len(s.attempts) - 1}.{ext}"
            members[f"{prefix}_{file_id}_{name}"] = (data, DOWNLOAD_TIME)
    return _zip(path, members)


def canvas_submissions_json(students: list[Student]) -> str:
    """Canvas's REST API list of submissions (GET .../assignments/:id/submissions)."""
    import json

    return json.dumps(
        [
            {
                "user_id": s.user_id,
                "submitted_at": s.last_attempt.submitted.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "late": s.last_attempt.late,
                "attempt": len(s.attempts),
                "workflow_state": "submitted",
            }
            for s in students
        ]
    )


def moodle(
    path: Path,
    students: list[Student],
    version: int = 4,
    folders: bool = True,
    blind: bool = False,
) -> Path:
    """Moodle "Download all submissions" (mod/assign/classes/downloader.php, 4.x; locallib.php
    download_submissions, 3.x): prefix "{full name}_{participant id}" ("Participant_{id}" when
    blind marking), then per plugin a folder "{prefix}_assignsubmission_file" (3.x: "..._file_")
    or, not as folders, flat "{prefix}_assignsubmission_file_{file}"; online text as
    onlinetext.html beside. Only the latest attempt; ZipStream stamps every entry now."""
    members = {}
    for s in students:
        name = "Participant" if blind else f"{s.first} {s.last}".replace("_", " ")
        prefix = f"{name}_{s.user_id}"
        tail = "_" if version == 3 else ""
        plugins = {"file": s.last_attempt.files}
        if s.online_text is not None:
            plugins["onlinetext"] = {"onlinetext.html": s.online_text.encode()}
        for plugin, files in plugins.items():
            for file, data in files.items():
                if folders:
                    member = f"{prefix}_assignsubmission_{plugin}{tail}/{file}"
                else:
                    member = f"{prefix}_assignsubmission_{plugin}_{file}"
                members[member] = (data, DOWNLOAD_TIME)
    return _zip(path, members)


def moodle_worksheet(students: list[Student], blind: bool = False) -> str:
    """Moodle's grading worksheet (Assignment > "Download grading worksheet"; mod/assign
    gradingtable.php, col_timesubmitted: userdate(), e.g. "Wednesday, 2 December 2026, 4:15
    AM"; "-" when nothing was submitted)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "Identifier",
            "Full name",
            "Email address",
            "Status",
            "Grade",
            "Maximum Grade",
            "Grade can be changed",
            "Last modified (submission)",
            "Last modified (grade)",
            "Feedback comments",
        ]
    )
    for s in students:
        when = s.last_attempt.submitted if s.attempts else None
        text = when.strftime("%A, %-d %B %Y, %-I:%M %p") if when else "-"
        writer.writerow(
            [
                f"Participant {s.user_id}",
                "" if blind else f"{s.first} {s.last}",
                "" if blind else s.email,
                "Submitted for grading",
                "",
                "17.00",
                "Yes",
                text,
                "-",
                "",
            ]
        )
    return out.getvalue()


def blackboard(path: Path, students: list[Student], assignment: str = "Toeplitz") -> Path:
    """Blackboard Learn "Assignment File Download" (Grade Center > column > Assignment File
    Download, all attempts): flat "{assignment}_{username}_attempt_{YYYY-MM-DD-HH-MM-SS}_{file}"
    and per attempt a receipt "{assignment}_{username}_attempt_{time}.txt" (its layout as
    blackboard-analysis-tools and BBGradebookOrganiser parse it). The zip's entry times are
    the files' (not used)."""
    members = {}
    for s in students:
        for a in s.attempts:
            stem = f"{assignment}_{s.username}_attempt_{a.submitted:%Y-%m-%d-%H-%M-%S}"
            files = "".join(f"\tOriginal filename: {f}\n\tFilename: {stem}_{f}\n" for f in a.files)
            receipt = (
                f"Name: {s.first} {s.last} ({s.username})\n"
                f"Assignment: {assignment}\n"
                f"Date Submitted: {a.submitted:%A, %B %-d, %Y %-I:%M:%S %p} UTC\n"
                "Current Grade: Needs Grading\n\n"
                "Submission Field:\nThere is no student submission text data for this "
                "assignment.\n\nComments:\nThere are no student comments for this assignment.\n\n"
                f"Files:\n{files}"
            )
            members[f"{stem}.txt"] = (receipt.encode(), DOWNLOAD_TIME)
            for f, data in a.files.items():
                members[f"{stem}_{f}"] = (data, DOWNLOAD_TIME)
    return _zip(path, members)


def brightspace(path: Path, students: list[Student]) -> Path:
    """Brightspace (D2L) Assignments > "Download" of all submissions: a folder per submission,
    "{number}-{number} - {Last}, {First} - {Mon D, YYYY HMM AM}/" (no colon: 4:15 is "415";
    the layout d2lmf parses), each resubmission a folder of its own, and index.html."""
    members = {}
    sub = 123456
    rows = []
    for s in students:
        for a in s.attempts:
            sub += 1
            when = a.submitted.strftime("%b %-d, %Y %-I%M %p")
            folder = f"{sub}-{790000 + s.user_id} - {s.last}, {s.first} - {when}"
            rows.append(f"<tr><td>{s.last}, {s.first}</td><td>{when}</td></tr>")
            for f, data in a.files.items():
                members[f"{folder}/{f}"] = (data, DOWNLOAD_TIME)
    html = "<html><body><table>" + "".join(rows) + "</table></body></html>"
    members["index.html"] = (html.encode(), DOWNLOAD_TIME)
    return _zip(path, members)


def brightspace_grades_export(students: list[Student], item: str = "Toeplitz") -> str:
    """Brightspace's Grades > Export (CSV; D2L help "Export grades", community.d2l.com): the
    user columns chosen ("OrgDefinedId", "Username", "Last Name", "First Name", "Email", ids
    written with a leading "#"), the item's points column, "End-of-Line Indicator"."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "OrgDefinedId",
            "Username",
            "Last Name",
            "First Name",
            "Email",
            f"{item} Points Grade <Numeric MaxPoints:17>",
            "End-of-Line Indicator",
        ]
    )
    for s in students:
        writer.writerow(
            [f"#{100000 + s.user_id}", f"#{s.username}", s.last, s.first, s.email, "", "#"]
        )
    return out.getvalue()


def classroom(
    path: Path, students: list[Student], folder: str = "toeplitz_homework", parts: int = 1
) -> list[Path]:
    """Google Classroom's assignment folder in Drive, downloaded: Drive names the zip
    "{folder}-{YYYYMMDD}T{HHMMSS}Z-001.zip" (the download's UTC time; a large folder comes in
    parts "-002.zip", ..., each a zip of its own with the same top folder); inside, the folder
    holds one copy per student, which "Make a copy for each student" titles "{full name} -
    {title}" (https://support.google.com/edu/classroom/answer/6020265); two files of one name
    (two students called Dana Lee) are written as "name" and "name (1)", as Drive's clients do
    (https://github.com/Grive/grive/issues/166). The zip carries each file's modified time (the
    student's last edit: Classroom takes edit rights away on turning in). ``path``'s name is the
    first part's; returns every part."""
    names: dict[str, int] = {}
    members = {}
    for s in students:
        a = s.last_attempt
        for f, data in a.files.items():
            title = f"{s.first} {s.last} - {f}"
            seen = names.get(title, 0)
            names[title] = seen + 1
            if seen:
                stem, ext = title.rsplit(".", 1)
                title = f"{stem} ({seen}).{ext}"
            members[f"{folder}/{title}"] = (data, a.submitted)
    stem = path.name.rsplit("-", 1)[0]
    chunks = [dict(list(members.items())[i::parts]) for i in range(parts)]
    return [
        _zip(path.with_name(f"{stem}-{i + 1:03d}.zip"), chunk) for i, chunk in enumerate(chunks)
    ]


def exchange(path: Path, students: list[Student], assignment: str = "toeplitz") -> Path:
    """nbgrader's exchange as collected: "{student}/{assignment}/{file}" and the
    timestamp.txt nbgrader's ExchangeSubmit writes beside."""
    members = {}
    for s in students:
        a = s.last_attempt
        members[f"{s.username}/{assignment}/timestamp.txt"] = (
            f"{a.submitted:%Y-%m-%d %H:%M:%S}.000000 UTC\n".encode(),
            DOWNLOAD_TIME,
        )
        for f, data in a.files.items():
            members[f"{s.username}/{assignment}/{f}"] = (data, DOWNLOAD_TIME)
    return _zip(path, members)
