"""Staging: a student's handed-in folder read, checked and normalised into a private copy.

Every notebook is read as JSON and normalised (``colab.normalize``) into ``.grading/staging/``; a
file that is not a notebook of the assignment or not valid JSON is recorded, and the student's
other notebooks go on. ``submitted/`` itself is never modified.

A notebook whose editor dropped the nbgrader metadata of some or all cells gets it back from the
release notebook (``recovery.recover``) before nbgrader sees it, and is flagged ``recovered`` with
how many answer cells could be placed; a notebook that kept its metadata is staged unchanged.

Everything under ``submitted/`` is hostile
------------------------------------------
Whatever a student handed in is read as if she had written the file system entries herself
(nbgrader's exchange leaves her inbound folder writable, and stock ``nbgrader collect`` copies
it as it finds it):

* **links and special files**: ``submitted/{student}/`` and its ``toeplitz/`` must be real
  folders, and every file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat``
  to be a regular file before a byte of it is read. A symbolic link (to ``/etc/shadow``, to
  another student's notebook or folder, to ``source/``), a FIFO, a device or a socket is never
  read or copied: flag ``special_file``, and the notebook it stands for is ``invalid``. Nothing
  outside the student's own folder is read.
* **sizes** (``c.Staging.*``): a notebook file, its cells, its JSON nesting and its attachments
  are capped; beyond a cap the notebook is ``invalid``, flagged ``too_large``, and the student's
  other notebooks go on. The size is checked with ``fstat`` before reading, and at most one byte
  more than the cap is read. Outputs need no cap of their own: the file cap bounds them, and
  nbgrader's ``ClearOutput`` removes them before anything runs.
* **the submission time**: ``timestamp.txt`` is checked (``_submission_time``) and staged as
  the time nbgrader is to record, never copied as it is.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from traitlets import Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from ..course import colab
from ..course.contract import ASSIGNMENT, NOTEBOOKS
from .coursedir import STAGING, course_config, shown
from .recovery import recover

#: What nbgrader's exchange puts beside the notebooks of a submission (``nbgrader submit``). The
#: secret is staged as it is, so nbgrader's Autograde copies it into ``autograded/`` and
#: GenerateFeedback into ``feedback/``, where ``nbgrader release_feedback`` reads it (it names a
#: student's feedback files in the exchange); the timestamp is staged as checked. Neither is a
#: notebook, and neither is flagged.
TIMESTAMP = "timestamp.txt"
SECRET = "submission_secret.txt"
EXCHANGE_FILES = (TIMESTAMP, SECRET)
#: nbgrader writes 30 characters of timestamp and 128 of secret; a larger one is not theirs.
EXCHANGE_FILE_BYTES = 1024

# The format nbgrader's exchange writes timestamp.txt in (Exchange.timestamp_format, in UTC).
_NBGRADER_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f %Z"

_WHAT = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
    stat.S_IFREG: "a file",
}


class Staging(LoggingConfigurable):
    """Caps on what a student hands in and how far her submission time is trusted
    (``c.Staging.*`` in ``nbgrader_config.py``)."""

    max_notebook_bytes = Integer(
        20 * 1024 * 1024,
        help="Largest notebook file read; the course's notebooks are under 100 kB, and outputs "
        "are cleared before grading anyway.",
    ).tag(config=True)
    max_cells = Integer(
        2000,
        help="Most cells a notebook may have; the course's have at most 34 (the Colab edition), "
        "and each cell costs recovery's alignment and a kernel round trip.",
    ).tag(config=True)
    max_depth = Integer(
        64,
        help="Deepest JSON nesting of a notebook (the course's: 6). Deeper ones are refused "
        "before any recursive code (nbformat, jsonschema, deepcopy) sees them.",
    ).tag(config=True)
    max_attachment_bytes = Integer(
        10 * 1024 * 1024,
        help="Total size of the attachments (images pasted into markdown cells) of a notebook, "
        "as stored (base64); they survive into autograded/ and the feedback page.",
    ).tag(config=True)
    timestamp_skew = Float(
        120.0,
        help="Seconds a submission time may lie in the future of the file that holds it, or "
        "differ from the collect ledger's, before it is flagged (clocks differ, copies take time).",
    ).tag(config=True)
    released = Unicode(
        "",
        help="When the assignment was released, as nbgrader writes times ('2025-03-01 09:00:00 "
        "UTC'); a submission time before it is flagged and not trusted. Empty: not checked (no "
        "record a student cannot move says when: release/'s file times are those of the last "
        "checkout, and the gradebook keeps no release time).",
    ).tag(config=True)


class Refused(Exception):
    """A file or folder that is not read: ``kind`` is the flag's kind, the message its detail."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


@dataclass
class Staged:
    student: str
    directory: Path  # the staged "submitted" directory nbgrader reads
    status: dict[str, tuple[str, str]] = field(default_factory=dict)  # notebook -> (status, detail)
    # notebook -> submitted JSON, as recovered if it was (for integrity)
    raw: dict[str, dict] = field(default_factory=dict)
    flags: list[dict] = field(default_factory=list)
    timestamp: str | None = None  # the submission time staged for nbgrader, as nbgrader writes it


# ------------------------------------------------------------------ reading without following


def _what(mode: int) -> str:
    return _WHAT.get(stat.S_IFMT(mode), "not a regular file")


def open_folder(name: str, dir_fd: int | None, label: str) -> int:
    """A descriptor of the real folder ``name`` (in ``dir_fd``); Refused when it is a link or
    anything but a folder, FileNotFoundError when there is none."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        raise Refused(
            "special_file", f"{label} is {_what(mode)}, not a folder: nothing in it is read"
        ) from None


def read_regular(name: str, dir_fd: int, cap: int, label: str) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file ``name`` in ``dir_fd`` and its ``fstat``, read without
    following a link, blocking on a FIFO or reading more than ``cap`` + 1 bytes."""
    mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    if not stat.S_ISREG(mode):
        raise Refused("special_file", f"{label} is {_what(mode)}: not read")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:  # replaced by a link since the lstat
        detail = f"{label} could not be opened ({exc.strerror}): not read"
        raise Refused("special_file", detail) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused("special_file", f"{label} is {_what(info.st_mode)}: not read")
        if info.st_size > cap:
            raise Refused("too_large", f"{label} is {info.st_size} bytes, over the cap of {cap}")
        chunks, size = [], 0
        while size <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:  # it grew since the fstat
            raise Refused("too_large", f"{label} is over the cap of {cap} bytes")
        return b"".join(chunks), info
    finally:
        os.close(fd)


@dataclass
class HandIn:
    """What ``read_hand_in`` read of ``submitted/{student}/toeplitz/``: regular files only."""

    files: dict[str, bytes] = field(default_factory=dict)  # name -> content
    # name -> its fstat (read) or lstat (refused): its ctime is when it reached submitted/
    stats: dict[str, os.stat_result] = field(default_factory=dict)
    refused: dict[str, Refused] = field(default_factory=dict)  # name -> why it was not read
    folder: Refused | None = None  # why the whole folder was not read
    renamed: list[str] = field(default_factory=list)  # regular files no step reads
    # when the collect ledger says collect wrote the student's timestamp.txt (``ledger_time``)
    ledger: dt.datetime | None = None


def read_hand_in(root: Path, student: str, settings: Staging) -> HandIn:
    """The files ``grade`` uses of ``submitted/{student}/toeplitz/``: the assignment's notebooks
    and the exchange's files, each a regular file in real folders and under its cap."""
    hand_in = HandIn(ledger=ledger_time(root, student))
    try:
        base = os.open(root / "submitted", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return hand_in
    fds = [base]
    try:
        fds.append(open_folder(student, base, f"submitted/{shown(student)}"))
        fds.append(open_folder(ASSIGNMENT, fds[-1], f"submitted/{shown(student)}/{ASSIGNMENT}"))
        folder = fds[-1]
        with os.scandir(folder) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            entry = os.stat(name, dir_fd=folder, follow_symlinks=False)
            mode = entry.st_mode
            if stat.S_ISDIR(mode):
                continue  # subfolders are not graded
            stem, suffix = os.path.splitext(name)
            if name in EXCHANGE_FILES:
                cap = EXCHANGE_FILE_BYTES
            elif suffix == ".ipynb" and stem in NOTEBOOKS:
                cap = settings.max_notebook_bytes
            elif stat.S_ISREG(mode):
                hand_in.renamed.append(name)
                continue
            else:
                cap = 0  # refused below, whatever it is
            try:
                hand_in.files[name], hand_in.stats[name] = read_regular(
                    name, folder, cap, shown(name)
                )
            except Refused as refused:
                hand_in.refused[name], hand_in.stats[name] = refused, entry
    except FileNotFoundError:
        pass
    except Refused as refused:
        hand_in.folder = refused
    finally:
        for fd in fds:
            os.close(fd)
    return hand_in


# ---------------------------------------------------------------------------- the notebooks


def _depth(value: object, limit: int) -> int:
    """The nesting depth of JSON ``value``, counted level by level (no recursion), up to
    ``limit`` + 1. Only containers are kept per level: 20 MB of ``[]`` costs about what
    ``json.loads`` of it does."""
    level, deepest = ([value] if type(value) is list or type(value) is dict else []), 0
    while level and deepest <= limit:
        deepest += 1
        deeper = []
        for item in level:
            children = item.values() if type(item) is dict else item
            deeper.extend([c for c in children if type(c) is list or type(c) is dict])
        level = deeper
    return deepest


def _attachment_bytes(raw: dict) -> int:
    total = 0
    for cell in raw.get("cells") or []:
        attachments = cell.get("attachments") if isinstance(cell, dict) else None
        if isinstance(attachments, dict):
            total += len(json.dumps(attachments))
    return total


def parse_notebook(data: bytes, label: str, settings: Staging) -> dict:
    """The JSON of a handed-in notebook, within the caps; Refused (``too_large``) beyond one,
    ValueError when it is no JSON object."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise Refused(
            "too_large", f"{label} is nested deeper than {settings.max_depth} levels"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    if _depth(raw, settings.max_depth) > settings.max_depth:
        raise Refused("too_large", f"{label} is nested deeper than {settings.max_depth} levels")
    cells = raw.get("cells")
    if isinstance(cells, list) and len(cells) > settings.max_cells:
        raise Refused(
            "too_large", f"{label} has {len(cells)} cells, over the cap of {settings.max_cells}"
        )
    attached = _attachment_bytes(raw)
    if attached > settings.max_attachment_bytes:
        raise Refused(
            "too_large",
            f"{label} has {attached} bytes of attachments, over the cap of "
            f"{settings.max_attachment_bytes}",
        )
    return raw


@functools.lru_cache(maxsize=16)
def _release(path: str, mtime_ns: int, size: int) -> dict:
    """A release notebook's JSON (cached per file version; ``recover`` never modifies it)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _recovered(root: Path, name: str, nb: nbformat.NotebookNode, staged: Staged) -> dict | None:
    """``nb`` with lost nbgrader metadata recovered from the release, or None if not needed."""
    release = root / "release" / ASSIGNMENT / f"{name}.ipynb"
    try:
        stat_ = release.stat()
    except FileNotFoundError:
        return None
    recovery = recover(nb, _release(str(release), stat_.st_mtime_ns, stat_.st_size))
    if not recovery.applied:
        return None
    staged.flags.append({"notebook": name, "kind": "recovered", "detail": recovery.detail})
    return recovery.notebook


# -------------------------------------------------------------------------- submission times


def _utc(when: dt.datetime) -> str:
    return when.replace(tzinfo=dt.timezone.utc).strftime(_NBGRADER_TIMESTAMP)


def _from_epoch(seconds: float) -> dt.datetime:
    """Naive UTC, as nbgrader keeps times."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None)


def parse_time(text: str) -> dt.datetime:
    """A time as nbgrader reads ``timestamp.txt`` (naive UTC); ValueError when it cannot."""
    from nbgrader.utils import parse_utc

    text = text.strip()
    if not text or len(text) > 64 or not text.isprintable():
        raise ValueError("not a time")
    try:
        when = parse_utc(text)
    except Exception as exc:  # noqa: BLE001 - dateutil raises more than ValueError
        raise ValueError(str(exc)[:100]) from None
    if not isinstance(when, dt.datetime):
        raise ValueError("not a time")
    return when


def ledger_time(root: Path, student: str) -> dt.datetime | None:
    """The time ``collect`` (or ``collect-exchange``) wrote into the student's timestamp.txt, as
    its ledger ``downloaded/toeplitz/collected.json`` remembers it (``students.{id}.timestamp``);
    None when it has none or cannot be read."""
    downloaded = _config(root).ZipCollectApp.get("downloaded_directory", "downloaded")
    try:
        ledger = json.loads((root / downloaded / ASSIGNMENT / "collected.json").read_bytes())
        return parse_time(ledger["students"][student]["timestamp"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _submission_time(
    root: Path, student: str, hand_in: HandIn, settings: Staging
) -> tuple[dt.datetime | None, str]:
    """The time nbgrader is to record for the submission, and why it is not the one handed in
    (empty when it is).

    ``timestamp.txt`` is the student's word under nbgrader's exchange. It is not trusted when it
    cannot be read, lies in the future of the file that holds it (its ctime, which no one but
    the system can set back), or before ``c.Staging.released``. Where the collect ledger
    remembers the time collect wrote, that time is used, and a difference is flagged. Else an
    untrusted time is replaced by the latest the submission can have been made: when its
    timestamp.txt reached ``submitted/``. No timestamp.txt and no ledger: no time, as nbgrader.
    """
    data = hand_in.files.get(TIMESTAMP)
    recorded = hand_in.ledger
    skew = dt.timedelta(seconds=settings.timestamp_skew)
    claimed, problem = None, ""
    if TIMESTAMP in hand_in.refused:
        problem = str(hand_in.refused[TIMESTAMP])
    elif data is not None:
        text = data.decode("utf-8", "replace")
        written = _from_epoch(hand_in.stats[TIMESTAMP].st_ctime)
        try:
            claimed = parse_time(text)
        except ValueError:
            problem = f"timestamp.txt is not a time ({shown(text.strip()[:64])!r})"
        else:
            if claimed > min(written, _from_epoch(time.time())) + skew:
                problem = (
                    f"timestamp.txt says {_utc(claimed)}, after it was written ({_utc(written)})"
                )
            elif settings.released and claimed < parse_time(settings.released):
                problem = (
                    f"timestamp.txt says {_utc(claimed)}, before the release ({settings.released})"
                )
            if problem:
                claimed = None
    if recorded is not None:
        if claimed is not None and abs(claimed - recorded) <= skew:
            return claimed, ""
        if claimed is not None:
            problem = f"timestamp.txt says {_utc(claimed)}"
        elif not problem:
            problem = "no timestamp.txt"
        return recorded, f"{problem}; collect recorded {_utc(recorded)}: used"
    if problem and TIMESTAMP in hand_in.stats:
        fallback = _from_epoch(hand_in.stats[TIMESTAMP].st_ctime)
        return fallback, f"{problem}; used when it reached submitted/: {_utc(fallback)}"
    return claimed, f"{problem}; no submission time" if problem else ""


# -------------------------------------------------------------------------------- staging


def _config(root: Path):
    """The course's configuration; nbgrader's defaults where there is no nbgrader_config.py."""
    from traitlets.config import Config
    from traitlets.config.loader import ConfigFileNotFound

    try:
        return course_config(root)
    except ConfigFileNotFound:
        return Config()


def settings_of(root: Path) -> Staging:
    return Staging(config=_config(root))


def stage(
    root: Path, student: str, settings: Staging | None = None, hand_in: HandIn | None = None
) -> Staged:
    """Stage ``submitted/{student}/toeplitz/``, or ``hand_in`` when it was read elsewhere (a
    cluster worker grades a copy: the refusals, times and ledger travel in the HandIn)."""
    settings = settings or settings_of(root)
    staged_root = root / STAGING / student
    if staged_root.exists():
        shutil.rmtree(staged_root)
    dest = staged_root / "submitted" / student / ASSIGNMENT
    dest.mkdir(parents=True)
    staged = Staged(student, staged_root / "submitted")
    if hand_in is None:
        hand_in = read_hand_in(root, student, settings)
    if hand_in.folder is not None:
        detail = str(hand_in.folder)
        staged.flags.append({"notebook": "", "kind": hand_in.folder.kind, "detail": detail})
        for name in NOTEBOOKS:
            staged.status[name] = ("invalid", detail)
        return staged
    for name in hand_in.renamed:
        staged.flags.append(
            {
                "notebook": shown(name),
                "kind": "renamed",
                "detail": f"{shown(name)} is not a notebook of the assignment; not graded",
            }
        )
    for name, refused in hand_in.refused.items():
        stem, suffix = os.path.splitext(name)
        notebook = stem if suffix == ".ipynb" and stem in NOTEBOOKS else shown(name)
        staged.flags.append({"notebook": notebook, "kind": refused.kind, "detail": str(refused)})
        if notebook in NOTEBOOKS:
            staged.status[notebook] = ("invalid", str(refused))
    when, problem = _submission_time(root, student, hand_in, settings)
    if problem:
        staged.flags.append({"notebook": "", "kind": "timestamp", "detail": problem})
    if when is not None:
        staged.timestamp = _utc(when)
        (dest / TIMESTAMP).write_text(staged.timestamp + "\n", encoding="utf-8")
    if SECRET in hand_in.files:
        (dest / SECRET).write_bytes(hand_in.files[SECRET])
    for name in NOTEBOOKS:
        data = hand_in.files.get(f"{name}.ipynb")
        if data is not None:
            _stage_notebook(root, name, data, settings, staged, dest)
    for name in NOTEBOOKS:
        if name not in staged.status:
            detail = f"{name}.ipynb was not handed in"
            staged.status[name] = ("missing", detail)
            staged.flags.append({"notebook": name, "kind": "missing", "detail": detail})
    return staged


def _stage_notebook(
    root: Path, name: str, data: bytes, settings: Staging, staged: Staged, dest: Path
) -> None:
    file_name = f"{name}.ipynb"
    try:
        raw = parse_notebook(data, file_name, settings)
        nb = colab.normalize(nbformat.from_dict(raw))
        nbformat.validate(nb)
    except Refused as refused:
        staged.status[name] = ("invalid", str(refused))
        staged.flags.append({"notebook": name, "kind": refused.kind, "detail": str(refused)})
        return
    except Exception as exc:
        detail = f"{file_name} is not a valid notebook ({type(exc).__name__}: {str(exc)[:200]})"
        staged.status[name] = ("invalid", detail)
        staged.flags.append({"notebook": name, "kind": "invalid_json", "detail": detail})
        return
    recovered = _recovered(root, name, nb, staged)
    if recovered is not None:
        nb = nbformat.from_dict(recovered)
        nbformat.validate(nb)
        # Integrity compares what nbgrader grades with the release: tests recovery matched
        # are there (not "deleted"), and the ones it matched though edited are still edited.
        raw = json.loads(json.dumps(recovered))
    staged.raw[name] = raw
    # Validated just above; nbformat.write would validate (and deep-copy) it again.
    (dest / file_name).write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    staged.status[name] = ("staged", "")
