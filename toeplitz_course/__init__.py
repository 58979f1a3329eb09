"""Convolution as Toeplitz matrices: course machinery."""

import sys

# jsonschema, which nbformat imports, validates the "iri" string format with rfc3987_syntax when
# that is installed (jupyter-events pulls it in), and importing rfc3987_syntax compiles a grammar:
# two seconds of CPU in every process that reads a notebook (python-jsonschema/jsonschema#1428).
# No schema that nbformat or nbgrader validates uses that format, so our processes go without it.
sys.modules.setdefault("rfc3987_syntax", None)
