"""``make bench`` works: both graders run on a tiny class and agree. Nothing here is timed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from toeplitz_course.instructor import bench

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parent.parent


def test_bench_grades_a_tiny_class_both_ways_and_the_scores_agree(tmp_path):
    said = []
    result = bench.run(
        students=1, jobs=2, root=ROOT, workdir=tmp_path, say=lambda *a, **k: said.append(a)
    )
    assert result.problems == []
    assert result.mismatches == []
    assert result.ok
    assert result.mix == {"student001": "correct"}
    assert result.stock.notebooks == result.ours.notebooks == 6
    assert result.cells == 20  # 19 autograded cells and the written answer, per student
    assert result.stock.wall > 0 and result.ours.wall > 0 and result.ours.cpu > 0
    text = result.format()
    assert "scores agree on all 20 grade cells" in text
    assert "stock nbgrader autograde" in text and "grade --jobs" in text
    assert list(tmp_path.iterdir()) == []  # the scratch courses are gone


def test_the_class_is_mostly_correct():
    mix = list(bench.class_mix(40).values())
    assert (mix.count("correct"), mix.count("mistakes"), mix.count("blank")) == (28, 8, 4)
    assert set(bench.class_mix(3).values()) == {"correct", "mistakes", "blank"}


def test_a_disagreement_is_reported_and_fails(monkeypatch, capsys):
    stock = {"s1": {("nb", "ex1_1_test"): (1.0, False)}}
    ours = {"s1": {("nb", "ex1_1_test"): (0.0, False)}}
    mismatches = bench.compare(stock, ours)
    assert mismatches == ["s1 nb ex1_1_test: stock (1.0, False), ours (0.0, False)"]
    phase = bench.Phase("x", 1.0, 1.0, 5)
    result = bench.BenchResult({"s1": "correct"}, 1, phase, phase, 1, mismatches=mismatches)
    monkeypatch.setattr(bench, "run", lambda *a, **k: result)
    assert bench.main(students=1) == 1
    assert "SCORES DISAGREE" in capsys.readouterr().out


def test_marginal_machine_time_is_the_difference_of_two_runs_of_ours():
    stock = bench.Phase("stock", 100.0, 90.0, 200)
    ours = bench.Phase("ours", 20.0, 120.0, 200)
    small = bench.Phase("ours", 7.0, 45.0, 50)
    result = bench.BenchResult(bench.class_mix(40), 2, stock, ours, 600, small=small)
    assert result.marginal == (120.0 - 45.0) / 150
    assert "marginal machine time per notebook 0.50 s" in result.format()
    assert bench.BenchResult({}, 2, stock, ours, 600).marginal is None


def test_the_stock_config_is_stock():
    """Nothing of ours: no import, no preprocessor, no kernel manager; only the course id."""
    body = ast.parse(bench.STOCK_CONFIG).body
    assert [ast.unparse(node) for node in body[1:]] == [
        "c = get_config()",
        "c.CourseDirectory.course_id = 'toeplitz-convolution'",
    ]


def test_each_student_hands_in_their_own_words(course):
    """No two students' filled answer cells are the same text (caches keyed by a cell's text
    must not be flattered by the bench), the work itself is unchanged, and a blank hand-in
    stays the release's."""
    from toeplitz_course.grader.demos import source_of
    from toeplitz_course.instructor import examples

    for kind in ("correct", "mistakes", "blank"):
        made = getattr(examples, kind)(course)
        one, two = (bench.in_own_words(made, s) for s in ("student001", "student002"))
        filled = 0
        for name, nb in made.items():
            for cell, a, b in zip(nb["cells"], one[name]["cells"], two[name]["cells"], strict=True):
                before, after = source_of(cell), source_of(a)
                assert after.startswith(before.rstrip())
                if after == before:
                    assert source_of(b) == before
                    continue
                filled += 1
                assert (cell.get("metadata", {}).get("nbgrader") or {}).get("solution")
                assert source_of(b) != after
                if cell["cell_type"] == "code":
                    ast.parse(after)
                    # only a comment added: the same statements
                    assert ast.dump(ast.parse(after)) == ast.dump(ast.parse(before))
        assert (filled > 0) == (kind != "blank"), kind
