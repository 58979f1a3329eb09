"""The formgrader's submission page: the cells a person grades come first.

A person opens a submission in nbgrader's formgrader to grade its written answer (ex3_4, at the
end of Part 3, below every exercise and figure of the part). ``HandGradedFirst``, an nbconvert
preprocessor the formgrader's exporter runs (``HTMLExporter.preprocessors``, set in
``pages.configure``), moves each cell graded by hand to the top of the page under a heading, and
leaves a line where it was; the rest of the notebook follows as handed in, so the figures the
answer is about are one scroll away. Cells are moved, not copied: the formgrader binds each score
box by the grade id, which must stay unique in the page.

Only formgrader pages are reordered (their resources carry a ``submission_id``); feedback pages
keep the notebook's order.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_markdown_cell
from nbgrader import utils


def graded_by_hand(cell) -> bool:
    """A cell whose points a person gives: an answer cell with points, or a task."""
    return (utils.is_solution(cell) and utils.is_grade(cell)) or utils.is_task(cell)


class HandGradedFirst(Preprocessor):
    """In a formgrader page, the cells graded by hand first, each with a line left in its place."""

    def preprocess(self, nb, resources):
        if not resources.get("submission_id"):
            return nb, resources
        moved = [i for i, cell in enumerate(nb.cells) if graded_by_hand(cell)]
        if not moved:
            return nb, resources
        top = [new_markdown_cell("### Graded by hand (moved up from below; the notebook follows)")]
        rest = []
        for index, cell in enumerate(nb.cells):
            if index in moved:
                grade_id = cell.metadata["nbgrader"].get("grade_id", "")
                top.append(cell)
                rest.append(
                    new_markdown_cell(f"*({grade_id}, cell {index + 1}: shown at the top)*")
                )
            else:
                rest.append(cell)
        top.append(new_markdown_cell("---\n### The notebook"))
        nb.cells = top + rest
        return nb, resources
