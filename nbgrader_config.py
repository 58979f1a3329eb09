"""nbgrader configuration of the course directory (the repository root).

`python -m toeplitz_course ...` and nbgrader's own commands (`nbgrader generate_assignment`,
`nbgrader formgrader`, ...) both read this file, so they share one course directory and gradebook.
"""

from toeplitz_course.grader.config import configure

c = get_config()  # noqa: F821 - injected by traitlets when it loads this file
configure(c)

# Course-specific choices an instructor may change below, after configure(c), e.g.:
# c.CourseDirectory.db_url = "postgresql://grader@localhost/toeplitz"
# c.HardenedExecute.timeout = 30            # seconds per cell
# c.LmsCollectorPlugin.student_id_map = "roster.csv"
