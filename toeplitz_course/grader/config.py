"""The course's nbgrader configuration, in one function that ``nbgrader_config.py`` calls.

Kept in the package so that tests and the command-line steps configure nbgrader exactly as the
instructor's ``nbgrader_config.py`` does.
"""

from __future__ import annotations

from . import pages
from .warmkernel import DEFAULT_PRELOAD

# Preprocessors are named by import string (nbconvert imports them when a converter registers
# them), so that loading this configuration does not import torch and nbconvert: the commands
# that only read the config or the gradebook start in a fraction of the time.
NBGRADER = "nbgrader.preprocessors."
OURS = "toeplitz_course.grader.preprocessors."
SANITIZE = "toeplitz_course.grader.sanitize.SanitizeSubmission"

#: What each grading worker's warm parent imports: the usual kernel libraries and the hidden tests'
#: checks, which every graded notebook imports.
KERNEL_PRELOAD = (
    *DEFAULT_PRELOAD,
    "toeplitz_course.kernel.hidden",
    "toeplitz_course.kernel.gradingkernel",
)

#: Arguments of every grading kernel (``ipykernel_launcher``'s command line):
KERNEL_ARGUMENTS = (
    # IPython's default "Context" tracebacks re-read and syntax-highlight the source of every
    # frame: 0.1 to 0.2 s per error, a third of a wrong notebook's kernel time. "Plain" shows
    # what Python itself shows (each frame's line, then the error).
    "--InteractiveShell.xmode=Plain",
    # ipykernel's kernel without the debugger's per-cell source hashing (gradingkernel.py).
    "--IPKernelApp.kernel_class=toeplitz_course.kernel.gradingkernel.GradingKernel",
    # No input history database: nbclient already points it at SQLite's ":memory:", but each
    # kernel would still create it and start a thread to save into it. In, Out and _i still work.
    "--HistoryManager.enabled=False",
)

#: Seconds a single cell may run when graded; solved notebooks take well under a second per cell.
CELL_TIMEOUT = 20


def configure(c) -> None:
    """Apply the course's settings to a traitlets Config ``c``."""
    c.CourseDirectory.course_id = "toeplitz-convolution"
    c.CourseDirectory.ignore = [
        ".ipynb_checkpoints",
        "*.pyc",
        "__pycache__",
        "feedback",
        ".DS_Store",
    ]

    # Solutions: nbgrader's default stub, so an unanswered cell raises NotImplementedError.
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

    c.Autograde.sanitize_preprocessors = [
        NBGRADER + "ClearOutput",
        OURS + "ResetExecutionTags",
        OURS + "DeduplicateGradeIds",
        NBGRADER + "OverwriteKernelspec",
        OURS + "RestoreCells",
        OURS + "CheckCellMetadata",
    ]
    c.RestoreCells.add_missing_cells = True
    c.Autograde.autograde_preprocessors = [
        OURS + "SkipDemoCells",
        OURS + "HardenedExecute",
        NBGRADER + "IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        NBGRADER + "LimitOutput",
        OURS + "VerifyAnswers",
        # After the verdicts have read the answer channel's outputs: the autograded notebook,
        # which the formgrader and the feedback show, holds nothing active (grader/sanitize.py).
        SANITIZE,
        OURS + "SaveAutoGrades",
        NBGRADER + "AssignLatePenalties",
        OURS + "CheckCellMetadata",
    ]
    # Kernels forked from a warm parent that has imported torch: a fresh process per notebook
    # without paying `import torch` again (toeplitz_course.grader.warmkernel).
    c.HardenedExecute.kernel_manager_class = "toeplitz_course.grader.warmkernel.WarmKernelManager"
    c.WarmProvisioner.preload = list(KERNEL_PRELOAD)
    c.HardenedExecute.extra_arguments = list(KERNEL_ARGUMENTS)
    # Every output has arrived when the last cell is done; a graceful shutdown would only run
    # the kernel's exit steps (atexit hooks, torch's finalizers, thread joins) for nobody.
    c.HardenedExecute.shutdown_kernel = "immediate"
    c.HardenedExecute.timeout = CELL_TIMEOUT
    c.HardenedExecute.interrupt_on_timeout = True
    c.LimitOutput.max_lines = 200

    # LMS downloads: `python -m toeplitz_course collect DOWNLOAD` (or nbgrader zip_collect).
    c.ZipCollectApp.collector_plugin = "toeplitz_course.instructor.collect.LmsCollectorPlugin"

    c.GenerateFeedback.preprocessors = [
        NBGRADER + "GetGrades",
        OURS + "HideHiddenTests",
        OURS + "ShortenTracebacks",
        SANITIZE,  # again: a notebook autograded before the sanitiser existed
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    ]
    # Feedback and formgrader pages: messages that wrap, a local MathJax where there is one.
    pages.configure(c)


def ensure_tools_on_path() -> None:
    """Put this interpreter's scripts folder on PATH.

    nbgrader runs the ``alembic`` command when it creates a gradebook; with an unactivated
    virtualenv (``.venv/bin/python -m toeplitz_course``) it would not be found.
    """
    import os
    import sys

    scripts = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if scripts not in path.split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + path
