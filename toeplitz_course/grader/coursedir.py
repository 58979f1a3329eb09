"""The course directory: its nbgrader configuration, its gradebook URL and the folders the grader
keeps. The bottom of the grader: everything that reads the course directory's settings asks here.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from traitlets.config import Config

from ..course.untrusted import for_terminal, is_student_id

#: The grader's own working folders, relative to the course root (never committed).
STAGING = Path(".grading") / "staging"
LOGS = Path(".grading") / "logs"
RECORDS = Path("grading")

T = TypeVar("T")

CONFIG_FILE = "nbgrader_config.py"


class CourseProblem(Exception):
    """The course directory cannot be used: no ``nbgrader_config.py``, or one that does not load.
    The message is one line naming the file (and the line of the file where it failed)."""


#: The course each root is being worked on as, while a step runs (``Course.in_use``).
_IN_USE: dict[Path, Course] = {}


@dataclass(frozen=True)
class Course:
    """A course directory, loaded once: its root, its nbgrader configuration (``config``: the
    traitlets Config of ``nbgrader_config.py`` as nbgrader's apps load it) and what the steps
    derive from it. The CLI loads it once and hands it to each step; a step given a path loads
    it once at its top (``Course.of``). Picklable: worker processes get it with each task instead
    of executing the instructor's file again. ``config`` is shared: read it, or change a copy
    (``config_with``, ``settings``)."""

    root: Path
    config: Config
    db_url: str
    #: False: no ``nbgrader_config.py`` (a library call on a bare folder): nbgrader's defaults.
    configured: bool = True

    @classmethod
    def load(cls, root: Path | str = ".") -> Course:
        """Execute ``root/nbgrader_config.py`` (once); raises :class:`CourseProblem`."""
        root = Path(root).resolve()
        file = root / CONFIG_FILE
        if not file.is_file():
            raise CourseProblem(
                f"{root} is not a course directory (no {CONFIG_FILE}): run this in the course "
                "directory or pass --root"
            )
        try:
            compile(file.read_text(encoding="utf-8"), str(file), "exec")
        except SyntaxError as exc:
            raise CourseProblem(f"{file}, line {exc.lineno}: {exc.msg} (a syntax error)") from None
        except (OSError, UnicodeError) as exc:
            raise CourseProblem(f"{file}: cannot read it ({exc})") from None
        from traitlets.config.loader import PyFileConfigLoader

        try:
            cfg = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
        except Exception as exc:  # the file is the instructor's code: whatever it raises
            lines = [
                f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(file)
            ]
            where = f", line {lines[-1]}" if lines else ""
            raise CourseProblem(f"{file}{where}: {type(exc).__name__}: {exc}") from exc
        return cls._made(root, cfg, configured=True)

    @classmethod
    def defaults(cls, root: Path | str) -> Course:
        """nbgrader's defaults for a folder without ``nbgrader_config.py``."""
        return cls._made(Path(root).resolve(), Config(), configured=False)

    @classmethod
    def _made(cls, root: Path, cfg: Config, configured: bool) -> Course:
        from nbgrader.coursedir import CourseDirectory

        cfg.CourseDirectory.root = str(root)
        url = CourseDirectory(config=cfg).db_url
        if url.startswith("sqlite:") and "timeout=" not in url:
            # Parallel workers share the file: wait for the lock instead of "database is locked".
            url += ("&" if "?" in url else "?") + "timeout=120"
        course = cls(root, cfg, url, configured)
        course.importable()
        return course

    @classmethod
    def of(cls, where: Course | Path | str = ".") -> Course:
        """``where`` as a Course: itself; the course a running step uses for that root
        (``in_use``); else loaded from its ``nbgrader_config.py`` (nbgrader's defaults when
        there is none). A step converts its argument once, at its top."""
        if isinstance(where, Course):
            where.importable()
            return where
        root = Path(where).resolve()
        if root in _IN_USE:
            return _IN_USE[root]
        if not (root / CONFIG_FILE).is_file():
            return cls.defaults(root)
        return cls.load(root)

    def importable(self) -> None:
        # A plugin the config names by module (``c.AssignLatePenalties.plugin_class =
        # "late.SubMarks"`` with late.py beside it, as nbgrader documents) must import wherever
        # grade runs from, a worker process included; nbgrader puts its cwd first on sys.path,
        # this puts the course directory last, so it shadows nothing.
        if str(self.root) not in sys.path:
            sys.path.append(str(self.root))

    @contextlib.contextmanager
    def in_use(self) -> Iterator[Course]:
        """While a step runs, every ``course_config(root)`` / ``db_url(root)`` of this root, in
        modules that are handed a path (staging, assignment, gradebook, cluster), answers from
        this object instead of executing ``nbgrader_config.py`` again."""
        before = _IN_USE.get(self.root)
        _IN_USE[self.root] = self
        try:
            yield self
        finally:
            if before is None:
                _IN_USE.pop(self.root, None)
            else:
                _IN_USE[self.root] = before

    def config_with(self, **overrides: Any) -> Config:
        """A copy of the configuration (callers may change it), ``{"Section.trait": value}``
        set over it."""
        cfg = copy.deepcopy(self.config)
        for dotted, value in overrides.items():
            section, name = dotted.split(".")
            setattr(getattr(cfg, section), name, value)
        return cfg

    def settings(self, configurable: type[T], **kw: Any) -> T:
        """``configurable`` (a traitlets Configurable: ``Sandbox``, ``LmsExport``, ...) as this
        course configures it."""
        return configurable(config=self.config_with(), **kw)

    @property
    def variant(self) -> str:
        """``c.Course.variant``: the name of the term's set of numbers (``course.variant``);
        "default" when not set."""
        return variant_settings(self.config)[0]

    @property
    def previous_variants(self) -> tuple[str, ...]:
        """``c.Course.previous_variants``: earlier terms' variants, whose right answers are
        old answers in this one (the default variant always counts as one)."""
        return variant_settings(self.config)[1]

    @property
    def course_id(self) -> str:
        """``c.CourseDirectory.course_id`` ("" when not set)."""
        return str(self.config.CourseDirectory.get("course_id", "") or "")

    @property
    def downloaded(self) -> str:
        """The folder collect keeps downloads and its ledger in (``ZipCollectApp``)."""
        return str(self.config.ZipCollectApp.get("downloaded_directory", "downloaded"))


def variant_settings(config: Config) -> tuple[str, tuple[str, ...]]:
    """``(c.Course.variant, c.Course.previous_variants)`` of a configuration: the variant's name
    ("default" when not set) and the earlier ones. ``Course`` is no traitlets class: nbgrader's
    apps load the section and leave it alone, and it is read only here."""
    from ..course.variant import canonical

    section = config.get("Course", {})
    names = section.get("previous_variants") or ()
    if isinstance(names, str):
        names = (names,)
    return canonical(section.get("variant")), tuple(canonical(str(n)) for n in names)


def course_config(root: Course | Path | str, **overrides: Any) -> Config:
    """The traitlets Config of ``root/nbgrader_config.py``, as nbgrader's apps would load it (a
    copy; the course in use for ``root`` when a step is running, see ``Course.of``)."""
    course = Course.of(root)
    if not course.configured:
        from traitlets.config.loader import ConfigFileNotFound

        raise ConfigFileNotFound(f"{course.root / CONFIG_FILE} not found")
    return course.config_with(**overrides)


def db_url(root: Course | Path | str) -> str:
    return Course.of(root).db_url


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
