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
against the assignment's due date and applies ``AssignLatePenalties``. The time is the latest of
the student's collected files: a ``timestamp`` group of the file name where a pattern has one,
else the zip entry's modification time (its Info-ZIP UTC field when the zip has one, else its DOS
time, read in ``c.LmsCollectorPlugin.archive_timezone``), else the file's. An existing, later
timestamp is kept (a download holding only some files does not move it back).

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
from traitlets.config.loader import PyFileConfigLoader

from ..course.contract import ASSIGNMENT, NOTEBOOKS
from ..course.untrusted import for_terminal, is_student_id

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
    "read_ledger",
    "safe_student_id",
]

#: Tried in order; the first that fully matches the file's path below the download's root wins
#: (below a single wrapping folder when the download has one, see ``collect``). Anchored there, so
#: whose file it is comes only from the name the LMS gives the submission (the first path
#: component, or a flat file's prefix), never from folder or file names inside it, which the
#: student chose. ``{assignment}`` stands for the escaped assignment id.
DEFAULT_PATTERNS = [
    # Moodle, a folder per submission: "Jane Smith_12345_assignsubmission_file_/02_padding.ipynb"
    # (real downloads end the folder name with "_"), its files possibly in subfolders of their own
    # ("..._file_/my work/05_parameter_counts.ipynb": the student is the Moodle folder's).
    r"(?P<student_id>[^/]+?)_(?P<lms_id>\d+)_assignsubmission_[a-z]+_?/(?:[^/]+/)*(?P<file_id>[^/]+)",
    # Canvas: "smithj_LATE_12345_678_01_conv1d_toeplitz-1.ipynb" (login, LATE when Canvas found
    # it late, user id, submission id). Before Moodle's flat names: the student's own file name
    # follows Canvas's prefix, and one uploaded as "victim_999_assignsubmission_file_x.ipynb"
    # would otherwise read as Moodle user 999's.
    r"(?P<student_id>[^/_]+)(?:_(?P<late>(?i:late)))?_(?P<lms_id>\d+)_\d+_(?P<file_id>[^/]+)",
    # Moodle, flat: "Jane Smith_12345_assignsubmission_file_02_padding.ipynb" (the lazy name stops
    # at the first "_id_assignsubmission_", which is Moodle's, before the student's file name)
    r"(?P<student_id>[^/]+?)_(?P<lms_id>\d+)_assignsubmission_[a-z]+_(?P<file_id>[^/]+)",
    # nbgrader exchange-like "smithj/toeplitz/01_conv1d_toeplitz.ipynb"
    r"(?P<student_id>[^/]+)/{assignment}/(?P<file_id>[^/]+)",
    # a folder per student, also Colab downloads: "smithj/Copy of 01_conv1d_toeplitz (1).ipynb"
    r"(?P<student_id>[^/]+)/(?P<file_id>[^/]+)",
]

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

    def __init__(self, reason: str, student: str | None = None):
        super().__init__(reason)
        self.student = student


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
    text = re.sub(r"[^\w.-]+", "_", text).strip("._-")
    return text if is_student_id(text) else None


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


# ------------------------------------------------------------------------------------- plugin


@dataclass(frozen=True)
class Identified:
    student: str
    notebook: str
    lms_id: str | None  # the LMS's own user id, when the name carries one
    mapped: bool  # the student id came from student_id_map
    revision: tuple[int, int]  # (Canvas "-N", download copy "(N)")
    timestamp: float | None  # from a ``timestamp`` group, seconds since the epoch
    timestamp_text: str | None
    lms_late: bool = False  # the LMS marked the file late (a ``late`` group: Canvas's "_LATE_")


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
        if found.timestamp_text:
            info["timestamp"] = found.timestamp_text
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
            raise NotPlaced(f"not a notebook ({ext or 'no extension'})", self._whose(relpath))

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
        file_id = os.path.basename((groups.get("file_id") or "").strip())

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
                f"renamed or unknown notebook '{file_id}' for student {student}", student
            )
        notebook, revision = canonical

        timestamp_text = (groups.get("timestamp") or "").strip() or None
        timestamp = None
        if timestamp_text:
            try:
                stamp = parse_utc(timestamp_text)
            except (ValueError, OverflowError) as exc:
                raise NotPlaced(
                    f"unreadable timestamp '{timestamp_text}' ({exc})", student
                ) from None
            timestamp = stamp.replace(tzinfo=dt.timezone.utc).timestamp()
        lms_late = bool(groups.get("late"))
        return Identified(
            student, notebook, lms_id, mapped, revision, timestamp, timestamp_text, lms_late
        )

    def _whose(self, relpath: str) -> str | None:
        """The course student a file that is no notebook belongs to, when its name says so."""
        try:
            found = self.identify(_as_notebook(relpath))
        except NotPlaced as reason:
            return reason.student
        return found.student

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
        """Whether the LMS's own naming says whose ``relpath`` is (a pattern with an lms_id)."""
        groups = self._match(relpath)
        return bool(groups and (groups.get("lms_id") or "").strip())

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
    time_source: str = ""  # "file name" | "zip entry time" | "file time"
    lms_late: bool = False  # the LMS's own marker (Canvas "_LATE_")


@dataclass(frozen=True)
class Rejected:
    source: str
    reason: str
    student: str | None = None  # whose hand-in it was, when known


@dataclass(frozen=True)
class Stamped:
    """A student's ``timestamp.txt`` after this run."""

    student: str
    text: str  # its content
    source: str  # where the time came from
    status: str  # new | unchanged | later (replaced an earlier one) | kept (the existing is later)
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
        if self.timestamps:
            late = {p.student for p in self.placed if p.lms_late}
            lines.append(f"submission times ({TIMESTAMP_FILE}):")
            width = max(len(show(t.student)) for t in self.timestamps)
            for t in self.timestamps:
                what = {
                    "later": f"replaced {show(t.previous)}",
                    "kept": "kept: later than this download's",
                }.get(t.status, t.status)
                marker = ", marked late by the LMS" if t.student in late else ""
                lines.append(
                    f"  {show(t.student):<{width}}  {show(t.text)}  ({t.source}; {what}{marker})"
                )
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

    @property
    def when(self) -> float:
        return self.found.timestamp if self.found.timestamp is not None else self.entry.mtime

    @property
    def time_source(self) -> str:
        return "file name" if self.found.timestamp is not None else self.entry.time_source

    def rank(self):
        return (self.found.revision, self.when, self.entry.source)


def _load_config(root: Path, config: Config | None) -> Config:
    merged = Config()
    config_file = root / "nbgrader_config.py"
    if config_file.is_file():
        try:
            merged.merge(PyFileConfigLoader(config_file.name, path=str(root)).load_config())
        except Exception as exc:  # the file is the instructor's code: any error is a config error
            raise CollectError(f"{config_file}: cannot load it ({exc})") from exc
    if config is not None:
        merged.merge(config)
    return merged


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
    course_root: str | os.PathLike = ".",
    *,
    config: Config | None = None,
    assignment: str = ASSIGNMENT,
    student: str | None = None,
) -> CollectReport:
    """Place the notebooks of an LMS download (a zip file, a folder, or one notebook) in
    ``submitted/``.

    ``student``: whose files these are, whatever their names say (a loose Colab download, say);
    each file is then placed by its name alone. Settings come from
    ``{course_root}/nbgrader_config.py`` when it exists, with ``config`` merged over them. Raises
    CollectError when the input or the configuration is unusable; problems with single files are
    in the report instead.
    """
    root = Path(course_root).resolve()
    source = Path(path)
    cfg = _load_config(root, config)
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
    if source.is_dir():
        real = Path(os.path.realpath(source))
        if _inside(real, submitted_base) or _inside(submitted_base, real):
            raise CollectError(f"{path}: the input must not contain or be inside {submitted_base}")
        entries = _folder_entries(real)
        return _run(entries, student, plugin, coursedir, root, downloaded, report)
    if not source.is_file():
        raise CollectError(f"{path}: no such file or folder")
    is_notebook = source.suffix.lower() in {e.lower() for e in plugin.valid_ext}
    if not is_notebook and source.suffix.lower() not in _ARCHIVE_EXTS:
        if not zipfile.is_zipfile(source):
            raise CollectError(f"{path}: neither a zip file, a folder nor a notebook")
    elif is_notebook:
        # One notebook, as a browser saves it from Colab or an LMS: placed by its own name.
        st = source.stat()
        one = _Entry(
            _text(source.name),
            source.name,
            None,
            st.st_size,
            st.st_mtime,
            lambda: source.open("rb"),
        )
        return _run([one], student, plugin, coursedir, root, downloaded, report)
    try:
        zf, not_utf8 = _open_zip(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise CollectError(f"{path}: not a readable zip file ({exc})") from None
    with zf:
        try:
            entries = list(_zip_entries(zf, plugin.zip_timezone(), not_utf8))
        except (zipfile.BadZipFile, ValueError) as exc:
            raise CollectError(f"{path}: corrupt zip file ({exc})") from None
        return _run(entries, student, plugin, coursedir, root, downloaded, report)


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

    A folder is taken for a wrapper (added by whoever zipped or unpacked the download) only when
    it holds everything, its own name is no LMS submission's, and every path below it is named
    by the LMS (a pattern with an lms_id: Canvas's files, Moodle's folders). A student's own
    folder holding a folder named like a Moodle submission cannot be told from that, so one
    student's folder on its own is to be collected with ``--student``.
    """
    named = [e.relpath for e in entries if e.relpath is not None and not _junk(e.relpath)]
    tops = {r.split("/", 1)[0] for r in named}
    if len(tops) != 1 or any("/" not in r for r in named):
        return entries
    [top] = tops
    if any(plugin.lms_named(r) for r in named):
        return entries
    if not all(plugin.lms_named(r.split("/", 1)[1]) for r in named):
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
        raise NotPlaced(entry.problem, plugin.owner(entry.relpath) if entry.relpath else None)
    found = plugin.identify(entry.relpath)
    try:
        if entry.size > MAX_FILE_BYTES:
            raise NotPlaced(f"larger than {MAX_FILE_BYTES // 2**20} MB: not read")
        data = _read(entry)
        return _Candidate(entry, found, hashlib.sha256(data).hexdigest(), _json_note(data))
    except NotPlaced as reason:
        raise NotPlaced(str(reason), found.student) from None
    except _READ_ERRORS as exc:
        raise NotPlaced(f"corrupt or unreadable ({exc})", found.student) from None
    except Exception as exc:  # whatever one file does, the others are still collected
        raise NotPlaced(f"cannot be read ({type(exc).__name__}: {exc})", found.student) from None


def _run(entries, student, plugin, coursedir, root, downloaded, report) -> CollectReport:
    """Place ``entries``; whatever happens, the timestamps and the ledger say what was done."""
    try:
        _place(entries, student, plugin, coursedir, root, downloaded, report)
    finally:
        for finish in (_write_timestamps, _update_ledger):
            try:
                finish(report, coursedir, root, downloaded)
            except Exception as exc:
                report.warnings.append(
                    f"{finish.__name__.strip('_').replace('_', ' ')} failed: "
                    f"{type(exc).__name__}: {exc}"
                )
    return report


def _place(entries, student, plugin, coursedir, root, downloaded, report) -> None:
    assignment = report.assignment
    if student is None:
        entries = _unwrapped(entries, plugin, report)
    candidates: list[_Candidate] = []
    for entry in _as(student, entries):
        try:
            candidates.append(_examine(entry, plugin))
        except NotPlaced as reason:
            report.rejected.append(Rejected(entry.source, str(reason), reason.student))
        except CollectError:
            raise
        except Exception as exc:  # a name no pattern expected: that file only
            report.rejected.append(
                Rejected(entry.source, f"cannot be collected ({type(exc).__name__}: {exc})")
            )

    # One display name from two LMS accounts is two people; merging them would let one's
    # notebook silently "replace" the other's. Both stay on the ledger under that name, with
    # the reason.
    accounts = defaultdict(set)
    for c in candidates:
        if not c.found.mapped and c.found.lms_id:
            accounts[c.found.student].add(c.found.lms_id)
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
                winner.when if winner.when > 0 else None,
                winner.time_source,
                winner.found.lms_late,
            )
        )


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


def _write_timestamps(report: CollectReport, coursedir: CourseDirectory, *_: object) -> None:
    """Each student's timestamp.txt: the latest time of the files placed for them this run."""
    latest: dict[str, Placed] = {}
    for p in report.placed:
        if p.time is not None and (p.student not in latest or p.time > latest[p.student].time):
            latest[p.student] = p
    for student, p in sorted(latest.items()):
        path = Path(p.dest).parent / TIMESTAMP_FILE
        text = format_timestamp(p.time)
        previous = _timestamp_text(path)
        existing = _read_timestamp(path)
        if existing is not None and existing > p.time:
            report.timestamps.append(Stamped(student, previous, p.time_source, "kept"))
            continue
        if previous == text:
            report.timestamps.append(Stamped(student, text, p.time_source, "unchanged"))
            continue
        if previous is not None and existing is None:
            report.warnings.append(
                f"{path}: unreadable timestamp {previous[:60]!r}, replaced by {text}"
            )
        _write(path, (text + "\n").encode("utf-8"), 0)
        status = "new" if previous is None else "later"
        report.timestamps.append(Stamped(student, text, p.time_source, status, previous))


# -------------------------------------------------------------------------------- the ledger


def ledger_path(course_root: str | os.PathLike, assignment: str = ASSIGNMENT) -> Path:
    root = Path(course_root)
    try:
        downloaded = _load_config(root.resolve(), None).ZipCollectApp.get(
            "downloaded_directory", "downloaded"
        )
    except CollectError:
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
    report: CollectReport, coursedir: CourseDirectory, root: Path, downloaded: str
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
    for r in attributed:
        rejected = entry_of(r.student, "rejected", list)["rejected"]
        item = {"input": source, "source": _text(r.source), "reason": _text(r.reason)}
        if item not in rejected:
            rejected.append(item)
    for t in report.timestamps:
        entry_of(t.student, "", dict)["timestamp"] = t.text
    for student in sorted({r.student for r in attributed}):
        folder = Path(coursedir.format_path(coursedir.submitted_directory, student, assignment))
        if not students[student].get("notebooks") and not any(folder.glob("*.ipynb")):
            report.nothing_gradable.append(student)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(ledger, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    _write(path, text.encode("utf-8", "backslashreplace"), 0)
    report.ledger = str(path)
