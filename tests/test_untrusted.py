"""course/untrusted: the one rule per sink, on every kind of character a student can type."""

from __future__ import annotations

import unicodedata

import pytest

from toeplitz_course.course.untrusted import csv_cell, for_terminal, is_student_id

HOSTILE = [
    "a\x1b[8mhidden",  # CSI: hidden text
    "b\x1b]0;title\x07",  # OSC: window title
    "c\x9b31m",  # C1 CSI
    "d\rplaced: victim",  # carriage return overwrites the line
    "e\u202eexe.ipynb",  # right-to-left override
    "f\u200bg",  # zero-width space: two names that look the same
    "h\u00adi",  # soft hyphen
    "j\udcffk",  # a lone surrogate (a non-UTF-8 name through surrogateescape)
    "l\u2028m",  # line separator
    "n\x7fo",  # DEL
]


@pytest.mark.parametrize("text", HOSTILE)
def test_nothing_a_terminal_acts_on_survives(text):
    shown = for_terminal(text)
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in shown)
    shown.encode("utf-8")  # printable: a lone surrogate would raise here
    assert shown != text and shown[0] == text[0]  # shown escaped, not dropped


def test_newlines_are_kept_only_when_asked():
    assert for_terminal("one\ntwo") == "one\\x0atwo"
    assert for_terminal("one\ntwo", lines=True) == "one\ntwo"


def test_ordinary_text_is_unchanged():
    for text in ("Zoë Ångström", "s01_mistakes", "5 ≠ 6", "日本語", "a\tb"[:1]):
        assert for_terminal(text) == text


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_formulas_are_text_in_a_spreadsheet(text):
    assert csv_cell(text) == "'" + text


def test_numbers_and_plain_text_are_unchanged():
    assert csv_cell(-1.5) == -1.5 and csv_cell("smith") == "smith"


@pytest.mark.parametrize(
    "text", ["s01", "jane.doe", "jane@uni.edu", "zoë", "a" * 100, "x-1", "abc_def"]
)
def test_safe_ids(text):
    assert is_student_id(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".hidden",
        "-rf",
        "_x",
        "=cmd",
        "@x",
        "a b",
        "a/b",
        "a\x1b",
        "a\u202e",
        "a" * 101,
        "..",
        "a+b",
        "zoe\u0308",
    ],
)
def test_unsafe_ids(text):
    assert not is_student_id(text)
