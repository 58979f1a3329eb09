"""The course: the exercise contract (``contract``), the reference matrices (``reference``) and
the Colab edition's notebook format (``colab``).

Pure: no course directory, no nbgrader, no kernels. May import the kernel side (the course's given
data live there, beside the probe that needs them) and nothing above it. ``reference`` computes
the answers, so a grading kernel can never import this subpackage.
"""
