"""Collect an LMS download (zip or folder) into ``submitted/{student}/toeplitz/{notebook}.ipynb``.

Two layers:

``LmsCollectorPlugin``
    an nbgrader ``FileNameCollectorPlugin``: it turns one path of the download into a course student
    id and a canonical notebook name, or says why it cannot. Its regexes and student map are traits,
    set in ``nbgrader_config.py``. It also works under ``nbgrader zip_collect
    --collector=toeplitz_course.instructor.collect.LmsCollectorPlugin``.

``collect(path, course_root)``
    the driver: reads the download, asks the plugin about every file, keeps the latest of
    duplicates, copies the winners and returns a ``CollectReport`` that accounts for every file.

Reused from nbgrader: ``FileNameCollectorPlugin`` (base class, its ``named_regexp`` and
``valid_ext`` traits and its ``collect()`` contract), ``CourseDirectory.format_path`` for the
destination (so ``CourseDirectory.submitted_directory`` and ``directory_structure`` are honoured),
and ``nbgrader.utils.parse_utc`` for a ``timestamp`` group.

Not reused, and why:

* ``ZipCollectApp`` itself: on a duplicate without timestamps it aborts the whole run
  (``self.fail``); it refuses a non-empty ``submitted/{student}/{assignment}`` unless ``--force``,
  which then deletes the earlier collect; it keeps one timestamp per student, not per file; and a
  skipped file is only a log line, so there is nothing to build a report from.
* ``ExtractorPlugin``: it unpacks with setuptools' ``unpack_archive``, which stops at the first
  unsafe member (``../x``) and leaves a half-extracted tree, and a corrupt zip surfaces as a
  traceback. Here members are read straight out of the zip, so an unsafe member is rejected on its
  own, nothing is written outside ``submitted/`` and no extracted copy is left behind.

Nothing is lost: the input is only read. A file already in ``submitted/`` is overwritten only by
different content, and its earlier version is first copied to
``downloaded/{assignment}/replaced/{run time}/{student}/{notebook}.ipynb`` (outside ``submitted/``,
where a grader listing student folders would take it for a student).

When each student handed in: ``submitted/{student}/{assignment}/timestamp.txt``, in the format
nbgrader's exchange writes (``2024-03-01 14:24:00.000000 UTC``), which ``nbgrader autograde``
(and so ``grade``) records as the submission's timestamp, and from which it computes lateness
against the assignment's due date and applies ``AssignLatePenalties``. Only a true submission
time is written, never the download's; each student's time has a source (``TIME_SOURCES``, best
first): ``worksheet`` (the LMS's record, ``collect --times``: Moodle's grading worksheet, Canvas's
submissions JSON), ``receipt`` (Blackboard's per-attempt .txt), ``exchange`` (its
timestamp.txt or inbound folder name), ``folder-name`` (Brightspace), ``file-name`` (a
``timestamp`` group, Blackboard's attempt time), ``lms-marker`` (Canvas: its ``_LATE_`` marker
says late or not, no time), ``file`` (a plain folder's or Drive zip's file times) and
``download`` (Canvas's and Moodle's zip entries carry the time the zip was made: no
timestamp.txt, lateness unknown). When every file of several students carries one time, that
is the download's too (a warning). Names' times are read in ``archive_timezone``. The first time
known for a student is kept: a second download or a hand fix never moves it; only a better
source replaces it, or the LMS's own record of a later resubmission with new files.

Who each student is, for the LMS: the ledger's ``lms`` block per student (system, user_id,
name, email, anonymous), from the download's names (Canvas user id or anonymous id, Moodle
participant id and full name, Blackboard username and receipt name, Brightspace and Classroom
display names) and the ``--times`` file (Moodle's worksheet adds e-mails); ``record_names``
writes them into nbgrader's gradebook when the course has one. Anonymous downloads (Canvas
``anon_...``, Moodle ``Participant_N``) are placed under those ids.

Everything a student hands in is hostile (issue 20), and so is every name in the download below
the LMS's own:

* Whose a file is comes only from the name the LMS gives the submission: the patterns must match
  the whole path from the download's root (the first component: Moodle's
  ``Name_id_assignsubmission_file_/`` folder, a student's folder; or a flat file's
  ``login_userid_subid_`` prefix, Canvas's), never a tail of it, so folders and file names inside
  a submission (another student's Moodle folder, ``victim/toeplitz/``, a Canvas upload named like
  another user's hand-in) decide nothing. A single folder wrapping the whole download is looked
  through only when everything below it is LMS-named and it is not a submission itself.
* Nothing is followed or waited on: a folder download is walked with lstat, never through a
  symlinked folder; a symlink, FIFO, device or socket is refused with its kind as the reason, and
  so is a file with a hard link outside the download (another file's content under a name here;
  hard links whose every name is inside are read). Files are opened with O_NOFOLLOW|O_NONBLOCK
  and read only if fstat shows the regular file that was walked. Zip members whose mode says
  link, FIFO or device are refused. Tar files are not read at all.
* One file never stops the run: JSON Python cannot parse (nested too deep, a huge number), a zip
  member name flagged UTF-8 that is not, a folder file name that is not UTF-8, a path longer
  than ``MAX_PATH_CHARS``: each rejects that file with the reason. Whatever fails after files are
  placed, the timestamps and the ledger are still written (a failure is a report warning).
* Text out is clean: the report and every CollectError go through ``untrusted.for_terminal``;
  every student id collect makes passes ``untrusted.is_student_id``, and a
  ``student_id_map`` value that does not is a CollectError.

``downloaded/{assignment}/collected.json``, the collect ledger, remembers across runs what each
student handed in and what of it was rejected, with the LMS's own lateness marker (Canvas's
``_LATE_``). ``export`` reads it, so a student whose every file was rejected still gets a row in
``grades.csv`` saying nothing gradable was handed in; it lives beside ``replaced/`` and not under
``submitted/``, where a folder of its own would be graded as a student's hand-in.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import json
import os
import re
import stat
import struct
import unicodedata
import zipfile
import zlib
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nbgrader.coursedir import CourseDirectory
from nbgrader.plugins import FileNameCollectorPlugin
from nbgrader.utils import parse_utc
from traitlets import Bool, Dict, List, TraitError, Unicode, Union, observe, validate
from traitlets.config import Config

from ..course.contract import ASSIGNMENT, NOTEBOOKS
from ..course.untrusted import ID_MARKS, for_terminal, is_student_id
from ..grader.coursedir import Course, CourseProblem

__all__ = [
    "DEFAULT_PATTERNS",
    "LEDGER",
    "TIMESTAMP_FILE",
    "CollectError",
    "CollectReport",
    "Identified",
    "LmsCollectorPlugin",
    "NotPlaced",
    "Placed",
    "Rejected",
    "Replaced",
    "canonical_notebook",
    "collect",
    "format_timestamp",
    "plain_name",
    "read_ledger",
    "read_times",
    "record_names",
    "safe_student_id",
    "split_name",
]

#: Tried in order; the first that fully matches the file's path below the download's root wins
#: (below a single wrapping folder when the download has one, see ``collect``). Anchored there, so
#: whose file it is comes only from the name the LMS gives the submission (the first path
#: component, or a flat file's prefix), never from folder or file names inside it, which the
#: student chose. ``{assignment}`` stands for the escaped assignment id.
#:
#: Groups: ``student_id`` and ``file_id`` (required); ``lms_id`` (the LMS's own id of the
#: student); ``late`` (the LMS's late marker); ``name`` (the display name); ``anon`` (empty: an
#: anonymous id); a time: ``timestamp`` (nbgrader's parse_utc, or ``YYYY-MM-DD-HH-MM-SS``, UTC),
#: ``bb_time`` (``YYYY-MM-DD-HH-MM-SS``) or ``d2l_time`` (``Nov 29, 2026 415 AM``), both in
#: ``archive_timezone``; and an empty ``sys_<lms>`` group naming the LMS (canvas, moodle,
#: blackboard, brightspace, classroom, exchange, folder) for the ledger's ``lms`` block.
DEFAULT_PATTERNS = [
    # Moodle, blind marking: "Participant_1234567_assignsubmission_file/..." (the id is Moodle's
    # assign_user_mapping id, the worksheet's "Participant 1234567"; mod/assign/classes/
    # downloader.php, get_student_prefix: get_string('participant') . '_' . get_uniqueid_for_user)
    r"(?P<sys_moodle>)(?P<anon>)(?P<student_id>Participant_(?P<lms_id>\d+))"
    r"_assignsubmission_[a-z]+_?/(?:[^/]+/)*(?P<file_id>[^/]+)",
    # Moodle, a folder per submission: "Jane Smith_12345_assignsubmission_file_/02_padding.ipynb"
    # (3.x ends the folder name with "_", 4.x does not: downloader.php, clean_filename($prefix .
    # '_' . $subtype . '_' . $type)), its files possibly in subfolders of their own
    # ("..._file_/my work/05_parameter_counts.ipynb": the student is the Moodle folder's).
    r"(?P<sys_moodle>)(?P<student_id>(?P<name>[^/]+?))_(?P<lms_id>\d+)_assignsubmission_[a-z]+_?/"
    r"(?:[^/]+/)*(?P<file_id>[^/]+)",
    # Canvas, anonymous grading: "[LATE_]anon_<anonymous id>_<file id>_<file name>" (canvas-lms
    # lib/content_zipper.rb, get_filename: "anon_#{submission.anonymous_id}", no user name).
    r"(?P<sys_canvas>)(?:(?P<late>LATE)_)?(?P<student_id>anon_(?P<lms_id>[A-Za-z0-9]+))(?P<anon>)"
    r"_\d+_(?P<file_id>[^/]+)",
    # Canvas: "smithj_LATE_12345_678_01_conv1d_toeplitz-1.ipynb" (sortable name without
    # punctuation, LATE when Canvas found it late, user id, file id; content_zipper.rb). Before
    # Moodle's flat names: the student's own file name follows Canvas's prefix, and one uploaded
    # as "victim_999_assignsubmission_file_x.ipynb" would otherwise read as Moodle user 999's.
    # The name may hold "_" ("Smith_Jones, Ann": smith_jonesann) but never "_<digits>_" (canvas-lms
    # lib/content_zipper.rb: sanitize_file_name keeps [[:word:]], sanitize_user_name removes
    # /_\d+_/), nor a space: the first "_<user id>_<file id>_" is Canvas's. A name with no word
    # character left is empty: the student is then the user id's (``_place``).
    r"(?P<sys_canvas>)(?P<student_id>[^/\s]*?)(?:_(?P<late>(?i:late)))?_(?P<lms_id>\d+)_\d+_"
    r"(?P<file_id>[^/]+)",
    # Moodle, flat (download not as folders): blind, then named:
    # "Jane Smith_12345_assignsubmission_file_02_padding.ipynb" (the lazy name stops at the
    # first "_id_assignsubmission_", which is Moodle's, before the student's file name)
    r"(?P<sys_moodle>)(?P<anon>)(?P<student_id>Participant_(?P<lms_id>\d+))"
    r"_assignsubmission_[a-z]+_(?P<file_id>[^/]+)",
    r"(?P<sys_moodle>)(?P<student_id>(?P<name>[^/]+?))_(?P<lms_id>\d+)_assignsubmission_[a-z]+_"
    r"(?P<file_id>[^/]+)",
    # Blackboard Learn "Assignment File Download": "Toeplitz_aanderson_attempt_2026-12-02-04-15-02_
    # 01_conv1d_toeplitz.ipynb", beside a receipt "..._attempt_2026-12-02-04-15-02.txt" (its
    # "Name: Alice Anderson (aanderson)" settles a username with "_" in it, see _Receipt)
    r"(?P<sys_blackboard>)(?P<bb_prefix>[^/]+?_(?P<student_id>[^/_]+)_attempt_"
    r"(?P<bb_time>\d{4}(?:-\d\d){5}))_(?P<file_id>[^/]+)",
    # Brightspace (D2L): a folder per submission "123457-790101 - Anderson, Alice - Nov 29, 2026
    # 415 AM/", or flat "... 415 AM - 01_conv1d_toeplitz.ipynb"; the numbers change with every
    # submission, so the student is the name (d2lmf's parse_submission_dirname reads it so)
    r"(?P<sys_brightspace>)\d+-\d+ - (?P<student_id>(?P<name>[^/]+?)) - "
    r"(?P<d2l_time>[A-Z][a-z]{2} \d{1,2}, \d{4} \d{1,2}:?\d\d [AP]M)(?:/(?:[^/]+/)*| - )"
    r"(?P<file_id>[^/]+)",
    # nbgrader's exchange inbound "smithj+toeplitz+2024-03-01 14:24:00.000000 UTC+x/01.ipynb"
    r"(?P<sys_exchange>)(?P<student_id>[^/+]+)\+{assignment}\+(?P<timestamp>[^/+]+)"
    r"(?:\+[^/+]*)?/(?P<file_id>[^/]+)",
    # nbgrader exchange-like "smithj/toeplitz/01_conv1d_toeplitz.ipynb" (timestamp.txt beside)
    r"(?P<sys_exchange>)(?P<student_id>[^/]+)/{assignment}/(?P<file_id>[^/]+)",
    # Google Classroom ("Make a copy for each student": "Alice Anderson - 01_conv1d_toeplitz"),
    # the assignment's Drive folder downloaded as a zip: one wrapping folder, unwrapped
    r"(?P<sys_classroom>)(?P<student_id>(?P<name>[^/]+?)) - (?P<file_id>[^/]+)",
    # a folder per student, also Colab downloads: "smithj/Copy of 01_conv1d_toeplitz (1).ipynb"
    r"(?P<sys_folder>)(?P<student_id>[^/]+)/(?P<file_id>[^/]+)",
]

#: Where each LMS's zip entry times come from: the time the download was made (Canvas's
#: rubyzip ``get_output_stream``, Moodle's ZipStream ``addFileFromStream``: "Defaults to current
#: time"), never a submission's.
DOWNLOAD_TIMED = {"canvas", "moodle"}
#: Time sources, best first; a student's recorded time is replaced only by a better source (or,
#: from the LMS's own record, by a later resubmission). "lms-marker" and "download" carry no time.
TIME_SOURCES = (
    "worksheet",
    "receipt",
    "exchange",
    "folder-name",
    "file-name",
    "lms-marker",
    "file",
    "download",
)
_RANK = {s: len(TIME_SOURCES) - i for i, s in enumerate(TIME_SOURCES)}
_TRUSTED = {"worksheet", "receipt", "exchange", "folder-name", "file-name"}

#: A member larger than this is not read; notebooks of this course are well under 1 MB.
MAX_FILE_BYTES = 100 * 1024 * 1024
#: A path longer than this (characters) is not matched: no LMS writes one, and the patterns'
#: cost grows with the length of what they are matched against.
MAX_PATH_CHARS = 1000

#: nbgrader's name for a submission's time, in ``submitted/{student}/{assignment}/``.
TIMESTAMP_FILE = "timestamp.txt"
#: The collect ledger, under ``downloaded/{assignment}/``.
LEDGER = "collected.json"
# nbgrader's exchange writes timestamp.txt with this format (ExchangeSubmit, timezone "UTC").
_NBGRADER_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f %Z"
# A zip tool that records no time writes the DOS epoch; that is no submission time.
_DOS_EPOCH = (1980, 1, 1, 0, 0, 0)
_EXTENDED_TIMESTAMP = 0x5455  # Info-ZIP "UT" extra field: modification time, UTC seconds

_ARCHIVE_EXTS = {".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar"}
_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}

_COPY_OF = re.compile(r"^(?:copy[\s_]+of[\s_]+)+", re.IGNORECASE)
# Canvas renames a re-uploaded "x.ipynb" to "x-1.ipynb"; browsers save a second "x (1).ipynb".
_LMS_REVISION = re.compile(r"-(\d+)$")
_DOWNLOAD_COPY = re.compile(r"[\s_]*\((\d+)\)$")


class CollectError(Exception):
    """The input cannot be collected at all (unreadable zip, bad configuration).

    The message may quote a path or a configured value; it is made safe for a terminal here,
    once, so whoever prints it need not.
    """

    def __init__(self, message: str):
        super().__init__(_show(message))


class NotPlaced(Exception):
    """One file cannot be placed; the message is the reason shown in the report.

    ``student``: whose hand-in it was, when that is known (a renamed notebook, a PDF with a
    Canvas name); None for what is nobody's submission (system files, unsafe or unattributable
    names).
    """

    def __init__(self, reason: str, student: str | None = None, lms: dict | None = None):
        super().__init__(reason)
        self.student = student
        self.lms = lms  # the LMS's identity of the student, when the name carries it


def _text(name: str) -> str:
    """``name`` with the bytes that are not UTF-8 (a file system's surrogate escapes) shown as
    ``\\xNN``: such a string can be printed and written to JSON, and still says which file."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _show(text: object) -> str:
    """``text`` as it may reach the instructor's terminal: nothing in it is obeyed."""
    return for_terminal(_text(str(text)))


def format_timestamp(when: float) -> str:
    """``when`` (seconds since the epoch) as nbgrader's exchange writes ``timestamp.txt``."""
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime(_NBGRADER_TIMESTAMP)


# --------------------------------------------------------------------------------------- names


def safe_student_id(raw: str) -> str | None:
    """A student id usable as one directory name, or None when nothing usable is left.

    Lower-cased (case-insensitive file systems would merge "SmithJ" and "smithj" anyway) and
    NFC-normalised (macOS zips spell "é" decomposed). What it returns always passes
    ``untrusted.is_student_id``; a name that is not valid UTF-8 gives None (no LMS writes one).
    """
    if "\ufffd" in raw or _text(raw) != raw:
        return None
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", raw).strip().lower())
    kept: list[str] = []
    for char in text:  # every run of other characters becomes one "_"
        if _ID_CHAR.match(char) or unicodedata.category(char) in ID_MARKS:
            kept.append(char)
        elif not kept or kept[-1] != "\0":
            kept.append("\0")
    text = "".join(kept).replace("\0", "_").strip("._-")
    return text if is_student_id(text) else None


_ID_CHAR = re.compile(r"[\w.-]")


def _name_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "_", unicodedata.normalize("NFKC", name).lower()).strip("_")


def canonical_notebook(file_name: str, notebooks: list[str] | tuple[str, ...]):
    """``(notebook, (lms_revision, download_copy))`` for a submitted file name, or None.

    Strips "Copy of ", Canvas's "-N" and the browser's " (N)", and ignores case and the
    difference between spaces, "_" and "-". The revision numbers rank resubmissions: Canvas's
    "-N" is a later upload in the LMS, so it outranks a download copy number.
    """
    stem = re.sub(r"\.ipynb$", "", os.path.basename(file_name).strip(), flags=re.IGNORECASE)
    known = {_name_key(n): n for n in notebooks}
    stem = stem.strip()
    if _name_key(stem) in known:
        return known[_name_key(stem)], (0, 0)
    stem = _COPY_OF.sub("", stem).strip()
    lms = copy = 0
    # Canvas appends its suffix to the name as uploaded, which may already carry " (N)".
    if m := _LMS_REVISION.search(stem):
        lms, stem = int(m.group(1)), stem[: m.start()].strip()
    if m := _DOWNLOAD_COPY.search(stem):
        copy, stem = int(m.group(1)), stem[: m.start()].strip()
    stem = _COPY_OF.sub("", stem).strip()
    notebook = known.get(_name_key(stem))
    return (notebook, (lms, copy)) if notebook else None


# ------------------------------------------------------------------------ what the LMS wrote

_DASHED_TIME = re.compile(r"\d{4}(?:-\d\d){5}")
_D2L_TIME = re.compile(r"([A-Z][a-z]{2}) (\d{1,2}), (\d{4}) (\d{1,2}):?(\d\d) ([AP]M)")
# What a name shown as HTML or in a spreadsheet must not carry (nbgrader's formgrader prints
# student names into its pages unescaped).
_NOT_IN_NAMES = set("<>&\"'")


def plain_name(text: str | None) -> str | None:
    """A display name as plain text: no control or invisible format characters, none of
    ``<>&"'``, spaces collapsed, at most 200 characters; None when nothing is left."""
    if text is None:
        return None
    out = []
    for c in unicodedata.normalize("NFC", _text(text)):
        kind = unicodedata.category(c)
        if c in "\t\n\r" or kind in ("Zl", "Zp"):
            out.append(" ")
        elif c not in _NOT_IN_NAMES and kind not in ("Cc", "Cf", "Cs", "Co"):
            out.append(c)
    kept = "".join(out)
    kept = " ".join(kept.split())[:200].strip()
    return kept or None


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """(first, last) of a display name: "Anderson, Alice" (Brightspace, Canvas's sortable name)
    or "Alice Anderson" (Moodle, Blackboard, Classroom: the last word is the last name)."""
    if not name:
        return None, None
    if "," in name:
        last, _, first = name.partition(",")
        return (first.strip() or None), (last.strip() or None)
    first, _, last = name.rpartition(" ")
    return (first or None), last or None


def _d2l_time(text: str) -> dt.datetime:
    """Brightspace's "Nov 29, 2026 415 AM" (a colon is not allowed in its folder names, so
    4:15 is "415"; older downloads wrote "4:15 PM", d2lmf reads it so) as a naive datetime."""
    m = _D2L_TIME.fullmatch(text)
    if not m:
        raise ValueError("not Brightspace's 'Mon D, YYYY HMM AM'")
    month, day, year, hour, minute, half = m.groups()
    return dt.datetime.strptime(f"{month} {day} {year} {hour}:{minute} {half}", "%b %d %Y %I:%M %p")


@dataclass(frozen=True)
class _Receipt:
    """Blackboard Learn's per-attempt receipt "{assignment}_{user}_attempt_{time}.txt" in the
    Assignment File Download: "Name: Alice Anderson (aanderson)", "Assignment: ...", "Date
    Submitted: Wednesday, December 2, 2026 4:15:02 AM EST", then the student's text, comments
    and files (the layout blackboard-analysis-tools and BBGradebookOrganiser parse). Only the
    first lines, Blackboard's own, are read: the rest holds what the student wrote."""

    username: str
    name: str | None
    date_text: str | None
    when: float | None


_RECEIPT = re.compile(r"(?P<prefix>[^/]+_attempt_\d{4}(?:-\d\d){5})\.txt")
_RECEIPT_NAME = re.compile(r"Name: (?P<name>.*) \((?P<user>[^()\s]+)\)")
_RECEIPT_DATE = re.compile(
    r"Date Submitted: (?:[A-Za-z]+, )?(?P<date>[A-Za-z]+ \d{1,2}, \d{4} \d{1,2}:\d\d(?::\d\d)?"
    r" [AP]M)(?: (?P<zone>[A-Za-z]{1,6}))?"
)


def _parse_receipt(relpath: str, data: bytes, tz: dt.tzinfo | None) -> _Receipt | None:
    m = _RECEIPT.fullmatch(relpath)
    if not m or len(re.findall(r"_attempt_\d{4}(?:-\d\d){5}", m.group("prefix"))) != 1:
        return None  # one attempt in the name, Blackboard's: "..._victim_attempt_..." is a file
    lines = data.decode("utf-8", "replace").splitlines()[:4]
    who = _RECEIPT_NAME.fullmatch(lines[0].strip()) if lines else None
    if who is None or not m.group("prefix").endswith(
        f"_{who.group('user')}_attempt_{m.group('prefix')[-19:]}"
    ):
        return None  # not Blackboard's, or about another file than its name says
    when = text = None
    for line in lines[1:]:
        if d := _RECEIPT_DATE.fullmatch(line.strip()):
            text = d.group("date")
            fmt = "%B %d, %Y %I:%M:%S %p" if text.count(":") == 2 else "%B %d, %Y %I:%M %p"
            try:
                naive = dt.datetime.strptime(text, fmt)
            except ValueError:
                break
            zone = dt.timezone.utc if (d.group("zone") or "") in ("UTC", "GMT", "Z") else tz
            when = naive.replace(tzinfo=zone).timestamp()
            break
    return _Receipt(who.group("user"), plain_name(who.group("name")), text, when)


@dataclass(frozen=True)
class LmsRecord:
    """One student's row of the LMS's own record of the submissions (``collect --times``)."""

    system: str
    user_id: str
    when: float | None
    name: str | None = None
    email: str | None = None
    late: bool | None = None


_MOODLE_DATES = ("%A, %d %B %Y, %I:%M %p", "%d %B %Y, %I:%M %p", "%A, %B %d, %Y, %I:%M %p")


def read_times(path: str | os.PathLike, tz: dt.tzinfo | None = None) -> list[LmsRecord]:
    """The LMS's record of when each student submitted, from a file the instructor downloads:

    * Moodle's grading worksheet (Assignment > "Download grading worksheet", a CSV with
      "Identifier" = "Participant 1234567", "Full name", "Email address" and "Last modified
      (submission)" written with userdate(): "Wednesday, 2 December 2026, 4:15 AM" in the
      downloading user's time zone, read in ``archive_timezone``; "-" when none);
    * Canvas's submissions, as its REST API lists them (``GET /api/v1/courses/:course/
      assignments/:assignment/submissions``, saved as JSON: a list of objects with ``user_id``,
      ``submitted_at`` in ISO 8601 UTC, ``late`` and, under anonymous grading,
      ``anonymous_id``).

    * Brightspace's grades export (Grades > Export, CSV with "OrgDefinedId" and/or "Username",
      "Last Name", "First Name", "Email"; D2L writes the ids with a leading "#", dropped here):
      no times, but the ids Brightspace's grade import matches on, which its submission
      download does not carry (its folders name the student "Last, First" only), matched to
      the download by that name.

    Raises CollectError naming the file when it is none of these.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CollectError(f"--times {path}: {exc.strerror or exc}") from None
    text = raw.decode("utf-8-sig", "replace")
    if text.lstrip().startswith(("[", "{")):
        return _canvas_times(path, text)
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and {"Last Name", "First Name"} <= set(rows[0]):
        if {"OrgDefinedId", "Username"} & set(rows[0]):
            return _brightspace_roster(rows)
    if not rows or not {"Identifier", "Last modified (submission)"} <= set(rows[0]):
        raise CollectError(
            f"--times {path}: neither Moodle's grading worksheet (columns Identifier, "
            "Last modified (submission)), Brightspace's grades export (OrgDefinedId, Last Name, "
            "First Name) nor Canvas's submissions JSON"
        )
    records = []
    for row in rows:
        ident = re.fullmatch(r"\D*?(\d+)", (row.get("Identifier") or "").strip())
        if not ident:
            continue
        value, when = (row.get("Last modified (submission)") or "").strip(), None
        for fmt in _MOODLE_DATES:
            try:
                when = dt.datetime.strptime(value, fmt).replace(tzinfo=tz).timestamp()
                break
            except ValueError:
                continue
        records.append(
            LmsRecord(
                "moodle",
                ident.group(1),
                when,
                plain_name(row.get("Full name")),
                plain_name(row.get("Email address")),
            )
        )
    return records


def brightspace_name_key(name: str | None) -> str | None:
    """How a Brightspace download's "Last, First" and its grades export's names are matched."""
    name = plain_name(name)
    return "name:" + " ".join(name.casefold().split()) if name else None


def _brightspace_roster(rows: list[dict]) -> list[LmsRecord]:
    records = []
    for row in rows:
        ids = [(row.get(k) or "").strip().lstrip("#").strip() for k in ("OrgDefinedId", "Username")]
        user_id = next((i for i in ids if i), "")
        last, first = (row.get("Last Name") or "").strip(), (row.get("First Name") or "").strip()
        if user_id and (last or first):
            name = f"{last}, {first}" if last and first else last or first
            records.append(
                LmsRecord(
                    "brightspace", user_id, None, plain_name(name), plain_name(row.get("Email"))
                )
            )
    return records


def _canvas_times(path: Path, text: str) -> list[LmsRecord]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CollectError(f"--times {path}: not readable JSON ({exc})") from None
    if isinstance(data, dict):
        data = data.get("submissions", [])
    if not isinstance(data, list):
        raise CollectError(f"--times {path}: not a list of Canvas submissions")
    records = []
    for item in data:
        if not isinstance(item, dict) or item.get("user_id") is None:
            continue
        when = None
        if isinstance(item.get("submitted_at"), str):
            try:
                when = dt.datetime.fromisoformat(item["submitted_at"].replace("Z", "+00:00"))
                when = when.replace(tzinfo=when.tzinfo or dt.timezone.utc).timestamp()
            except ValueError:
                when = None
        late = item.get("late") if isinstance(item.get("late"), bool) else None
        user = item.get("user")
        name = plain_name(user.get("name")) if isinstance(user, dict) else None
        email = plain_name(user.get("email")) if isinstance(user, dict) else None
        for key in (item.get("user_id"), item.get("anonymous_id")):
            if isinstance(key, (int, str)) and str(key).strip():
                records.append(LmsRecord("canvas", str(key).strip(), when, name, email, late))
    return records


# ------------------------------------------------------------------------------------- plugin


@dataclass(frozen=True)
class Identified:
    student: str
    notebook: str
    lms_id: str | None  # the LMS's own user id, when the name carries one
    mapped: bool  # the student id came from student_id_map
    revision: tuple[int, int]  # (Canvas "-N", download copy "(N)")
    timestamp: float | None  # from a time group of the name, seconds since the epoch
    timestamp_text: str | None
    lms_late: bool = False  # the LMS marked the file late (a ``late`` group: Canvas's "_LATE_")
    system: str = (
        "folder"  # canvas | moodle | blackboard | brightspace | classroom | exchange | folder
    )
    name: str | None = None  # the LMS's display name, plain text
    anonymous: bool = False  # lms_id is an anonymous id (Canvas anonymous grading, Moodle blind)
    time_source: str | None = None  # of ``timestamp``: file-name | folder-name | receipt | exchange
    prefix: str | None = None  # Blackboard's "{assignment}_{user}_attempt_{time}" of the file

    def lms(self) -> dict:
        """The ledger's ``lms`` block for this file's student."""
        return {
            "system": self.system,
            "user_id": self.lms_id,
            "name": self.name,
            "email": None,
            "anonymous": self.anonymous,
        }


class LmsCollectorPlugin(FileNameCollectorPlugin):
    """Maps the file names of Canvas, Moodle, Colab and plain-folder downloads to student ids and
    the assignment's notebooks."""

    patterns = List(
        Unicode(),
        default_value=list(DEFAULT_PATTERNS),
        help=(
            "Regexes with named groups student_id and file_id (optional: lms_id, late, timestamp), "
            "tried in order. Each must fully match the file's path relative to the download "
            "('/'-separated; below a single wrapping folder that holds nothing but LMS-named "
            "submissions); the first pattern that matches wins. Only the LMS's own naming may say "
            "whose a file is: a student_id group must come from the path's first component or a "
            "flat file's LMS-written prefix. '{assignment}' stands for the assignment id. Add "
            "your own in front with "
            "c.LmsCollectorPlugin.patterns.prepend([r'...']). "
            "FileNameCollectorPlugin.named_regexp, if set, is tried before these."
        ),
    ).tag(config=True)

    student_id_map = Union(
        [Dict(), Unicode()],
        default_value={},
        help=(
            "LMS id or LMS student name -> course student id: a dict, or the path (relative to the "
            "course root) of a CSV file with a header row and columns lms_id and student_id. Keys "
            "are tried in this order: the lms_id group, the student_id group as written. Each "
            "value must be a usable student id (letters, digits, '_', '.', '@', '-'); it is "
            "lower-cased like every collected id."
        ),
    ).tag(config=True)

    reject_unmapped = Bool(
        False,
        help="Reject files of students not in student_id_map (when it is not empty).",
    ).tag(config=True)

    archive_timezone = Unicode(
        "",
        help=(
            "The time zone (IANA name, e.g. 'Europe/Berlin') of the LMS server that wrote the "
            "zip: a zip entry's DOS time carries none, and it becomes the submission time in "
            "timestamp.txt when the file name has no timestamp. Empty: this machine's local "
            "time. Not used for entries with an Info-ZIP UTC time field."
        ),
    ).tag(config=True)

    notebooks = List(
        Unicode(),
        default_value=list(NOTEBOOKS),
        help="The assignment's notebook names (without .ipynb); other names are rejected.",
    ).tag(config=True)

    # Set by the driver; under ZipCollectApp they come from the parent app.
    assignment_id = Unicode("")
    course_root = Unicode("")
    # Blackboard's receipts in the download, by "{assignment}_{user}_attempt_{time}" (the driver
    # reads them first; nbgrader's zip_collect has none, and names alone decide there)
    receipts = Dict()

    @observe("student_id_map")
    def _forget_map(self, change):
        self._map = None

    @validate("archive_timezone")
    def _validate_timezone(self, proposal):
        if proposal["value"]:
            try:
                zoneinfo.ZoneInfo(proposal["value"])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise TraitError(
                    f"LmsCollectorPlugin.archive_timezone {proposal['value']!r} is not a time "
                    f"zone ({exc})"
                ) from None
        return proposal["value"]

    def zip_timezone(self) -> dt.tzinfo | None:
        """The time zone of zip entries' DOS times; None for this machine's local time."""
        return zoneinfo.ZoneInfo(self.archive_timezone) if self.archive_timezone else None

    @validate("patterns")
    def _validate_patterns(self, proposal):
        for pattern in proposal["value"]:
            _compile(pattern, ASSIGNMENT)
        return proposal["value"]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._map: dict[str, str] | None = None

    # -- nbgrader's contract -----------------------------------------------------------------

    def collect(self, submitted_file: str) -> dict | None:
        """nbgrader's entry point: the ZipCollectApp's view of ``identify``; reasons are logged."""
        try:
            found = self.identify(self._relative(submitted_file))
        except NotPlaced as reason:
            self.log.warning("Skipped %s: %s", _show(submitted_file), _show(reason))
            return None
        info = {"student_id": found.student, "file_id": f"{found.notebook}.ipynb"}
        if found.timestamp is not None:
            # as a time nbgrader's parse_utc reads right ("2026-12-02-04-15-02" it misreads)
            info["timestamp"] = format_timestamp(found.timestamp)
        return info

    # -- the mapping ------------------------------------------------------------------------

    def identify(self, relpath: str) -> Identified:
        """Student and notebook for a '/'-separated path relative to the download's root.

        Raises NotPlaced with the reason when the file is not a submission or cannot be placed.
        """
        parts = relpath.split("/")
        name = parts[-1]
        if len(relpath) > MAX_PATH_CHARS:
            raise NotPlaced(f"path longer than {MAX_PATH_CHARS} characters: not a submission")
        if "__MACOSX" in parts[:-1]:
            raise NotPlaced("macOS archive metadata (__MACOSX/), not a submission")
        if name.lower() in _SYSTEM_FILES or name.startswith("._"):
            raise NotPlaced(f"system file ({name}), not a submission")
        if ".ipynb_checkpoints" in parts[:-1]:
            raise NotPlaced("Jupyter checkpoint copy (.ipynb_checkpoints/), not a submission")
        ext = os.path.splitext(name)[1].lower()
        if ext not in {e.lower() for e in self.valid_ext}:
            if ext in _ARCHIVE_EXTS:
                raise NotPlaced(
                    "archive inside the download is not unpacked: "
                    "extract it and collect that folder",
                    self._whose(relpath),
                )
            who, lms = self.owner_identity(relpath)
            if who and re.search(
                r"(?:_assignsubmission_onlinetext_?/?onlinetext|_text)\.html$", relpath
            ):
                raise NotPlaced(
                    "online text (Moodle onlinetext.html, Canvas _text.html), not a "
                    "notebook: read it in the LMS",
                    who,
                    lms,
                )
            raise NotPlaced(f"not a notebook ({ext or 'no extension'})", who, lms)

        groups = self._match(relpath)
        if groups is None:
            owner = self._whose(f"{parts[0]}/{name}") if len(parts) > 2 else None
            if owner is not None:
                # A student's folder holding folders of its own: their names are the student's
                # choice, so they decide nothing, and the file is theirs but not placed.
                inner = "/".join(parts[1:-1])
                raise NotPlaced(
                    f"in a subfolder ({inner}/) of {owner}'s folder: only files directly in a "
                    f"student's folder are placed (collect that folder with --student {owner})",
                    owner,
                )
            raise NotPlaced(
                f"cannot tell whose file this is: no pattern matches '{relpath}' "
                "(collect it with --student ID, or see LmsCollectorPlugin.patterns)"
            )
        raw_student = (groups.get("student_id") or "").strip()
        lms_id = (groups.get("lms_id") or "").strip() or None
        if not raw_student and lms_id:
            raw_student = f"user_{lms_id}"  # a name the LMS wrote as nothing (Canvas: no letter)
        file_id = os.path.basename((groups.get("file_id") or "").strip())
        system = next(
            (k[4:] for k, v in groups.items() if k.startswith("sys_") and v is not None), "folder"
        )
        name = plain_name(groups.get("name"))
        anonymous = groups.get("anon") is not None
        prefix = groups.get("bb_prefix")
        receipt = self.receipts.get(prefix) if prefix else None
        if receipt is not None:
            # Blackboard's receipt names the user whose attempt this is: "HW_1_j_doe_attempt_..."
            # is j_doe's, not "doe"'s of assignment "HW_1_j"
            raw_student, lms_id, name = receipt.username, receipt.username, receipt.name or name
        elif system == "blackboard":
            lms_id = raw_student
        identity = {
            "system": system,
            "user_id": lms_id,
            "name": name,
            "email": None,
            "anonymous": anonymous,
        }

        student, mapped = self._map_student(raw_student, lms_id)
        if student is None:
            raise NotPlaced(f"student id '{raw_student}' is not usable as a folder name")
        if student == safe_student_id(self._assignment()):
            raise NotPlaced(f"a folder named like the assignment ({raw_student}) is not a student")
        if self.reject_unmapped and self._student_map() and not mapped:
            who = f"'{raw_student}'" + (f" (LMS id {lms_id})" if lms_id else "")
            raise NotPlaced(f"student {who} is not in LmsCollectorPlugin.student_id_map")

        canonical = canonical_notebook(file_id, self.notebooks)
        if canonical is None:
            raise NotPlaced(
                f"renamed or unknown notebook '{file_id}' for student {student}",
                student,
                identity,
            )
        notebook, revision = canonical

        timestamp, timestamp_text, time_source = None, None, None
        for group, source in (
            ("timestamp", "file-name"),
            ("bb_time", "file-name"),
            ("d2l_time", "folder-name"),
        ):
            text = (groups.get(group) or "").strip()
            if not text:
                continue
            try:
                timestamp = self._name_time(group, text)
            except (ValueError, OverflowError) as exc:
                raise NotPlaced(
                    f"unreadable timestamp '{text}' ({exc})", student, identity
                ) from None
            timestamp_text, time_source = text, source
            if system == "exchange":
                time_source = "exchange"
            elif system == "brightspace" and "/" not in relpath:
                time_source = "file-name"
            break
        if receipt is not None and receipt.when is not None:
            timestamp, timestamp_text, time_source = receipt.when, receipt.date_text, "receipt"
        lms_late = bool(groups.get("late"))
        return Identified(
            student,
            notebook,
            lms_id,
            mapped,
            revision,
            timestamp,
            timestamp_text,
            lms_late,
            system,
            name,
            anonymous,
            time_source,
            prefix,
        )

    def _name_time(self, group: str, text: str) -> float:
        """Seconds since the epoch of a time written in a file or folder name."""
        if _DASHED_TIME.fullmatch(text):
            # "2026-12-02-04-15-02": nbgrader's parse_utc takes "-04-15-02" for a UTC offset
            stamp = dt.datetime.strptime(text, "%Y-%m-%d-%H-%M-%S")
        elif group == "d2l_time":
            stamp = _d2l_time(text)
        else:
            return parse_utc(text).replace(tzinfo=dt.timezone.utc).timestamp()
        if group == "timestamp":
            return stamp.replace(tzinfo=dt.timezone.utc).timestamp()
        return stamp.replace(tzinfo=self.zip_timezone()).timestamp()

    def _whose(self, relpath: str) -> str | None:
        """The course student a file that is no notebook belongs to, when its name says so."""
        return self.owner_identity(relpath)[0]

    def owner_identity(self, relpath: str) -> tuple[str | None, dict | None]:
        """Whose hand-in ``relpath`` is and the LMS's identity of them, whatever the file."""
        try:
            found = self.identify(_as_notebook(relpath))
        except NotPlaced as reason:
            return reason.student, reason.lms
        return found.student, found.lms()

    def _match(self, relpath: str) -> dict | None:
        """The groups of the first pattern matching all of ``relpath``, from its first component.

        Never a tail of it: folder and file names inside a student's submission are theirs to
        choose, and one named after another student must not make the file that student's.
        """
        if len(relpath) > MAX_PATH_CHARS:
            return None
        regexes = [self.named_regexp] if self.named_regexp else []
        for pattern in regexes + list(self.patterns):
            if m := _compile(pattern, self._assignment()).fullmatch(relpath):
                return m.groupdict()
        return None

    def lms_named(self, relpath: str) -> bool:
        """Whether an LMS's own naming says whose ``relpath`` is (a pattern with an lms_id, or
        one of an LMS: not a plain or exchange-like folder)."""
        groups = self._match(relpath)
        if not groups:
            return False
        system = next(
            (k[4:] for k, v in groups.items() if k.startswith("sys_") and v is not None), None
        )
        return bool((groups.get("lms_id") or "").strip()) or system not in (
            None,
            "folder",
            "exchange",
        )

    def owner(self, relpath: str) -> str | None:
        """Whose hand-in the file at ``relpath`` is, when its name says so, whatever the file."""
        return self._whose(relpath)

    def _map_student(self, raw: str, lms_id: str | None) -> tuple[str | None, bool]:
        table = self._student_map()
        for key in (lms_id, raw):
            if key and key.lower() in table:
                return table[key.lower()], True
        return safe_student_id(raw), False

    def _student_map(self) -> dict[str, str]:
        """LMS id or name (lower-cased) -> course student id; raises CollectError for a value that
        cannot be a student id, rather than turning it into some other student's."""
        if self._map is None:
            source = self.student_id_map
            if isinstance(source, str) and source:
                source = _read_student_csv(Path(self._root()) / source)
            elif isinstance(source, str):
                source = {}
            table = {}
            for key, value in source.items():
                value = str(value).strip()
                student = safe_student_id(value) if is_student_id(value) else None
                if student is None:
                    raise CollectError(
                        f"LmsCollectorPlugin.student_id_map: {value!r} (for {str(key)!r}) is not "
                        "usable as a student id (letters, digits, '_', '.', '@', '-', starting "
                        "with a letter or digit, at most 100 characters)"
                    )
                table[str(key).strip().lower()] = student
            self._map = table
        return self._map

    def _assignment(self) -> str:
        coursedir = getattr(self.parent, "coursedir", None)
        return self.assignment_id or getattr(coursedir, "assignment_id", "") or ASSIGNMENT

    def _root(self) -> str:
        coursedir = getattr(self.parent, "coursedir", None)
        return self.course_root or getattr(coursedir, "root", "") or os.getcwd()

    def _relative(self, submitted_file: str) -> str:
        # Under ZipCollectApp, paths are absolute; match below the extraction folder so that the
        # folders above it are never taken for a student, and below the folder it unpacks each
        # archive into ("canvas.zip" into "canvas/"), the one wrapping folder it adds itself.
        extracted = getattr(self.parent, "_format_collect_path", None)
        path = submitted_file
        if extracted is not None:
            base = extracted(self.parent.extracted_directory)
            path = os.path.relpath(submitted_file, base)
            archives = Path(extracted(self.parent.archive_directory))
            parts = path.split(os.sep)
            for depth in range(len(parts) - 1):
                if _is_archive_folder(archives.joinpath(*parts[:depth]), parts[depth]):
                    path = os.sep.join(parts[depth + 1 :])
                    break
        return path.replace(os.sep, "/").lstrip("/")


def _is_archive_folder(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds an archive that nbgrader's extractor unpacks into ``name``/."""
    try:
        return any(
            f.is_file() and f.suffix.lower() in _ARCHIVE_EXTS and _archive_stem(f.name) == name
            for f in folder.iterdir()
        )
    except OSError:
        return False


def _archive_stem(file_name: str) -> str:
    stem, ext = os.path.splitext(file_name)
    inner, inner_ext = os.path.splitext(stem)
    return inner if inner_ext == ".tar" else stem


def _as_notebook(relpath: str) -> str:
    # A PDF named like a hand-in is still the student's: ask the patterns about it as if it were
    # a notebook of an unknown name (so "renamed or unknown" names the student).
    head, _, name = relpath.rpartition("/")
    stem = os.path.splitext(name)[0] or name
    return f"{head}/{stem}.not-a-notebook.ipynb" if head else f"{stem}.not-a-notebook.ipynb"


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, assignment: str) -> re.Pattern:
    try:
        regex = re.compile(pattern.replace("{assignment}", re.escape(assignment)))
    except re.error as exc:
        raise TraitError(
            f"LmsCollectorPlugin pattern {pattern!r} is not a valid regex: {exc}"
        ) from None
    missing = {"student_id", "file_id"} - set(regex.groupindex)
    if missing:
        raise TraitError(
            f"LmsCollectorPlugin pattern {pattern!r} lacks the named group(s) {sorted(missing)}"
        )
    return regex


def _read_student_csv(path: Path) -> dict[str, str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise CollectError(f"LmsCollectorPlugin.student_id_map: {path}: {exc}") from None
    if rows and not {"lms_id", "student_id"} <= set(rows[0]):
        raise CollectError(
            f"LmsCollectorPlugin.student_id_map: {path} needs the columns lms_id and student_id"
        )
    return {r["lms_id"]: r["student_id"] for r in rows if r["lms_id"] and r["student_id"]}


# -------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Placed:
    source: str  # as named in the download
    student: str
    notebook: str
    dest: str
    status: str = "new"  # new | unchanged | replaced
    note: str = ""  # e.g. not valid JSON: placed anyway, grading reports it
    time: float | None = None  # when it was handed in, seconds since the epoch, if known
    time_source: str = ""  # one of TIME_SOURCES
    lms_late: bool = False  # the LMS's own marker (Canvas "_LATE_")
    lms: dict | None = None  # the ledger's lms block: system, user_id, name, email, anonymous


@dataclass(frozen=True)
class Rejected:
    source: str
    reason: str
    student: str | None = None  # whose hand-in it was, when known
    lms: dict | None = None  # the LMS's identity of that student, when the name carries it


@dataclass(frozen=True)
class Stamped:
    """A student's submission time (``timestamp.txt``) after this run."""

    student: str
    text: str | None  # its content; None: no time known (the download's only), no timestamp.txt
    source: str  # where the time came from, one of TIME_SOURCES
    # new | unchanged | later (the LMS says: resubmitted later) | better (a better source) |
    # kept (the time recorded before stays) | unknown (no time: lateness unknown)
    status: str
    previous: str | None = None  # what the file held before, when it changed


@dataclass(frozen=True)
class Replaced:
    student: str
    notebook: str
    kept: str  # source of the file now in submitted/
    dropped: str  # the other source, or the path of the file collected earlier
    reason: str
    backup: str | None = None  # where the earlier collected file was copied


@dataclass
class CollectReport:
    input: str
    assignment: str
    course_root: str
    placed: list[Placed] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    replaced: list[Replaced] = field(default_factory=list)
    timestamps: list[Stamped] = field(default_factory=list)
    nothing_gradable: list[str] = field(default_factory=list)  # students: every file rejected
    ledger: str | None = None  # the collect ledger's path
    warnings: list[str] = field(default_factory=list)
    wrapper: str | None = None  # the download's one wrapping folder, names matched below it
    read: list[tuple[str, str]] = field(default_factory=list)  # LMS files read, not placed: why
    notes: list[str] = field(default_factory=list)  # about the download as a whole

    def format(self) -> str:
        """The report for a terminal: every name in it (the students chose the file names, and
        so a part of each reason) is shown with its control characters escaped, so none can
        forge a line or send an escape sequence."""
        return self._format(_show)

    def _format(self, show: Callable[[object], str]) -> str:
        def rel(p: str) -> str:
            try:
                return show(os.path.relpath(p, self.course_root))
            except ValueError:
                return show(p)

        status = defaultdict(int)
        for p in self.placed:
            status[p.status] += 1
        duplicates = [r for r in self.replaced if r.backup is None]
        lines = [
            f"collect {show(self.assignment)} from {show(self.input)}",
            f"  {len(self.placed)} placed ("
            + ", ".join(f"{status[s]} {s}" for s in ("new", "replaced", "unchanged") if status[s])
            + f"), {len(duplicates)} duplicate(s) set aside, {len(self.rejected)} rejected",
        ]
        if self.wrapper:
            lines.append(
                f"  names matched below {show(self.wrapper)}/, the folder wrapping the download"
            )
        if self.placed:
            lines.append("placed:")
            width = max(len(show(p.student)) for p in self.placed)
            for p in self.placed:
                lines.append(
                    f"  {show(p.student):<{width}}  {show(p.notebook):<24}  {p.status:<9}  "
                    f"<- {show(p.source)}"
                )
            for p in self.placed:
                if p.note:
                    lines.append(f"  ! {show(p.student)}/{show(p.notebook)}: {show(p.note)}")
        if self.read:
            lines.append("read, not placed (the LMS's own files):")
            for source, what in self.read:
                lines.append(f"  {show(source)}: {show(what)}")
        if self.timestamps:
            late = {p.student for p in self.placed if p.lms_late}
            lines.append(f"submission times ({TIMESTAMP_FILE}):")
            width = max(len(show(t.student)) for t in self.timestamps)
            for t in self.timestamps:
                what = {
                    "later": f"resubmitted, replaced {show(t.previous)}",
                    "better": f"replaced {show(t.previous)}",
                    "kept": "kept: the time recorded before",
                    "unknown": "no timestamp.txt: lateness unknown",
                }.get(t.status, t.status)
                marker = ", marked late by the LMS" if t.student in late else ""
                text = show(t.text) if t.text else "time unknown".ljust(30)
                lines.append(f"  {show(t.student):<{width}}  {text}  ({t.source}; {what}{marker})")
        lines += [f"note: {show(n)}" for n in self.notes]
        if self.replaced:
            lines.append("duplicates and replacements:")
            for r in self.replaced:
                if r.backup:
                    lines.append(
                        f"  {show(r.student)}/{show(r.notebook)}: {show(r.kept)} replaced the "
                        f"file collected earlier ({show(r.reason)}); earlier copy kept in "
                        f"{rel(r.backup)}"
                    )
                else:
                    lines.append(
                        f"  {show(r.student)}/{show(r.notebook)}: kept {show(r.kept)}, "
                        f"set aside {show(r.dropped)}: {show(r.reason)}"
                    )
        if self.rejected:
            lines.append("rejected:")
            for r in self.rejected:
                lines.append(f"  {show(r.source)}: {show(r.reason)}")
        if self.nothing_gradable:
            lines.append(
                "nothing gradable handed in (every file rejected; export lists them): "
                + ", ".join(show(s) for s in self.nothing_gradable)
            )
        lines += [f"warning: {show(w)}" for w in self.warnings]
        if self.ledger:
            lines.append(f"ledger: {rel(self.ledger)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------- input


@dataclass
class _Entry:
    source: str  # as named in the download, printable (undecodable bytes shown as \xNN)
    relpath: str | None  # None when the name is unsafe
    problem: str | None
    size: int
    mtime: float  # 0.0 when unknown
    open: Callable[[], IO[bytes]] | None
    time_source: str = "file time"


# What a file that is not a regular file is, by its mode.
_KINDS = {
    stat.S_IFLNK: "symbolic link",
    stat.S_IFIFO: "named pipe (FIFO)",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
}


def _safe_relpath(name: str) -> str | None:
    # Some Windows tools write "\" as the separator; accept it as one, then refuse escapes.
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _utc_mtime(extra: bytes) -> float | None:
    """The modification time of an Info-ZIP extended timestamp field in ``extra``, if any."""
    at = 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4 : at + 4 + size]
        if kind == _EXTENDED_TIMESTAMP and len(body) >= 5 and body[0] & 1:
            return float(struct.unpack_from("<i", body, 1)[0])
        at += 4 + size
    return None


def _zip_mtime(info: zipfile.ZipInfo, tz: dt.tzinfo | None) -> float:
    utc = _utc_mtime(info.extra)
    if utc is not None:
        return utc
    if tuple(info.date_time) == _DOS_EPOCH:
        return 0.0
    try:
        return dt.datetime(*info.date_time, tzinfo=tz).timestamp()
    except (ValueError, OverflowError):
        return 0.0


def _zip_entries(
    zf: zipfile.ZipFile, tz: dt.tzinfo | None = None, not_utf8: frozenset[bytes] = frozenset()
) -> Iterator[_Entry]:
    """The zip's members; ``not_utf8``: raw names flagged UTF-8 that are not (see _open_zip)."""
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = info.filename
        mtime = _zip_mtime(info, tz)
        utf8 = bool(info.flag_bits & 0x800)
        if not utf8 and info.orig_filename.encode("cp437") in not_utf8:
            # Claimed UTF-8, is not: zipfile would refuse to open it, and its name says nothing
            # reliable. Whose it is still counts, from the name as far as it is readable.
            raw = info.filename.encode("cp437")
            shown = raw.decode("utf-8", "backslashreplace")
            relpath = _safe_relpath(raw.decode("utf-8", "replace"))
            problem = "file name in the zip is not valid UTF-8: not read"
            yield _Entry(shown, relpath, problem, info.file_size, mtime, None, "zip entry time")
            continue
        if not utf8:
            # No UTF-8 flag: zipfile decoded cp437, but macOS and most tools really wrote UTF-8.
            try:
                name = name.encode("cp437").decode("utf-8")
            except UnicodeError:
                pass
        relpath = _safe_relpath(name)
        problem = None
        kind = stat.S_IFMT(info.external_attr >> 16)
        if relpath is None:
            problem = "unsafe path in archive (absolute or with '..'): not extracted"
        elif kind == stat.S_IFLNK:
            problem = "symbolic link in archive: not followed"
        elif kind in _KINDS:
            problem = f"{_KINDS[kind]} in archive, not a file: not read"
        yield _Entry(
            name,
            relpath,
            problem,
            info.file_size,
            mtime,
            lambda i=info: zf.open(i),
            "zip entry time",
        )


class _Overlay(io.RawIOBase):
    """A read-only view of a file with some bytes changed (the zip's own file is not touched)."""

    def __init__(self, fh: IO[bytes], patches: dict[int, int]):
        super().__init__()
        self._fh, self._patches = fh, patches

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, buffer) -> int:
        start = self._fh.tell()
        n = self._fh.readinto(buffer)
        for offset, value in self._patches.items():
            if start <= offset < start + (n or 0):
                buffer[offset - start] = value
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _central_directory(fh: IO[bytes]) -> tuple[int, bytes]:
    """Where the zip's central directory starts, and its bytes; ValueError when not found."""
    size = fh.seek(0, os.SEEK_END)
    tail_start = max(0, size - (22 + 0xFFFF + 20 + 56))
    fh.seek(tail_start)
    tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise ValueError("no end of central directory")
    count, cd_size, cd_offset = struct.unpack_from("<10xHII", tail, at)
    end = tail_start + at
    if count == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_offset):  # zip64
        record = tail[at - 20 - 56 : at - 20]
        if len(record) != 56 or not record.startswith(b"PK\x06\x06"):
            raise ValueError("zip64 end record not where expected")
        (cd_size,) = struct.unpack_from("<Q", record, 40)
        end = end - 20 - 56
    fh.seek(end - cd_size)
    return end - cd_size, fh.read(cd_size)


def _open_zip(source: Path) -> tuple[zipfile.ZipFile, frozenset[bytes]]:
    """The zip, and the raw names of members flagged UTF-8 whose names are not.

    zipfile refuses the whole archive over one such name (UnicodeDecodeError while reading the
    central directory); here the flag of those names is cleared in a view of the file, so
    zipfile reads them as cp437 and every other member stays readable.
    """
    try:
        return zipfile.ZipFile(source), frozenset()
    except UnicodeDecodeError:
        pass
    fh = source.open("rb")
    try:
        start, directory = _central_directory(fh)
        patches, bad = {}, set()
        at = 0
        while at + 46 <= len(directory) and directory[at : at + 4] == b"PK\x01\x02":
            flags, name_len, extra_len, comment_len = struct.unpack_from(
                "<8xH18xHHH", directory, at
            )
            name = directory[at + 46 : at + 46 + name_len]
            if flags & 0x800:
                try:
                    name.decode("utf-8")
                except UnicodeDecodeError:
                    patches[start + at + 9] = (flags >> 8) & ~0x08 & 0xFF
                    bad.add(name)
            at += 46 + name_len + extra_len + comment_len
        zf = zipfile.ZipFile(io.BufferedReader(_Overlay(fh, patches)))
    except BaseException:
        fh.close()
        raise
    return zf, frozenset(bad)


def _open_regular(path: str, identity: tuple[int, int]) -> IO[bytes]:
    """The file at ``path``, if it still is the regular file that was walked (no link followed,
    no FIFO waited on, nothing swapped in since)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != identity:
            raise OSError(f"{_text(path)}: changed while being collected")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _folder_entries(root: Path) -> list[_Entry]:
    """Every file under ``root``, walked with lstat and never through a link.

    Links, FIFOs, devices and sockets are entries with the reason they are not read (a FIFO
    would block the read forever, a link would read what the student pointed it at). So is a
    regular file with a hard link outside the download: it is someone else's file (/etc/shadow,
    another student's work) under a name in this folder. One with all its names inside is read.
    """
    found: list[tuple[str, str, os.stat_result | None, str | None]] = []
    stack = [(str(root), "")]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            found.append((folder, rel or ".", None, f"folder cannot be read ({exc.strerror})"))
            continue
        subfolders = []
        for child in children:
            child_rel = f"{rel}/{child.name}" if rel else child.name
            try:
                st = child.stat(follow_symlinks=False)
            except OSError as exc:
                found.append((child.path, child_rel, None, f"cannot be read ({exc.strerror})"))
                continue
            kind = stat.S_IFMT(st.st_mode)
            if kind == stat.S_IFDIR:
                subfolders.append((child.path, child_rel))
            elif kind == stat.S_IFLNK:
                what = "symbolic link to a folder" if os.path.isdir(child.path) else "symbolic link"
                found.append((child.path, child_rel, st, f"{what}: not followed"))
            elif kind != stat.S_IFREG:
                what = _KINDS.get(kind, "special file")
                found.append((child.path, child_rel, st, f"{what}, not a file: not read"))
            else:
                found.append((child.path, child_rel, st, None))
        stack.extend(reversed(subfolders))

    names = defaultdict(int)
    for _, _, st, problem in found:
        if st is not None and problem is None:
            names[(st.st_dev, st.st_ino)] += 1
    entries = []
    for path, rel, st, problem in found:
        if problem is None and st.st_nlink > names[(st.st_dev, st.st_ino)]:
            problem = (
                f"hard link to a file outside the download ({st.st_nlink} names, "
                f"{names[(st.st_dev, st.st_ino)]} in it): not read"
            )
        shown = _text(rel)
        relpath = _safe_relpath(rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        opener = None
        if problem is None:
            opener = functools.partial(_open_regular, path, (st.st_dev, st.st_ino))
        size, mtime = (st.st_size, st.st_mtime) if st is not None else (0, 0.0)
        if shown != rel and problem is None:
            problem = "file name is not valid UTF-8: not read"
        entries.append(_Entry(shown, relpath, problem, size, mtime, opener))
    return entries


# What reading one file can raise: bad CRC, encryption, unknown compression, truncation.
_READ_ERRORS = (
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    zipfile.BadZipFile,
)


def _read(entry: _Entry) -> bytes:
    with entry.open() as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise NotPlaced(f"larger than {MAX_FILE_BYTES // 2**20} MB: not read")
    return data


def _json_note(data: bytes) -> str:
    """Empty when ``data`` looks like a notebook, else what is wrong with it.

    Raises NotPlaced for JSON Python cannot parse at all (nested too deep, a number too long):
    grading would fail on it the same way, outside any per-file guard.
    """
    after = "; placed anyway, grading will report it"
    if not data.strip():
        return "empty file" + after
    try:
        nb = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text, so not valid JSON" + after
    except json.JSONDecodeError as exc:
        return f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})" + after
    except RecursionError:
        raise NotPlaced("JSON nested too deeply for Python to read: not placed") from None
    except (ValueError, MemoryError) as exc:
        raise NotPlaced(
            f"JSON Python cannot read ({type(exc).__name__}: {exc}): not placed"
        ) from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return "valid JSON but not a notebook (no list of cells)" + after
    return ""


# -------------------------------------------------------------------------------------- driver


@dataclass
class _Candidate:
    entry: _Entry
    found: Identified
    digest: str
    note: str
    time: float | None = None  # the submission time, when known (see _times)
    time_source: str = "file"
    record: LmsRecord | None = None  # the LMS's own record of this student (--times)

    @property
    def when(self) -> float:
        """What orders two copies of a file: the name's time, else the entry's."""
        return self.found.timestamp if self.found.timestamp is not None else self.entry.mtime

    def rank(self):
        return (self.found.revision, self.when, self.entry.source)

    def lms(self) -> dict:
        lms = self.found.lms()
        if self.record is not None:
            lms["name"] = lms["name"] or self.record.name
            lms["email"] = self.record.email
            lms["user_id"] = lms["user_id"] or self.record.user_id
        return lms


@dataclass
class _Context:
    """What one run knows besides the files: the ledger as it was, the LMS's record (--times),
    the exchange's timestamp.txt files in the download."""

    prior: dict = field(default_factory=dict)  # the ledger's students before this run
    records: dict = field(default_factory=dict)  # (system, user id) -> LmsRecord
    exchange_times: dict = field(default_factory=dict)  # raw folder name -> (time, text)


def _course(course_root: Course | str | os.PathLike) -> Course:
    """The course collect places into: handed over, or loaded once (nbgrader's defaults when the
    folder has no ``nbgrader_config.py``)."""
    try:
        return Course.of(course_root)
    except CourseProblem as exc:  # the file is the instructor's code: any error is a config error
        raise CollectError(str(exc)) from exc


def _why(winner: _Candidate, loser: _Candidate) -> str:
    if winner.digest == loser.digest:
        return "identical content"
    (w_lms, w_copy), (l_lms, l_copy) = winner.found.revision, loser.found.revision
    if w_lms != l_lms:
        return f"later LMS resubmission (suffix -{w_lms} over {f'-{l_lms}' if l_lms else 'none'})"
    if w_copy != l_copy:
        return f"later download copy ({w_copy}) over {f'({l_copy})' if l_copy else 'none'}"
    if winner.when != loser.when:
        what = "timestamp" if winner.found.timestamp is not None else "modification time"

        def show(t: float) -> str:
            return dt.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")

        return f"newer {what} ({show(winner.when)} over {show(loser.when)})"
    return "cannot tell which is newer (same name suffix and time): kept the last in path order"


def _write(dest: Path, data: bytes, mtime: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.collect-tmp")
    tmp.unlink(missing_ok=True)
    try:
        # A new file of our own, never through a link or a FIFO someone left at that name.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        with os.fdopen(os.open(tmp, flags, 0o644), "wb") as fh:
            fh.write(data)
        if mtime > 0:
            # The submission's own time travels with it, for whoever later asks "which is newer".
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _backup_dir(root: Path, downloaded: str, assignment: str) -> Path:
    base = root / downloaded / assignment / "replaced"
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    candidate, n = base / stamp, 1
    while candidate.exists():
        n += 1
        candidate = base / f"{stamp}-{n}"
    return candidate


def _inside(path: Path, base: Path) -> bool:
    path, base = Path(os.path.realpath(path)), Path(os.path.realpath(base))
    return path == base or base in path.parents


def collect(
    path: str | os.PathLike,
    course_root: Course | str | os.PathLike = ".",
    *,
    config: Config | None = None,
    assignment: str = ASSIGNMENT,
    student: str | None = None,
    times: str | os.PathLike | None = None,
) -> CollectReport:
    """Place the notebooks of an LMS download (a zip file, a folder, or one notebook) in
    ``submitted/``.

    ``student``: whose files these are, whatever their names say (a loose Colab download, say);
    each file is then placed by its name alone. Settings come from the course (a ``Course``, or
    ``{course_root}/nbgrader_config.py`` when it exists), with ``config`` merged over them. Raises
    CollectError when the input or the configuration is unusable; problems with single files are
    in the report instead.

    ``times``: the LMS's own record of when each student submitted (``read_times``: Moodle's
    grading worksheet CSV, Canvas's submissions JSON); its times beat every other source.
    """
    course = _course(course_root)
    with course.in_use():
        return _collect(path, course, config, assignment, student, times)


def _collect(path, course: Course, config, assignment, student, times) -> CollectReport:
    root = course.root
    source = Path(path)
    cfg = course.config_with()
    if config is not None:
        cfg.merge(config)
    if student is not None:
        if safe_student_id(student) != student:
            raise CollectError(f"--student {student!r}: not usable as a student id (a folder name)")
        cfg.LmsCollectorPlugin.patterns = [DEFAULT_PATTERNS[-1]]  # "{student}/{file}"
        cfg.FileNameCollectorPlugin.named_regexp = ""
    try:
        plugin = LmsCollectorPlugin(config=cfg)
    except TraitError as exc:
        raise CollectError(str(exc)) from None
    plugin.assignment_id = assignment
    plugin.course_root = str(root)
    plugin._student_map()  # a bad student_id_map is refused before anything is read or written
    coursedir = CourseDirectory(config=cfg, root=str(root))
    submitted_base = root / coursedir.submitted_directory
    downloaded = cfg.get("ZipCollectApp", {}).get("downloaded_directory", "downloaded")

    report = CollectReport(str(path), assignment, str(root))
    ctx = _Context()
    if times is not None:
        for record in read_times(times, plugin.zip_timezone()):
            ctx.records[(record.system, record.user_id)] = record
            if record.system == "brightspace" and (name := brightspace_name_key(record.name)):
                # Two students of one name: the download cannot say which is which.
                taken = (record.system, name) in ctx.records
                ctx.records[(record.system, name)] = None if taken else record
    try:
        ctx.prior = read_ledger(root / downloaded / assignment / LEDGER).get("students", {})
    except ValueError:
        ctx.prior = {}
    if not isinstance(ctx.prior, dict):
        ctx.prior = {}
    if source.is_dir():
        real = Path(os.path.realpath(source))
        if _inside(real, submitted_base) or _inside(submitted_base, real):
            raise CollectError(f"{path}: the input must not contain or be inside {submitted_base}")
        entries = _folder_entries(real)
        return _run(entries, student, plugin, coursedir, root, downloaded, report, ctx)
    if not source.is_file():
        raise CollectError(f"{path}: no such file or folder")
    is_notebook = source.suffix.lower() in {e.lower() for e in plugin.valid_ext}
    if not is_notebook and source.suffix.lower() not in _ARCHIVE_EXTS:
        if not zipfile.is_zipfile(source):
            raise CollectError(f"{path}: neither a zip file, a folder nor a notebook")
    elif is_notebook:
        # One notebook, as a browser saves it from Colab or an LMS, or an e-mail's attachment
        # ("Copy of 01_conv1d_toeplitz.ipynb": Colab's "Save a copy in Drive", downloaded):
        # placed by its own name. Its file time is when it was saved here, not handed in.
        st = source.stat()
        one = _Entry(
            _text(source.name),
            source.name,
            None,
            st.st_size,
            st.st_mtime,
            lambda: source.open("rb"),
            time_source="download",
        )
        report.notes.append(
            f"{_text(source.name)}: a lone notebook's file time is when it was saved (a browser "
            "download, an e-mail's attachment), not when it was handed in: lateness unknown"
        )
        return _run([one], student, plugin, coursedir, root, downloaded, report, ctx)
    try:
        zf, not_utf8 = _open_zip(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise CollectError(f"{path}: not a readable zip file ({exc})") from None
    with zf:
        try:
            entries = list(_zip_entries(zf, plugin.zip_timezone(), not_utf8))
        except (zipfile.BadZipFile, ValueError) as exc:
            raise CollectError(f"{path}: corrupt zip file ({exc})") from None
        return _run(entries, student, plugin, coursedir, root, downloaded, report, ctx)


def _as(student: str | None, entries: list[_Entry]) -> list[_Entry]:
    """The entries as ``{student}/{file name}`` when the caller says whose they are."""
    if student is None:
        return entries
    return [
        dataclasses.replace(e, relpath=f"{student}/{e.relpath.rsplit('/', 1)[-1]}")
        if e.relpath is not None
        else e
        for e in entries
    ]


def _junk(relpath: str) -> bool:
    parts = relpath.split("/")
    return parts[0] == "__MACOSX" or parts[-1].lower() in _SYSTEM_FILES or parts[-1][:2] == "._"


def _unwrapped(entries: list[_Entry], plugin: LmsCollectorPlugin, report) -> list[_Entry]:
    """The entries below the download's one wrapping folder, when it has one.

    A folder is taken for a wrapper (added by whoever zipped or unpacked the download: a Google
    Drive folder's zip, a double-clicked Blackboard zip) only when it holds everything, its own
    name is no LMS submission's, and below it the LMS names every path, or most of them and at
    least two students' (a pattern with an lms_id: Canvas's files, Moodle's folders; or one of an
    LMS: Classroom's "Name - file"). The LMS's side files (receipts, index.html) count for
    neither. A file below the wrapper that the LMS did not name (a stray upload in a Drive folder)
    is then rejected on its own instead of making the wrapper a student. A student's own folder
    holding a folder named like a Moodle submission cannot be told from a wrapper, so one
    student's folder on its own is to be collected with ``--student``.
    """
    paths = [e.relpath for e in entries if e.relpath is not None and not _junk(e.relpath)]
    tops = {r.split("/", 1)[0] for r in paths}
    if not paths or len(tops) != 1 or any("/" not in r for r in paths):
        return entries
    [top] = tops
    if any(plugin.lms_named(r) for r in paths if not _side_name(r)):
        return entries
    below = [r.split("/", 1)[1] for r in paths]
    below = [r for r in below if not _side_name(r)]
    named = [r for r in below if plugin.lms_named(r)]
    if not below or 2 * len(named) <= len(below):
        return entries
    if len(named) < len(below) and len({plugin.owner(r) for r in named} - {None}) < 2:
        return entries
    report.wrapper = top
    inner = []
    for e in entries:
        if e.relpath is not None and e.relpath.startswith(top + "/"):
            e = dataclasses.replace(e, relpath=e.relpath[len(top) + 1 :])
        inner.append(e)
    return inner


def _examine(entry: _Entry, plugin: LmsCollectorPlugin) -> _Candidate:
    """The entry as a candidate for placing; NotPlaced with whose it is, when known, if not."""
    if entry.problem:
        who, lms = plugin.owner_identity(entry.relpath) if entry.relpath else (None, None)
        raise NotPlaced(entry.problem, who, lms)
    found = plugin.identify(entry.relpath)
    try:
        if entry.size > MAX_FILE_BYTES:
            raise NotPlaced(f"larger than {MAX_FILE_BYTES // 2**20} MB: not read")
        data = _read(entry)
        return _Candidate(entry, found, hashlib.sha256(data).hexdigest(), _json_note(data))
    except NotPlaced as reason:
        raise NotPlaced(str(reason), found.student, found.lms()) from None
    except _READ_ERRORS as exc:
        raise NotPlaced(f"corrupt or unreadable ({exc})", found.student, found.lms()) from None
    except Exception as exc:  # whatever one file does, the others are still collected
        raise NotPlaced(
            f"cannot be read ({type(exc).__name__}: {exc})", found.student, found.lms()
        ) from None


def _run(entries, student, plugin, coursedir, root, downloaded, report, ctx) -> CollectReport:
    """Place ``entries``; whatever happens, the timestamps and the ledger say what was done."""
    try:
        _place(entries, student, plugin, coursedir, root, downloaded, report, ctx)
    finally:
        for finish in (_write_timestamps, _update_ledger, record_names):
            try:
                finish(report, coursedir, root, downloaded, ctx)
            except Exception as exc:
                report.warnings.append(
                    f"{finish.__name__.strip('_').replace('_', ' ')} failed: "
                    f"{type(exc).__name__}: {exc}"
                )
    return report


def _side_name(relpath: str) -> bool:
    """Whether ``relpath`` may be a file the LMS adds beside the submissions (read, not placed):
    Blackboard's receipts, Brightspace's index.html, the exchange's timestamp.txt."""
    parts = relpath.split("/")
    return (
        len(parts) == 1 and (parts[0] == "index.html" or bool(_RECEIPT.fullmatch(parts[0])))
    ) or (len(parts) == 3 and parts[2] == TIMESTAMP_FILE)


def _side_files(entries, plugin, ctx, report) -> list[_Entry]:
    """The entries but the LMS's own side files, which are read here: Blackboard's receipts
    (whose attempt, when), the exchange-like ``{student}/{assignment}/timestamp.txt``, and
    Brightspace's ``index.html`` (its table of the download: nothing to place)."""
    rest = []
    tz = plugin.zip_timezone()
    for e in entries:
        rel = e.relpath
        if e.problem or rel is None or not _side_name(rel) or e.size > 64 * 1024:
            rest.append(e)
            continue
        parts = rel.split("/")
        try:
            data = _read(e)
        except Exception:  # unreadable: examined (and rejected with its reason) like any file
            rest.append(e)
            continue
        if rel == "index.html":
            report.read.append((e.source, "Brightspace's index of the download (nothing to place)"))
        elif len(parts) == 3:
            if parts[1] != plugin._assignment():
                rest.append(e)
                continue
            try:
                text = data.decode("utf-8").strip()
                when = parse_utc(text).replace(tzinfo=dt.timezone.utc).timestamp()
            except Exception:
                rest.append(e)
                continue
            ctx.exchange_times[parts[0]] = when
            report.read.append(
                (e.source, f"the exchange's submission time {format_timestamp(when)}")
            )
        elif receipt := _parse_receipt(rel, data, tz):
            plugin.receipts[_RECEIPT.fullmatch(rel).group("prefix")] = receipt
            when = f", submitted {format_timestamp(receipt.when)}" if receipt.when else ""
            report.read.append(
                (e.source, f"Blackboard's receipt of {receipt.username}'s attempt{when}")
            )
        else:
            rest.append(e)
    return rest


def _times(candidates: list[_Candidate], ctx: _Context, report: CollectReport) -> None:
    """Each candidate's submission time and where it comes from (TIME_SOURCES), never the
    download's time: Canvas's and Moodle's zip entries carry the time the zip was made."""
    systems = set()
    for c in candidates:
        f = c.found
        systems.add(f.system)
        key = (f.system, f.lms_id) if f.lms_id else None
        if key is None and f.system == "brightspace" and (name := brightspace_name_key(f.name)):
            key = (f.system, name)  # its download names students only: the roster's id by name
        c.record = ctx.records.get(key) if key else None
        top = c.entry.relpath.split("/", 1)[0] if c.entry.relpath else ""
        if c.record is not None and c.record.when is not None:
            c.time, c.time_source = c.record.when, "worksheet"
        elif f.system == "exchange" and f.timestamp is None and top in ctx.exchange_times:
            c.time, c.time_source = ctx.exchange_times[top], "exchange"
        elif f.timestamp is not None:
            c.time, c.time_source = f.timestamp, f.time_source or "file-name"
        elif f.system == "canvas":
            c.time, c.time_source = None, "lms-marker"  # _LATE_ or not: Canvas's word
        elif f.system in DOWNLOAD_TIMED or c.entry.time_source == "download":
            c.time, c.time_source = None, "download"
        else:
            c.time, c.time_source = (c.entry.mtime or None), "file"
    for system in sorted(systems & DOWNLOAD_TIMED):
        report.notes.append(
            f"{system.capitalize()}'s zip entry times are the time of the download, not of any "
            "submission: "
            + ("lateness is Canvas's LATE marker's" if system == "canvas" else "lateness unknown")
            + " unless the LMS's own record is added (collect --times)"
        )
    by_file = [c for c in candidates if c.time_source == "file" and c.time is not None]
    students = {c.found.student for c in by_file}
    if len(students) > 1 and len({c.time for c in by_file}) == 1:
        for c in by_file:
            c.time, c.time_source = None, "download"
        report.warnings.append(
            f"all {len(by_file)} files of {len(students)} students carry the same time "
            f"({format_timestamp(by_file[0].entry.mtime)}): the download's, not a submission's; "
            "no timestamp.txt written, lateness unknown (add the LMS's record with --times)"
        )


def _place(entries, student, plugin, coursedir, root, downloaded, report, ctx) -> None:
    assignment = report.assignment
    if student is None:
        entries = _unwrapped(entries, plugin, report)
        entries = _side_files(entries, plugin, ctx, report)
    candidates: list[_Candidate] = []
    for entry in _as(student, entries):
        try:
            candidates.append(_examine(entry, plugin))
        except NotPlaced as reason:
            report.rejected.append(Rejected(entry.source, str(reason), reason.student, reason.lms))
        except CollectError:
            raise
        except Exception as exc:  # a name no pattern expected: that file only
            report.rejected.append(
                Rejected(entry.source, f"cannot be collected ({type(exc).__name__}: {exc})")
            )
    _times(candidates, ctx, report)

    # One display name from two LMS accounts is two people; merging them would let one's
    # notebook silently "replace" the other's. Both stay on the ledger under that name, with
    # the reason.
    # So is an account other than the one an earlier download gave this id (a namesake who
    # handed in later): the earlier one keeps it, this one's files wait for a map.
    accounts = defaultdict(set)
    for c in candidates:
        if not c.found.mapped and c.found.lms_id:
            accounts[c.found.student].add(c.found.lms_id)
            before = ctx.prior.get(c.found.student)
            lms = before.get("lms") if isinstance(before, dict) else None
            if (
                isinstance(lms, dict)
                and lms.get("system") == c.found.system
                and isinstance(lms.get("user_id"), str)
            ):
                accounts[c.found.student].add(lms["user_id"])
    clashing = {s: ids for s, ids in accounts.items() if len(ids) > 1}
    kept: list[_Candidate] = []
    for c in candidates:
        ids = clashing.get(c.found.student)
        if ids and not c.found.mapped:
            report.rejected.append(
                Rejected(
                    c.entry.source,
                    f"student id '{c.found.student}' is claimed by different LMS ids "
                    f"({', '.join(sorted(ids))}): map them in LmsCollectorPlugin.student_id_map",
                    c.found.student,
                )
            )
        else:
            kept.append(c)
    kept = _drive_duplicates(kept, report)
    kept = _brightspace_namesakes(kept, ctx, report)

    groups: dict[tuple[str, str], list[_Candidate]] = defaultdict(list)
    for c in kept:
        groups[(c.found.student, c.found.notebook)].append(c)

    backup_dir: Path | None = None
    for (student, notebook), group in sorted(groups.items()):
        group.sort(key=_Candidate.rank)
        winner = group[-1]
        for loser in reversed(group[:-1]):
            report.replaced.append(
                Replaced(
                    student, notebook, winner.entry.source, loser.entry.source, _why(winner, loser)
                )
            )

        dest_dir = Path(coursedir.format_path(coursedir.submitted_directory, student, assignment))
        dest = dest_dir / f"{notebook}.ipynb"
        if not _inside(dest.parent, root / coursedir.submitted_directory):
            # Only a symlink planted under submitted/ gets here: the id itself is one safe name.
            report.rejected.append(
                Rejected(
                    winner.entry.source,
                    f"{dest_dir} leads outside submitted/: not written",
                    student,
                )
            )
            continue
        try:
            data = _read(winner.entry)
            if hashlib.sha256(data).hexdigest() != winner.digest:
                raise NotPlaced("changed while being collected: not placed")
            status, backup = "new", None
            if dest.is_file() and not dest.is_symlink():
                old = dest.read_bytes()
                if old == data:
                    status = "unchanged"
                else:
                    status = "replaced"
                    if backup_dir is None:
                        backup_dir = _backup_dir(root, downloaded, assignment)
                    backup = backup_dir / student / dest.name
                    backup.parent.mkdir(parents=True, exist_ok=True)
                    backup.write_bytes(old)
                    os.utime(backup, (dest.stat().st_atime, dest.stat().st_mtime))
            if status != "unchanged":
                _write(dest, data, winner.entry.mtime)
        except NotPlaced as reason:
            report.rejected.append(Rejected(winner.entry.source, str(reason), student))
            continue
        except Exception as exc:  # this file could not be written; the others still are
            report.rejected.append(
                Rejected(
                    winner.entry.source,
                    f"cannot place it ({type(exc).__name__}: {exc})",
                    student,
                )
            )
            continue
        if backup is not None:
            report.replaced.append(
                Replaced(
                    student,
                    notebook,
                    winner.entry.source,
                    str(dest),
                    "a different file was collected here before",
                    str(backup),
                )
            )
        report.placed.append(
            Placed(
                winner.entry.source,
                student,
                notebook,
                str(dest),
                status,
                winner.note,
                winner.time if winner.time and winner.time > 0 else None,
                winner.time_source,
                winner.found.lms_late
                if winner.record is None or winner.record.late is None
                else winner.record.late,
                winner.lms(),
            )
        )


def _drive_duplicates(candidates: list[_Candidate], report: CollectReport) -> list[_Candidate]:
    """The candidates without Classroom copies whose name Drive had to repeat.

    Classroom's "Make a copy for each student" gives each student one copy, titled "{full name}
    - {title}" (https://support.google.com/edu/classroom/answer/6020265), and Drive's zip of the
    folder names the second of two files with one name "name (1).ext" (as its desktop client
    does: https://github.com/Grive/grive/issues/166). So "Dana Lee - 01.ipynb" beside "Dana Lee -
    01 (1).ipynb" is two students called Dana Lee (or a student's own upload named like a copy),
    not a later copy of one: whose is which cannot be told from the names, so neither is placed,
    and the reason says how to place them. A "(1)" alone (its namesake in another part of a
    large download) is not placed either: Drive writes one only beside another file of the name.
    """
    groups: dict[tuple[str, str], list[_Candidate]] = defaultdict(list)
    for c in candidates:
        if c.found.system == "classroom" and not c.found.mapped:
            groups[(c.found.student, c.found.notebook)].append(c)
    ambiguous = {key for key, group in groups.items() if any(c.found.revision[1] for c in group)}
    kept = []
    for c in candidates:
        key = (c.found.student, c.found.notebook)
        if key not in ambiguous or c.found.mapped:
            kept.append(c)
            continue
        report.rejected.append(
            Rejected(
                c.entry.source,
                "Drive adds ' (1)' to a repeated name: two students with one name (the other's "
                "file here or in another part of the download), whose is which the names cannot "
                "tell; collect each with --student ID",
                c.found.student,
                c.found.lms(),
            )
        )
    return kept


def _brightspace_namesakes(
    candidates: list[_Candidate], ctx: _Context, report: CollectReport
) -> list[_Candidate]:
    """The candidates without Brightspace submissions of a name two students share.

    Brightspace's download names a submission's student by display name only (its folder's
    numbers change with every submission), so two students of one name would be merged into one,
    the later hand-in "replacing" the other's. Where the grades export (``collect --times``) lists
    that name twice (``ctx.records`` holds None for it), neither is placed: the reason says how.
    Without the export nothing can tell them apart; the README says to add it.
    """
    kept = []
    for c in candidates:
        f = c.found
        name = brightspace_name_key(f.name) if f.system == "brightspace" else None
        if name is None or f.mapped or ctx.records.get((f.system, name), False) is not None:
            kept.append(c)
            continue
        report.rejected.append(
            Rejected(
                c.entry.source,
                "Brightspace's grades export lists two students with this name, and its "
                "download names students only: whose is which cannot be told; collect each with "
                "--student ID",
                f.student,
                f.lms(),
            )
        )
    return kept


# ------------------------------------------------------------------------ submission times


def _timestamp_text(path: Path) -> str | None:
    """An existing timestamp.txt's text, if it is a small regular file: never through a link,
    never waiting on a FIFO left at that name."""
    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        )
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fh.read(4096).decode("utf-8", errors="replace").strip()


def _read_timestamp(path: Path) -> float | None:
    """An existing timestamp.txt as seconds since the epoch; None if absent or unreadable."""
    try:
        text = _timestamp_text(path)
        return parse_utc(text).replace(tzinfo=dt.timezone.utc).timestamp() if text else None
    except (OSError, UnicodeError, ValueError, OverflowError):
        return None


def _prior_source(entry: Any, path: Path) -> str | None:
    """Where the time recorded before for a student came from (None: no time recorded)."""
    if isinstance(entry, dict):
        if entry.get("time_source") in _RANK:
            return entry["time_source"]
        if isinstance(entry.get("exchange"), dict):
            return "exchange"
        if entry.get("timestamp"):
            return "file"  # an earlier collect's time, of a source it did not record
    return "file" if _read_timestamp(path) is not None else None


def _write_timestamps(
    report: CollectReport, coursedir: CourseDirectory, root, downloaded, ctx
) -> None:
    """Each student's timestamp.txt, from the best source of this run's placed files.

    The first time known is kept: a second download or a hand fix never moves it. It is replaced
    only by a better source (the LMS's record over a file's time), or, from the LMS's own record
    (a receipt, a name's time, the worksheet), by a later time when the student's files changed
    (a resubmission). A time only the download gives is no time: no timestamp.txt, lateness
    unknown.
    """
    best: dict[str, Placed] = {}
    changed: set[str] = set()
    for p in report.placed:
        if p.status != "unchanged":
            changed.add(p.student)
        key = (_RANK.get(p.time_source, 0), p.time or 0.0)
        if p.student not in best or key > (
            _RANK.get(best[p.student].time_source, 0),
            best[p.student].time or 0.0,
        ):
            best[p.student] = p
    for student, p in sorted(best.items()):
        path = Path(p.dest).parent / TIMESTAMP_FILE
        previous = _timestamp_text(path)
        existing = _read_timestamp(path)
        prior = _prior_source(ctx.prior.get(student), path)
        if p.time is None:
            if existing is not None:
                report.timestamps.append(Stamped(student, previous, prior or "file", "kept"))
            else:
                report.timestamps.append(Stamped(student, None, p.time_source, "unknown"))
            continue
        text = format_timestamp(p.time)
        if previous == text:
            report.timestamps.append(Stamped(student, text, p.time_source, "unchanged"))
            continue
        new, old = _RANK[p.time_source], _RANK.get(prior, 0) if existing is not None else 0
        if existing is None:
            status = "new"
        elif new > old:
            status = "better"
        elif new == old and p.time_source in _TRUSTED and student in changed and p.time > existing:
            status = "later"
        else:
            report.timestamps.append(Stamped(student, previous, prior or "file", "kept"))
            continue
        if previous is not None and existing is None:
            report.warnings.append(
                f"{path}: unreadable timestamp {previous[:60]!r}, replaced by {text}"
            )
        _write(path, (text + "\n").encode("utf-8"), 0)
        report.timestamps.append(Stamped(student, text, p.time_source, status, previous))


# -------------------------------------------------------------------------------- the ledger


def ledger_path(course_root: Course | str | os.PathLike, assignment: str = ASSIGNMENT) -> Path:
    if isinstance(course_root, Course):
        return course_root.root / course_root.downloaded / assignment / LEDGER
    root = Path(course_root)
    try:
        downloaded = Course.of(root).downloaded
    except CourseProblem:
        downloaded = "downloaded"
    return root / downloaded / assignment / LEDGER


def read_ledger(path: str | os.PathLike) -> dict[str, Any]:
    """The collect ledger at ``path`` ({} when there is none); raises ValueError when it is not
    one, naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not a readable collect ledger ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("students", {}), dict):
        raise ValueError(f"{path}: not a collect ledger (no object of students)")
    return data


def _update_ledger(
    report: CollectReport, coursedir: CourseDirectory, root: Path, downloaded: str, ctx=None
) -> None:
    """Add this run's placed and rejected files, per student, to the ledger.

    Only what can be attributed to a student is kept (a .DS_Store is nobody's hand-in). Entries
    are keyed by what they describe, so collecting the same download again changes nothing.
    """
    assignment = report.assignment
    attributed = [r for r in report.rejected if r.student]
    if not report.placed and not attributed:
        return
    path = root / downloaded / assignment / LEDGER
    try:
        ledger = read_ledger(path)
    except ValueError as exc:
        aside = path.with_name(f"{path.name}.unreadable-{dt.datetime.now():%Y%m%dT%H%M%S}")
        os.replace(path, aside)
        report.warnings.append(f"{exc}; moved to {aside.name}, a new ledger started")
        ledger = {}
    ledger.setdefault("assignment", assignment)
    students = ledger.setdefault("students", {})
    source = _text(os.path.basename(report.input.rstrip("/" + os.sep)) or report.input)

    def entry_of(student: str, key: str, kind: type) -> Any:
        # An entry an earlier run (or a hand edit) left malformed is started again, not a crash
        # after the files were placed.
        entry = students.get(student)
        if not isinstance(entry, dict):
            if entry is not None:
                report.warnings.append(f"{LEDGER}: malformed entry for {student} started again")
            entry = students[student] = {}
        if key and not isinstance(entry.get(key, kind()), kind):
            report.warnings.append(f"{LEDGER}: malformed {key} of {student} started again")
            entry[key] = kind()
        if key:
            entry.setdefault(key, kind())
        return entry

    for p in report.placed:
        entry = entry_of(p.student, "notebooks", dict)
        entry["notebooks"][p.notebook] = {
            "input": source,
            "source": p.source,
            "time": format_timestamp(p.time) if p.time is not None else None,
            "time_source": p.time_source,
            "lms_late": p.lms_late,
        }
    clashing = {r.student for r in attributed if "is claimed by different LMS ids" in r.reason}
    identities = [(r.student, r.lms) for r in attributed] + [
        (p.student, p.lms) for p in report.placed
    ]
    for student, lms in identities:
        if lms and student not in clashing:
            entry = entry_of(student, "", dict)
            old = entry.get("lms") if isinstance(entry.get("lms"), dict) else {}
            entry["lms"] = {
                "system": lms["system"],
                "user_id": lms["user_id"] or old.get("user_id"),
                "name": plain_name(lms["name"]) or old.get("name"),
                "email": plain_name(lms["email"]) or old.get("email"),
                "anonymous": bool(lms["anonymous"]),
            }
    for r in attributed:
        rejected = entry_of(r.student, "rejected", list)["rejected"]
        item = {"input": source, "source": _text(r.source), "reason": _text(r.reason)}
        if item not in rejected:
            rejected.append(item)
    for t in report.timestamps:
        entry = entry_of(t.student, "", dict)
        if t.status in ("new", "better", "later", "unchanged"):
            entry["timestamp"], entry["time_source"] = t.text, t.source
        elif t.status == "unknown" and not entry.get("timestamp"):
            entry["time_source"] = t.source
            entry.pop("timestamp", None)
    for student in sorted({r.student for r in attributed}):
        folder = Path(coursedir.format_path(coursedir.submitted_directory, student, assignment))
        if not students[student].get("notebooks") and not any(folder.glob("*.ipynb")):
            report.nothing_gradable.append(student)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(ledger, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    _write(path, text.encode("utf-8", "backslashreplace"), 0)
    report.ledger = str(path)


# ---------------------------------------------------------------------------- the gradebook


def record_names(report: CollectReport, coursedir, root: Path, downloaded=None, ctx=None) -> None:
    """The LMS's names, e-mails and user ids of the students placed, in nbgrader's gradebook
    (``Gradebook.update_or_create_student``: first_name, last_name, email, lms_user_id), so the
    formgrader shows names instead of "None, None". Only when the course has a gradebook
    already (``grade`` makes one); names are plain text (``plain_name``). Failures are the
    caller's warnings."""
    people: dict[str, dict] = {}
    for p in report.placed:
        if p.lms and (p.lms.get("name") or p.lms.get("email") or p.lms.get("user_id")):
            people[p.student] = p.lms
    if not people or not (Path(root) / "nbgrader_config.py").is_file():
        return
    from ..grader.coursedir import db_url

    url = db_url(Path(root))
    if url.startswith("sqlite:///"):
        file = url[len("sqlite:///") :].split("?", 1)[0]
        if not Path(file).is_file():
            return
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        for student, lms in sorted(people.items()):
            first, last = split_name(plain_name(lms.get("name")))
            fields = {
                "first_name": first,
                "last_name": last,
                "email": plain_name(lms.get("email")),
                "lms_user_id": lms.get("user_id"),
            }
            gb.update_or_create_student(student, **{k: v for k, v in fields.items() if v})
