"""BeautifulSoup's text of a page's cell, written as it is parsed, without building its tree.

``feedback`` must write the page stock nbgrader writes, and stock ends every page with
``str(BeautifulSoup(page, "html.parser"))`` and the ``alt`` edit (nbconvert's
``HTMLExporter.from_notebook_node``). ``_SoupPass`` in ``feedback`` does that cell by cell and
remembers each cell, but every student's own answer cells are new text: building BeautifulSoup's
tree of each and writing it out again is about three quarters of that cost; html.parser's
tokenising is the rest (measured on a 20-student class: 1.39 s to build trees, 0.54 s to write
them, 0.29 s to tokenise).

``stream`` listens to the same html.parser events as BeautifulSoup's ``BeautifulSoupHTMLParser``
and writes what ``str()`` of its tree would be, event by event, with BeautifulSoup's own tables
and formatter (its void elements, whitespace-preserving tags, multi-valued attributes, entity
table, character-reference decoding, the ``minimal`` formatter's escaping, quoting and
alphabetical attribute order). Only markup on which the tree is exactly its events in order is
accepted: tags closed in the order opened, no end tag of a void element, nothing left open at
the end, no comment, declaration, processing instruction, ``<script>``/``<style>`` or other
special string container, no ``<meta>`` (its charset is rewritten on output), no JupyterLab
class (nbconvert's ``tabindex`` edit). Anything else is declined (``None``) and goes through
BeautifulSoup as before; ``tests/test_feedback.py`` checks both agree on every cell of real
pages and on a generated corpus of awkward markup. That check is of one BeautifulSoup release
series, the one ``pyproject.toml`` pins: a new one is to be allowed there after it passes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: What nbconvert writes into an image without ``alt``.
NO_ALT = "No description has been provided for this image"

#: nbconvert's ``tabindex`` edit applies to these classes (and only inside ``.jp-Notebook``).
JUPYTERLAB_CLASS = re.compile(r"jp-(notebook|cell-inputwrapper|outputarea-output)$", re.I)


#: Deeper nesting is declined: BeautifulSoup compares tags recursively (``Tag.__eq__``) when it
#: writes its tree out, and a few hundred nested tags of one name exhaust Python's stack there,
#: so stock writes no page; neither may this.
MAX_DEPTH = 100

#: Start tags remembered per process, as written.
TAGS_KEPT = 20_000


class Declined(Exception):
    """The markup is outside what ``stream`` reproduces."""


def stream(markup: str) -> tuple[str, int] | None:
    """``(str(soup), images given alt)`` for a standalone cell ``markup``, as ``feedback._parse``
    computes it with BeautifulSoup, or None when this markup must go through BeautifulSoup."""
    try:
        parser = _Stream()
        parser.feed(markup)
        if parser.rawdata or parser.cdata_elem is not None:
            return None  # something left unparsed: BeautifulSoup decides what it means
        parser.close()
        parser.flush()
    except Exception:  # Declined, html.parser's own complaint, a BeautifulSoup without these
        return None  # tables: BeautifulSoup's to handle
    if parser.stack:
        return None
    return "".join(parser.out), parser.missing_alt


class _Tables:
    """BeautifulSoup's own definitions, read once from an html.parser tree builder."""

    def __init__(self):
        from bs4 import BeautifulSoup
        from bs4.builder import HTMLParserTreeBuilder
        from bs4.builder._htmlparser import BeautifulSoupHTMLParser
        from bs4.dammit import EntitySubstitution
        from bs4.formatter import HTMLFormatter

        builder = HTMLParserTreeBuilder()
        self.builder = builder
        self.void = frozenset(builder.empty_element_tags)
        self.preserve = frozenset(builder.preserve_whitespace_tags)
        self.containers = frozenset(builder.string_containers)
        self.formatter = HTMLFormatter.REGISTRY["minimal"]
        self.entities = EntitySubstitution.HTML_ENTITY_TO_CHARACTER
        self.charref = BeautifulSoupHTMLParser._dereference_numeric_character_reference
        self.spaces = BeautifulSoup.ASCII_SPACES
        #: What the minimal formatter replaces in text: text without it is written as it is.
        self.escaped = EntitySubstitution.AMPERSAND_OR_BRACKET
        #: (tag, attributes as html.parser gives them) -> (its text, 1 if it gained alt)
        self.tags: dict[tuple, tuple[str, int]] = {}


_TABLES: _Tables | None = None


def _tables() -> _Tables:
    global _TABLES
    if _TABLES is None:
        _TABLES = _Tables()
    return _TABLES


class _Stream(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=False)  # as BeautifulSoup's builder sets it
        self.t = _tables()
        self.out: list[str] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.preserving = 0
        self.missing_alt = 0

    # -- text ------------------------------------------------------------------------------

    def flush(self) -> None:
        """BeautifulSoup's ``endData``: the text since the last tag, one string."""
        if not self.text:
            return
        data = "".join(self.text)
        self.text = []
        if not data:
            return
        if not self.preserving and not data.strip(self.t.spaces):  # whitespace only
            data = "\n" if "\n" in data else " "
        if self.t.escaped.search(data):
            data = self.t.formatter.substitute(data)
        self.out.append(data)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_charref(self, name: str) -> None:
        dereferenced, _, extra = self.t.charref(name)
        if dereferenced is not None:
            self.text.append(dereferenced)
        if extra is not None:
            self.text.append(extra)

    def handle_entityref(self, name: str) -> None:
        character = self.t.entities.get(name)
        self.text.append(character if character is not None else f"&{name}")

    # -- tags ------------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs) -> None:
        self._open(tag, attrs, self_closing=False)

    def handle_startendtag(self, tag: str, attrs) -> None:
        self._open(tag, attrs, self_closing=True)

    def _open(self, tag: str, attrs, self_closing: bool) -> None:
        t = self.t
        if tag in t.containers or tag in self.CDATA_CONTENT_ELEMENTS or tag == "meta":
            raise Declined
        self.flush()
        # The same tag with the same attributes is written the same way: a page's cells repeat
        # a few dozen of them (pygments' spans, nbconvert's prompts) thousands of times.
        # Only short tags are kept (not an image's data URI), and at most TAGS_KEPT of them.
        key = (tag, tuple(attrs))
        written = t.tags.get(key)
        if written is None:
            written = self._tag(tag, attrs)
            if len(t.tags) < TAGS_KEPT and sum(len(v or "") for _, v in attrs) < 256:
                t.tags[key] = written
        text, missing_alt = written
        self.out.append(text)
        self.missing_alt += missing_alt
        if tag in t.void:
            return  # closed at once; a </tag> for it is declined
        if self_closing:  # <div/>: opened and closed, an empty non-void element
            self.out.append(f"</{tag}>")
            return
        self.stack.append(tag)
        if len(self.stack) > MAX_DEPTH:
            raise Declined
        self.preserving += tag in t.preserve

    def _tag(self, tag: str, attrs) -> tuple[str, int]:
        """The start tag as BeautifulSoup writes it, and whether it gained an ``alt``."""
        t = self.t
        values: dict = {}
        for key, value in attrs:
            values[key] = "" if value is None else value  # a repeated attribute: the last wins
        t.builder._replace_cdata_list_attribute_values(tag, values)
        classes = values.get("class", ())
        if isinstance(classes, str):
            classes = (classes,)  # not split: BeautifulSoup's tables would say so
        if any(JUPYTERLAB_CLASS.match(name) for name in classes):
            raise Declined
        missing_alt = 0
        if tag == "img" and "alt" not in values:
            values["alt"] = NO_ALT
            missing_alt = 1
        close = "/>" if tag in t.void else ">"
        return f"<{tag}{self._attributes(values)}{close}", missing_alt

    def _attributes(self, values: dict) -> str:
        if not values:
            return ""
        formatter = self.t.formatter
        pieces = []
        for key, value in sorted(values.items(), key=lambda kv: kv[0]):
            if isinstance(value, list):
                value = " ".join(value)
            pieces.append(
                f"{key}={formatter.quoted_attribute_value(formatter.attribute_value(value))}"
            )
        return " " + " ".join(pieces)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.t.void or not self.stack or self.stack[-1] != tag:
            raise Declined
        self.flush()
        self.stack.pop()
        self.preserving -= tag in self.t.preserve
        self.out.append(f"</{tag}>")

    # -- what the tree would hold otherwise ------------------------------------------------

    def handle_comment(self, data: str) -> None:
        raise Declined

    def handle_decl(self, decl: str) -> None:
        raise Declined

    def unknown_decl(self, data: str) -> None:
        raise Declined

    def handle_pi(self, data: str) -> None:
        raise Declined
