"""collect on every LMS's download as that LMS writes it (tests/lms_downloads.py): a term with
a resubmission, a renamed file, two students of one display name and a late student; every file
placed right or reported, times right (never the download's), the ledger's lms block right."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from lms_downloads import (
    DOWNLOAD_TIME,
    Attempt,
    Student,
    blackboard,
    brightspace,
    brightspace_grades_export,
    canvas,
    canvas_submissions_json,
    classroom,
    exchange,
    moodle,
    moodle_worksheet,
    nb,
)
from traitlets.config import Config

from toeplitz_course.course.contract import NOTEBOOKS
from toeplitz_course.instructor.collect import (
    LmsCollectorPlugin,
    collect,
    plain_name,
    split_name,
)

NB1, NB2 = NOTEBOOKS[:2]
T = dt.datetime


def term(twins: bool = True) -> list[Student]:
    alice = Student("Alice", "Anderson", 1001, "aanderson")
    alice.attempts.append(
        Attempt(
            T(2026, 11, 29, 4, 15), {f"{NB1}.ipynb": nb("alice 1"), f"{NB2}.ipynb": nb("alice 2")}
        )
    )
    alice.online_text = "<p>I used the hint.</p>"
    bob = Student("Bob", "Brown", 1002, "bbrown")
    bob.attempts.append(Attempt(T(2026, 11, 30, 10, 0), {f"{NB1}.ipynb": nb("bob 1 first")}))
    bob.attempts.append(  # resubmitted after the due date: late
        Attempt(T(2026, 12, 3, 8, 5), {f"{NB1}.ipynb": nb("bob 1 again")}, late=True)
    )
    carol = Student("Carol", "Chen", 1003, "cchen")
    carol.attempts.append(
        Attempt(
            T(2026, 12, 1, 12, 0),
            {"my_homework.ipynb": nb("carol renamed"), f"{NB2}.ipynb": nb("carol 2")},
        )
    )
    eve = Student("Eve", "Evans", 1006, "e_evans")  # a login with "_" in it
    eve.attempts.append(Attempt(T(2026, 12, 2, 23, 0), {f"{NB2}.ipynb": nb("eve 2")}))
    people = [alice, bob, carol, eve]
    if twins:
        for uid, login, when in ((1004, "dlee", 13), (1005, "dlee2", 14)):
            dana = Student("Dana", "Lee", uid, login)
            dana.attempts.append(Attempt(T(2026, 12, 1, when, 0), {f"{NB1}.ipynb": nb(login)}))
            people.append(dana)
    return people


@pytest.fixture
def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    return root


def utc() -> Config:
    c = Config()
    c.LmsCollectorPlugin.archive_timezone = "UTC"
    return c


def ledger(course: Path) -> dict:
    return json.loads((course / "downloaded" / "toeplitz" / "collected.json").read_text())


def stamp(course: Path, student: str) -> str | None:
    path = course / "submitted" / student / "toeplitz" / "timestamp.txt"
    return path.read_text().strip() if path.exists() else None


def placed(report) -> dict[tuple[str, str], bytes]:
    return {(p.student, p.notebook): Path(p.dest).read_bytes() for p in report.placed}


def accounted(report, download_members: set[str]) -> None:
    seen = [p.source for p in report.placed] + [r.source for r in report.rejected]
    seen += [r.dropped for r in report.replaced if r.backup is None] + [s for s, _ in report.read]
    assert sorted(seen) == sorted(download_members)


def members(path: Path) -> set[str]:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return {i.filename for i in zf.infolist()}


# ------------------------------------------------------------------------------------- Canvas


def test_canvas_every_student_placed_late_marker_kept_no_download_time(course, tmp_path):
    z = canvas(tmp_path / "canvas.zip", term())
    report = collect(z, course, config=utc())
    accounted(report, members(z))
    assert placed(report) == {
        ("andersonalice", NB1): nb("alice 1"),
        ("andersonalice", NB2): nb("alice 2"),
        ("brownbob", NB1): nb("bob 1 again"),  # Canvas's "-1": the resubmission
        ("chencarol", NB2): nb("carol 2"),
        ("evanseve", NB2): nb("eve 2"),
    }
    reasons = {r.source.split("_", 3)[-1]: (r.student, r.reason) for r in report.rejected}
    assert reasons["my_homework.ipynb"][0] == "chencarol"
    # two Dana Lees: one sortable name, two Canvas users: reported, both on the ledger
    dana = [r for r in report.rejected if r.student == "leedana"]
    assert len(dana) == 2 and all(
        "claimed by different LMS ids (1004, 1005)" in r.reason for r in dana
    )
    # no time but Canvas's own word: no timestamp.txt, lateness from _LATE_
    assert not list((course / "submitted").rglob("timestamp.txt"))
    students = ledger(course)["students"]
    assert students["brownbob"]["notebooks"][NB1]["lms_late"] is True
    assert students["andersonalice"]["notebooks"][NB1]["lms_late"] is False
    assert students["brownbob"]["time_source"] == "lms-marker"
    assert students["brownbob"]["lms"] == {
        "system": "canvas",
        "user_id": "1002",
        "name": None,
        "email": None,
        "anonymous": False,
    }
    assert "lms" not in students["leedana"]  # two people: no one identity
    assert "rejected" in students["leedana"]


def test_canvas_names_with_underscores_marks_or_no_letter_are_placed_apart(course, tmp_path):
    """Canvas keeps "_" and combining marks in a sortable name, and a name of punctuation
    only is nothing; each is its own student still, by the user id where no name is left."""
    people = []
    for first, last, uid in (
        ("Ann", "Smith_Jones", 2001),
        ("कुमार", "प्रिया", 2002),  # vowel signs: combining marks
        ("कुमारी", "प्रिया", 2003),
        ("?", "—", 2004),
    ):
        student = Student(first, last, uid, f"u{uid}")
        student.attempts.append(Attempt(T(2026, 12, 1, 9, 0), {f"{NB1}.ipynb": nb(str(uid))}))
        people.append(student)
    z = canvas(tmp_path / "canvas.zip", people)
    report = collect(z, course, config=utc())
    assert report.rejected == []
    students = ledger(course)["students"]
    assert {s: v["lms"]["user_id"] for s, v in students.items()} == {
        "smith_jonesann": "2001",
        "प्रियाकुमार": "2002",
        "प्रियाकुमारी": "2003",
        "user_2004": "2004",
    }
    assert len(placed(report)) == 4


def test_canvas_submissions_export_gives_the_true_times(course, tmp_path):
    people = term()
    z = canvas(tmp_path / "canvas.zip", people)
    times = tmp_path / "submissions.json"
    times.write_text(canvas_submissions_json(people))
    report = collect(z, course, config=utc(), times=times)
    assert stamp(course, "brownbob") == "2026-12-03 08:05:00.000000 UTC"
    assert stamp(course, "andersonalice") == "2026-11-29 04:15:00.000000 UTC"
    assert {t.source for t in report.timestamps} == {"worksheet"}
    assert ledger(course)["students"]["brownbob"]["time_source"] == "worksheet"
    # a second download, made later, moves nothing
    again = collect(canvas(tmp_path / "again.zip", people), course, config=utc())
    assert stamp(course, "brownbob") == "2026-12-03 08:05:00.000000 UTC"
    assert {t.status for t in again.timestamps} == {"kept"}


def test_canvas_anonymous_grading_is_placed_under_anonymous_ids(course, tmp_path):
    z = canvas(tmp_path / "anon.zip", term(), anonymous=True)
    report = collect(z, course, config=utc())
    accounted(report, members(z))
    students = {p.student for p in report.placed}
    assert len(students) == 6 and all(s.startswith("anon_") for s in students)
    lms = ledger(course)["students"]
    assert all(lms[s]["lms"]["anonymous"] is True for s in students)
    late = {p.student for p in report.placed if p.lms_late}
    assert len(late) == 1  # bob, whoever he is


# ------------------------------------------------------------------------------------- Moodle


@pytest.mark.parametrize("version,folders", [(4, True), (3, True), (4, False)])
def test_moodle_downloads_with_the_grading_worksheet(course, tmp_path, version, folders):
    people = term()
    z = moodle(tmp_path / "moodle.zip", people, version=version, folders=folders)
    sheet = tmp_path / "worksheet.csv"
    sheet.write_text(moodle_worksheet(people))
    report = collect(z, course, config=utc(), times=sheet)
    accounted(report, members(z))
    assert placed(report) == {
        ("alice_anderson", NB1): nb("alice 1"),
        ("alice_anderson", NB2): nb("alice 2"),
        ("bob_brown", NB1): nb("bob 1 again"),
        ("carol_chen", NB2): nb("carol 2"),
        ("eve_evans", NB2): nb("eve 2"),
    }
    why = {r.source.rsplit("/", 1)[-1].rsplit("_", 1)[-1]: r for r in report.rejected}
    assert "online text" in why["onlinetext.html"].reason
    assert why["onlinetext.html"].student == "alice_anderson"
    assert [r.student for r in report.rejected if "my_homework" in r.source] == ["carol_chen"]
    assert len([r for r in report.rejected if r.student == "dana_lee"]) == 2
    assert stamp(course, "bob_brown") == "2026-12-03 08:05:00.000000 UTC"
    assert stamp(course, "carol_chen") == "2026-12-01 12:00:00.000000 UTC"
    alice = ledger(course)["students"]["alice_anderson"]
    assert alice["time_source"] == "worksheet"
    assert alice["lms"] == {
        "system": "moodle",
        "user_id": "1001",
        "name": "Alice Anderson",
        "email": "aanderson@uni.example",
        "anonymous": False,
    }


def test_moodle_without_the_worksheet_writes_no_time(course, tmp_path):
    report = collect(moodle(tmp_path / "m.zip", term(False)), course, config=utc())
    assert not list((course / "submitted").rglob("timestamp.txt"))
    assert {t.status for t in report.timestamps} == {"unknown"}
    assert "Moodle's zip entry times are the time of the download" in report.format()
    assert ledger(course)["students"]["bob_brown"]["time_source"] == "download"


def test_moodle_blind_marking_is_placed_under_participant_ids(course, tmp_path):
    people = term()
    z = moodle(tmp_path / "blind.zip", people, blind=True)
    sheet = tmp_path / "worksheet.csv"
    sheet.write_text(moodle_worksheet(people, blind=True))
    report = collect(z, course, config=utc(), times=sheet)
    assert {p.student for p in report.placed} == {
        "participant_1001",
        "participant_1002",
        "participant_1003",
        "participant_1004",
        "participant_1005",
        "participant_1006",
    }
    assert stamp(course, "participant_1002") == "2026-12-03 08:05:00.000000 UTC"
    lms = ledger(course)["students"]["participant_1004"]["lms"]
    assert lms == {
        "system": "moodle",
        "user_id": "1004",
        "name": None,
        "email": None,
        "anonymous": True,
    }


# ---------------------------------------------------------------------------------- Blackboard


def test_blackboard_receipts_give_who_and_when(course, tmp_path):
    z = blackboard(tmp_path / "gradebook_TOEP_Toeplitz_2026-12-03-09-30-00.zip", term())
    report = collect(z, course, config=utc())
    accounted(report, members(z))
    assert placed(report) == {
        ("aanderson", NB1): nb("alice 1"),
        ("aanderson", NB2): nb("alice 2"),
        ("bbrown", NB1): nb("bob 1 again"),  # the later attempt
        ("cchen", NB2): nb("carol 2"),
        ("e_evans", NB2): nb("eve 2"),  # the receipt settles "e_evans", not "evans"
        ("dlee", NB1): nb("dlee"),
        ("dlee2", NB1): nb("dlee2"),
    }
    assert stamp(course, "bbrown") == "2026-12-03 08:05:00.000000 UTC"
    assert stamp(course, "aanderson") == "2026-11-29 04:15:00.000000 UTC"
    assert {t.source for t in report.timestamps} == {"receipt"}
    assert len(report.read) == 7  # every attempt's receipt
    eve = ledger(course)["students"]["e_evans"]["lms"]
    assert eve == {
        "system": "blackboard",
        "user_id": "e_evans",
        "name": "Eve Evans",
        "email": None,
        "anonymous": False,
    }


def test_blackboard_time_in_a_name_is_not_read_as_a_utc_offset(course, tmp_path):
    """nbgrader's parse_utc reads "2026-12-02-04-15-02" as 2026-12-02 with offset -04:15:02."""
    z = blackboard(tmp_path / "b.zip", term(False))
    only_files = tmp_path / "nofiles.zip"
    import zipfile

    with zipfile.ZipFile(z) as src, zipfile.ZipFile(only_files, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith(".txt"):
                dst.writestr(info, src.read(info))
    report = collect(only_files, course, config=utc())
    assert stamp(course, "bbrown") == "2026-12-03 08:05:00.000000 UTC"
    assert {t.source for t in report.timestamps} == {"file-name"}
    found = LmsCollectorPlugin().collect("Toeplitz_x_attempt_2026-12-02-04-15-02_02_padding.ipynb")
    assert found["student_id"] == "x"


# --------------------------------------------------------------------------------- Brightspace


def test_brightspace_a_resubmission_is_the_same_student(course, tmp_path):
    z = brightspace(tmp_path / "Toeplitz Download Dec 3, 2026 930 AM.zip", term(False))
    report = collect(z, course, config=utc())
    accounted(report, members(z))
    assert placed(report) == {
        ("anderson_alice", NB1): nb("alice 1"),
        ("anderson_alice", NB2): nb("alice 2"),
        ("brown_bob", NB1): nb("bob 1 again"),
        ("chen_carol", NB2): nb("carol 2"),
        ("evans_eve", NB2): nb("eve 2"),
    }
    assert stamp(course, "brown_bob") == "2026-12-03 08:05:00.000000 UTC"
    assert {t.source for t in report.timestamps} == {"folder-name"}
    assert report.read == [("index.html", "Brightspace's index of the download (nothing to place)")]
    assert ledger(course)["students"]["brown_bob"]["lms"]["name"] == "Brown, Bob"


def test_brightspace_namesakes_in_its_grades_export_are_reported_not_merged(course, tmp_path):
    """Two students called Dana Lee: Brightspace's folders name them alike, so without the
    export's word they would be one student, the later hand-in replacing the other's."""
    people = term(True)
    z = brightspace(tmp_path / "Toeplitz Download Dec 3, 2026 930 AM.zip", people)
    export = tmp_path / "grades_export.csv"
    export.write_text(brightspace_grades_export(people))
    report = collect(z, course, config=utc(), times=export)
    accounted(report, members(z))
    danas = [r for r in report.rejected if "Lee, Dana" in r.source]
    assert len(danas) == 2, report.rejected
    assert all("two students with this name" in r.reason for r in danas)
    assert "lee_dana" not in {p.student for p in report.placed}
    assert ("anderson_alice", NB1) in placed(report)  # the others are placed as before


# ------------------------------------------------------------------------ Classroom, exchange


def test_a_namesake_in_a_later_download_does_not_replace_the_first(course, tmp_path):
    """Two Moodle participants named Dana Lee, who handed in between two downloads: the second
    download's Dana is another account, refused until mapped, not a resubmission of the first's."""
    first = Student("Dana", "Lee", 101, "dlee")
    first.attempts.append(Attempt(T(2026, 12, 1, 9, 0), {f"{NB1}.ipynb": nb("dana 101")}))
    collect(moodle(tmp_path / "one.zip", [first]), course, config=utc())
    second = Student("Dana", "Lee", 202, "dlee2")
    second.attempts.append(Attempt(T(2026, 12, 2, 9, 0), {f"{NB1}.ipynb": nb("dana 202")}))
    report = collect(moodle(tmp_path / "two.zip", [second]), course, config=utc())
    assert [r.reason for r in report.rejected if "202" in r.source] == [
        "student id 'dana_lee' is claimed by different LMS ids (101, 202): map them in "
        "LmsCollectorPlugin.student_id_map"
    ]
    path = course / "submitted" / "dana_lee" / "toeplitz" / f"{NB1}.ipynb"
    assert path.read_bytes() == nb("dana 101")
    assert ledger(course)["students"]["dana_lee"]["lms"]["user_id"] == "101"


def test_a_stray_file_in_a_classroom_folder_is_rejected_alone(course, tmp_path):
    """A file in the Drive folder that no "Make a copy" named (a student's own upload, the
    teacher's scan) is rejected on its own; it does not make the folder a student and lose
    everyone else's copies."""
    import zipfile

    [z] = classroom(tmp_path / "toeplitz_homework-20261207T043512Z-001.zip", term(twins=False))
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("toeplitz_homework/01_conv1d_toeplitz.ipynb", nb("whose?"))
        zf.writestr("toeplitz_homework/scan.pdf", b"%PDF-1.4")
    report = collect(z, course, config=utc())
    assert {s for s, _ in placed(report)} == {
        "alice_anderson",
        "bob_brown",
        "carol_chen",
        "eve_evans",
    }
    assert sorted(r.source.rsplit("/", 1)[-1] for r in report.rejected) == [
        "01_conv1d_toeplitz.ipynb",
        "Carol Chen - my_homework.ipynb",
        "scan.pdf",
    ]
    assert not (course / "submitted" / "toeplitz_homework").exists()


def test_classroom_drive_folder_is_one_student_per_name_not_one_for_the_class(course, tmp_path):
    [z] = classroom(tmp_path / "toeplitz_homework-20261203T093000Z-001.zip", term(False))
    report = collect(z, course, config=utc())
    assert report.wrapper == "toeplitz_homework"
    assert {p.student for p in report.placed} == {
        "alice_anderson",
        "bob_brown",
        "carol_chen",
        "eve_evans",
    }
    assert stamp(course, "bob_brown") == "2026-12-03 08:05:00.000000 UTC"  # Drive's file time
    assert ledger(course)["students"]["eve_evans"]["lms"]["system"] == "classroom"


def test_classroom_namesakes_in_drive_parts_are_reported_not_merged(course, tmp_path):
    """Two students called Dana Lee: Drive writes "Dana Lee - 01... (1).ipynb" for the second;
    it is no later copy of the first's, so neither is placed (each is listed, with how to place
    them); the download in two parts places everyone else, part by part."""
    parts = classroom(tmp_path / "toeplitz_homework-20261203T093000Z-001.zip", term(), parts=2)
    assert [p.name for p in parts] == [
        "toeplitz_homework-20261203T093000Z-001.zip",
        "toeplitz_homework-20261203T093000Z-002.zip",
    ]
    reports = [collect(z, course, config=utc()) for z in parts]
    assert {p.student for r in reports for p in r.placed} >= {
        "alice_anderson",
        "bob_brown",
        "carol_chen",
        "eve_evans",
    }
    # The parts split the namesakes: the "(1)" is never placed as a later copy of the other.
    dana = [p.source for r in reports for p in r.placed if p.student == "dana_lee"]
    assert dana == [f"toeplitz_homework/Dana Lee - {NB1}.ipynb"]
    [second] = [r for report in reports for r in report.rejected if r.student == "dana_lee"]
    assert second.source.endswith(" (1).ipynb") and "another part" in second.reason
    assert (course / "submitted" / "dana_lee" / "toeplitz" / f"{NB1}.ipynb").read_bytes() == nb(
        "dlee"
    )


def test_classroom_namesakes_in_one_part_are_both_rejected(course, tmp_path):
    [z] = classroom(tmp_path / "toeplitz_homework-20261203T093000Z-001.zip", term())
    report = collect(z, course, config=utc())
    accounted(report, members(z))
    dana = sorted(r.source for r in report.rejected if r.student == "dana_lee")
    assert dana == [
        f"toeplitz_homework/Dana Lee - {NB1} (1).ipynb",
        f"toeplitz_homework/Dana Lee - {NB1}.ipynb",
    ]
    assert not (course / "submitted" / "dana_lee").exists()
    assert "two students with one name" in report.format()


def test_colab_notebook_by_email_needs_student_and_has_no_submission_time(course, tmp_path):
    """A student's Colab "Save a copy in Drive" downloaded and e-mailed: "Copy of 01....ipynb";
    its file time is when the instructor saved the attachment."""
    lone = tmp_path / f"Copy of {NB1}.ipynb"
    lone.write_bytes(nb("colab"))
    report = collect(lone, course)
    assert report.placed == [] and "--student" in report.rejected[0].reason
    report = collect(lone, course, student="smithj")
    assert placed(report) == {("smithj", NB1): nb("colab")}
    assert stamp(course, "smithj") is None  # lateness unknown, never "late" by the save time
    assert ledger(course)["students"]["smithj"]["time_source"] == "download"


def test_exchange_folders_take_the_exchange_time(course, tmp_path):
    z = exchange(tmp_path / "exchange.zip", term(False))
    report = collect(z, course, config=utc())
    accounted(report, members(z))
    assert stamp(course, "bbrown") == "2026-12-03 08:05:00.000000 UTC"
    assert {t.source for t in report.timestamps} == {"exchange"}


def test_equal_file_times_are_the_downloads_and_say_so(course, tmp_path):
    import zipfile

    z = tmp_path / "folders.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for who in ("kimr", "leea"):
            info = zipfile.ZipInfo(f"{who}/{NB1}.ipynb", date_time=DOWNLOAD_TIME.timetuple()[:6])
            zf.writestr(info, nb(who))
    report = collect(z, course, config=utc())
    assert not list((course / "submitted").rglob("timestamp.txt"))
    assert [w for w in report.warnings if "carry the same time" in w]


# ---------------------------------------------------------------------------- names, gradebook


def test_names_are_plain_text():
    assert plain_name("Bobby <script>\x1b[2J & 'Tables'\u202e") == "Bobby script[2J Tables"
    assert split_name("Anderson, Alice") == ("Alice", "Anderson")
    assert split_name("Mary Ann Smith") == ("Mary Ann", "Smith")


def test_names_reach_nbgraders_gradebook(course, tmp_path):
    from nbgrader.api import Gradebook

    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    Gradebook(f"sqlite:///{course / 'gradebook.db'}").close()
    people = term(False)
    sheet = tmp_path / "worksheet.csv"
    sheet.write_text(moodle_worksheet(people))
    report = collect(moodle(tmp_path / "m.zip", people), course, config=utc(), times=sheet)
    assert not report.warnings
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        alice = gb.find_student("alice_anderson")
        assert (alice.first_name, alice.last_name, alice.email, alice.lms_user_id) == (
            "Alice",
            "Anderson",
            "aanderson@uni.example",
            "1001",
        )


def test_a_receipt_forged_inside_a_students_upload_decides_nothing(course, tmp_path):
    """mallory uploads "victim_attempt_2026-01-01-00-00-00.txt" (Blackboard prefixes it with her
    own attempt) saying it is victim's, and a notebook named to follow it: both stay hers."""
    import zipfile

    real = "Toeplitz_mallory_attempt_2026-12-01-10-00-00"
    z = tmp_path / "bb.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(
            f"{real}.txt",
            "Name: Mal Lory (mallory)\nAssignment: Toeplitz\n"
            "Date Submitted: Tuesday, December 1, 2026 10:00:00 AM UTC\n",
        )
        zf.writestr(
            f"{real}_victim_attempt_2026-01-01-00-00-00.txt",
            "Name: Vic Tim (victim)\nDate Submitted: Friday, January 1, 2026 12:00:00 AM UTC\n",
        )
        zf.writestr(f"{real}_victim_attempt_2026-01-01-00-00-00_{NB1}.ipynb", nb("mallory"))
    report = collect(z, course, config=utc())
    assert report.placed == []
    assert {r.student for r in report.rejected} == {"mallory"} and len(report.rejected) == 2
    assert [s for s, _ in report.read] == [f"{real}.txt"]
    assert "victim" not in ledger(course)["students"]
    assert ledger(course)["students"]["mallory"]["lms"]["user_id"] == "mallory"
