"""Text a student controls, made safe for where it goes: a terminal, a spreadsheet, a folder name.

Student ids (from an LMS download, nbgrader's exchange or a folder under ``submitted/``), file
names, grade ids, flag details and messages are all written by someone hostile. Every place that
prints them, writes them to CSV or uses them as a directory name goes through one function here,
so there is one rule per sink:

``for_terminal(text)``
    every control character (C0, C1, DEL: the start of every escape sequence), every Unicode
    line/paragraph separator, every invisible format character (bidirectional overrides,
    zero-width spaces, soft hyphens) and every lone surrogate (which a terminal's encoder
    refuses) shown as a visible escape (``\\x1b``, ``\\u202e``, ``\\udcff``), so nothing a
    student wrote can move the cursor, hide text, forge a line, reorder or disguise what the
    instructor reads, or stop the printing. Newlines are kept only with ``lines=True``.
``csv_cell(value)``
    a string a spreadsheet would read as a formula (first character ``=``, ``+``, ``-``, ``@``,
    tab or carriage return: OWASP's "CSV Injection") prefixed with ``'``; numbers unchanged.
``is_student_id(text)``
    whether ``text`` may name a student's folder: letters, digits, ``_``, ``.``, ``@``, ``-``,
    starting with a letter or digit, at most 100 characters. Whatever ``collect`` makes passes;
    anything else under ``submitted/`` (or arriving from the exchange) is refused, not renamed.
"""

from __future__ import annotations

import re
import unicodedata

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_STUDENT_ID = re.compile(r"[^\W_][\w.@-]{0,99}")


def _visible(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(char: str, lines: bool) -> bool:
    if char == "\n":
        return not lines
    # Cf: bidi overrides, zero-width characters, soft hyphens; Cs: a lone surrogate (a file name
    # that was not UTF-8, decoded with surrogateescape), which print() cannot encode.
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def for_terminal(text: object, lines: bool = False) -> str:
    """``text`` (anything; ``str()`` of it) with every control character shown, not obeyed."""
    text = str(text)
    if text.isprintable():  # the common case: nothing to do (Cc, Cf, Cs, Zl, Zp are not printable)
        return text
    return "".join(_visible(c) if _unsafe(c, lines) else c for c in text)


def csv_cell(value: object) -> object:
    """``value`` as a CSV cell no spreadsheet will evaluate (OWASP CSV Injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


#: Combining marks: the vowel signs of Indic scripts, say, which ``\w`` does not match; without
#: them "प्रिया" and "प्र्य" would be one id.
ID_MARKS = ("Mn", "Mc")


def is_student_id(text: str) -> bool:
    """Whether ``text`` is safe as a student id (a folder name, a CSV cell, a terminal word)."""
    marks_as_letters = "".join("a" if unicodedata.category(c) in ID_MARKS else c for c in text[1:])
    return (
        bool(_STUDENT_ID.fullmatch(text[:1] + marks_as_letters))
        and unicodedata.normalize("NFC", text) == text
    )
