"""What a person's browser is shown of a submission: no script, nothing loaded from anywhere.

A student writes the markdown cells (ex3_4 among them), the attachments, the metadata, and the
code whose outputs the graded run records; all of it reaches the instructor's browser in the
formgrader (inside the instructor's Jupyter session: its token, terminals and grade API) and the
feedback pages. So it is sanitised once, at the source, the autograded notebook
(``SanitizeSubmission``, after ``VerifyAnswers`` in the autograde pipeline, and again in
``GenerateFeedback`` for notebooks graded before), and once more when a page is rendered
(``clean_html`` and ``SafeMarkdown``, nbconvert filters ``grader/pages.py`` installs, since
nbgrader's formgrade template renders markdown without nbconvert's ``sanitize_html``). The pages
add a Content-Security-Policy (``pages.ContentSecurityPolicy``).

The sanitiser is ``nh3`` (Rust's ammonia: an HTML5 parser and an allow-list, what nbconvert is
moving to from the deprecated ``bleach``). The allow-list keeps what a person grades with: text,
headings, lists, tables, code, math (MathJax reads ``$...$`` from the text, with its ``Safe``
extension), links to http(s) and mailto, and images only as ``data:`` PNG/JPEG/GIF/SVG (an SVG in
an ``<img>`` runs no script). It drops every script, event handler, style, frame, form, object,
``<base>``, ``<meta>``, ``id`` (which could stand in for the formgrader's own score boxes) and
``class`` but nbconvert's own code-highlighting and anchor classes.

Shapes: every function takes and returns ``str`` (HTML or markdown source); the preprocessor
edits the notebook in place, outputs as nbformat 4 output dicts.
"""

from __future__ import annotations

import functools
import html
import re
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from typing import Any

import jinja2
import nh3
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets.config import Configurable

_TAGS = {
    *("p", "div", "span", "br", "hr", "blockquote", "pre", "code", "kbd", "samp", "var"),
    *("h1", "h2", "h3", "h4", "h5", "h6", "a", "img", "figure", "figcaption"),
    *("em", "strong", "b", "i", "u", "s", "del", "ins", "sub", "sup", "small", "mark"),
    *("abbr", "cite", "q", "dfn", "ul", "ol", "li", "dl", "dt", "dd", "details", "summary"),
    *("table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "colgroup", "col"),
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "ol": {"start"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "details": {"open"},
}
#: Removed with their content: what is not text (and whose text would only confuse).
_DROP_WITH_CONTENT = {
    *("script", "style", "template", "textarea", "select", "iframe", "object", "embed"),
    *("noscript", "noembed", "noframes", "xmp", "svg", "math", "title", "head"),
}


def _highlight_classes() -> set[str]:
    from pygments.token import STANDARD_TYPES

    return {c for c in STANDARD_TYPES.values() if c}


#: nbconvert's code highlighting (pygments token classes) and heading anchors keep their look.
_CLASSES = {
    "div": {"highlight", "hl-ipython3", "hl-python"},
    "span": _highlight_classes(),
    "a": {"anchor-link"},
}

_IMAGE_DATA = re.compile(r"data:image/(?:png|jpeg|gif|svg\+xml)[;,]", re.IGNORECASE)
_LINK = re.compile(r"(?:https?:|mailto:|#)", re.IGNORECASE)


def _attribute_filter(element: str, attribute: str, value: str) -> str | None:
    # nh3 has already refused schemes outside url_schemes; this narrows them per use: an image
    # loads nothing (only data: images), a link goes to the web or to the page itself.
    if element == "img" and attribute == "src":
        return value if _IMAGE_DATA.match(value.strip()) else None
    if element == "a" and attribute == "href":
        return value if _LINK.match(value.strip()) else None
    return value


_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ATTRIBUTES,
    attribute_filter=_attribute_filter,
    url_schemes={"http", "https", "mailto", "data"},
    allowed_classes=_CLASSES,
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def clean_html(html: Any) -> str:
    """``html`` (an HTML fragment, ``str`` or ``bytes``) with only the allow-list left."""
    html = html.decode("utf-8", "replace") if isinstance(html, bytes) else str(html)
    return _CLEANER.clean(html)


def render_markdown(source: str, attachments: dict | None = None) -> str:
    """``source`` as nbconvert's HTML exporter renders a markdown cell (same renderer)."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    renderer = IPythonRenderer(escape=False, attachments=attachments or {}, embed_images=False)
    return MarkdownWithMath(renderer=renderer).render(source)


_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


class _Shape(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.events: list[tuple] = []

    def handle_starttag(self, tag, attrs):
        # nh3 adds rel to links, which changes nothing a page does; nbconvert's heading anchors
        # (ids, which the cleaner drops when the page is rendered) make no markdown unsafe.
        ignored = {"rel", "id"} if tag in _HEADINGS else {"rel"}
        self.events.append(("<", tag, tuple(sorted(a for a in attrs if a[0] not in ignored))))

    def handle_endtag(self, tag):
        self.events.append((">", tag))

    def handle_data(self, data):
        if data.strip():
            self.events.append(("text", data.strip()))

    def handle_comment(self, data):
        self.events.append(("comment", data))

    def handle_decl(self, decl):
        self.events.append(("decl", decl))

    def handle_pi(self, data):
        self.events.append(("pi", data))


def shape(html: str) -> list[tuple]:
    """What an HTML fragment is made of: tags with their attributes, non-blank text, comments.

    Two fragments of the same shape do the same in a page, however differently serialised.
    """
    parser = _Shape()
    parser.feed(html)
    parser.close()
    return parser.events


def safe_markdown(source: str, attachments: dict | None = None) -> str:
    """A markdown source that renders to nothing but the allow-list, with no attachment.

    ``source`` itself when nbconvert's rendering of it is already clean and uses no attachment;
    else its cleaned rendering (attachments inlined as ``data:`` images, where they are images)
    as one HTML block, on one line (newlines as ``&#10;``), so that a markdown renderer passes it
    through whole instead of reading markdown (a ``javascript:`` link, say) after a blank line in
    it. A source nbconvert cannot render (a missing attachment, say) is shown as text.
    """
    if not attachments:
        return _safe_markdown_cached(source)
    return _safe_markdown(source, attachments)


@functools.lru_cache(maxsize=4096)
def _safe_markdown_cached(source: str) -> str:
    # The release's own cells come back in every notebook of every student a worker grades.
    return _safe_markdown(source, None)


#: More emphasis marks (``*``, ``_``) than this in one markdown source, and it is shown as typed
#: instead of rendered: mistune's emphasis matching takes a time that grows with about the cube of
#: their number (1,000 marks: 0.16 s; 2,000: 1.2 s; the 40,000 of a 120 KB cell: hours), and the
#: grader, the feedback and the formgrader all render what a student wrote. The course's own cells
#: have at most 72.
MAX_EMPHASIS_MARKS = 1000


def too_costly(source: str) -> bool:
    """Whether rendering ``source`` as markdown could take the renderer minutes or hours."""
    return source.count("*") + source.count("_") > MAX_EMPHASIS_MARKS


def _as_typed(source: str) -> str:
    return f"<pre>{html.escape(source)}</pre>"


def _is_our_block(source: str) -> bool:
    """Whether ``source`` is what ``safe_markdown`` writes for a cell it rendered itself: one
    line of HTML, which a markdown renderer passes through without reading markdown in it."""
    return source.startswith("<div>") and "\n" not in source


def _safe_markdown(source: str, attachments: dict | None) -> str:
    if too_costly(source):
        rendered = _as_typed(source)
    else:
        try:
            rendered = render_markdown(source, attachments)
        except Exception:  # nbconvert raises for a missing attachment, say: shown as typed
            rendered = _as_typed(source)
        else:
            cleaned = clean_html(rendered)
            if not attachments and shape(cleaned) == shape(rendered):
                return source
            rendered = cleaned
    return "<div>" + rendered.replace("\r", "").replace("\n", "&#10;") + "</div>"


# ------------------------------------------------------------------------------------- outputs

#: Output types shown as they are: escaped by every template (text) or inert (images).
_SAFE_MIME = {"text/plain", "text/latex", "image/png", "image/jpeg", "image/gif"}
_SVG_BAD_TAGS = {"script", "foreignobject", "iframe", "object", "embed", "use", "image", "style"}
_SVG_URL_ATTRS = {"href", "src"}


def _svg_is_inert(svg: str) -> bool:
    """Whether an SVG is only shapes and text: no script, handler, style or outside reference.

    nbconvert shows SVG outputs as ``<img>`` data URIs (no script runs there) but can inline
    them (``should_not_encode_svg``), and JupyterLab inlines them; so only inert ones stay.
    """
    try:
        root = ElementTree.fromstring(svg)
    except ElementTree.ParseError:
        return False
    for element in root.iter():
        tag = str(element.tag).rsplit("}", 1)[-1].lower()
        if tag in _SVG_BAD_TAGS:
            return False
        for name, value in element.attrib.items():
            name = name.rsplit("}", 1)[-1].lower()
            if name.startswith("on") or name == "style":
                return False
            if name in _SVG_URL_ATTRS and not value.strip().startswith("#"):
                return False
            if "url(" in value.replace(" ", "").lower() and "url(#" not in value.replace(" ", ""):
                return False
    return True


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def clean_output(output: dict) -> list[str]:
    """Sanitise one output in place; the MIME types removed (for the note left in their place)."""
    if output.get("output_type") not in ("display_data", "execute_result"):
        return []  # stream and error: plain text, escaped by every template
    data = output.get("data", {})
    removed = []
    for mime in list(data):
        value = data[mime]
        if mime in _SAFE_MIME:
            continue
        if mime == "text/html":
            data[mime] = clean_html(_text(value))
        elif mime == "text/markdown":
            data["text/html"] = clean_html(render_markdown(_text(value)))
            del data[mime]
        elif mime == "image/svg+xml" and _svg_is_inert(_text(value)):
            continue
        else:
            removed.append(mime)
            del data[mime]
    # Metadata steers rendering ("isolated" puts HTML in an iframe; widgets, sizes): keep only
    # an image's size, as numbers.
    metadata = output.get("metadata", {})
    kept = {}
    for mime, meta in metadata.items():
        if mime in data and isinstance(meta, dict):
            size = {k: v for k, v in meta.items() if k in ("width", "height")}
            size = {k: v for k, v in size.items() if isinstance(v, (int, float))}
            if size:
                kept[mime] = size
    output["metadata"] = kept
    if removed and not data:
        data["text/plain"] = "[not shown: " + ", ".join(removed) + " output]"
    return removed


def clean_tags(metadata: dict) -> None:
    """Keep a cell's tags that are one word each.

    nbconvert writes each tag into the cell's ``class`` attribute as ``celltag_TAG``, escaped; a
    space in a tag would still start a class name of its own, one of the page's (Bootstrap's
    ``navbar-fixed-top``, ``alert``, ``hidden``, ``modal-backdrop``), over the grading page.
    """
    tags = metadata.get("tags")
    if tags is None:
        return
    kept = (
        [t for t in tags if isinstance(t, str) and t and t.split() == [t]]
        if isinstance(tags, list)
        else []
    )
    if kept:
        metadata["tags"] = kept
    else:
        del metadata["tags"]


def clean_cell(cell: dict) -> None:
    """Sanitise one notebook cell in place (markdown, raw or code)."""
    if isinstance(cell.get("metadata"), dict):
        clean_tags(cell["metadata"])
    attachments = cell.pop("attachments", None)
    if cell.get("cell_type") == "markdown":
        # Image attachments end up inlined as data: images; no other kind survives the cleaning.
        cell["source"] = safe_markdown(_text(cell.get("source", "")), attachments)
    elif cell.get("cell_type") == "raw":
        # nbconvert emits a raw cell into HTML when its mime type says HTML or markdown.
        metadata = cell.get("metadata", {})
        if any(metadata.get(k) for k in ("format", "raw_mimetype")):
            cell["source"] = clean_html(_text(cell.get("source", "")))
    elif cell.get("cell_type") == "code":
        for output in cell.get("outputs", []):
            clean_output(output)


class SanitizeSubmission(NbGraderPreprocessor):
    """Every cell of a graded notebook made safe to show in a browser (``clean_cell``), and the
    notebook's widget state (which nbconvert would emit as script) removed."""

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            clean_cell(cell)
        return nb, resources


class SafeMarkdown(Configurable):
    """Jinja filter ``source | markdown2html``: the exporter's own rendering, then ``clean_html``.

    Replaces nbconvert's filter of that name in every page (nbgrader's formgrade template calls it
    without ``clean_html``); constructed by nbconvert with the exporter as its parent.
    """

    # jinja2.pass_context, spelled on the class: Jinja looks for it on the filter object itself.
    jinja_pass_arg = jinja2.pass_context(lambda: None).jinja_pass_arg

    def __call__(self, context, source: str) -> str:
        from nbconvert.exporters import HTMLExporter

        if too_costly(source) and not _is_our_block(source):
            return _as_typed(source)  # a notebook not cleaned at the source (graded before)
        return clean_html(HTMLExporter.markdown2html(self.parent, context, source))
