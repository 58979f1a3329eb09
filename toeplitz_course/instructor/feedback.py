"""Per-student HTML feedback with nbgrader's ``generate_feedback``, and a leak check on every page.

The feedback pipeline (``nbgrader_config.py``) hides hidden-test source and shortens tracebacks to
the test's own message. As a second line of defence, every page written is searched for each line
of every hidden test; a page that contains one is deleted and reported, never handed out.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..course.contract import ASSIGNMENT
from ..course.untrusted import for_terminal
from ..grader.coursedir import course_config, db_url

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def hidden_lines(source_dir: Path) -> set[str]:
    """Every non-blank line inside a hidden-test region of the instructor notebooks."""
    lines: set[str] = set()
    for path in sorted(source_dir.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                if line.strip() == BEGIN:
                    inside = True
                elif line.strip() == END:
                    inside = False
                elif inside and line.strip():
                    lines.add(line.strip())
    return lines


def page_text(page: str) -> str:
    """What a reader of an HTML page sees: tags removed, entities decoded."""
    text = re.sub(r"<style.*?</style>|<script.*?</script>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def leaks(page: str, secret_lines: set[str]) -> list[str]:
    text = page_text(page)
    squashed = re.sub(r"\s+", "", text)
    return sorted(s for s in secret_lines if re.sub(r"\s+", "", s) in squashed)


@dataclass
class FeedbackRun:
    written: list[Path] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f"wrote {len(self.written)} feedback pages"]
        # Student ids, page names and error texts are the student's: shown, never obeyed.
        for who, err in sorted(self.errors.items()):
            lines.append(f"  {for_terminal(who)}: {for_terminal(err)}")
        return "\n".join(lines)


def feedback(root: Path | str = ".", students: list[str] | None = None) -> FeedbackRun:
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    root = Path(root).resolve()
    graded = root / "autograded"
    if students is None:
        students = sorted(p.name for p in graded.iterdir() if (p / ASSIGNMENT).is_dir())
    secrets = hidden_lines(root / "source" / ASSIGNMENT)
    run = FeedbackRun()
    for student in students:
        cfg = course_config(
            root,
            **{
                "CourseDirectory.db_url": db_url(root),
                "CourseDirectory.assignment_id": ASSIGNMENT,
                "CourseDirectory.student_id": student,
                "GenerateFeedback.force": True,
            },
        )
        try:
            GenerateFeedback(coursedir=CourseDirectory(config=cfg), config=cfg).start()
        except Exception as exc:  # noqa: BLE001 - one student's feedback never stops the rest
            run.errors[student] = f"{type(exc).__name__}: {str(exc)[:300]}"
        for page in sorted((root / "feedback" / student / ASSIGNMENT).glob("*.html")):
            found = leaks(page.read_text(encoding="utf-8"), secrets)
            if found:
                page.unlink()
                run.errors[f"{student}/{page.name}"] = f"withheld: shows hidden test {found[0]!r}"
            else:
                run.written.append(page)
    return run
