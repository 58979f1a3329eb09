"""collect against hostile hand-ins (issue 20): everything a student hands in is an attack.

Each attack is built here, beside honest students whose placement must come out exactly as it
would without the attacker. The downloads are named the way the LMSes name them: Canvas's flat
``login[_LATE]_userid_submissionid_filename`` and Moodle's ``Full Name_id_assignsubmission_file_/``
folders; what a student controls is the file (and folder) names they upload, which the LMS puts
after its own prefix or inside its own folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Config

from toeplitz_course.course.contract import NOTEBOOKS
from toeplitz_course.course.untrusted import is_student_id
from toeplitz_course.instructor.collect import (
    LEDGER,
    MAX_PATH_CHARS,
    CollectError,
    collect,
    read_ledger,
    safe_student_id,
)

NB1, NB2, NB3, NB4, NB5 = NOTEBOOKS[:5]
WHEN = (2024, 3, 1, 10, 0, 0)


def nb(tag: str) -> bytes:
    """A small valid notebook whose content says whose it is."""
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"answer = {tag!r}")
    cell.id = hashlib.sha1(tag.encode()).hexdigest()[:8]
    notebook.cells.append(cell)
    return nbformat.writes(notebook).encode()


def make_zip(path: Path, members: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    """A zip as an LMS writes it; ``modes``: a Unix file mode for some members."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=WHEN)
            if modes and name in modes:
                info.create_system = 3
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return path


def make_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def submitted(course: Path, student: str, notebook: str) -> Path:
    return course / "submitted" / student / "toeplitz" / f"{notebook}.ipynb"


def placed_set(report) -> set[tuple[str, str, str]]:
    return {(p.student, p.notebook, p.source) for p in report.placed}


def rejected(report) -> dict[str, tuple[str, str | None]]:
    return {r.source: (r.reason, r.student) for r in report.rejected}


def ledger(course: Path) -> dict:
    return read_ledger(course / "downloaded" / "toeplitz" / LEDGER)


def notebooks_under(course: Path) -> dict[str, bytes]:
    base = course / "submitted"
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*.ipynb"))}


@pytest.fixture
def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    return root


# ------------------------------------------------------------ 1. links and special files


@pytest.mark.timeout(60)
def test_links_and_special_files_in_a_folder_download_are_refused_not_read(course, tmp_path):
    """A symlink (to a file or a folder), a FIFO, a socket and a hard link to a file outside the
    download, each where a notebook would be: refused with the reason, nothing read through
    them; the honest files beside them are placed exactly. A FIFO read blocks forever, hence
    the timeout."""
    secret = tmp_path / "outside" / "secret.ipynb"
    secret.parent.mkdir()
    secret.write_bytes(nb("the instructor's own file"))
    elsewhere = tmp_path / "outside" / "folder"
    make_folder(elsewhere, {"01_conv1d_toeplitz.ipynb": nb("outside folder")})
    down = make_folder(
        tmp_path / "download",
        {
            "honest/01_conv1d_toeplitz.ipynb": nb("honest 1"),
            "honest/02_padding.ipynb": nb("honest 2"),
            "mallory/05_parameter_counts.ipynb": nb("mallory 5"),
        },
    )
    (down / "mallory" / "01_conv1d_toeplitz.ipynb").symlink_to(secret)
    (down / "mallory" / "linked").symlink_to(elsewhere, target_is_directory=True)
    (down / "linked_student").symlink_to(elsewhere, target_is_directory=True)
    os.mkfifo(down / "mallory" / "02_padding.ipynb")
    os.link(secret, down / "mallory" / "03_equivariance.ipynb")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # AF_UNIX paths are short (108 bytes): bind relative to the folder
    cwd = os.getcwd()
    os.chdir(down / "mallory")
    try:
        sock.bind("04_conv2d_block_toeplitz.ipynb")
    finally:
        os.chdir(cwd)

    start = time.monotonic()
    try:
        report = collect(down, course)
    finally:
        sock.close()

    assert time.monotonic() - start < 30
    assert placed_set(report) == {
        ("honest", NB1, "honest/01_conv1d_toeplitz.ipynb"),
        ("honest", NB2, "honest/02_padding.ipynb"),
        ("mallory", NB5, "mallory/05_parameter_counts.ipynb"),
    }
    assert rejected(report) == {
        "mallory/01_conv1d_toeplitz.ipynb": ("symbolic link: not followed", "mallory"),
        "mallory/linked": ("symbolic link to a folder: not followed", "mallory"),
        "linked_student": ("symbolic link to a folder: not followed", None),
        "mallory/02_padding.ipynb": ("named pipe (FIFO), not a file: not read", "mallory"),
        "mallory/03_equivariance.ipynb": (
            "hard link to a file outside the download (2 names, 1 in it): not read",
            "mallory",
        ),
        "mallory/04_conv2d_block_toeplitz.ipynb": ("socket, not a file: not read", "mallory"),
    }
    # nothing that came through a link is anywhere under submitted/
    contents = notebooks_under(course)
    assert secret.read_bytes() not in contents.values()
    assert nb("outside folder") not in contents.values()
    assert set(contents) == {
        f"honest/toeplitz/{NB1}.ipynb",
        f"honest/toeplitz/{NB2}.ipynb",
        f"mallory/toeplitz/{NB5}.ipynb",
    }
    # mallory's refusals are remembered with the reasons
    reasons = {r["source"]: r["reason"] for r in ledger(course)["students"]["mallory"]["rejected"]}
    assert reasons["mallory/02_padding.ipynb"] == "named pipe (FIFO), not a file: not read"


@pytest.mark.timeout(60)
def test_a_fifo_named_like_a_notebook_does_not_hang_collect(course, tmp_path):
    """The one attack that stopped everyone outright: opening a FIFO waits for a writer."""
    down = make_folder(tmp_path / "download", {"honest/01_conv1d_toeplitz.ipynb": nb("h")})
    (down / "mallory").mkdir()
    os.mkfifo(down / "mallory" / "01_conv1d_toeplitz.ipynb")
    report = collect(down, course)
    assert placed_set(report) == {("honest", NB1, "honest/01_conv1d_toeplitz.ipynb")}
    assert rejected(report) == {
        "mallory/01_conv1d_toeplitz.ipynb": ("named pipe (FIFO), not a file: not read", "mallory")
    }


def test_a_device_in_a_folder_download_is_refused(course, tmp_path):
    down = make_folder(tmp_path / "download", {"honest/01_conv1d_toeplitz.ipynb": nb("h")})
    (down / "mallory").mkdir()
    try:
        os.mknod(
            down / "mallory" / "01_conv1d_toeplitz.ipynb", stat.S_IFCHR | 0o600, os.makedev(1, 3)
        )
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here ({exc})")
    report = collect(down, course)
    assert placed_set(report) == {("honest", NB1, "honest/01_conv1d_toeplitz.ipynb")}
    assert rejected(report) == {
        "mallory/01_conv1d_toeplitz.ipynb": ("character device, not a file: not read", "mallory")
    }


def test_hard_links_with_every_name_inside_the_download_are_read(course, tmp_path):
    """The decision on hard links: one whose every name is in the download exposes nothing
    outside it (a tool that deduplicates files makes such links), so it is read like a file."""
    down = make_folder(tmp_path / "download", {"kimr/01_conv1d_toeplitz.ipynb": nb("kimr 1")})
    (down / "leea").mkdir()
    os.link(down / "kimr" / "01_conv1d_toeplitz.ipynb", down / "leea" / "01_conv1d_toeplitz.ipynb")
    report = collect(down, course)
    assert {(p.student, p.notebook) for p in report.placed} == {("kimr", NB1), ("leea", NB1)}
    assert report.rejected == []


def test_special_members_of_a_zip_are_refused(course, tmp_path):
    """A zip records a Unix mode per member: a symlink, FIFO or device member is refused, not
    written out as a file whatever its bytes."""
    members = {
        "honest_1_1_01_conv1d_toeplitz.ipynb": nb("honest"),
        "mallory_2_2_01_conv1d_toeplitz.ipynb": b"/etc/shadow",
        "mallory_2_2_02_padding.ipynb": nb("a fifo's bytes"),
        "mallory_2_2_03_equivariance.ipynb": nb("a device's bytes"),
    }
    z = make_zip(
        tmp_path / "canvas.zip",
        members,
        modes={
            "mallory_2_2_01_conv1d_toeplitz.ipynb": stat.S_IFLNK | 0o777,
            "mallory_2_2_02_padding.ipynb": stat.S_IFIFO | 0o644,
            "mallory_2_2_03_equivariance.ipynb": stat.S_IFCHR | 0o644,
        },
    )
    report = collect(z, course)
    assert placed_set(report) == {("honest", NB1, "honest_1_1_01_conv1d_toeplitz.ipynb")}
    assert rejected(report) == {
        "mallory_2_2_01_conv1d_toeplitz.ipynb": (
            "symbolic link in archive: not followed",
            "mallory",
        ),
        "mallory_2_2_02_padding.ipynb": (
            "named pipe (FIFO) in archive, not a file: not read",
            "mallory",
        ),
        "mallory_2_2_03_equivariance.ipynb": (
            "character device in archive, not a file: not read",
            "mallory",
        ),
    }
    assert not (course / "submitted" / "mallory").exists()


def test_a_tar_download_is_not_read_at_all(course, tmp_path):
    """collect reads zips, folders and notebooks only; a tar (where links and devices are
    ordinary members) is refused whole, before anything is written."""
    inner = make_folder(tmp_path / "t", {"honest_1_1_01_conv1d_toeplitz.ipynb": nb("h")})
    (inner / "mallory_2_2_02_padding.ipynb").symlink_to("/etc/passwd")
    archive = tmp_path / "download.tar"
    with tarfile.open(archive, "w") as tf:
        for p in sorted(inner.iterdir()):
            tf.add(p, arcname=p.name)
    with pytest.raises(CollectError, match="not a readable zip file"):
        collect(archive, course)
    assert not (course / "submitted").exists()


# ------------------------------------------- 2. whose a file is: the LMS's naming only

ROSTER = {"999": "v01", "111": "m01", "777": "h01"}


def roster_config() -> Config:
    c = Config()
    c.LmsCollectorPlugin.student_id_map = dict(ROSTER)
    c.LmsCollectorPlugin.reject_unmapped = True
    return c


def test_canvas_a_file_name_carrying_another_users_id_is_the_uploaders(course, tmp_path):
    """Canvas prefixes the uploaded name with "login_userid_submissionid_"; mallory uploads a
    file named like a Moodle hand-in of user 999 (the victim's LMS id), with Canvas's later
    resubmission suffix so that it would win over the victim's own notebook."""
    victim = "victimv_999_5001_01_conv1d_toeplitz.ipynb"
    attack = "mallory_111_5002_victimv_999_assignsubmission_file_01_conv1d_toeplitz-3.ipynb"
    attack2 = "mallory_111_5002_victimv_999_5001_02_padding.ipynb"
    honest = "honesth_777_5003_01_conv1d_toeplitz.ipynb"
    members = {victim: nb("victim 1"), attack: nb("mallory as victim"), honest: nb("honest")}
    members[attack2] = nb("mallory as victim 2")
    z = make_zip(tmp_path / "canvas.zip", members)

    for config, ids in ((roster_config(), ROSTER), (None, {})):
        here = course / ("roster" if ids else "names")
        report = collect(z, here, config=config)
        v, m, h = (
            ids.get(k, name)
            for k, name in (("999", "victimv"), ("111", "mallory"), ("777", "honesth"))
        )
        assert placed_set(report) == {(v, NB1, victim), (h, NB1, honest)}
        assert submitted(here, v, NB1).read_bytes() == nb("victim 1")
        # mallory's files are mallory's, refused for their names, and remembered as such
        assert {s: who for s, (_, who) in rejected(report).items()} == {attack: m, attack2: m}
        assert set(ledger(here)["students"]) == {v, m, h}


def moodle_zip(path: Path) -> tuple[Path, dict[str, bytes]]:
    """Moodle's "download all submissions", a folder per submission; mallory's own folder holds
    a folder named like the victim's Moodle folder, one like it with another LMS id, one in the
    nbgrader exchange's layout (victim_name/toeplitz/) and one named after the victim's course
    id."""
    members = {
        "Victim Name_999_assignsubmission_file_/01_conv1d_toeplitz.ipynb": nb("victim 1"),
        "Victim Name_999_assignsubmission_file_/02_padding.ipynb": nb("victim 2"),
        "Honest Helen_777_assignsubmission_file_/03_equivariance.ipynb": nb("helen 3"),
        "Mallory Evil_111_assignsubmission_file_/Victim Name_999_assignsubmission_file_/"
        "01_conv1d_toeplitz-9.ipynb": nb("mallory as victim 1"),
        "Mallory Evil_111_assignsubmission_file_/Victim Name_222_assignsubmission_file_/"
        "03_equivariance.ipynb": nb("mallory as another victim account"),
        "Mallory Evil_111_assignsubmission_file_/victim_name/toeplitz/02_padding.ipynb": nb(
            "mallory as victim 2"
        ),
        "Mallory Evil_111_assignsubmission_file_/v01/04_conv2d_block_toeplitz.ipynb": nb(
            "mallory as v01"
        ),
    }
    return make_zip(path, members), members


def test_moodle_folders_inside_a_submission_decide_nothing(course, tmp_path):
    z, members = moodle_zip(tmp_path / "moodle.zip")
    mallory_files = {k for k in members if k.startswith("Mallory")}

    for config, student in ((roster_config(), ROSTER.get), (None, None)):
        here = course / ("roster" if student else "names")
        report = collect(z, here, config=config)
        v = student("999") if student else "victim_name"
        h = student("777") if student else "honest_helen"
        m = student("111") if student else "mallory_evil"
        assert {(s, n) for s, n, _ in placed_set(report) if s != m} == {
            (v, NB1),
            (v, NB2),
            (h, NB3),
        }
        assert submitted(here, v, NB1).read_bytes() == nb("victim 1")
        assert submitted(here, v, NB2).read_bytes() == nb("victim 2")
        # whatever mallory's inner folders say, her files are hers: placed as hers (Moodle
        # keeps subfolders in a submission) or set aside as her duplicates, never anyone else's
        mine = {p.source for p in report.placed if p.student == m}
        mine |= {r.dropped for r in report.replaced if r.student == m}
        assert mine == mallory_files
        assert report.rejected == []
        assert set(ledger(here)["students"]) == {v, h, m}


def test_an_inner_folder_named_after_a_student_with_another_lms_id_rejects_nobody(course, tmp_path):
    """Without a roster one display name from two LMS ids is refused as ambiguous; an inner
    folder "Victim Name_222_..." made the victim's own files refused and the victim vanish
    from the ledger. Now only the LMS's folder names count, so there is no second account."""
    z, _ = moodle_zip(tmp_path / "moodle.zip")
    report = collect(z, course)
    assert not [r for r in report.rejected if "claimed by different LMS ids" in r.reason]
    assert report.nothing_gradable == []
    assert set(ledger(course)["students"]["victim_name"]["notebooks"]) == {NB1, NB2}


def test_a_clash_of_lms_accounts_keeps_both_on_the_ledger(course, tmp_path):
    """Two LMS accounts under one display name (the LMS's own naming) are still refused until
    mapped, but stay on the ledger with the reason, so export lists them."""
    z = make_zip(
        tmp_path / "c.zip",
        {
            "leej_111_1_01_conv1d_toeplitz.ipynb": nb("one lee"),
            "leej_222_2_01_conv1d_toeplitz.ipynb": nb("another lee"),
        },
    )
    report = collect(z, course)
    assert report.placed == [] and report.nothing_gradable == ["leej"]
    assert len(ledger(course)["students"]["leej"]["rejected"]) == 2


def test_plain_folders_inner_exchange_layout_cannot_replace_a_collected_notebook(course, tmp_path):
    """The victim's notebook, collected from an earlier download, is left alone by a later
    download in which mallory's folder holds "victim/toeplitz/..." and a folder called
    "victim"."""
    first = make_folder(tmp_path / "first", {"victim/01_conv1d_toeplitz.ipynb": nb("victim 1")})
    collect(first, course)
    before = submitted(course, "victim", NB1).read_bytes()
    second = make_folder(
        tmp_path / "second",
        {
            "mallory/victim/toeplitz/01_conv1d_toeplitz.ipynb": nb("mallory as victim"),
            "mallory/victim/01_conv1d_toeplitz.ipynb": nb("mallory as victim again"),
            "honest/02_padding.ipynb": nb("honest 2"),
        },
    )
    report = collect(second, course)
    assert submitted(course, "victim", NB1).read_bytes() == before
    assert placed_set(report) == {("honest", NB2, "honest/02_padding.ipynb")}
    assert {s: who for s, (_, who) in rejected(report).items()} == {
        "mallory/victim/toeplitz/01_conv1d_toeplitz.ipynb": "mallory",
        "mallory/victim/01_conv1d_toeplitz.ipynb": "mallory",
    }
    assert "rejected" in ledger(course)["students"]["mallory"]
    assert "victim" not in {r.student for r in report.rejected}


def test_a_wrapped_lms_download_is_matched_below_its_wrapper(course, tmp_path):
    """Zipping or unpacking can wrap an LMS download in one folder; it is taken for a wrapper
    only when everything below it is named by the LMS."""
    moodle = {
        "moodle-download/Jane Smith_1234567_assignsubmission_file_/02_padding.ipynb": nb("jane"),
        "moodle-download/Ann Lee_7654321_assignsubmission_file_/03_equivariance.ipynb": nb("ann"),
        "__MACOSX/moodle-download/._x": b"\x00",
    }
    report = collect(make_zip(tmp_path / "m.zip", moodle), course)
    assert {(p.student, p.notebook) for p in report.placed} == {
        ("jane_smith", NB2),
        ("ann_lee", NB3),
    }
    assert report.wrapper == "moodle-download"
    assert "names matched below moodle-download/" in report.format()

    canvas = {"submissions/smithj_1_2_01_conv1d_toeplitz.ipynb": nb("smithj")}
    report = collect(make_zip(tmp_path / "c.zip", canvas), course)
    assert {(p.student, p.notebook) for p in report.placed} == {("smithj", NB1)}


def test_a_submission_is_never_taken_for_a_wrapper(course, tmp_path):
    """mallory's Moodle folder alone in a download, holding a folder named like the victim's:
    her folder is a submission (the LMS named it), not a wrapper."""
    alone = {
        "Mallory Evil_111_assignsubmission_file_/Victim Name_999_assignsubmission_file_/"
        "01_conv1d_toeplitz.ipynb": nb("mallory as victim")
    }
    report = collect(make_zip(tmp_path / "m.zip", alone), course, config=roster_config())
    assert {(p.student, p.notebook) for p in report.placed} == {("m01", NB1)}
    assert report.wrapper is None
    # a plain folder with plain folders inside is not unwrapped either: no LMS named them
    plain = make_folder(tmp_path / "plain", {"class/kimr/01_conv1d_toeplitz.ipynb": nb("k")})
    report = collect(plain, course)
    assert report.placed == []
    assert rejected(report)["class/kimr/01_conv1d_toeplitz.ipynb"][1] == "class"
    assert report.wrapper is None


# --------------------------------------------------- 3. one file never stops everyone


def test_unparseable_json_rejects_that_file_only(course, tmp_path):
    """JSON nested 100,000 deep (RecursionError in json) and a number of 5,000 digits (ValueError
    past Python's int limit) each stopped the whole collect."""
    z = make_zip(
        tmp_path / "canvas.zip",
        {
            "honest_1_1_01_conv1d_toeplitz.ipynb": nb("honest"),
            "deep_2_2_01_conv1d_toeplitz.ipynb": b"[" * 100_000 + b"]" * 100_000,
            "digits_3_3_01_conv1d_toeplitz.ipynb": b'{"cells": [], "n": ' + b"7" * 5000 + b"}",
            "broken_4_4_01_conv1d_toeplitz.ipynb": b'{"cells": [',
        },
    )
    report = collect(z, course)
    assert {(p.student, p.note != "") for p in report.placed} == {
        ("honest", False),
        ("broken", True),  # merely invalid JSON is placed, noted, as before
    }
    reasons = rejected(report)
    assert reasons["deep_2_2_01_conv1d_toeplitz.ipynb"] == (
        "JSON nested too deeply for Python to read: not placed",
        "deep",
    )
    reason, who = reasons["digits_3_3_01_conv1d_toeplitz.ipynb"]
    assert who == "digits" and reason.startswith("JSON Python cannot read (ValueError: ")
    assert set(ledger(course)["students"]) == {"honest", "deep", "digits", "broken"}


def utf8_flagged_zip(path: Path, members: dict[str, bytes], bad: str) -> Path:
    """A zip whose member ``bad`` (containing "ÿ") claims UTF-8 but holds the bytes ff fe there:
    zipfile refuses the whole archive when it reads such a name."""
    make_zip(path, members)
    good_bytes = bad.encode("utf-8")
    raw = path.read_bytes()
    assert raw.count(good_bytes) == 2  # local header and central directory
    path.write_bytes(raw.replace(good_bytes, good_bytes.replace("ÿ".encode(), b"\xff\xfe")))
    return path


def test_a_zip_member_name_that_is_not_utf8_rejects_that_member_only(course, tmp_path):
    bad = "mallory_2_2_notesÿ.ipynb"
    z = utf8_flagged_zip(
        tmp_path / "canvas.zip",
        {"honest_1_1_01_conv1d_toeplitz.ipynb": nb("honest"), bad: nb("x")},
        bad,
    )
    with pytest.raises(UnicodeDecodeError):
        zipfile.ZipFile(z)  # what the standard library does with it

    report = collect(z, course)

    assert placed_set(report) == {("honest", NB1, "honest_1_1_01_conv1d_toeplitz.ipynb")}
    assert rejected(report) == {
        "mallory_2_2_notes\\xff\\xfe.ipynb": (
            "file name in the zip is not valid UTF-8: not read",
            "mallory",
        )
    }
    report.format().encode("utf-8")  # printable


def test_a_zip_without_the_utf8_flag_reads_names_as_cp437(course, tmp_path):
    """Without the flag every byte is a cp437 character, so nothing fails to decode: byte ff
    is cp437's no-break space, which the notebook-name matching strips like any space."""
    raw_name = b"kimr/01_conv1d_toeplitz\xff.ipynb"
    assert raw_name.decode("cp437").endswith("\u00a0.ipynb")
    z = tmp_path / "old.zip"
    make_zip(z, {"kimr/02_padding.ipynb": nb("k2"), "kimr/01_conv1d_toeplitzX.ipynb": nb("k1")})
    z.write_bytes(z.read_bytes().replace(b"toeplitzX", b"toeplitz\xff"))
    report = collect(z, course)
    assert {(p.student, p.notebook) for p in report.placed} == {("kimr", NB1), ("kimr", NB2)}
    assert submitted(course, "kimr", NB1).read_bytes() == nb("k1")


def test_folder_names_that_are_not_utf8_reject_those_files_and_the_ledger_is_written(
    course, tmp_path
):
    """A file named with byte ff next to an honest notebook: before, the rejection could not be
    written to the ledger (UnicodeEncodeError after the files were placed), nor printed."""
    down = make_folder(tmp_path / "download", {"kimr/01_conv1d_toeplitz.ipynb": nb("k1")})
    raw = os.fsencode(down)
    Path(os.fsdecode(raw + b"/kimr/notes\xff.ipynb")).write_bytes(nb("notes"))
    Path(os.fsdecode(raw + b"/mallory\xff")).mkdir()
    Path(os.fsdecode(raw + b"/mallory\xff/02_padding.ipynb")).write_bytes(nb("m2"))

    report = collect(down, course)

    assert placed_set(report) == {("kimr", NB1, "kimr/01_conv1d_toeplitz.ipynb")}
    assert rejected(report) == {
        "kimr/notes\\xff.ipynb": ("file name is not valid UTF-8: not read", "kimr"),
        "mallory\\xff/02_padding.ipynb": ("file name is not valid UTF-8: not read", None),
    }
    assert ledger(course)["students"]["kimr"]["rejected"][0]["source"] == "kimr/notes\\xff.ipynb"
    report.format().encode("utf-8")


@pytest.mark.timeout(60)
def test_a_very_long_member_path_is_rejected_quickly(course, tmp_path):
    """Matching every tail of a 30,000-component path was quadratic; anchored matching and a
    cap on the length make it one refusal."""
    long_name = "mallory/" + "a/" * 30_000 + "01_conv1d_toeplitz.ipynb"
    z = make_zip(
        tmp_path / "long.zip",
        {"honest/01_conv1d_toeplitz.ipynb": nb("h"), long_name: nb("long")},
    )
    start = time.monotonic()
    report = collect(z, course)
    assert time.monotonic() - start < 20
    assert placed_set(report) == {("honest", NB1, "honest/01_conv1d_toeplitz.ipynb")}
    assert rejected(report)[long_name][0] == (
        f"path longer than {MAX_PATH_CHARS} characters: not a submission"
    )


def test_what_was_placed_reaches_the_ledger_when_a_later_step_fails(course, tmp_path):
    """A folder where one student's timestamp.txt should go (left by anyone who writes under
    submitted/) made writing the times fail after placing, before the ledger was written."""
    (course / "submitted" / "kimr" / "toeplitz" / "timestamp.txt").mkdir(parents=True)
    z = make_zip(
        tmp_path / "canvas.zip",
        {
            "kimr_1_1_01_conv1d_toeplitz.ipynb": nb("k"),
            "leea_2_2_01_conv1d_toeplitz.ipynb": nb("l"),
        },
    )
    report = collect(z, course)
    assert {p.student for p in report.placed} == {"kimr", "leea"}
    assert set(ledger(course)["students"]) == {"kimr", "leea"}
    assert any(w.startswith("write timestamps failed: ") for w in report.warnings)


def test_a_malformed_ledger_entry_does_not_stop_the_next_collect(course, tmp_path):
    path = course / "downloaded" / "toeplitz" / LEDGER
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"students": {"kimr": "not an entry", "leea": {"rejected": {}}}}))
    z = make_zip(
        tmp_path / "canvas.zip",
        {"kimr_1_1_01_conv1d_toeplitz.ipynb": nb("k"), "leea_2_2_notes.ipynb": nb("n")},
    )
    report = collect(z, course)
    students = ledger(course)["students"]
    assert set(students["kimr"]["notebooks"]) == {NB1}
    assert [r["source"] for r in students["leea"]["rejected"]] == ["leea_2_2_notes.ipynb"]
    assert len(report.warnings) == 2


# --------------------------------------------------------------------- 4. clean text out


def test_a_file_name_cannot_forge_report_lines_or_send_escape_sequences(course, tmp_path):
    forged = "\nplaced:\n  victim  01_conv1d_toeplitz  new  <- victim.ipynb\n"
    members = {
        "honest_1_1_01_conv1d_toeplitz.ipynb": nb("honest"),
        f"mallory_2_2_notes{forged}.ipynb": nb("forge"),
        "mallory_2_2_\x1b]0;pwned\x07\x1b[2J.ipynb": nb("escape"),
        "Mallory \u202eEvil_3_assignsubmission_file_/02_padding.ipynb": nb("bidi"),
    }
    report = collect(make_zip(tmp_path / "canvas.zip", members), course)
    text = report.format()
    lines = text.split("\n")
    # one line per outcome: no name added a line, none carries a control or bidi character
    assert len(lines) == len(report.format().splitlines())
    assert not [line for line in lines if "victim" in line and line.startswith("  victim")]
    assert not any(c in text for c in "\x1b\x07\r\u202e")
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in text and "\\u202e" in text
    assert sum(line == "placed:" for line in lines) == 1


@pytest.mark.parametrize(
    "raw",
    [
        "Jane Smith",
        "\u202eevil",
        "ﬁle",  # a ligature NFKC would split
        "İstanbul",  # lower() adds a combining dot
        "Jose\u0301",
        "a" * 150,
        "../../etc",
        "x\x00y",
        "\x1b[2J",
        "-rf",
        "_hidden",
        "@at",
        "١٢٣",  # Arabic-Indic digits
    ],
)
def test_every_student_id_collect_makes_is_a_safe_id(raw):
    made = safe_student_id(raw)
    assert made is None or is_student_id(made)


@pytest.mark.parametrize("value", ["../etc", "evil\nplaced:", "Jane Smith", "", "_x", "a" * 101])
def test_a_student_id_map_value_that_is_no_safe_id_is_refused(course, tmp_path, value):
    z = make_zip(tmp_path / "c.zip", {"smithj_12345_1_01_conv1d_toeplitz.ipynb": nb("s")})
    c = Config()
    c.LmsCollectorPlugin.student_id_map = {"12345": value}
    with pytest.raises(CollectError, match="is not usable as a student id") as err:
        collect(z, course, config=c)
    assert "\n" not in str(err.value)
    assert not (course / "submitted").exists()


def test_a_collect_error_message_is_safe_for_a_terminal(course, tmp_path):
    bad = tmp_path / "bad\x1b[2Jname.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CollectError) as err:
        collect(bad, course)
    assert "\x1b" not in str(err.value) and "\\x1b[2J" in str(err.value)


def test_an_existing_timestamp_is_read_without_following_a_link_or_waiting_on_a_fifo(tmp_path):
    from toeplitz_course.instructor.collect import _read_timestamp, _timestamp_text

    secret = tmp_path / "secret.txt"
    secret.write_text("2000-01-01 00:00:00.000000 UTC\n")
    link = tmp_path / "link.txt"
    link.symlink_to(secret)
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    plain = tmp_path / "timestamp.txt"
    plain.write_text("2024-03-01 10:00:00.000000 UTC\n")
    assert _timestamp_text(link) is None and _read_timestamp(link) is None
    assert _timestamp_text(fifo) is None  # returns at once: opened non-blocking, then refused
    assert _read_timestamp(plain) is not None
