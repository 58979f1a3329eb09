"""The course directory: its nbgrader configuration, its gradebook URL and the folders the grader
keeps. The bottom of the grader: everything that reads the course directory's settings asks here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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


def submitted_students(root: Path) -> list[str]:
    base = root / "submitted"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
