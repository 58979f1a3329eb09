"""The instructor's steps: build, collect, feedback, export, report, and the demo, the example
class and the benchmark built from them. Each is a function the CLI (``toeplitz_course.__main__``,
argument parsing only) calls; each may use the grader, the course and the kernel side, and none
of them is used by the grader.
"""
