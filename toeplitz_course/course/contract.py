"""The exercise contract: notebooks, grade ids, answer names and points.

Students read these names, the hidden tests use them and instructors grade by them, so they are
written down once, here, and tests hold the notebooks to them.
"""

from __future__ import annotations

from dataclasses import dataclass

ASSIGNMENT = "toeplitz"


@dataclass(frozen=True)
class Exercise:
    test_id: str  # grade_id of the locked autograder-test cell ("" for a written answer)
    answer_id: str  # grade_id of the answer cell
    notebook: str
    name: str  # the name the answer cell defines
    points: int
    autograded: bool = True


NOTEBOOKS = (
    "01_conv1d_toeplitz",
    "02_padding",
    "03_equivariance",
    "04_conv2d_block_toeplitz",
    "05_parameter_counts",
    "06_using_the_matrix",
)

_NB1, _NB2, _NB3, _NB4, _NB5, _NB6 = NOTEBOOKS

EXERCISES = (
    Exercise("ex1_1_test", "ex1_1", _NB1, "n_out_valid", 1),
    Exercise("ex1_2_test", "ex1_2", _NB1, "linear_layer", 1),
    Exercise("ex1_3_test", "ex1_3", _NB1, "toeplitz_1d", 2),
    Exercise("ex2_1_test", "ex2_1", _NB2, "n_out_padded", 1),
    Exercise("ex2_2_test", "ex2_2", _NB2, "padded_matrix", 1),
    Exercise("ex2_3_test", "ex2_3", _NB2, "same_padding", 1),
    Exercise("ex3_1_test", "ex3_1", _NB3, "equivariance_gap", 1),
    Exercise("ex3_2_test", "ex3_2", _NB3, "equivariant_shifts_valid", 1),
    Exercise("ex3_3_test", "ex3_3", _NB3, "equivariant_shifts_padded", 1),
    Exercise("", "ex3_4", _NB3, "", 1, autograded=False),
    Exercise("ex4_1_test", "ex4_1", _NB4, "block_matrix", 1),
    Exercise("ex4_2_test", "ex4_2", _NB4, "block_toeplitz_2d", 2),
    Exercise("ex5_1a_test", "ex5_1a", _NB5, "n_params_dense", 1),
    Exercise("ex5_1b_test", "ex5_1b", _NB5, "n_nonzero_toeplitz", 1),
    Exercise("ex5_1c_test", "ex5_1c", _NB5, "n_params_kernel", 1),
    Exercise("ex5_2_test", "ex5_2", _NB5, "param_counts", 1),
    # Part 6 is optional for students (README): its points count like the others' in nbgrader,
    # which has no optional notebook; an instructor who wants it as a bonus adjusts the total.
    Exercise("ex6_1_test", "ex6_1", _NB6, "conv_output_length", 1),
    Exercise("ex6_2_test", "ex6_2", _NB6, "toeplitz_general", 2),
    Exercise("ex6_3_test", "ex6_3", _NB6, "transposed_matrix", 1),
    Exercise("ex6_4_test", "ex6_4", _NB6, "cnn_param_count", 1),
)

AUTOGRADED = tuple(e for e in EXERCISES if e.autograded)
BY_TEST_ID = {e.test_id: e for e in AUTOGRADED}


def exercises_in(notebook: str) -> tuple[Exercise, ...]:
    return tuple(e for e in EXERCISES if e.notebook == notebook)


def grade_ids() -> list[str]:
    """Every graded cell id, in course order: the columns of the grades export."""
    return [e.test_id or e.answer_id for e in EXERCISES]


#: Tags with which nbclient skips a cell or forgives its error (a student may add either).
EXECUTION_TAGS = ("skip-execution", "raises-exception")

#: Cell metadata key where the grader (``VerifyAnswers``) records its verdict for later steps.
VERDICT_KEY = "toeplitz_course"
