"""Hand grades across a regrade: kept while the answer they were given for is the same.

An instructor grades a cell by hand in formgrader (nbgrader's ``Grade.manual_score`` and
``extra_credit``; the written answer ex3_4, or an override of an autograded test). nbgrader's
``SaveAutoGrades`` then marks every such cell "needs manual grade" again on each autograde,
whatever the student handed in, so a regrade of an unchanged submission would take the hand
grade out of the export. Here every hand grade of the student's submission is decided after
autograding:

* **kept** (no longer "needs manual grade") when the student's answer to that cell is what it
  was in the autograded notebook the instructor graded;
* **reset** otherwise: the manual score and extra credit are cleared; a written answer needs
  manual grading again, an autograded test keeps its fresh automatic score (what stock
  ``nbgrader export`` counts too); the comment is left for the instructor to revise; and the
  record says which cell was reset, from what, and why (a ``hand_grade_reset`` flag, listed by
  ``report``, and ``record["hand_grades"]``). A notebook that could not be graded this time
  (missing, invalid, failed) scores 0, so its hand grades are reset too.

*The answer* to a cell is what the grade depends on and the student can change: for an answer
cell (an nbgrader solution cell, like ex3_4) its own source; for an autograded test, every cell
of the notebook the student could edit (all but the locked ones, which grading restores), since
any of them can change what the test sees. Each is kept as a SHA-256 digest of the autograded
notebook's cell sources, because that is the text the instructor read in formgrader (after
Colab normalisation, recovery and restored tests), and the gradebook stores no submitted source.
The digests of the notebook graded before come from its autograded file, read before nbgrader
replaces it, or else from the previous grading record, which keeps them (``record["answers"]``),
so a run that lost the autograded files, or a grading cluster, still compares. Without either,
nothing says the answer is unchanged, and the hand grade is reset.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..course.contract import ASSIGNMENT, NOTEBOOKS
from .coursedir import RECORDS
from .gradebook import of_submission
from .integrity import cell_source as _source
from .integrity import nbgrader_meta as _nbgrader

#: The flag a reset hand grade raises, for a person to grade the cell again.
RESET = "hand_grade_reset"

#: grade id -> digest of the student's answer to that graded cell.
Answers = dict[str, str]


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def answers(notebook: dict | None) -> Answers | None:
    """The answer digest of every graded cell of an autograded notebook's JSON (None: none)."""
    if not isinstance(notebook, dict):
        return None
    cells = [c for c in notebook.get("cells", []) if isinstance(c, dict)]
    # nbgrader's is_locked: a test (grade, not solution) is locked whatever its metadata says.
    editable = [
        c
        for c in cells
        if _nbgrader(c).get("solution")
        or not (_nbgrader(c).get("grade") or _nbgrader(c).get("locked"))
    ]
    whole = _digest("notebook", *(f"{c.get('cell_type')}:{_source(c)}" for c in editable))
    found: Answers = {}
    for cell in cells:
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id")
        if not isinstance(grade_id, str) or not (meta.get("grade") or meta.get("task")):
            continue
        found[grade_id] = _digest("cell", _source(cell)) if meta.get("solution") else whole
    return found


def previous_answers(root: Path, student: str) -> dict[str, Answers]:
    """notebook -> the answers as last graded: the autograded files, else the last record's."""
    recorded = recorded_answers(root, student)
    found: dict[str, Answers] = {}
    for name in NOTEBOOKS:
        path = root / "autograded" / student / ASSIGNMENT / f"{name}.ipynb"
        try:
            digests = answers(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            digests = None
        if digests is None:
            digests = recorded.get(name)
        if digests is not None:
            found[name] = digests
    return found


def recorded_answers(root: Path, student: str) -> dict[str, Answers]:
    """The answers the student's last grading record keeps (none if it is unreadable)."""
    try:
        record = json.loads((root / RECORDS / f"{student}.json").read_text(encoding="utf-8"))
        kept = record["answers"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(kept, dict):
        return {}
    return {
        str(name): {str(k): str(v) for k, v in digests.items()}
        for name, digests in kept.items()
        if isinstance(digests, dict)
    }


def settle(
    gb: Any,
    student: str,
    previous: dict[str, Answers],
    current: dict[str, Answers | None],
    statuses: dict[str, str],
) -> list[dict]:
    """Keep or reset every hand grade of ``student``'s submission; returns one entry each.

    ``previous``/``current``: notebook -> answers as graded before / now (None: not graded
    now); ``statuses``: notebook -> this run's status (for the reason of a reset).
    """
    from nbgrader import api

    rows = gb.db.query(api.Notebook.name, api.BaseCell.name, api.Grade).join(
        api.BaseCell, api.BaseCell.id == api.Grade.cell_id
    )
    rows = of_submission(rows, api.Grade, ASSIGNMENT, student).filter(
        (api.Grade.manual_score.isnot(None)) | (api.Grade.extra_credit.isnot(None))
    )
    decisions = []
    for notebook, cell, grade in rows.all():
        if grade.manual_score is None and not grade.extra_credit:
            continue  # formgrader stores 0 extra credit with any grade it saves
        now = current.get(notebook)
        before = previous.get(notebook, {}).get(cell)
        entry = {
            "notebook": notebook,
            "cell": cell,
            "manual_score": grade.manual_score,
            "extra_credit": grade.extra_credit,
        }
        if now is None:
            reason = f"the notebook was not graded ({statuses.get(notebook, 'missing')})"
        elif before is None:
            reason = "no earlier graded answer to compare with"
        elif now.get(cell) != before:
            reason = "the answer changed since it was graded by hand"
        else:
            reason = ""
        if not reason:
            # formgrader's own rule for a grade it has just been given
            grade.needs_manual_grade = grade.manual_score is None and grade.auto_score is None
            decisions.append({**entry, "kept": True, "reason": "the answer is unchanged"})
            continue
        grade.manual_score = None
        grade.extra_credit = None
        # SaveAutoGrades' rule without the hand grade: a written answer waits for a person, a
        # test's fresh automatic score stands (as stock `nbgrader export` counts it), and an
        # ungraded notebook scores 0.
        grade.needs_manual_grade = now is not None and grade.auto_score is None
        decisions.append({**entry, "kept": False, "reason": reason, "regrade": now is not None})
    gb.db.commit()
    return decisions


def reset_flags(decisions: list[dict]) -> list[dict]:
    """The integrity flags of the hand grades ``settle`` reset."""
    flags = []
    for d in decisions:
        if d["kept"]:
            continue
        given = f"{d['manual_score']:g}" if d["manual_score"] is not None else "none"
        if d["extra_credit"]:
            given += f" + {d['extra_credit']:g} extra credit"
        flags.append(
            {
                "notebook": d["notebook"],
                "kind": RESET,
                "detail": f"hand grade of {d['cell']} ({given}) reset: {d['reason']}"
                + ("; grade it again in formgrader" if d["regrade"] else ""),
            }
        )
    return flags
