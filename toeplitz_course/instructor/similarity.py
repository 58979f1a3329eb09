"""``similarity``: which students handed in the same work, for a person to look at.

Two kinds of evidence, side by side, never a score change:

**Similar answers.** The student-written code of each function exercise (``FUNCTION_EXERCISES``)
and the written answer (``WRITTEN``) are compared pairwise with copydetect (winnowing, as MOSS and
Dolos do: Schleimer, Wilkerson and Aiken, SIGMOD 2003). Code is tokenised by copydetect's Pygments
filter (every name becomes ``V``, strings ``S``, comments and layout are dropped), so renamed
variables, changed comments and re-indented code keep their fingerprints; reordered lines keep all
but the few that straddle a moved line. Prose is compared as its lowercased words.

What may not count as a match:

* **the release's given code** (the signature and docstring of the answer cell, every code cell of
  the release notebook; for the written answer, the notebook's own prose): its fingerprints are
  boilerplate, dropped from every answer;
* **what the class has in common**: a fingerprint found in the answers of more than
  ``common_students(n)`` students (``max(COMMON_MIN, COMMON_FRACTION * n)``) is what this short
  exercise makes everyone write (``for V in range(V-V+1):``), as MOSS's ``-m`` and Dolos's
  ``--max-fingerprint-percentage`` treat it. So two right answers of the canonical two-line form
  are not reported, however alike: that is the price of an answer space this small (a copy of
  such an answer cannot be told from independent work by its text; the forensics below still can).

A pair's score on an exercise is the matched distinctive code over the larger of the two answers'
distinctive code, that size floored at ``MIN_TOKENS`` (copydetect's similarity divides by one
answer's own size, so an answer with one distinctive line left would match itself "100%").
``THRESHOLD`` is where a pair is reported; ``tests/test_similarity.py`` calibrates both on a class
of independently written right answers (at least six different ones per function exercise) and
near copies (renamed variables, reordered lines, changed comments, a paraphrased written answer).

**Notebook forensics** (``forensics``), read from the files as handed in:

* ``cell_id``: a cell id (nbformat 4.5's random ``id``, or Colab's ``metadata.id``) found in
  two students' notebooks that neither the release, the Colab edition nor staging's normalisation
  gives: one file was made from the other;
* ``colab_file``: the same Google Drive file id in the notebooks' metadata
  (``metadata.colab.provenance[].file_id``, ``metadata.id``, ``metadata.colab.id``) unless
  common to the class (then it is the course's shared copy);
* ``output``: an identical output of a cell the student wrote (stream, result, error), at least
  ``MIN_OUTPUT`` characters, that few students share (``rare``);
* ``comment``: an identical comment (at least ``MIN_COMMENT`` characters, not the release's);
* ``typo``: the same misspelling (a word in neither the course's text nor the class's common
  words, close to one that is), in code comments or the written answer;
* ``execution_counts``: the same execution counts, cell by cell, other than one run from the top.

Everything is read as ``grade`` reads it (``staging.read_hand_in``: regular files in real folders,
never through a link, under the caps); a notebook that cannot be read is listed, not compared.
Output: ``exports/similarity.json`` and ``exports/similarity.html`` (one offline page: no script,
nothing loaded, a Content-Security-Policy that allows only its own style; every student text
escaped); the terminal lines through ``untrusted.for_terminal``. Nothing is sent anywhere.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import html
import io
import itertools
import json
import math
import re
import tokenize
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..course import colab
from ..course.contract import ASSIGNMENT, EXERCISES, NOTEBOOKS
from ..course.untrusted import for_terminal
from ..grader.coursedir import Course, submitted_students
from ..grader.integrity import cell_source, nbgrader_meta
from ..grader.staging import Refused, parse_notebook, read_hand_in, settings_of

#: The function exercises whose code is compared (every exercise whose answer is a function:
#: tests/test_similarity.py holds this list to the release), and the written answer. The
#: one-line ones (a length, a padding) are compared too: two students who write the same line are
#: alike because the answer is, and the class filter and ``MIN_TOKENS`` keep them off the list.
FUNCTION_EXERCISES = (
    "ex1_1",
    "ex1_3",
    "ex2_1",
    "ex2_2",
    "ex2_3",
    "ex3_1",
    "ex4_1",
    "ex4_2",
    "ex5_2",
    "ex6_1",
    "ex6_2",
    "ex6_3",
    "ex6_4",
)
WRITTEN = ("ex3_4",)
COMPARED = FUNCTION_EXERCISES + WRITTEN
_NOTEBOOK_OF = {e.answer_id: e.notebook for e in EXERCISES}

#: copydetect's ``k`` and winnowing window: code is compared as tokens with layout removed, so
#: 14 characters are about 6 tokens (``V=V(V)+V*V``); prose as its letters and spaces, 30
#: characters about five words. Window 1 keeps every k-gram: an answer is a few hundred
#: characters, so winnowing's sampling saves nothing here, and it would pick fingerprints by
#: copydetect's ``hash()``, which Python salts per process: scores would change from run to run.
#: Calibrated by tests/test_similarity.py.
CODE_K, CODE_WINDOW = 14, 1
PROSE_K, PROSE_WINDOW = 30, 1
#: A fingerprint in the answers of more than max(COMMON_MIN, COMMON_FRACTION * n) of n students
#: is the class's, not a pair's.
COMMON_MIN, COMMON_FRACTION = 3, 0.2
#: The size (matched characters of filtered code or prose) below which an answer's distinctive
#: part is taken as this large, so a line or two left after boilerplate cannot match "100%".
#: 100 characters of filtered code are about three lines: the one-line formulas of Parts 1, 2 and
#: 6, which independent students write alike (a 37-character formula scored 0.62 at 60), stay
#: below the threshold, and the shortest copied function still scores 0.74 (calibration in
#: tests/test_similarity.py: independent pairs at most 0.40).
MIN_TOKENS = {"code": 100, "prose": 200}
#: A pair is reported on an exercise from this score up.
THRESHOLD = 0.5
MIN_OUTPUT, MIN_COMMENT = 20, 12
#: How much of each answer the page and the JSON show.
MAX_SHOWN = 20_000


def common_students(n: int) -> int:
    """More students than this sharing a fingerprint (or a Colab file id) make it common."""
    return max(COMMON_MIN, math.floor(COMMON_FRACTION * n))


# ------------------------------------------------------------------------------ reading the class


@dataclass
class ClassWork:
    """What was read of ``submitted/``: student -> notebook -> its JSON, and what was not read."""

    notebooks: dict[str, dict[str, dict]] = field(default_factory=dict)
    unread: list[str] = field(default_factory=list)  # one line each, for the terminal and page


def read_class(root: Path) -> ClassWork:
    """Every student's notebooks, read as ``grade`` reads them (``staging.read_hand_in``)."""
    settings = settings_of(root)
    work = ClassWork()
    refused: list[str] = []
    for student in submitted_students(root, refused):
        hand_in = read_hand_in(root, student, settings)
        if hand_in.folder is not None:
            work.unread.append(f"{student}: {hand_in.folder}")
            continue
        for _name, why in sorted(hand_in.refused.items()):
            work.unread.append(f"{student}: {why}")
        notebooks = {}
        for name, data in sorted(hand_in.files.items()):
            if not name.endswith(".ipynb"):
                continue
            try:
                raw = parse_notebook(data, name, settings)
            except (Refused, ValueError, UnicodeDecodeError) as exc:
                work.unread.append(f"{student}: {name}: {exc}")
                continue
            if isinstance(raw.get("cells"), list):
                notebooks[name[: -len(".ipynb")]] = raw
        work.notebooks[student] = notebooks
    work.unread += refused
    return work


def _cells(nb: dict) -> list[dict]:
    return [c for c in nb.get("cells", []) if isinstance(c, dict)]


def _release(root: Path) -> dict[str, dict]:
    out = {}
    for name in NOTEBOOKS:
        path = root / "release" / ASSIGNMENT / f"{name}.ipynb"
        if path.is_file():
            out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def _edition(root: Path) -> dict[str, dict]:
    out = {}
    for name in NOTEBOOKS:
        path = root / "notebooks" / f"{name}.ipynb"
        if path.is_file():
            out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def answer_cell(nb: dict, grade_id: str) -> str | None:
    """The source of the answer cell ``grade_id`` (the first, when a student duplicated it)."""
    for cell in _cells(nb):
        if nbgrader_meta(cell).get("grade_id") == grade_id:
            return cell_source(cell)
    return None


# -------------------------------------------------------------------------------- the engine


def _kind(exercise: str) -> str:
    return "prose" if exercise in WRITTEN else "code"


_MARKDOWN = re.compile(r"[^\w]+")


def prose(text: str) -> str:
    """Prose as compared: lowercase words, one space between them (markup, math and punctuation
    are not what a copier changes, nor what two writers share by accident)."""
    return " ".join(_MARKDOWN.sub(" ", text.lower()).split())


class Fingerprint:
    """One answer's winnowed fingerprints (copydetect's ``CodeFingerprint``), with the given
    code's and the class's common fingerprints taken out by this module (copydetect's own
    ``boilerplate`` argument drops a fingerprint that occurs twice in an answer, whether
    boilerplate or not: ``numpy.intersect1d(..., assume_unique=True)`` on hashes that are not)."""

    def __init__(self, text: str, kind: str):
        from copydetect import CodeFingerprint

        self.kind = kind
        self.text = text
        shown = text if kind == "code" else prose(text)
        k, window = (CODE_K, CODE_WINDOW) if kind == "code" else (PROSE_K, PROSE_WINDOW)
        self.engine = CodeFingerprint(
            "answer.py",
            k,
            window,
            filter=kind == "code",
            language="python" if kind == "code" else None,
            fp=io.StringIO(shown),
        )
        self.shown = shown  # the text copydetect's slices index

    @property
    def hashes(self) -> set[int]:
        return set(self.engine.hashes)

    def drop(self, hashes: set[int]) -> None:
        from copydetect.utils import get_token_coverage

        engine = self.engine
        engine.hashes = engine.hashes - hashes
        engine.hash_idx = {h: i for h, i in engine.hash_idx.items() if h not in hashes}
        engine.token_coverage = get_token_coverage(
            engine.hash_idx, engine.k, len(engine.filtered_code)
        )


@dataclass
class Match:
    """Two students' answers to one exercise, compared."""

    exercise: str
    score: float
    matched: tuple[int, int]  # matched characters of filtered code (or prose), each side
    distinctive: tuple[int, int]  # each answer's characters left after boilerplate and common
    spans: tuple[list[tuple[int, int]], list[tuple[int, int]]]  # matched spans in ``shown``


def compare(a: Fingerprint, b: Fingerprint) -> Match | None:
    from copydetect import compare_files

    overlap, _, slices = compare_files(a.engine, b.engine)
    if overlap == 0:
        return None
    from copydetect.utils import find_fingerprint_overlap, get_copied_slices

    # matched size on each side, in filtered characters (compare_files returns the first only)
    idx1, idx2 = find_fingerprint_overlap(
        a.engine.hashes, b.engine.hashes, a.engine.hash_idx, b.engine.hash_idx
    )
    s1, s2 = get_copied_slices(idx1, a.engine.k), get_copied_slices(idx2, b.engine.k)
    m1, m2 = int((s1[1] - s1[0]).sum()), int((s2[1] - s2[0]).sum())
    d1, d2 = int(a.engine.token_coverage), int(b.engine.token_coverage)
    floor = MIN_TOKENS[a.kind]
    score = min(m1, m2) / max(d1, d2, floor)

    def spans(raw) -> list[tuple[int, int]]:
        return [(int(s), int(e)) for s, e in zip(raw[0], raw[1], strict=True)]

    return Match(
        "", round(min(score, 1.0), 3), (m1, m2), (d1, d2), (spans(slices[0]), spans(slices[1]))
    )


def _given_text(exercise: str, release: dict[str, dict], wanted: str | None = None) -> list[str]:
    """What the release gives for ``exercise``: the answer cell as released and every code cell
    of its notebook (code), or the notebook's markdown (the written answer)."""
    nb = release.get(_NOTEBOOK_OF[exercise], {})
    wanted = wanted or ("markdown" if exercise in WRITTEN else "code")
    return [cell_source(c) for c in _cells(nb) if c.get("cell_type") == wanted]


_DOCSTRING = re.compile(r'[ \t]*("""|\'\'\')(?:.|\n)*?\1[ \t]*\n?')
_PLACEHOLDERS = ("# YOUR CODE HERE", "YOUR ANSWER HERE")


def student_written(
    source: str, released: str | None, imports: frozenset[str] = frozenset()
) -> str:
    """An answer cell without what the release gave and the student kept: the docstring of the
    given signature (verbatim), nbgrader's placeholder lines and imports the release's notebook
    already makes (``imports``). What remains is what the engine compares and the page shows
    (the rest of the given code is boilerplate to it)."""
    if released:
        doc = _DOCSTRING.search(released)
        if doc and doc.group(0) in source:
            source = source.replace(doc.group(0), "", 1)
    lines = [
        line
        for line in source.split("\n")
        if line.strip() not in _PLACEHOLDERS and line.strip() not in imports
    ]
    return "\n".join(lines).strip("\n") + "\n"


def answers_of(work: ClassWork, exercise: str, release: dict[str, dict]) -> dict[str, str]:
    """student -> what the student wrote in the answer cell of ``exercise`` (its given parts
    taken out, ``student_written``), when it is not the release's."""
    released = answer_cell(release.get(_NOTEBOOK_OF[exercise], {}), exercise)
    imports = frozenset(
        line.strip()
        for text in _given_text(exercise, release, "code")
        for line in text.splitlines()
        if line.strip().startswith(("import ", "from "))
    )
    out = {}
    for student, notebooks in work.notebooks.items():
        nb = notebooks.get(_NOTEBOOK_OF[exercise])
        text = answer_cell(nb, exercise) if nb else None
        if text is None or not text.strip():
            continue
        if released is not None and text.strip() == released.strip():
            continue  # not answered
        out[student] = student_written(text, released, imports)
    return out


def similar_answers(
    work: ClassWork, root: Path, release: dict[str, dict] | None = None
) -> list[dict]:
    """Every pair of students with a match on some exercise, as rows (one per pair and
    exercise), highest score first."""
    release = _release(root) if release is None else release
    rows = []
    for exercise in COMPARED:
        kind = _kind(exercise)
        answers = answers_of(work, exercise, release)
        if len(answers) < 2:
            continue
        given: set[int] = set()
        for text in _given_text(exercise, release):
            if text.strip():
                given |= Fingerprint(text, kind).hashes
        prints = {s: Fingerprint(t, kind) for s, t in answers.items()}
        counts: dict[int, int] = defaultdict(int)
        for fp in prints.values():
            for h in fp.hashes - given:
                counts[h] += 1
        limit = common_students(len(prints))
        common = {h for h, n in counts.items() if n > limit}
        for fp in prints.values():
            fp.drop(given | common)
        for a, b in itertools.combinations(sorted(prints), 2):
            match = compare(prints[a], prints[b])
            if match is None:
                continue
            match.exercise = exercise
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "exercise": exercise,
                    "score": match.score,
                    "matched_chars": list(match.matched),
                    "distinctive_chars": list(match.distinctive),
                    "matched": [
                        _pieces(prints[a].shown, match.spans[0]),
                        _pieces(prints[b].shown, match.spans[1]),
                    ],
                    "spans": [match.spans[0], match.spans[1]],
                    "texts": [prints[a].shown[:MAX_SHOWN], prints[b].shown[:MAX_SHOWN]],
                }
            )
    rows.sort(key=lambda r: (-r["score"], r["exercise"], r["a"], r["b"]))
    return rows


def _pieces(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[s:e][:2000] for s, e in spans][:50]


# ------------------------------------------------------------------------------ notebook forensics


def _ids(cell: dict) -> set[str]:
    found = set()
    cid = cell.get("id")
    if isinstance(cid, str) and cid:
        found.add(cid)
    meta = cell.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("id"), str) and meta["id"]:
        found.add(meta["id"])
    return found


def _known_ids(release: dict[str, dict], edition: dict[str, dict]) -> set[str]:
    known = set()
    for nb in [*release.values(), *edition.values()]:
        for cell in _cells(nb):
            known |= _ids(cell)
    for notebook in NOTEBOOKS:
        for role in ("badge", "runtime", "hand-in"):
            known.add(colab._cell_id(notebook, role))
    # staging's normalisation gives a cell without an id one made from its place
    known |= {colab._cell_id("normalize", str(i)) for i in range(5000)}
    return known


def _file_ids(nb: dict) -> set[str]:
    meta = nb.get("metadata")
    if not isinstance(meta, dict):
        return set()
    found = set()
    if isinstance(meta.get("id"), str):
        found.add(meta["id"])
    col = meta.get("colab")
    if isinstance(col, dict):
        if isinstance(col.get("id"), str):
            found.add(col["id"])
        provenance = col.get("provenance")
        if isinstance(provenance, list):
            for item in provenance:
                if isinstance(item, dict) and isinstance(item.get("file_id"), str):
                    found.add(item["file_id"])
    return {f for f in found if f.strip()}


def _student_cells(nb: dict, given: set[str]) -> list[tuple[str, dict]]:
    """(where, cell) of the cells the student wrote: answer cells and cells not in the release."""
    out = []
    for i, cell in enumerate(_cells(nb)):
        meta = nbgrader_meta(cell)
        if meta.get("locked") and not meta.get("solution"):
            continue
        if cell.get("cell_type") == "code" and cell_source(cell).strip() in given:
            continue
        out.append((meta.get("grade_id") or f"cell {i}", cell))
    return out


def _output_texts(cell: dict) -> list[str]:
    texts = []
    for out in cell.get("outputs", []) if isinstance(cell.get("outputs"), list) else []:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        if kind == "stream":
            text = out.get("text", "")
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") if isinstance(out.get("data"), dict) else {}
            text = data.get("text/plain", "")
        elif kind == "error":
            text = f"{out.get('ename', '')}: {out.get('evalue', '')}"
        else:
            continue
        text = "".join(text) if isinstance(text, list) else str(text)
        if len(text.strip()) >= MIN_OUTPUT:
            texts.append(text.strip()[:2000])
    return texts


def _comments(source: str) -> list[str]:
    found = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                found.append(tok.string.lstrip("#").strip())
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        found = [line.split("#", 1)[1].strip() for line in source.splitlines() if "#" in line]
    return found


_WORD = re.compile(r"[a-z]{5,}")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by one substitution, insertion, deletion or swap of two
    neighbouring letters."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _looks_like_typo(word: str, vocabulary: set[str]) -> str | None:
    """The vocabulary word ``word`` misspells: one edit away, same first letter, not an
    inflection (equivariance / equivariances)."""
    if word in vocabulary:
        return None
    for near in difflib.get_close_matches(word, vocabulary, n=5, cutoff=0.8):
        if near[0] != word[0] or near.startswith(word) or word.startswith(near):
            continue
        if _one_edit(word, near):
            return near
    return None


def forensics(work: ClassWork, root: Path, release: dict[str, dict] | None = None) -> list[dict]:
    """Evidence that two students' files share an origin: one row per pair and finding."""
    release = _release(root) if release is None else release
    edition = _edition(root)
    known = _known_ids(release, edition)
    given_code = {
        cell_source(c).strip()
        for nb in [*release.values(), *edition.values()]
        for c in _cells(nb)
        if c.get("cell_type") == "code"
    } | {colab.RUNTIME_CHECK.strip()}
    course_text = " ".join(
        cell_source(c) for nb in [*release.values(), *edition.values()] for c in _cells(nb)
    )
    course_comments = {c.lower() for c in _comments(course_text)} | {
        " ".join(line.lstrip("#").split()).lower()
        for line in course_text.splitlines()
        if line.strip().startswith("#")
    }
    known_files = set().union(*(_file_ids(nb) for nb in [*release.values(), *edition.values()]))
    n = len(work.notebooks)
    limit = common_students(n)

    # what -> {student: [where]}
    seen: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    words_by_student: dict[str, dict[str, str]] = {}
    for student, notebooks in work.notebooks.items():
        words: dict[str, str] = {}
        for name, nb in notebooks.items():
            for fid in _file_ids(nb) - known_files:
                seen[("colab_file", fid)][student].append(name)
            for i, cell in enumerate(_cells(nb)):
                where = nbgrader_meta(cell).get("grade_id") or f"cell {i}"
                for cid in _ids(cell) - known:
                    seen[("cell_id", cid)][student].append(f"{name}: {where}")
            counts = [
                c.get("execution_count")
                for c in _cells(nb)
                if c.get("cell_type") == "code" and isinstance(c.get("execution_count"), int)
            ]
            if len(counts) >= 5 and counts != list(range(counts[0], counts[0] + len(counts))):
                seen[("execution_counts", json.dumps(counts))][student].append(name)
            for where, cell in _student_cells(nb, given_code):
                source = cell_source(cell)
                for text in _output_texts(cell):
                    seen[("output", text)][student].append(f"{name}: {where}")
                if cell.get("cell_type") == "code":
                    comments = _comments(source)
                    for comment in comments:
                        norm = " ".join(comment.split()).lower()
                        if len(norm) >= MIN_COMMENT and norm not in course_comments:
                            seen[("comment", norm)][student].append(f"{name}: {where}")
                    prose_text = " ".join(comments)
                elif nbgrader_meta(cell).get("solution"):
                    prose_text = source  # the written answer
                else:
                    prose_text = ""
                for word in _words(prose_text):
                    words.setdefault(word, f"{name}: {where}")
        words_by_student[student] = words

    # Typos: a word few students use, close to a word of the course or of many students.
    users: dict[str, set[str]] = defaultdict(set)
    for student, words in words_by_student.items():
        for word in words:
            users[word].add(student)
    vocabulary = _words(course_text) | {w for w, who in users.items() if len(who) > limit}
    for word, who in users.items():
        if 2 <= len(who) <= limit:
            near = _looks_like_typo(word, vocabulary)
            if near:
                for student in who:
                    seen[("typo", f"{word} (for {near})")][student].append(
                        words_by_student[student][word]
                    )

    grouped: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for (kind, what), students in seen.items():
        if len(students) < 2:
            continue
        if kind in ("colab_file", "output", "comment") and len(students) > limit:
            continue  # the class's, not a pair's (the course's shared copy, a right answer)
        for a, b in itertools.combinations(sorted(students), 2):
            grouped[a, b, kind].append(
                {
                    "what": what[:2000],
                    "where": [students[a][:5], students[b][:5]],
                    "students_sharing": len(students),
                }
            )
    order = {"cell_id": 0, "colab_file": 1, "execution_counts": 2, "output": 3, "comment": 4}
    rows = []
    for (a, b, kind), found in grouped.items():
        found.sort(key=lambda f: (f["students_sharing"], f["what"]))
        rows.append(
            {
                "a": a,
                "b": b,
                "kind": kind,
                "count": len(found),
                "examples": found[:5],
                "students_sharing": min(f["students_sharing"] for f in found),
            }
        )
    rows.sort(key=lambda r: (r["a"], r["b"], order.get(r["kind"], 5)))
    return rows


# ------------------------------------------------------------------------------------ the result


@dataclass
class Similarity:
    pairs: list[dict]  # one per pair of students with any finding, ranked
    unread: list[str]
    students: int
    threshold: float = THRESHOLD

    @property
    def flagged(self) -> list[dict]:
        """Pairs a person should look at: a score at the threshold or any forensic finding."""
        return [p for p in self.pairs if p["score"] >= self.threshold or p["forensics"]]

    def to_json(self) -> dict:
        return {
            "engine": _engine(),
            "threshold": self.threshold,
            "students": self.students,
            "common_students": common_students(self.students),
            "exercises": list(COMPARED),
            "unread": self.unread,
            "pairs": self.pairs,
        }

    def format(self, top: int = 20) -> str:
        lines = [
            f"similarity: {self.students} students, {len(self.flagged)} pair(s) to look at "
            f"(score >= {self.threshold} on an exercise, or shared notebook traces)"
        ]
        for pair in self.flagged[:top]:
            exercises = ", ".join(
                f"{m['exercise']} {m['score']:.2f}"
                for m in pair["exercises"]
                if m["score"] >= self.threshold
            )
            traces = sorted({f["kind"] for f in pair["forensics"]})
            parts = [
                p for p in (exercises, ("traces: " + ", ".join(traces)) if traces else "") if p
            ]
            lines.append(f"  {pair['a']} ~ {pair['b']}: {'; '.join(parts)}")
        if len(self.flagged) > top:
            lines.append(f"  ... and {len(self.flagged) - top} more in exports/similarity.html")
        for line in self.unread:
            lines.append(f"  not read: {line}")
        return "\n".join(for_terminal(line) for line in lines)


def _engine() -> dict:
    try:
        from copydetect import __version__
    except ImportError:  # pragma: no cover
        __version__ = "?"
    return {
        "name": "copydetect",
        "version": __version__,
        "code": {"k": CODE_K, "window": CODE_WINDOW, "min_chars": MIN_TOKENS["code"]},
        "prose": {"k": PROSE_K, "window": PROSE_WINDOW, "min_chars": MIN_TOKENS["prose"]},
        "common": {"min": COMMON_MIN, "fraction": COMMON_FRACTION},
    }


def analyse(root: Path | str = ".") -> Similarity:
    root = Path(root).resolve()
    work = read_class(root)
    release = _release(root)
    matches = similar_answers(work, root, release)
    traces = forensics(work, root, release)
    pairs: dict[tuple[str, str], dict] = {}

    def pair(a: str, b: str) -> dict:
        return pairs.setdefault(
            (a, b), {"a": a, "b": b, "score": 0.0, "exercises": [], "forensics": []}
        )

    for row in matches:
        p = pair(row["a"], row["b"])
        p["exercises"].append({k: v for k, v in row.items() if k not in ("a", "b")})
        p["score"] = max(p["score"], row["score"])
    for row in traces:
        pair(row["a"], row["b"])["forensics"].append(
            {k: v for k, v in row.items() if k not in ("a", "b")}
        )
    ranked = sorted(
        pairs.values(),
        key=lambda p: (
            -max(p["score"], 1.0 if p["forensics"] else 0.0),
            -p["score"],
            -len(p["forensics"]),
            p["a"],
            p["b"],
        ),
    )
    return Similarity(ranked, work.unread, len(work.notebooks))


def similarity(root: Course | Path | str = ".", out_dir: Path | None = None) -> Similarity:
    """Compare the class, write ``exports/similarity.json`` and ``.html``, return the result.
    (It needs no configuration: a ``Course`` is taken for its root.)"""
    root = root.root if isinstance(root, Course) else Path(root).resolve()
    result = analyse(root)
    out = Path(out_dir) if out_dir is not None else root / "exports"
    out.mkdir(parents=True, exist_ok=True)
    (out / "similarity.json").write_text(
        json.dumps(result.to_json(), indent=1, ensure_ascii=True) + "\n", encoding="utf-8"
    )
    (out / "similarity.html").write_text(page(result), encoding="utf-8")
    return result


# ------------------------------------------------------------------------------------- the page

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #ccc; padding: .2em .5em; text-align: left; vertical-align: top; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: .8em; }
pre { background: #f6f6f6; padding: .5em; overflow: auto; white-space: pre-wrap;
      word-break: break-word; margin: 0; }
mark { background: #ffd36b; }
details { margin: .4em 0 1em; }
.note { color: #666; }
"""


def _e(value: object) -> str:
    # control characters and bidi overrides reorder or hide text in a page as on a terminal
    text = str(value).expandtabs(4).replace("\r\n", "\n").replace("\r", "\n")
    return html.escape(for_terminal(text, lines=True), quote=True)


def _marked(text: str, spans: list[list[int]] | list[tuple[int, int]]) -> str:
    out, at = [], 0
    for start, end in sorted((int(s), int(e)) for s, e in spans):
        start, end = max(start, at), min(end, len(text))
        if start >= end:
            continue
        out += [_e(text[at:start]), "<mark>", _e(text[start:end]), "</mark>"]
        at = end
    out.append(_e(text[at:]))
    return "".join(out)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; "
        "script-src 'none'; base-uri 'none'; form-action 'none'"
    )


def page(result: Similarity) -> str:
    """The HTML page: pairs ranked, each with its answers side by side and its traces."""
    rows = []
    for i, p in enumerate(result.pairs, start=1):
        best = ", ".join(
            f"{m['exercise']} {m['score']:.2f}" for m in p["exercises"][:5] if m["score"] > 0
        )
        kinds = ", ".join(sorted({f["kind"] for f in p["forensics"]}))
        flag = "yes" if (p["score"] >= result.threshold or p["forensics"]) else ""
        rows.append(
            f'<tr><td>{i}</td><td><a href="#pair-{i}">{_e(p["a"])} ~ {_e(p["b"])}</a></td>'
            f"<td>{p['score']:.2f}</td><td>{_e(best)}</td><td>{_e(kinds)}</td>"
            f"<td>{flag}</td></tr>"
        )
    sections = []
    for i, p in enumerate(result.pairs, start=1):
        if not (p["score"] >= result.threshold or p["forensics"]):
            continue
        parts = [f'<h2 id="pair-{i}">{i}. {_e(p["a"])} ~ {_e(p["b"])}</h2>']
        for m in p["exercises"]:
            if m["score"] < result.threshold:
                continue
            parts.append(
                f"<h3>{_e(m['exercise'])}: score {m['score']:.2f} "
                f"(matched {m['matched_chars'][0]} / {m['matched_chars'][1]} characters of "
                f"{m['distinctive_chars'][0]} / {m['distinctive_chars'][1]} distinctive)</h3>"
                '<div class="side">'
                f"<div><b>{_e(p['a'])}</b><pre>{_marked(m['texts'][0], m['spans'][0])}</pre></div>"
                f"<div><b>{_e(p['b'])}</b><pre>{_marked(m['texts'][1], m['spans'][1])}</pre></div>"
                "</div>"
            )
        if p["forensics"]:
            items = "".join(
                f"<tr><td>{_e(f['kind'])}</td><td>{f['count']}</td><td>"
                + "".join(f"<pre>{_e(x['what'])}</pre>" for x in f["examples"])
                + f"</td><td>{_e('; '.join(w for x in f['examples'] for w in x['where'][0]))}</td>"
                f"<td>{_e('; '.join(w for x in f['examples'] for w in x['where'][1]))}</td>"
                f"<td>{f['students_sharing']}</td></tr>"
                for f in p["forensics"]
            )
            parts.append(
                "<h3>Notebook traces</h3><table><tr><th>kind</th><th>how many</th>"
                f"<th>what (up to 5)</th><th>{_e(p['a'])}</th><th>{_e(p['b'])}</th>"
                f"<th>fewest students sharing one</th></tr>{items}</table>"
            )
        sections.append("".join(parts))
    unread = "".join(f"<li>{_e(line)}</li>" for line in result.unread)
    engine = _engine()
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">',
            '<meta name="referrer" content="no-referrer">',
            "<title>Similarity across the class</title>",
            f"<style>{_STYLE}</style></head><body>",
            "<h1>Similarity across the class</h1>",
            f'<p class="note">{result.students} students; copydetect {_e(engine["version"])} '
            f"(winnowing; code k={CODE_K}, window {CODE_WINDOW}; prose k={PROSE_K}, window "
            f"{PROSE_WINDOW}). The release's given code and what more than "
            f"{common_students(result.students)} students share are not counted. A pair is "
            f"shown in full from score {result.threshold} on an exercise, or with any shared "
            "notebook trace. Evidence for a person to weigh, not a verdict.</p>",
            "<table><tr><th>#</th><th>pair</th><th>score</th><th>exercises</th>"
            "<th>notebook traces</th><th>look at</th></tr>",
            *rows,
            "</table>",
            *sections,
            f"<h2>Not read</h2><ul>{unread}</ul>" if unread else "",
            "</body></html>",
            "",
        ]
    )


# ------------------------------------------------------------- for report and summary.html


def summary(root: Path | str = ".", out_dir: Path | None = None) -> dict | None:
    """The pairs to look at, as the last ``similarity`` run wrote them (None: not run yet).
    Read from ``exports/similarity.json``; nothing is compared again."""
    path = (Path(out_dir) if out_dir is not None else Path(root) / "exports") / "similarity.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    threshold = data.get("threshold", THRESHOLD)
    flagged = []
    for p in data.get("pairs", []):
        if p["score"] < threshold and not p["forensics"]:
            continue
        flagged.append(
            {
                "a": p["a"],
                "b": p["b"],
                "score": p["score"],
                "exercises": [m["exercise"] for m in p["exercises"] if m["score"] >= threshold],
                "traces": sorted({f["kind"] for f in p["forensics"]}),
            }
        )
    return {"students": data.get("students", 0), "threshold": threshold, "pairs": flagged}


def summary_lines(root: Path | str = ".", top: int = 10) -> list[str]:
    """The report's lines (for_terminal'd): how many pairs, the first ``top``, where the page is."""
    found = summary(root)
    if found is None:
        return ["Similarity: not run (python -m toeplitz_course similarity)"]
    lines = [f"Similarity: {len(found['pairs'])} pair(s) to look at (exports/similarity.html)"]
    for p in found["pairs"][:top]:
        what = ", ".join(p["exercises"] + [f"traces: {', '.join(p['traces'])}"] * bool(p["traces"]))
        lines.append(f"  {p['a']} ~ {p['b']}: {what}")
    return [for_terminal(line) for line in lines]
