"""Recovering the nbgrader metadata of a notebook whose editor threw it away, from the release.

Some editors drop every cell's metadata (VS Code's notebook editor in some versions, cells pasted
into a fresh Colab or Jupyter notebook, jupytext round trips). nbgrader then finds no grade ids:
it re-adds every test cell at the top, before any answer, and right work scores 0. ``recover``
aligns such a submission with the release notebook the student started from and gives each cell
it can place with confidence its release ``metadata.nbgrader`` back, so nbgrader restores and
grades the notebook as any other. Pure: JSON in, JSON out; neither argument is modified.

Words used below: an *answer* cell is a release cell with ``nbgrader.solution`` (code, or the
markdown of a written answer); a *locked* cell is one with ``nbgrader.locked`` (given code and
test cells); *given* cells are every release cell that is not an answer (locked cells, markdown,
demonstrations). A submission cell is *free* when it has no nbgrader grade id; only free cells are
ever changed, and a release grade id the submission still holds is never given to another cell.

The shape of the algorithm:

1. Normalise every source: each line stripped, blank lines dropped (edited whitespace, CRLF).
2. Match the release's cells to the submission's in order by a longest common subsequence of
   keys: a cell that kept its grade id is keyed by it, a free cell by (cell type, normalised
   source); the release's answer cells take part with their stubs, so an answer left blank (still
   the stub ``# YOUR CODE HERE / raise NotImplementedError()``) is matched by content.
3. Decide. Recovery applies only when a clear majority (two thirds) of the release's locked cells
   is found (by grade id or content): the notebook of another assignment or another part is left
   as it is. It also applies only when a free cell is given metadata; a notebook that merely lacks
   cells (a deleted test) is left to nbgrader.
4. Between consecutive matched cells (a *gap*), first the release's locked cells still missing
   (an edited test) take the free submission cell most like them (similarity at least
   ``LOCKED_SIMILAR``, or the same first comment line: ``# Check for Exercise 1.2. ...``), in
   order; these become matches too, and the gaps are cut again.
5. Then in each gap the answer cells still missing take the free cells of their own type that are
   left, never one whose source is a given cell's (a copy of a given cell is that cell, not an
   answer):

   * as many candidates as answer cells: paired in order, each pair kept unless the candidate is
     clearly another answer's (it resembles another answer's stub by ``MARGIN`` more than its
     own): two answers swapped are not graded in each other's place;
   * otherwise an answer cell takes the one candidate that resembles its stub (at least
     ``FLOOR``, ``MARGIN`` ahead of any other stub), in order; else it is not placed.

   Similarity is difflib's ratio over normalised lines.
6. An answer cell not placed scores 0: so that nothing else earns its points, the code cells left
   over in its gap become raw cells (their source stays for a person to read; they do not run).

The recovered notebook holds, on every matched or placed free cell, a copy of the release cell's
whole ``metadata.nbgrader``; everything else of the submission (order, sources, ids, outputs,
other metadata) is kept, but for the raw cells of step 6. Restoring the sources of locked and test
cells is left to nbgrader (``RestoreCells``), which also re-adds the test cells still missing.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass

#: Least similarity of an answer to its stub for content alone to place it.
FLOOR = 0.3
#: How much more an answer must resemble one stub than any other to count as that stub's.
MARGIN = 0.2
#: Least similarity of an edited locked cell to its release source to be taken for it.
LOCKED_SIMILAR = 0.5
#: The fraction of the release's locked cells a submission must hold to be recovered.
MAJORITY = 2 / 3


@dataclass(frozen=True)
class Recovery:
    """What ``recover`` did. ``notebook`` is the submission itself when ``applied`` is False."""

    notebook: dict
    applied: bool
    placed: tuple[str, ...] = ()  # answer grade ids given to a submission cell, release order
    unplaced: tuple[str, ...] = ()  # answer grade ids missing and not placed
    locked: tuple[str, ...] = ()  # locked grade ids given back (by content, exact or edited)
    found: int = 0  # locked cells of the release found in the submission (grade id or content)
    total: int = 0  # locked cells of the release
    held_back: tuple[int, ...] = ()  # indices of the code cells turned raw

    @property
    def detail(self) -> str:
        """The line of the grading record and the integrity report."""
        text = (
            "metadata lost, recovered by matching the release: "
            f"{len(self.placed)} of {len(self.placed) + len(self.unplaced)} answer cells placed"
        )
        if self.unplaced:
            text += f"; not placed: {', '.join(self.unplaced)}"
        return text


def recover(submitted: dict, release: dict) -> Recovery:
    """Align ``submitted`` (a notebook's JSON) with ``release`` and give lost metadata back."""
    rel = release.get("cells", [])
    sub = submitted.get("cells", [])
    present = {_grade_id(c) for c in sub} - {None}
    missing = {_grade_id(c) for c in rel} - {None} - present
    if not missing:
        return Recovery(submitted, applied=False)

    rel_src = [_lines(c) for c in rel]
    sub_src = [_lines(c) for c in sub]
    answers = [i for i, c in enumerate(rel) if _meta(c).get("solution")]
    locked = {
        i for i, c in enumerate(rel) if _meta(c).get("locked") and not _meta(c).get("solution")
    }
    given = {(rel[i].get("cell_type"), rel_src[i]) for i in range(len(rel)) if i not in answers}

    def keys(cells: list[dict], sources: list[tuple[str, ...]]) -> list[tuple]:
        ids = [_grade_id(c) for c in cells]
        return [
            ("id", gid) if gid in present else (cell.get("cell_type"), lines)
            for cell, gid, lines in zip(cells, ids, sources, strict=True)
        ]

    matched = dict(_lcs(keys(rel, rel_src), keys(sub, sub_src)))  # release -> submission index
    found = sum(1 for i in locked if i in matched)
    if not locked or found < MAJORITY * len(locked):
        return Recovery(submitted, applied=False, found=found, total=len(locked))

    def free(j: int) -> bool:
        return _grade_id(sub[j]) is None

    # Step 4: edited locked cells, which then split their gaps.
    for (i0, j0), (i1, j1) in _gaps(matched, len(rel), len(sub)):
        after = j0
        for i in range(i0 + 1, i1):
            if i not in locked or _grade_id(rel[i]) in present:
                continue
            kind = rel[i].get("cell_type")
            options = [
                (_similarity(rel_src[i], sub_src[j]), j)
                for j in range(after + 1, j1)
                if free(j) and sub[j].get("cell_type") == kind
            ]
            options = [
                (score, j)
                for score, j in options
                if score >= LOCKED_SIMILAR or _same_header(rel_src[i], sub_src[j])
            ]
            if options:
                _, after = max(options, key=lambda o: (o[0], -o[1]))
                matched[i] = after

    # Step 5: answer cells, gap by gap.
    stubs = {i: rel_src[i] for i in answers}
    placed: dict[int, int] = {}
    held_back: list[int] = []
    for (i0, j0), (i1, j1) in _gaps(matched, len(rel), len(sub)):
        for kind in ("code", "markdown"):
            slots = [
                i
                for i in range(i0 + 1, i1)
                if i in stubs
                and i not in matched
                and _grade_id(rel[i]) not in present
                and rel[i].get("cell_type") == kind
            ]
            if not slots:
                continue
            candidates = [
                j
                for j in range(j0 + 1, j1)
                if free(j) and sub[j].get("cell_type") == kind and (kind, sub_src[j]) not in given
            ]
            same_kind = {i: s for i, s in stubs.items() if rel[i].get("cell_type") == kind}
            found_here = _assign(slots, candidates, sub_src, same_kind)
            placed.update(found_here)
            if kind == "code" and len(found_here) < len(slots):
                held_back += [j for j in candidates if j not in found_here.values()]
    for i, j in matched.items():
        if i in stubs and free(j):
            placed[i] = j

    given_back = {i: j for i, j in matched.items() if i in locked and free(j)}
    if not placed and not given_back:
        return Recovery(submitted, applied=False, found=found, total=len(locked))

    out = copy.deepcopy(submitted)
    cells = out["cells"]
    for i, j in {**given_back, **placed}.items():
        cells[j].setdefault("metadata", {})["nbgrader"] = copy.deepcopy(_meta(rel[i]))
    for j in held_back:
        cell = cells[j]
        metadata = {k: v for k, v in cell.get("metadata", {}).items() if k != "nbgrader"}
        cells[j] = {"cell_type": "raw", "metadata": metadata}
        if "id" in cell:
            cells[j]["id"] = cell["id"]
        cells[j]["source"] = cell.get("source", "")
    missing_answers = [i for i in answers if _grade_id(rel[i]) not in present]
    return Recovery(
        out,
        applied=True,
        placed=tuple(_grade_id(rel[i]) for i in missing_answers if i in placed),
        unplaced=tuple(_grade_id(rel[i]) for i in missing_answers if i not in placed),
        locked=tuple(_grade_id(rel[i]) for i in sorted(given_back)),
        found=found,
        total=len(locked),
        held_back=tuple(sorted(held_back)),
    )


def _assign(
    slots: list[int],
    candidates: list[int],
    sub_src: list[tuple[str, ...]],
    stubs: dict[int, tuple[str, ...]],
) -> dict[int, int]:
    """Release answer index -> submission index, for one gap and one cell type (step 5)."""
    sims = {j: {i: _similarity(stub, sub_src[j]) for i, stub in stubs.items()} for j in candidates}

    def elsewhere(j: int, slot: int) -> bool:
        best = max(sims[j], key=sims[j].get)
        return best != slot and sims[j][best] >= FLOOR and sims[j][best] - sims[j][slot] >= MARGIN

    def claim(j: int) -> int | None:
        ranked = sorted(sims[j].items(), key=lambda kv: -kv[1])
        best, score = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
        return best if score >= FLOOR and score - runner_up >= MARGIN else None

    if len(candidates) == len(slots):
        return {i: j for i, j in zip(slots, candidates, strict=True) if not elsewhere(j, i)}
    out: dict[int, int] = {}
    after = -1
    for i in slots:
        claimants = [j for j in candidates if claim(j) == i]
        if len(claimants) == 1 and claimants[0] > after:
            out[i] = after = claimants[0]
    return out


def _gaps(matched: dict[int, int], n_rel: int, n_sub: int):
    """Consecutive matched pairs, with sentinels before the first cells and after the last."""
    anchors = [(-1, -1), *sorted(matched.items()), (n_rel, n_sub)]
    return list(zip(anchors[:-1], anchors[1:], strict=True))


def _lcs(a: list, b: list) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence of ``a`` and ``b`` (earliest match first)."""
    n, m = len(a), len(b)
    suffix = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            if a[i] == b[j]:
                suffix[i][j] = suffix[i + 1][j + 1] + 1
            else:
                suffix[i][j] = max(suffix[i + 1][j], suffix[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif suffix[i + 1][j] >= suffix[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def _meta(cell: dict) -> dict:
    meta = (cell.get("metadata") or {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell: dict) -> str | None:
    gid = _meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def _lines(cell: dict) -> tuple[str, ...]:
    src = cell.get("source", "")
    text = "".join(src) if isinstance(src, list) else str(src)
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _similarity(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _same_header(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Both start with the same comment line (a test cell's ``# Check for Exercise 1.2. ...``)."""
    return bool(a and b) and a[0].startswith("#") and a[0] == b[0]
