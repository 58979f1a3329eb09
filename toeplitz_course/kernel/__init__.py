"""The kernel side: what runs inside a student's kernel, and so is reachable by student code.

A hidden test cell imports ``toeplitz_course.kernel.hidden``; it turns the answer into plain data
(``probe``, on the fixed inputs of ``cases``) and sends it on the answer channel (``channel``).
``gradingkernel`` is the ipykernel class grading kernels run.

Holds no reference answer and no verdict, and imports nothing else of the project: only the
standard library, torch, numpy, IPython and ipykernel (an import-linter contract in
``pyproject.toml``). A sandboxed grading kernel sees this subpackage and nothing else of the
project.
"""
