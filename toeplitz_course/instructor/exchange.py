"""Collect nbgrader's exchange into ``submitted/`` without trusting what students left in it:
``python -m toeplitz_course collect-exchange`` instead of ``nbgrader collect``.

Why not ``nbgrader collect``: ``nbgrader submit`` leaves each submission folder in
``{Exchange.root}/{course_id}/inbound/`` writable by its student (mode 0777), and stock collect
copies it with ``shutil.copytree``, which follows symbolic links. A student who, after
submitting, replaces a notebook by a link to a file the instructor can read (``/etc/shadow``,
``source/``'s solutions, another student's folder) has that file's content copied into
``submitted/`` as her own regular file, where no later step can tell. Stock collect also takes
the time from the folder's name and ``timestamp.txt``, both written by the student's process.

Here, with nbgrader's own configuration (``Exchange.root``, ``CourseDirectory.course_id``,
``ignore``, ``max_file_size``, ``ExchangeCollect.check_owner``):

* the latest submission per student is taken, as nbgrader does (by the time in the folder's
  name); a folder whose student part is not a student id (``untrusted.is_student_id``) is refused;
* only regular files at the top of the folder are copied, each opened without following links
  and checked with ``fstat`` (``staging.read_regular``); links, FIFOs, devices, sockets and
  subfolders are refused with a line in the report; with ``check_owner`` (nbgrader's default),
  a folder not owned by the user its name claims, and a file not owned by the folder's owner
  (another user writing into the 0777 folder), are refused too;
* the submission time is the folder name's when it agrees with the files (within
  ``c.Staging.timestamp_skew`` of the latest ctime of the folder and its files, which no one but
  the system can set back and which any later change moves forward), else that latest ctime;
  the student's ``timestamp.txt`` is never copied. The time is written as ``timestamp.txt`` and
  into the collect ledger (``downloaded/toeplitz/collected.json``), which ``grade`` checks
  ``timestamp.txt`` against.

A student's earlier collected folder is replaced only by a later submission.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import pwd
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..course.contract import ASSIGNMENT
from ..course.untrusted import is_student_id
from ..grader.coursedir import Course, shown
from ..grader.staging import (
    TIMESTAMP,
    Refused,
    Staging,
    open_folder,
    parse_time,
    read_regular,
)

#: Entries read of one submission folder; nbgrader's own hold the notebooks and two files.
MAX_ENTRIES = 1000

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"  # nbgrader's Exchange.timestamp_format, in UTC


class ExchangeCollectError(Exception):
    """The exchange cannot be collected at all (no course id, no inbound folder)."""


@dataclass
class Collected:
    student: str
    folder: str  # the inbound folder's name, printable
    time: str  # as written to timestamp.txt
    time_source: str
    files: list[str]
    status: str  # new | updated | unchanged


@dataclass
class ExchangeReport:
    inbound: str
    collected: list[Collected] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one printable line each

    def format(self) -> str:
        lines = [f"collected from {shown(self.inbound)}:"]
        for c in self.collected:
            lines.append(
                f"  {c.student}: {c.status}, {len(c.files)} files, submitted {c.time} "
                f"({c.time_source})"
            )
        if not self.collected:
            lines.append("  nothing")
        if self.refused:
            lines.append("refused:")
            lines += [f"  {line}" for line in self.refused]
        return "\n".join(lines)


def _utc(when: dt.datetime) -> str:
    return when.replace(tzinfo=dt.timezone.utc).strftime(_TIME_FORMAT)


def _from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None)


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def collect_exchange(course_root: Course | str | os.PathLike = ".", student: str | None = None):
    """Collect the latest submission of every student (or of ``student``) into ``submitted/``;
    ``course_root``: the course (``Course``) or its folder (loaded here, once)."""
    course = Course.of(course_root)
    with course.in_use():
        return _collect_exchange(course, student)


def _collect_exchange(course: Course, student: str | None):
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.collect import ExchangeCollect

    root = course.root
    cfg = course.config_with()
    coursedir = CourseDirectory(config=cfg)
    nbgrader = ExchangeCollect(coursedir=coursedir, config=cfg)
    if not coursedir.course_id:
        raise ExchangeCollectError("no course id (c.CourseDirectory.course_id)")
    assignment = coursedir.assignment_id or ASSIGNMENT
    inbound = Path(nbgrader.root) / coursedir.course_id / "inbound"
    report = ExchangeReport(str(inbound))
    try:
        inbound_fd = os.open(inbound, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ExchangeCollectError(f"cannot read {inbound}: {exc.strerror}") from None
    try:
        latest: dict[str, tuple[dt.datetime, str]] = {}
        for name in sorted(os.listdir(inbound_fd)):
            parts = name.rsplit("+", 3)
            if len(parts) < 3 or parts[1] != assignment:
                continue  # another assignment's, or nobody's submission
            user = parts[0]
            if student and user != student:
                continue
            if not is_student_id(user):
                report.refused.append(f"inbound/{shown(name)}: the name's student is no student id")
                continue
            try:
                when = parse_time(parts[2])
            except ValueError:
                report.refused.append(f"inbound/{shown(name)}: no time in the name")
                continue
            if user not in latest or (when, name) > latest[user]:
                latest[user] = (when, name)
        skew = Staging(config=cfg).timestamp_skew
        for user, (when, name) in sorted(latest.items()):
            got = _read_submission(inbound_fd, name, user, nbgrader, coursedir, report)
            if got is not None:
                _place(root, coursedir, assignment, user, name, when, skew, *got, report)
    finally:
        os.close(inbound_fd)
    return report


def _read_submission(inbound_fd, name, user, nbgrader, coursedir, report):
    """(files, latest ctime) of one submission folder, regular files only; None if refused."""
    label = f"inbound/{shown(name)}"
    try:
        fd = open_folder(name, inbound_fd, label)
    except Refused as refused:
        report.refused.append(f"{user}: {refused}")
        return None
    try:
        folder = os.fstat(fd)
        if nbgrader.check_owner and _owner(folder.st_uid) != user:
            report.refused.append(
                f"{user}: {label} is owned by {shown(_owner(folder.st_uid))}, not by {user}: "
                "not collected (c.ExchangeCollect.check_owner = False where every student "
                "submits as the same user)"
            )
            return None
        names = sorted(os.listdir(fd))
        if len(names) > MAX_ENTRIES:
            report.refused.append(f"{user}: {label} holds {len(names)} entries: not collected")
            return None
        files: dict[str, bytes] = {}
        changed, total = folder.st_ctime, 0
        cap = 1000 * coursedir.max_file_size
        for entry in names:
            if entry == TIMESTAMP or any(fnmatch.fnmatch(entry, p) for p in coursedir.ignore):
                continue  # the student's word for the time is not taken
            mode = os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                report.refused.append(f"{user}: {label}/{shown(entry)} is a folder: not collected")
                continue
            try:
                data, info = read_regular(entry, fd, cap, f"{label}/{shown(entry)}")
            except Refused as refused:
                report.refused.append(f"{user}: {refused}")
                continue
            if nbgrader.check_owner and info.st_uid != folder.st_uid:
                report.refused.append(
                    f"{user}: {label}/{shown(entry)} was written by "
                    f"{shown(_owner(info.st_uid))}: not collected"
                )
                continue
            total += len(data)
            if total > 1000 * coursedir.max_dir_size:
                report.refused.append(f"{user}: {label} is over c.CourseDirectory.max_dir_size")
                return None
            files[entry] = data
            changed = max(changed, info.st_ctime)
        return files, changed
    finally:
        os.close(fd)


def _place(root, coursedir, assignment, user, name, when, skew, files, changed, report):
    """Write one student's submission into ``submitted/{user}/{assignment}/``."""
    last_change = _from_epoch(changed)
    if abs(when - last_change) <= dt.timedelta(seconds=skew):
        time, source = when, "the folder's name"
    else:
        time, source = last_change, f"its files' last change; the folder's name says {_utc(when)}"
    text = _utc(time)
    dest = Path(coursedir.format_path(coursedir.submitted_directory, user, assignment))
    existing = _existing_time(dest)
    collected = Collected(user, shown(name), text, source, sorted(files), "new")
    if existing is not None:
        if existing >= time:
            collected.status, collected.time = "unchanged", _utc(existing)
            report.collected.append(collected)
            return
        collected.status = "updated"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.parent.is_symlink() or dest.is_symlink():
        report.refused.append(f"{user}: {dest} is a symbolic link: not written")
        return
    tmp = dest.parent / f".{dest.name}.exchange-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for file_name, data in files.items():
        with open(os.open(tmp / file_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as f:
            f.write(data)
    (tmp / TIMESTAMP).write_text(text + "\n", encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    os.rename(tmp, dest)
    _record(root, user, text, shown(name), source, report)
    report.collected.append(collected)


def _existing_time(dest: Path) -> dt.datetime | None:
    try:
        fd = open_folder(str(dest), None, str(dest))
    except (OSError, Refused):
        return None
    try:
        data, _ = read_regular(TIMESTAMP, fd, 1024, TIMESTAMP)
        return parse_time(data.decode("utf-8", "replace"))
    except (OSError, Refused, ValueError):
        return None
    finally:
        os.close(fd)


def _record(root: Path, user: str, text: str, folder: str, source: str, report) -> None:
    """The time written, in the collect ledger ``grade`` checks timestamp.txt against."""
    from .collect import ledger_path, read_ledger

    path = ledger_path(root)
    try:
        ledger = read_ledger(path)
    except ValueError as exc:
        report.refused.append(f"{user}: collect ledger not updated: {shown(str(exc))}")
        return
    ledger.setdefault("assignment", ASSIGNMENT)
    entry = ledger.setdefault("students", {}).setdefault(user, {})
    entry["timestamp"] = text
    entry["exchange"] = {"folder": folder, "time_source": source}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.exchange-tmp")
    tmp.write_text(json.dumps(ledger, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
