"""The course directory: its nbgrader configuration, its gradebook URL and the folders the grader
keeps. The bottom of the grader: everything that reads the course directory's settings asks here.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..course.untrusted import for_terminal, is_student_id

#: The grader's own working folders, relative to the course root (never committed).
STAGING = Path(".grading") / "staging"
LOGS = Path(".grading") / "logs"
RECORDS = Path("grading")


def course_config(root: Path, **overrides: Any):
    """The traitlets Config of ``root/nbgrader_config.py``, as nbgrader's apps would load it."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    cfg.CourseDirectory.root = str(root)
    # A plugin the config names by module (``c.AssignLatePenalties.plugin_class = "late.SubMarks"``
    # with late.py beside it, as nbgrader documents) must import wherever grade runs from; nbgrader
    # puts its cwd first on sys.path, this puts the course directory last, so it shadows nothing.
    if str(root) not in sys.path:
        sys.path.append(str(root))
    for dotted, value in overrides.items():
        section, name = dotted.split(".")
        setattr(getattr(cfg, section), name, value)
    return cfg


def db_url(root: Path) -> str:
    from nbgrader.coursedir import CourseDirectory

    url = CourseDirectory(config=course_config(root)).db_url
    if url.startswith("sqlite:") and "timeout=" not in url:
        # Parallel workers share the file: wait for the lock instead of "database is locked".
        url += ("&" if "?" in url else "?") + "timeout=120"
    return url


def shown(name: str) -> str:
    """A file or folder name as it may be printed: bytes that are no UTF-8 (a name is any bytes
    on Linux) as ``\\xff``, control characters as their escapes (``untrusted.for_terminal``)."""
    return for_terminal(os.fsencode(name).decode("utf-8", "backslashreplace"))


def submitted_students(root: Path, refused: list[str] | None = None) -> list[str]:
    """The student ids of the folders under ``submitted/``, sorted.

    A name that is not a student id (``untrusted.is_student_id``: a spreadsheet formula, escape
    sequences, a newline) is refused, not renamed: one line naming the folder and why is appended
    to ``refused``, or logged as a warning when the caller passes no list. Hidden names
    (``.ipynb_checkpoints``) and plain files are no student's. A symbolic link with a student's
    name is listed: staging refuses it with a flag in that student's record.
    """
    try:
        entries = list(os.scandir(root / "submitted"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    students = []
    for entry in entries:
        name = entry.name
        if name.startswith(".") or not (entry.is_dir(follow_symlinks=False) or entry.is_symlink()):
            continue
        if is_student_id(name):
            students.append(name)
            continue
        line = (
            f"submitted/{shown(name)}: not graded, the folder's name is not a student id "
            "(letters, digits and _ . @ - only, starting with a letter or digit, at most 100)"
        )
        if refused is None:
            logging.getLogger(__name__).warning("%s", line)
        else:
            refused.append(line)
    return sorted(students)
