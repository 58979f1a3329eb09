"""grader/sanitize on its own: what a student wrote, shown without letting it steer the page."""

from __future__ import annotations

from html.parser import HTMLParser

import nbformat
import pytest

from toeplitz_course.grader import pages, sanitize

#: A markdown cell whose emphasis marks make mistune's matching take hours (a reviewer's, 120 KB).
SLOW = "*a " * 20000 + "b" + " a*" * 20000


@pytest.mark.timeout(30)
def test_markdown_too_costly_to_render_is_shown_as_typed():
    cleaned = sanitize.safe_markdown(SLOW)
    assert cleaned.startswith("<div><pre>*a *a ") and cleaned.endswith("</pre></div>")
    # At page time, both the cleaned cell and a notebook cleaned before this rule render at once.
    from nbconvert.exporters import HTMLExporter

    page_filter = sanitize.SafeMarkdown(parent=HTMLExporter())
    assert page_filter({"cell": {}}, cleaned).startswith("<div><pre>*a *a ")
    assert page_filter({"cell": {}}, SLOW).startswith("<pre>*a *a ")


def test_ordinary_emphasis_is_still_rendered():
    source = "A *word* and __another__, $x_1 + x_2$. " * 40
    assert not sanitize.too_costly(source)
    assert "<em>word</em>" in sanitize.render_markdown(source)
    assert sanitize.safe_markdown(source) == source  # clean as rendered: kept as written


@pytest.mark.parametrize(
    ("tags", "kept"),
    [
        (["demo", "x navbar-fixed-top alert", "skip-execution"], ["demo", "skip-execution"]),
        (["a\tb", "c\nd", "e\u00a0f", "", 3, None], None),
        ("x alert", None),
        ({"x": "alert"}, None),
    ],
)
def test_only_one_word_tags_are_kept(tags, kept):
    metadata = {"tags": tags}
    sanitize.clean_tags(metadata)
    assert metadata.get("tags") == kept


class _CellClasses(HTMLParser):
    def __init__(self):
        super().__init__()
        self.classes: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        names = (dict(attrs).get("class") or "").split()
        if tag == "div" and "cell" in names:
            self.classes.append(names)


def test_the_template_gives_a_cell_no_class_from_a_tag_with_spaces():
    """A notebook graded before its tags were cleaned: the page's own celltags leave them out."""
    from nbconvert.exporters import HTMLExporter

    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("1"), nbformat.v4.new_markdown_cell("*a*")]
    )
    for cell in nb.cells:
        cell.metadata["tags"] = ["demo", "x navbar-fixed-top alert alert-success", "y\thidden"]
    from traitlets.config import Config

    config = Config()
    pages.configure(config)  # the feedback's and the formgrader's templates and filters
    exporter = HTMLExporter(config=config, template_name="classic")
    page, _ = exporter.from_notebook_node(nb)
    parser = _CellClasses()
    parser.feed(page)
    assert len(parser.classes) == 2
    for names in parser.classes:
        assert "celltag_demo" in names
        assert not {"navbar-fixed-top", "alert", "alert-success", "hidden"} & set(names)
