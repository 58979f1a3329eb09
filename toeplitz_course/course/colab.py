"""The Colab edition of the student notebooks, and the normalisation of files that come back.

``edition`` turns a release notebook into the one students open from a link: an "Open in Colab"
badge, a runtime check and a hand-in cell are added as plain cells (no nbgrader metadata), and every
nbgrader cell is kept byte for byte so a notebook handed back from Colab grades like one from
JupyterLab.

``normalize`` undoes what Colab does to a notebook on its way back (nbformat 4.0 without cell ids,
``metadata.id`` and ``colab`` metadata, a kernelspec without ``language``); nbgrader restores
deleted test cells and the kernelspec itself.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import nbformat
import tomllib

ROOT = Path(__file__).resolve().parents[2]
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
EDITION_TAG = "colab-edition"


@dataclass(frozen=True)
class Links:
    repository: str  # https://github.com/OWNER/REPO
    branch: str

    def colab_url(self, notebook: str) -> str:
        owner_repo = self.repository.removeprefix("https://github.com/").strip("/")
        return (
            f"https://colab.research.google.com/github/{owner_repo}/blob/{self.branch}"
            f"/notebooks/{notebook}.ipynb"
        )

    def badge(self, notebook: str) -> str:
        return f"[![Open In Colab]({BADGE_IMAGE})]({self.colab_url(notebook)})"


def links(pyproject: Path = ROOT / "pyproject.toml") -> Links:
    """The badge target configured in ``[tool.toeplitz-course]`` of pyproject.toml."""
    table = tomllib.loads(pyproject.read_text())["tool"]["toeplitz-course"]
    return Links(repository=table["repository"], branch=table["branch"])


RUNTIME_CHECK = """\
# Runtime check: run this first. The course needs only torch, numpy and matplotlib,
# which Colab (and any recent Anaconda) already has.
import sys

missing = []
for _name in ("torch", "numpy", "matplotlib"):
    try:
        __import__(_name)
    except ImportError:
        missing.append(_name)
if missing:
    raise ImportError(
        "Missing: " + ", ".join(missing) + ". On Colab use Runtime > Disconnect and delete runtime,"
        " then run this cell again; elsewhere run: pip install " + " ".join(missing)
    )
if sys.version_info < (3, 10):
    print("Warning: this course is tested on Python 3.10 to 3.12; you have", sys.version.split()[0])

import torch

print(f"Ready: Python {sys.version.split()[0]}, torch {torch.__version__}.")
"""

HAND_IN = """\
## Handing in

1. Run every cell once more from the top (**Runtime > Restart and run all** on Colab,
   **Kernel > Restart Kernel and Run All Cells** in JupyterLab) and check that each ✔ line appears.
2. Download the notebook: **File > Download > Download .ipynb** on Colab.
3. Upload that `.ipynb` file, under any name, to the assignment in your course's LMS.
   Do not delete or edit the test cells: they are restored before grading anyway, and the hidden
   tests check your answers on more inputs than the visible ones.
"""


def _cell_id(notebook: str, role: str) -> str:
    return hashlib.sha1(f"{notebook}/{role}".encode()).hexdigest()[:12]


def edition(
    release_nb: nbformat.NotebookNode, notebook: str, where: Links
) -> nbformat.NotebookNode:
    """The Colab edition of the release notebook ``notebook`` (its name without ``.ipynb``)."""
    nb = copy.deepcopy(release_nb)
    tag = {"tags": [EDITION_TAG]}
    badge = nbformat.v4.new_markdown_cell(where.badge(notebook), metadata=dict(tag))
    check = nbformat.v4.new_code_cell(RUNTIME_CHECK, metadata=dict(tag))
    hand_in = nbformat.v4.new_markdown_cell(HAND_IN, metadata=dict(tag))
    for cell, role in ((badge, "badge"), (check, "runtime"), (hand_in, "hand-in")):
        cell["id"] = _cell_id(notebook, role)
    nb.cells = [badge, check, *nb.cells, hand_in]
    nb.metadata.setdefault("colab", {"provenance": []})
    return nb


def normalize(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Bring a notebook that went through Colab (or an old Jupyter) back to nbformat 4.5."""
    nb.nbformat = 4
    if nb.get("nbformat_minor", 0) < 5:
        nb.nbformat_minor = 5
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        cid = cell.get("id")
        if not isinstance(cid, str) or not cid or cid in seen:
            cid = _cell_id("normalize", str(i))
        cell["id"] = cid
        seen.add(cid)
        if cell.get("cell_type") == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3"})
    nb.metadata["kernelspec"].setdefault("language", "python")
    return nb
