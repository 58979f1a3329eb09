"""The grader: what turns handed-in notebooks into scores, in the grader's own processes.

From the bottom up: ``coursedir`` (the course directory's config, gradebook URL and folders),
``gradebook`` (nbgrader's gradebook from racing processes), ``answers`` and ``verdicts`` (the
answer channel read back, and the judgement of each answer with its teaching message),
``demos`` and ``integrity`` (which cells may be skipped, what a person should look at),
``warmkernel`` and ``sandbox`` (kernels forked from a warm parent, confined), ``preprocessors``
and ``config`` (nbgrader's pipeline, as ``nbgrader_config.py`` wires it), ``staging`` and
``grade`` (one student, a class).

May import the course and the kernel side; never the instructor's steps. Student code never runs
in these processes, and a sandboxed grading kernel cannot import any of it.
"""
