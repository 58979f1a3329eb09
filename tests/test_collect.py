"""collect: LMS downloads (Canvas, Moodle, Colab, plain folders) into submitted/."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
import zoneinfo
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Config

from toeplitz_course.course.contract import NOTEBOOKS
from toeplitz_course.instructor.collect import (
    CollectError,
    LmsCollectorPlugin,
    NotPlaced,
    canonical_notebook,
    collect,
    safe_student_id,
)

NB1, NB2, NB3, NB4, NB5 = NOTEBOOKS[:5]
OLD = (2024, 3, 1, 10, 0, 0)
_DOS_EPOCH = (1980, 1, 1, 0, 0, 0)
NEW = (2024, 3, 2, 10, 0, 0)


def nb(tag: str) -> bytes:
    """A small valid notebook whose content says where it came from."""
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"answer = {tag!r}")
    cell.id = hashlib.sha1(tag.encode()).hexdigest()[:8]  # random by default; same tag, same bytes
    notebook.cells.append(cell)
    return nbformat.writes(notebook).encode()


def make_zip(path: Path, members: dict[str, bytes], date_time=OLD) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=date_time), data)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def placed_set(report) -> set[tuple[str, str, str]]:
    return {(p.student, p.notebook, p.source) for p in report.placed}


def submitted(course: Path, student: str, notebook: str) -> Path:
    return course / "submitted" / student / "toeplitz" / f"{notebook}.ipynb"


# ----------------------------------------------------------------------------- the big download

LMS_ZIP = {
    # Canvas: a resubmission (-1) beats the first upload; LATE marker; a Colab name with prefix
    "smithj_12345_678_01_conv1d_toeplitz.ipynb": nb("smithj 1 first"),
    "smithj_12345_678_01_conv1d_toeplitz-1.ipynb": nb("smithj 1 resubmitted"),
    "smithj_12345_678_02_padding.ipynb": nb("smithj 2"),
    "doej_LATE_23456_789_03_equivariance.ipynb": nb("doej 3"),
    "parkm_56789_890_Copy of 02_padding (1).ipynb": nb("parkm 2"),
    # Moodle, flat and folder per submission
    "Jane Smith_34567_assignsubmission_file_02_padding.ipynb": nb("jane 2"),
    "Ann Lee_45678_assignsubmission_file/04_conv2d_block_toeplitz.ipynb": nb("ann 4"),
    "Ann Lee_45678_assignsubmission_file/Copy of 05_parameter_counts (1).ipynb": nb("ann 5"),
    # Colab downloads in a student folder: (2) is the latest
    "kimr/Copy of 01_conv1d_toeplitz.ipynb": nb("kimr 1 copy"),
    "kimr/01_conv1d_toeplitz (1).ipynb": nb("kimr 1 (1)"),
    "kimr/Copy of 01_conv1d_toeplitz (2).ipynb": nb("kimr 1 (2)"),
    # not valid JSON: placed anyway
    "doej_23456_789_04_conv2d_block_toeplitz.ipynb": b'{"cells": [',
    # rejected
    "smithj_12345_678_my_work.ipynb": nb("renamed"),
    "smithj_12345_678_report.pdf": b"%PDF-1.4",
    "__MACOSX/._smithj_12345_678_02_padding.ipynb": b"\x00\x05\x16\x07",
    "kimr/.DS_Store": b"\x00\x00\x00\x01Bud1",
    "../evil_01_conv1d_toeplitz.ipynb": nb("escape"),
    "/tmp/abs/evil/01_conv1d_toeplitz.ipynb": nb("absolute"),
    "01_conv1d_toeplitz.ipynb": nb("whose?"),
    "kimr/work.zip": b"PK\x05\x06" + b"\x00" * 18,
}

EXPECTED_PLACED = {
    ("smithj", NB1, "smithj_12345_678_01_conv1d_toeplitz-1.ipynb"),
    ("smithj", NB2, "smithj_12345_678_02_padding.ipynb"),
    ("doej", NB3, "doej_LATE_23456_789_03_equivariance.ipynb"),
    ("doej", NB4, "doej_23456_789_04_conv2d_block_toeplitz.ipynb"),
    ("parkm", NB2, "parkm_56789_890_Copy of 02_padding (1).ipynb"),
    ("jane_smith", NB2, "Jane Smith_34567_assignsubmission_file_02_padding.ipynb"),
    ("ann_lee", NB4, "Ann Lee_45678_assignsubmission_file/04_conv2d_block_toeplitz.ipynb"),
    ("ann_lee", NB5, "Ann Lee_45678_assignsubmission_file/Copy of 05_parameter_counts (1).ipynb"),
    ("kimr", NB1, "kimr/Copy of 01_conv1d_toeplitz (2).ipynb"),
}

EXPECTED_REJECTED = {
    "smithj_12345_678_my_work.ipynb": (
        "renamed or unknown notebook 'my_work.ipynb' for student smithj"
    ),
    "smithj_12345_678_report.pdf": "not a notebook (.pdf)",
    "__MACOSX/._smithj_12345_678_02_padding.ipynb": (
        "macOS archive metadata (__MACOSX/), not a submission"
    ),
    "kimr/.DS_Store": "system file (.DS_Store), not a submission",
    "../evil_01_conv1d_toeplitz.ipynb": (
        "unsafe path in archive (absolute or with '..'): not extracted"
    ),
    "/tmp/abs/evil/01_conv1d_toeplitz.ipynb": (
        "unsafe path in archive (absolute or with '..'): not extracted"
    ),
    "01_conv1d_toeplitz.ipynb": (
        "cannot tell whose file this is: no pattern matches '01_conv1d_toeplitz.ipynb' "
        "(collect it with --student ID, or see LmsCollectorPlugin.patterns)"
    ),
    "kimr/work.zip": (
        "archive inside the download is not unpacked: extract it and collect that folder"
    ),
}


@pytest.fixture
def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    return root


@pytest.fixture
def lms_zip(tmp_path: Path) -> Path:
    (tmp_path / "downloads").mkdir()
    return make_zip(tmp_path / "downloads" / "lms.zip", LMS_ZIP)


def test_every_lms_naming_is_placed_or_rejected_with_its_reason(course, lms_zip, tmp_path):
    before = sha(lms_zip)
    report = collect(lms_zip, course)

    assert placed_set(report) == EXPECTED_PLACED
    assert {r.source: r.reason for r in report.rejected} == EXPECTED_REJECTED
    assert {(r.kept, r.dropped) for r in report.replaced} == {
        (
            "smithj_12345_678_01_conv1d_toeplitz-1.ipynb",
            "smithj_12345_678_01_conv1d_toeplitz.ipynb",
        ),
        ("kimr/Copy of 01_conv1d_toeplitz (2).ipynb", "kimr/01_conv1d_toeplitz (1).ipynb"),
        ("kimr/Copy of 01_conv1d_toeplitz (2).ipynb", "kimr/Copy of 01_conv1d_toeplitz.ipynb"),
    }
    reasons = {r.dropped: r.reason for r in report.replaced}
    assert reasons["smithj_12345_678_01_conv1d_toeplitz.ipynb"] == (
        "later LMS resubmission (suffix -1 over none)"
    )
    assert reasons["kimr/01_conv1d_toeplitz (1).ipynb"] == "later download copy (2) over (1)"
    assert all(p.status == "new" for p in report.placed)

    # every file of the download is accounted for exactly once
    accounted = [p.source for p in report.placed] + [r.source for r in report.rejected]
    accounted += [r.dropped for r in report.replaced]
    assert sorted(accounted) == sorted(LMS_ZIP)

    # the winners' bytes, at the canonical names, and nothing else
    for student, notebook, source in EXPECTED_PLACED:
        assert submitted(course, student, notebook).read_bytes() == LMS_ZIP[source]
    students = {s for s, _, _ in EXPECTED_PLACED}
    assert set(tree(course)) == (
        {f"submitted/{s}/toeplitz/{n}.ipynb" for s, n, _ in EXPECTED_PLACED}
        # Canvas's and Moodle's zip entry times are the download's: no timestamp.txt for their
        # students (was: one for every student, from the download time); kimr's is a folder's
        | {"submitted/kimr/toeplitz/timestamp.txt"}
        | {"downloaded/toeplitz/collected.json"}
    )
    assert students >= {"kimr"}
    # nothing escaped, the input is untouched
    assert set(tree(tmp_path)) == {"downloads/lms.zip"} | {f"course/{p}" for p in tree(course)}
    assert not Path("/tmp/abs/evil").exists()
    assert sha(lms_zip) == before


def test_invalid_json_is_placed_and_noted(course, lms_zip):
    report = collect(lms_zip, course)
    notes = {(p.student, p.notebook): p.note for p in report.placed if p.note}
    assert notes == {
        ("doej", NB4): (
            "not valid JSON (line 1, column 12: Expecting value); "
            "placed anyway, grading will report it"
        )
    }
    assert submitted(course, "doej", NB4).read_bytes() == b'{"cells": ['
    assert "doej/04_conv2d_block_toeplitz: not valid JSON" in report.format()


def test_report_format_names_every_outcome(course, lms_zip):
    text = collect(lms_zip, course).format()
    assert "9 placed (9 new), 3 duplicate(s) set aside, 8 rejected" in text
    for source, reason in EXPECTED_REJECTED.items():
        assert f"{source}: {reason}" in text
    assert (
        "smithj/01_conv1d_toeplitz: kept smithj_12345_678_01_conv1d_toeplitz-1.ipynb, "
        "set aside smithj_12345_678_01_conv1d_toeplitz.ipynb: "
        "later LMS resubmission (suffix -1 over none)"
    ) in text


def test_second_run_is_idempotent(course, lms_zip):
    first = collect(lms_zip, course)
    files = tree(course)
    second = collect(lms_zip, course)

    assert tree(course) == files
    assert placed_set(second) == placed_set(first)
    assert [(p.dest, p.status) for p in second.placed] == [
        (p.dest, "unchanged") for p in first.placed
    ]
    assert second.rejected == first.rejected
    assert second.replaced == first.replaced  # the same in-download duplicates, no backups
    # kimr's folder time is unchanged; Canvas's and Moodle's students have none (the download's)
    assert {t.student: t.status for t in second.timestamps}["kimr"] == "unchanged"
    assert {t.status for t in second.timestamps} == {"unchanged", "unknown"}
    assert sorted(p.relative_to(course).as_posix() for p in (course / "downloaded").rglob("*")) == [
        "downloaded/toeplitz",
        "downloaded/toeplitz/collected.json",
    ]
    assert "9 placed (9 unchanged)" in second.format()


def test_a_different_file_replaces_the_earlier_one_and_keeps_a_copy(course, tmp_path):
    first = make_zip(
        tmp_path / "first.zip",
        {"smithj_1_1_01_conv1d_toeplitz.ipynb": nb("v1"), "smithj_1_1_02_padding.ipynb": nb("p")},
    )
    second = make_zip(
        tmp_path / "second.zip",
        {"smithj_1_2_01_conv1d_toeplitz.ipynb": nb("v2"), "smithj_1_2_02_padding.ipynb": nb("p")},
    )
    collect(first, course)
    (course / "submitted" / "kimr" / "toeplitz").mkdir(parents=True)
    earlier_other = submitted(course, "kimr", NB3)
    earlier_other.write_bytes(nb("collected from another download"))

    report = collect(second, course)

    assert {(p.notebook, p.status) for p in report.placed} == {
        (NB1, "replaced"),
        (NB2, "unchanged"),
    }
    assert submitted(course, "smithj", NB1).read_bytes() == nb("v2")
    [replacement] = report.replaced
    assert replacement.kept == "smithj_1_2_01_conv1d_toeplitz.ipynb"
    assert replacement.dropped == str(submitted(course, "smithj", NB1))
    backup = Path(replacement.backup)
    assert backup.read_bytes() == nb("v1")
    assert backup.relative_to(course / "downloaded" / "toeplitz" / "replaced").parts[1:] == (
        "smithj",
        f"{NB1}.ipynb",
    )
    # a notebook from another collect, absent from this download, stays
    assert earlier_other.read_bytes() == nb("collected from another download")
    assert "earlier copy kept in downloaded/toeplitz/replaced/" in report.format()


# --------------------------------------------------------------------------------------- folders


def test_folder_layouts_plain_and_exchange(course, tmp_path):
    down = tmp_path / "download"
    files = {
        "lopezc/03_equivariance.ipynb": nb("lopezc 3"),
        "nguyent/toeplitz/01_conv1d_toeplitz.ipynb": nb("nguyent 1"),
        "nguyent/toeplitz/02_padding.ipynb": nb("nguyent 2"),
        # a folder beside student folders is one more student's: its subfolders' names are
        # that student's choice and say nothing (wrappers: test_collect_hostile.py)
        "class of 2024/wuh/05_parameter_counts.ipynb": nb("wuh 5"),
        # same notebook twice, no suffix: the later modification time wins
        "ochoa/02_padding.ipynb": nb("ochoa old"),
        "ochoa/Copy of 02_padding.ipynb": nb("ochoa new"),
        "ochoa/.ipynb_checkpoints/02_padding-checkpoint.ipynb": nb("checkpoint"),
        "toeplitz/04_conv2d_block_toeplitz.ipynb": nb("nobody"),
    }
    for rel, data in files.items():
        (down / rel).parent.mkdir(parents=True, exist_ok=True)
        (down / rel).write_bytes(data)
    now = time.time()
    os.utime(down / "ochoa/02_padding.ipynb", (now - 3600, now - 3600))
    os.utime(down / "ochoa/Copy of 02_padding.ipynb", (now, now))
    (down / "lopezc" / "02_padding.ipynb").symlink_to("/etc/hostname")
    before = {p: (d, (down / p).stat().st_mtime) for p, d in tree(down).items()}

    report = collect(down, course)

    assert placed_set(report) == {
        ("lopezc", NB3, "lopezc/03_equivariance.ipynb"),
        ("nguyent", NB1, "nguyent/toeplitz/01_conv1d_toeplitz.ipynb"),
        ("nguyent", NB2, "nguyent/toeplitz/02_padding.ipynb"),
        ("ochoa", NB2, "ochoa/Copy of 02_padding.ipynb"),
    }
    assert {r.source: r.reason for r in report.rejected} == {
        "class of 2024/wuh/05_parameter_counts.ipynb": (
            "in a subfolder (wuh/) of class_of_2024's folder: only files directly in a "
            "student's folder are placed (collect that folder with --student class_of_2024)"
        ),
        "lopezc/02_padding.ipynb": "symbolic link: not followed",
        "ochoa/.ipynb_checkpoints/02_padding-checkpoint.ipynb": (
            "Jupyter checkpoint copy (.ipynb_checkpoints/), not a submission"
        ),
        "toeplitz/04_conv2d_block_toeplitz.ipynb": (
            "a folder named like the assignment (toeplitz) is not a student"
        ),
    }
    [dup] = report.replaced
    assert (dup.kept, dup.dropped) == ("ochoa/Copy of 02_padding.ipynb", "ochoa/02_padding.ipynb")
    assert dup.reason.startswith("newer modification time (")
    assert submitted(course, "ochoa", NB2).read_bytes() == nb("ochoa new")
    after = {p: (d, (down / p).stat().st_mtime) for p, d in tree(down).items()}
    assert after == before


def test_identical_duplicates_say_so(course, tmp_path):
    z = make_zip(
        tmp_path / "d.zip",
        {
            "kimr/01_conv1d_toeplitz.ipynb": nb("same"),
            "kimr/Copy of 01_conv1d_toeplitz.ipynb": nb("same"),
        },
    )
    [dup] = collect(z, course).replaced
    assert dup.reason == "identical content"


def test_collecting_from_inside_submitted_is_refused(course):
    (course / "submitted" / "smithj").mkdir(parents=True)
    with pytest.raises(CollectError, match="must not contain or be inside"):
        collect(course / "submitted", course)
    with pytest.raises(CollectError, match="must not contain or be inside"):
        collect(course, course)


def test_a_symlinked_student_folder_in_submitted_is_not_written_through(course, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (course / "submitted").mkdir()
    (course / "submitted" / "smithj").symlink_to(outside)
    z = make_zip(tmp_path / "s.zip", {"smithj_1_1_01_conv1d_toeplitz.ipynb": nb("x")})

    report = collect(z, course)

    assert report.placed == []
    assert [r.reason for r in report.rejected] == [
        f"{course / 'submitted' / 'smithj' / 'toeplitz'} leads outside submitted/: not written"
    ]
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------------------ broken input


@pytest.mark.parametrize(
    "content",
    [b"this is not a zip at all", b"PK\x03\x04\x14\x00\x00\x00truncated"],
    ids=["garbage", "truncated"],
)
def test_corrupt_zip_is_a_clear_error_naming_the_file(course, tmp_path, content):
    broken = tmp_path / "broken_download.zip"
    broken.write_bytes(content)
    with pytest.raises(CollectError) as err:
        collect(broken, course)
    assert str(err.value).startswith(f"{broken}: not a readable zip file (")
    assert not (course / "submitted").exists()


def test_missing_input_is_a_clear_error(course, tmp_path):
    with pytest.raises(CollectError, match=r"nothere\.zip: no such file or folder"):
        collect(tmp_path / "nothere.zip", course)


def test_a_corrupt_member_is_rejected_and_the_rest_placed(course, tmp_path):
    good, bad = nb("good"), nb("bad one, damaged in transit")
    z = tmp_path / "crc.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("smithj_1_1_01_conv1d_toeplitz.ipynb", good)
        zf.writestr("smithj_1_1_02_padding.ipynb", bad)
    raw = z.read_bytes()
    z.write_bytes(raw.replace(bad, bad.replace(b"damaged", b"DAMAGED")))

    report = collect(z, course)

    assert placed_set(report) == {("smithj", NB1, "smithj_1_1_01_conv1d_toeplitz.ipynb")}
    assert [(r.source, r.reason) for r in report.rejected] == [
        (
            "smithj_1_1_02_padding.ipynb",
            "corrupt or unreadable (Bad CRC-32 for file 'smithj_1_1_02_padding.ipynb')",
        )
    ]


# ------------------------------------------------------------------------- students and names


@pytest.mark.parametrize(
    "raw, safe",
    [
        ("smithj", "smithj"),
        ("Jane Smith", "jane_smith"),
        ("José Núñez", "josé_núñez"),
        ("../x", "x"),
        ("/etc/passwd", "etc_passwd"),
        ("..", None),
        ("   ", None),
        ("a\\..\\b", "a_.._b"),
    ],
)
def test_student_ids_are_single_safe_folder_names(raw, safe):
    result = safe_student_id(raw)
    assert result == safe
    if result is not None:
        assert "/" not in result and "\\" not in result and result not in {".", ".."}


def test_decomposed_unicode_from_macos_zips_is_one_student(course, tmp_path):
    decomposed = "Jose\u0301 Nu\u0301n\u0303ez"  # NFD, as macOS writes names
    composed = "Jos\u00e9 N\u00fa\u00f1ez"
    z = make_zip(
        tmp_path / "m.zip",
        {
            f"{decomposed}_7_assignsubmission_file/01_conv1d_toeplitz.ipynb": nb("a"),
            f"{composed}_7_assignsubmission_file/02_padding.ipynb": nb("b"),
        },
    )
    report = collect(z, course)
    assert {p.student for p in report.placed} == {"jos\u00e9_n\u00fa\u00f1ez"}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("01_conv1d_toeplitz.ipynb", (NB1, (0, 0))),
        ("01_conv1d_toeplitz-3.ipynb", (NB1, (3, 0))),
        ("Copy of 01_conv1d_toeplitz.ipynb", (NB1, (0, 0))),
        ("01_conv1d_toeplitz (1).ipynb", (NB1, (0, 1))),
        ("Copy of 01_conv1d_toeplitz (2).ipynb", (NB1, (0, 2))),
        ("Copy of 01_conv1d_toeplitz (2)-1.ipynb", (NB1, (1, 2))),
        ("Copy_of_02_padding_(1).ipynb", (NB2, (0, 1))),
        ("  02-Padding .IPYNB", (NB2, (0, 0))),
        ("03 Equivariance.ipynb", (NB3, (0, 0))),
        ("my_work.ipynb", None),
        ("01_conv1d.ipynb", None),
        ("Copy of Copy of 05_parameter_counts.ipynb", (NB5, (0, 0))),
    ],
)
def test_canonical_notebook_names(name, expected):
    assert canonical_notebook(name, NOTEBOOKS) == expected


def test_one_name_from_two_lms_accounts_is_not_merged(course, tmp_path):
    z = make_zip(
        tmp_path / "c.zip",
        {
            "leej_111_1_01_conv1d_toeplitz.ipynb": nb("one lee"),
            "leej_222_2_01_conv1d_toeplitz.ipynb": nb("another lee"),
        },
    )
    report = collect(z, course)
    assert report.placed == []
    assert {r.reason for r in report.rejected} == {
        "student id 'leej' is claimed by different LMS ids (111, 222): "
        "map them in LmsCollectorPlugin.student_id_map"
    }

    c = Config()
    c.LmsCollectorPlugin.student_id_map = {"111": "s01", "222": "s02"}
    report = collect(z, course, config=c)
    assert placed_set(report) == {
        ("s01", NB1, "leej_111_1_01_conv1d_toeplitz.ipynb"),
        ("s02", NB1, "leej_222_2_01_conv1d_toeplitz.ipynb"),
    }


# ------------------------------------------------------------------------------ configuration


CUSTOM = r"hw-(?P<student_id>[a-z]+)-(?P<file_id>.+)"


def test_custom_pattern_through_a_traitlets_config(course, tmp_path):
    z = make_zip(tmp_path / "h.zip", {"hw-smithj-01_conv1d_toeplitz.ipynb": nb("custom")})

    default = collect(z, course)
    assert default.placed == [] and [r.reason for r in default.rejected] == [
        "cannot tell whose file this is: no pattern matches "
        "'hw-smithj-01_conv1d_toeplitz.ipynb' "
        "(collect it with --student ID, or see LmsCollectorPlugin.patterns)"
    ]

    c = Config()
    c.LmsCollectorPlugin.patterns = [CUSTOM]
    report = collect(z, course, config=c)
    assert placed_set(report) == {("smithj", NB1, "hw-smithj-01_conv1d_toeplitz.ipynb")}


def test_prepended_pattern_keeps_the_defaults(course, tmp_path):
    z = make_zip(
        tmp_path / "h.zip",
        {
            "hw-smithj-01_conv1d_toeplitz.ipynb": nb("custom"),
            "doej_2_3_02_padding.ipynb": nb("canvas"),
        },
    )
    c = Config()
    c.LmsCollectorPlugin.patterns.prepend([CUSTOM])
    report = collect(z, course, config=c)
    assert placed_set(report) == {
        ("smithj", NB1, "hw-smithj-01_conv1d_toeplitz.ipynb"),
        ("doej", NB2, "doej_2_3_02_padding.ipynb"),
    }


def test_nbgrader_config_file_and_roster_csv(course, tmp_path):
    (course / "roster.csv").write_text("lms_id,student_id,name\n12345,s001,J. Smith\n")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.LmsCollectorPlugin.student_id_map = 'roster.csv'\n"
        "c.LmsCollectorPlugin.reject_unmapped = True\n"
    )
    z = make_zip(
        tmp_path / "c.zip",
        {
            "smithj_12345_678_01_conv1d_toeplitz.ipynb": nb("mapped"),
            "doej_23456_789_01_conv1d_toeplitz.ipynb": nb("not on the roster"),
        },
    )
    report = collect(z, course)
    assert placed_set(report) == {("s001", NB1, "smithj_12345_678_01_conv1d_toeplitz.ipynb")}
    assert [r.reason for r in report.rejected] == [
        "student 'doej' (LMS id 23456) is not in LmsCollectorPlugin.student_id_map"
    ]


def test_a_timestamp_group_orders_resubmissions(course, tmp_path):
    c = Config()
    c.LmsCollectorPlugin.patterns = [
        r"(?P<student_id>[a-z]+)_(?P<timestamp>\d{8}T\d{6})_(?P<file_id>.+)"
    ]
    # the later one comes first in path order, so only its timestamp can make it win
    z = make_zip(
        tmp_path / "t.zip",
        {
            "smithj_20240302T090000_02_padding.ipynb": nb("later"),
            "smithj_20240301T090000_02_padding.ipynb": nb("earlier"),
        },
    )
    report = collect(z, course, config=c)
    assert placed_set(report) == {("smithj", NB2, "smithj_20240302T090000_02_padding.ipynb")}
    [dup] = report.replaced
    assert dup.reason.startswith("newer timestamp (")


@pytest.mark.parametrize(
    "patterns, message",
    [
        ([r"(?P<student_id>x"], "is not a valid regex"),
        ([r"(?P<student>\w+)_(?P<file_id>.+)"], "lacks the named group(s) ['student_id']"),
    ],
)
def test_bad_patterns_are_a_clear_error(course, tmp_path, patterns, message):
    c = Config()
    c.LmsCollectorPlugin.patterns = patterns
    z = make_zip(tmp_path / "x.zip", {"a/01_conv1d_toeplitz.ipynb": nb("x")})
    with pytest.raises(CollectError, match=re.escape(message)):
        collect(z, course, config=c)


# ------------------------------------------------------------------- nbgrader's own zip_collect


def test_plugin_serves_nbgrader_zip_collect(tmp_path):
    """The same plugin drives ``nbgrader zip_collect``, paths taken below extracted/."""
    root = tmp_path / "course"
    archive = root / "downloaded" / "toeplitz" / "archive"
    archive.mkdir(parents=True)
    make_zip(
        archive / "canvas.zip",
        {
            "smithj_12345_678_Copy of 01_conv1d_toeplitz (1).ipynb": nb("via nbgrader"),
            "Jane Smith_34567_assignsubmission_file/02_padding.ipynb": nb("jane"),
            "smithj_12345_678_my_work.ipynb": nb("renamed"),
        },
    )
    nbgrader = Path(sys.executable).with_name("nbgrader")
    result = subprocess.run(
        [
            str(nbgrader),
            "zip_collect",
            "toeplitz",
            "--collector=toeplitz_course.instructor.collect.LmsCollectorPlugin",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(
        p.relative_to(root).as_posix() for p in (root / "submitted").rglob("*.ipynb")
    ) == [
        f"submitted/jane_smith/toeplitz/{NB2}.ipynb",
        f"submitted/smithj/toeplitz/{NB1}.ipynb",
    ]
    assert "renamed or unknown notebook 'my_work.ipynb' for student smithj" in result.stderr


def test_plugin_collect_contract():
    plugin = LmsCollectorPlugin()
    plugin.assignment_id = "toeplitz"
    assert plugin.collect("smithj_LATE_12345_678_01_conv1d_toeplitz-2.ipynb") == {
        "student_id": "smithj",
        "file_id": f"{NB1}.ipynb",
    }
    assert plugin.collect("smithj_12345_678_notes.txt") is None
    with pytest.raises(NotPlaced, match="not a notebook"):
        plugin.identify("smithj_12345_678_notes.txt")


@pytest.mark.parametrize(
    "path",
    [
        "Jane Smith_1234567_assignsubmission_file_/02_padding.ipynb",  # as Moodle names it
        "Jane Smith_1234567_assignsubmission_file/02_padding.ipynb",
        "Jane Smith_1234567_assignsubmission_file_02_padding.ipynb",  # the flat download
        "Jane Smith_1234567_assignsubmission_file_/my work/02_padding.ipynb",  # nested
        "Jane Smith_1234567_assignsubmission_file_/a/b/Copy of 02_padding (1).ipynb",
    ],
)
def test_every_form_of_a_moodle_download_is_the_same_student(path):
    """Real Moodle folders end in '_' and may hold subfolders; all name one student, one id.
    (Paths are relative to the download's root; a wrapping folder is the driver's business:
    test_collect_hostile.py::test_a_wrapped_lms_download_is_matched_below_its_wrapper.)"""
    found = LmsCollectorPlugin().identify(path)
    assert (found.student, found.lms_id, found.notebook) == ("jane_smith", "1234567", NB2)


def test_a_single_downloaded_notebook_is_collected(tmp_path, course):
    """One .ipynb as the argument: placed by its name, or under --student when the name cannot
    say whose it is (a Colab download); a bad --student or a non-notebook is a clear error."""
    import nbformat

    loose = tmp_path / "Copy of 02_padding (1).ipynb"
    loose.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    report = collect(loose, course)
    assert not report.placed and "--student" in report.format()
    report = collect(loose, course, student="smithj")
    assert [(p.student, p.notebook) for p in report.placed] == [("smithj", NB2)]
    assert (course / "submitted" / "smithj" / "toeplitz" / f"{NB2}.ipynb").exists()
    canvas = tmp_path / "leea_12345_678_01_conv1d_toeplitz.ipynb"
    canvas.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    assert [p.student for p in collect(canvas, course).placed] == ["leea"]
    with pytest.raises(CollectError, match="not usable"):
        collect(loose, course, student="../evil")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(CollectError, match="neither a zip file"):
        collect(notes, course)
    # The command works in a course directory only (it says so, in one line, elsewhere).
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    cli = subprocess.run(
        [sys.executable, "-m", "toeplitz_course", "--root", str(course), "collect", str(notes)],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and "Traceback" not in cli.stderr and "neither" in cli.stderr


# ---------------------------------------------------------------- submission times and lateness


def read_stamp(course: Path, student: str) -> dt.datetime:
    """timestamp.txt as nbgrader itself reads it (CourseDirectory.get_existing_timestamp)."""
    from nbgrader.coursedir import CourseDirectory

    folder = course / "submitted" / student / "toeplitz"
    stamp = CourseDirectory().get_existing_timestamp(str(folder))
    assert stamp is not None, f"no timestamp.txt in {folder}"
    return stamp


def utc(*fields: int, tz: str = "UTC") -> dt.datetime:
    """The naive UTC datetime of a wall-clock time in ``tz`` (nbgrader's parse_utc result)."""
    aware = dt.datetime(*fields, tzinfo=zoneinfo.ZoneInfo(tz))
    return aware.astimezone(dt.timezone.utc).replace(tzinfo=None)


def canvas_zip(path: Path, members: dict[str, tuple[bytes, tuple]]) -> Path:
    """A Canvas "Download Submissions" zip: flat, names login[_LATE]_userid_subid_file, each
    entry with its own DOS modification time (no time zone) and no extra fields."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, (data, date_time) in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=date_time), data)
    return path


def ut_field(when: dt.datetime) -> bytes:
    """An Info-ZIP extended timestamp extra field (0x5455) holding ``when``'s UTC mtime."""
    return struct.pack("<HHBi", 0x5455, 5, 1, int(when.timestamp()))


def test_canvas_late_markers_are_kept_and_zip_times_are_not_submission_times(course, tmp_path):
    """Adjusted (issue 22): this test took Canvas's zip entry times for submission times. They
    are the time of the download (canvas-lms content_zipper.rb writes each entry when the zip is
    made): no timestamp.txt, lateness is Canvas's own LATE marker's."""
    c = Config()
    c.LmsCollectorPlugin.archive_timezone = "America/New_York"
    z = canvas_zip(
        tmp_path / "canvas.zip",
        {
            "smithjane_LATE_123456_7891011_01_conv1d_toeplitz.ipynb": (
                nb("jane 1"),
                (2024, 3, 1, 23, 59, 30),
            ),
            # resubmission "-1": it wins
            "smithjane_LATE_123456_7891011_02_padding.ipynb": (nb("jane 2"), (2024, 3, 1, 9, 0, 0)),
            "smithjane_LATE_123456_7891011_02_padding-1.ipynb": (
                nb("jane 2 again"),
                (2024, 3, 2, 0, 0, 18),
            ),
            "doej_234567_8910111_01_conv1d_toeplitz.ipynb": (nb("doe 1"), (2024, 3, 1, 20, 0, 0)),
        },
    )
    report = collect(z, course, config=c)

    assert {(p.student, p.notebook, p.lms_late, p.time_source) for p in report.placed} == {
        ("smithjane", NB1, True, "lms-marker"),
        ("smithjane", NB2, True, "lms-marker"),
        ("doej", NB1, False, "lms-marker"),
    }
    assert not list((course / "submitted").rglob("timestamp.txt"))
    out = report.format()
    assert "time unknown" in out and "marked late by the LMS" in out
    assert "Canvas's zip entry times are the time of the download" in out

    ledger = json.loads((course / "downloaded" / "toeplitz" / "collected.json").read_text())
    jane = ledger["students"]["smithjane"]
    assert jane["notebooks"][NB2]["source"] == "smithjane_LATE_123456_7891011_02_padding-1.ipynb"
    assert jane["notebooks"][NB2]["lms_late"] is True
    assert ledger["students"]["doej"]["notebooks"][NB1]["lms_late"] is False
    assert "timestamp" not in jane and jane["time_source"] == "lms-marker"
    assert jane["lms"] == {
        "system": "canvas",
        "user_id": "123456",
        "name": None,
        "email": None,
        "anonymous": False,
    }


def test_moodle_zip_times_are_the_downloads_a_folders_file_times_are_kept(course, tmp_path):
    """Adjusted (issue 22): Moodle's zip carries an Info-ZIP UTC time, but it is the download's
    (Moodle's ZipStream writer: "Defaults to current time"), so no timestamp.txt; a folder of a
    student's own files gives their times."""
    when = dt.datetime(2024, 3, 1, 12, 30, 5, tzinfo=dt.timezone.utc)
    z = tmp_path / "moodle.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo(
            "Jane Smith_1234567_assignsubmission_file_/02_padding.ipynb",
            date_time=(2024, 3, 1, 13, 30, 5),
        )
        info.extra = ut_field(when)
        zf.writestr(info, nb("moodle jane"))
    [placed] = collect(z, course).placed
    assert (placed.time, placed.time_source) == (None, "download")
    assert not (course / "submitted" / "jane_smith" / "toeplitz" / "timestamp.txt").exists()

    down = tmp_path / "extracted"
    f = down / "annlee" / "03_equivariance.ipynb"
    f.parent.mkdir(parents=True)
    f.write_bytes(nb("folder ann"))
    mtime = dt.datetime(2024, 3, 3, 8, 0, 0, tzinfo=dt.timezone.utc).timestamp()
    os.utime(f, (mtime, mtime))
    [placed] = collect(down, course).placed
    assert (placed.time, placed.time_source) == (mtime, "file")
    assert read_stamp(course, "annlee") == dt.datetime(2024, 3, 3, 8, 0, 0)


def test_the_first_known_time_is_kept_unless_a_better_source_comes(course, tmp_path):
    """Adjusted (issue 22): a later download (or a hand fix) used to move a file-time stamp
    later; now the first known time stays, and only the LMS's own record replaces it."""

    def folder_zip(name, member, when):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(zipfile.ZipInfo(member, date_time=when), nb(name))
        return path

    collect(folder_zip("a.zip", "doej/02_padding.ipynb", (2024, 3, 4, 10, 0, 0)), course)
    assert read_stamp(course, "doej") == dt.datetime(2024, 3, 4, 10, 0, 0)
    for name, when in (("b.zip", (2024, 3, 1, 10, 0, 0)), ("c.zip", (2024, 3, 5, 10, 0, 0))):
        report = collect(folder_zip(name, "doej/02_padding.ipynb", when), course)
        assert [t.status for t in report.timestamps] == ["kept"]
        assert read_stamp(course, "doej") == dt.datetime(2024, 3, 4, 10, 0, 0)

    # the exchange's own timestamp.txt is a better source than a file's time
    exchange = make_zip(
        tmp_path / "x.zip",
        {
            "doej/toeplitz/02_padding.ipynb": nb("x"),
            "doej/toeplitz/timestamp.txt": b"2024-03-04 09:00:00.000000 UTC\n",
        },
    )
    report = collect(exchange, course)
    [stamp] = report.timestamps
    assert (stamp.status, stamp.source, stamp.previous) == (
        "better",
        "exchange",
        "2024-03-04 10:00:00.000000 UTC",
    )
    assert read_stamp(course, "doej") == dt.datetime(2024, 3, 4, 9, 0, 0)
    assert report.read == [
        (
            "doej/toeplitz/timestamp.txt",
            "the exchange's submission time 2024-03-04 09:00:00.000000 UTC",
        )
    ]


def test_no_time_no_timestamp_and_bad_timezone(course, tmp_path):
    # a zip tool that writes no time leaves the DOS epoch: no submission time, no timestamp.txt
    z = make_zip(tmp_path / "e.zip", {"doej_2_3_01_conv1d_toeplitz.ipynb": nb("x")}, _DOS_EPOCH)
    report = collect(z, course)
    assert report.placed[0].time is None and [t.text for t in report.timestamps] == [None]
    assert not (course / "submitted" / "doej" / "toeplitz" / "timestamp.txt").exists()
    c = Config()
    c.LmsCollectorPlugin.archive_timezone = "Mars/Olympus_Mons"
    with pytest.raises(CollectError, match="Mars/Olympus_Mons.*is not a time zone"):
        collect(z, course, config=c)


def test_a_student_whose_every_file_is_rejected_is_on_the_ledger(course, tmp_path):
    z = make_zip(
        tmp_path / "r.zip",
        {
            "leea_LATE_111_222_homework.pdf": b"%PDF-1.4",
            "leea_LATE_111_222_my_notebook.ipynb": nb("renamed"),
            "leea_LATE_111_222_all.zip": b"PK\x05\x06" + b"\x00" * 18,
            "doej_2_3_01_conv1d_toeplitz.ipynb": nb("fine"),
            "doej_2_3_notes.txt": b"notes",
            "__MACOSX/._leea_LATE_111_222_homework.pdf": b"\x00",
            "01_conv1d_toeplitz.ipynb": nb("whose?"),
        },
    )
    report = collect(z, course)

    assert {r.source: r.student for r in report.rejected} == {
        "leea_LATE_111_222_homework.pdf": "leea",
        "leea_LATE_111_222_my_notebook.ipynb": "leea",
        "leea_LATE_111_222_all.zip": "leea",
        "doej_2_3_notes.txt": "doej",
        "__MACOSX/._leea_LATE_111_222_homework.pdf": None,
        "01_conv1d_toeplitz.ipynb": None,
    }
    assert report.nothing_gradable == ["leea"]  # doej handed in a notebook too
    assert "nothing gradable handed in (every file rejected; export lists them): leea" in (
        report.format()
    )
    assert not (course / "submitted" / "leea").exists()  # grading must not take it for a hand-in
    ledger = json.loads((course / "downloaded" / "toeplitz" / "collected.json").read_text())
    assert sorted(r["source"] for r in ledger["students"]["leea"]["rejected"]) == [
        "leea_LATE_111_222_all.zip",
        "leea_LATE_111_222_homework.pdf",
        "leea_LATE_111_222_my_notebook.ipynb",
    ]
    assert "notebooks" not in ledger["students"]["leea"]
    again = collect(z, course)  # the same download again adds nothing to the ledger
    assert json.loads((course / "downloaded" / "toeplitz" / "collected.json").read_text()) == ledger
    assert again.nothing_gradable == ["leea"]
