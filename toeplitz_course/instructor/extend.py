"""``python -m toeplitz_course extend STUDENT --days N`` (or ``--until WHEN``): an extension.

nbgrader keeps a per-student extension on the submission (``SubmittedAssignment.extension``, an
interval added to the assignment's due date; ``Gradebook.grant_extension`` sets it), and its
lateness (``total_seconds_late``) counts from the extended due date. Neither ``nbgrader db`` nor
the formgrader sets it, so this does, through nbgrader's own API (SQLite or PostgreSQL alike).

The late penalty nbgrader stored when ``grade`` ran is then recomputed as ``AssignLatePenalties``
computes it (the course's configured plugin, per notebook, capped to the notebook's score), so
``export`` shows the new penalty without grading again; a later ``grade`` keeps the extension
(nbgrader updates a submission's time, not its extension) and computes the same penalty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ..course.contract import ASSIGNMENT
from ..course.untrusted import for_terminal
from ..grader.coursedir import Course


class ExtendError(RuntimeError):
    """The extension cannot be given (no such student, no submission, no due date, ...)."""


@dataclass(frozen=True)
class Extension:
    student: str
    extension: timedelta | None
    duedate: datetime | None  # the student's due date now (naive UTC, as nbgrader keeps it)
    seconds_late: float
    penalty_before: float
    penalty_after: float

    def format(self) -> str:
        who = for_terminal(self.student)
        due = self.duedate.strftime("%Y-%m-%d %H:%M:%S UTC") if self.duedate else "none"
        if self.extension is None:
            head = f"{who}: extension removed; due {due}"
        else:
            head = f"{who}: extension {_span(self.extension)}; due {due}"
        late = (
            f"{_span(timedelta(seconds=self.seconds_late))} late"
            if self.seconds_late
            else "on time"
        )
        penalty = f"late penalty {self.penalty_before:g} -> {self.penalty_after:g}"
        return f"{head}; {late}; {penalty}"


def _span(delta: timedelta) -> str:
    seconds = round(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [
        f"{days} d" if days else "",
        f"{hours} h" if hours else "",
        f"{minutes} min" if minutes else "",
    ]
    return " ".join(p for p in parts if p) or f"{seconds} s"


def parse_when(text: str) -> datetime:
    """A date and time as naive UTC (nbgrader's convention), with nbgrader's own parser: a
    time zone may be named ("2024-03-08 12:00 UTC", "... +01:00"); none means UTC."""
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(text)
    except Exception as exc:  # noqa: BLE001 - dateutil raises several kinds
        raise ExtendError(f"cannot read {text!r} as a date and time ({exc})") from None


def extend(
    root: Course | Path | str,
    student: str,
    *,
    days: float | None = None,
    hours: float | None = None,
    until: str | None = None,
    assignment: str = ASSIGNMENT,
) -> Extension:
    """Give ``student`` an extension of ``days``/``hours`` past the due date, or until ``until``
    (both 0 / neither: remove it), and recompute their late penalty."""
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.preprocessors import AssignLatePenalties

    course = Course.of(root)
    url = course.db_url
    with Gradebook(url) as gb:
        try:
            master = gb.find_assignment(assignment)
        except MissingEntry:
            raise ExtendError(
                f"assignment {assignment!r} is not in the gradebook: run grade first"
            ) from None
        if master.duedate is None:
            raise ExtendError(
                f"no due date in the gradebook: nbgrader db assignment add {assignment} "
                "--duedate=..., then extend"
            )
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            raise ExtendError(
                f"{for_terminal(student)} has no submission of {assignment} in the gradebook: "
                "run grade first (nbgrader keeps an extension on the submission)"
            ) from None
        if until is not None:
            delta = parse_when(until) - master.duedate
            if delta <= timedelta(0):
                raise ExtendError(f"{until} is not after the due date {master.duedate} UTC")
        else:
            delta = timedelta(days=days or 0, hours=hours or 0)
            if delta < timedelta(0):
                raise ExtendError("an extension cannot be negative")
        before = float(submission.late_submission_penalty or 0.0)
        submission.extension = delta if delta > timedelta(0) else None
        gb.db.commit()

        # As AssignLatePenalties does per notebook when grade runs, with the course's plugin.
        penalties = course.settings(AssignLatePenalties)
        penalties.init_plugin()
        seconds = submission.total_seconds_late
        for notebook in submission.notebooks:
            notebook.late_submission_penalty = None
            if seconds > 0:
                penalty = penalties.plugin_inst.late_submission_penalty(
                    student, notebook.score, seconds
                )
                if penalty is not None:
                    notebook.late_submission_penalty = penalties._check_late_penalty(
                        notebook, penalty
                    )
        gb.db.commit()
        after = float(gb.find_submission(assignment, student).late_submission_penalty or 0.0)
        return Extension(student, submission.extension, submission.duedate, seconds, before, after)
