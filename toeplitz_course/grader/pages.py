"""How nbconvert renders the pages a person reads: the feedback and the formgrader's notebooks.

Both are nbgrader templates on nbconvert's classic one (``feedback``, ``formgrade``). Two changes,
made through nbconvert's own template search path (``HTMLExporter.extra_template_basedirs``:
``templates/classic/`` here is found before nbconvert's ``classic`` and ``base``):

* an error's message wraps (``templates/classic/base.html.j2``): a failed test's diagnosis is
  one long line, which classic's box would cut;
* MathJax comes from a local copy where this machine has one (Debian's ``libjs-mathjax``), so an
  offline grading machine shows formulas, not raw LaTeX (``templates/classic/mathjax.html.j2``,
  which makes nbgrader's templates honour ``HTMLExporter.mathjax_url``). The feedback, a file,
  names it by a ``file://`` URL; the formgrader, a web page, by a URL on its own server, which
  serves it when started with ``--ServerApp.extra_static_paths=/usr/share/javascript``
  (``FORMGRADER_STATIC``). Either falls back to nbconvert's CDN when the local copy does not load.

And what a page may do (``ContentSecurityPolicy``): student content is sanitised at the source
and again as the page is rendered (``grader/sanitize.py``, installed here as the ``markdown2html``
and ``clean_html`` filters, with nbconvert's ``sanitize_html``, which drops script outputs and
widget state); the policy is the third line. It is a ``<meta>`` element that nbgrader's feedback
and formgrade templates both emit in their ``<head>`` (from the MathJax macro, after the
formgrader's own scripts and before any notebook content): no inline script, no ``eval``, no
frame, object, form or ``<base>``; scripts only from this page's own server (the formgrader's
scripts, the local MathJax), the MathJax file and the CDN; images only ``data:``; requests only
to the page's own server (the formgrader's grade API). The formgrader's two inline handlers (the
"show names" eye) and MathJax's fallback loader are allowed by their hashes.

Loading the configuration imports neither nbconvert nor nbgrader.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import urllib.parse
from pathlib import Path

from traitlets.config import Configurable

#: Our template folder: put after nbgrader's, whose ``feedback``/``formgrade`` templates it serves.
TEMPLATES = Path(__file__).resolve().parent / "templates"

#: Where Debian's ``libjs-mathjax`` (MathJax 2.7) puts MathJax.
MATHJAX_DIR = Path("/usr/share/javascript/mathjax")

#: The folder a formgrader's server must serve as ``/static/`` for the local MathJax
#: (``--ServerApp.extra_static_paths``).
FORMGRADER_STATIC = MATHJAX_DIR.parent

#: The MathJax configuration nbconvert's CDN URL asks for.
MATHJAX_QUERY = "?config=TeX-AMS_CHTML-full,Safe"

#: The formgrader shows a notebook at ``{base_url}/formgrader/submissions/{id}/`` (nbgrader
#: redirects to the trailing slash), so this reaches ``{base_url}/static/`` under any base URL.
FORMGRADER_MATHJAX = f"../../../static/{MATHJAX_DIR.name}/MathJax.js{MATHJAX_QUERY}"


def local_mathjax(directory: Path = MATHJAX_DIR) -> Path | None:
    """``MathJax.js`` of the local MathJax, if this machine has one."""
    script = directory / "MathJax.js"
    return script if script.is_file() else None


def _nbgrader_templates() -> str:
    spec = importlib.util.find_spec("nbgrader")  # locates the package without importing it
    package = os.path.dirname(spec.origin)
    return os.path.join(package, "server_extensions", "formgrader", "templates")


def configure(c, mathjax: Path | None = None) -> None:
    """Our templates for nbgrader's feedback and formgrader; the local MathJax where found.

    ``mathjax``: the local ``MathJax.js`` (default: ``local_mathjax()``).
    """
    # Setting this replaces what GenerateFeedback and the formgrader would set, nbgrader's own.
    c.HTMLExporter.extra_template_basedirs = [_nbgrader_templates(), str(TEMPLATES)]
    c.HTMLExporter.filters = {
        "mathjax_page": f"{__name__}.MathJaxPage",
        # Student content, cleaned again as every page renders it (grader/sanitize.py).
        "markdown2html": "toeplitz_course.grader.sanitize.SafeMarkdown",
        "clean_html": "toeplitz_course.grader.sanitize.clean_html",
    }
    # nbconvert's own switch: HTML and markdown outputs through clean_html, no script outputs,
    # no widget state.
    c.HTMLExporter.sanitize_html = True
    # The formgrader's page shows the cells a person grades first (grader/formgrade.py).
    c.HTMLExporter.preprocessors = ["toeplitz_course.grader.formgrade.HandGradedFirst"]
    mathjax = mathjax or local_mathjax()
    if mathjax is not None:
        c.HTMLExporter.mathjax_url = FORMGRADER_MATHJAX
        # GenerateFeedback's exporter is its child: this wins over the line above for it.
        c.GenerateFeedback.HTMLExporter.mathjax_url = mathjax.as_uri() + MATHJAX_QUERY


#: The inline event handlers of nbgrader's formgrade page (formgrade_macros.html.j2: the eye
#: that shows or hides student names), allowed by hash.
FORMGRADER_HANDLERS = ("toggle_name(true);", "toggle_name(false);")


def _hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def _source(url: str) -> str:
    """The CSP source expression that allows loading ``url``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}"
    if parts.scheme:
        return f"{parts.scheme}:"
    return "'self'"  # relative: the formgrader's own server


def fallback_loader(url: str) -> str:
    """The ``onerror`` handler that loads MathJax from ``url`` when the first copy fails."""
    return f"var s = document.createElement('script'); s.src = {json.dumps(url)};" + (
        " document.head.appendChild(s);"
    )


def content_security_policy(urls: tuple[str, str]) -> str:
    """The policy of a feedback or formgrader page that loads MathJax from ``urls``."""
    scripts = sorted({"'self'", *(_source(u) for u in urls if u)})
    hashes = [_hash(h) for h in FORMGRADER_HANDLERS]
    if urls[1]:
        hashes.append(_hash(fallback_loader(urls[1])))
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(scripts)} 'unsafe-hashes' {' '.join(hashes)}",
            # nbconvert's and nbgrader's pages carry <style> blocks; MathJax sets styles.
            f"style-src {' '.join(scripts)} 'unsafe-inline'",
            f"font-src {' '.join(scripts)} data:",
            "img-src data:",
            "connect-src 'self'",
            "frame-src 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


class MathJaxPage(Configurable):
    """Jinja filter ``url | mathjax_page``: where this page loads MathJax from, and its policy.

    A dict: ``url`` (the URL to load MathJax from), ``fallback`` (the ``onerror`` handler that
    loads the other copy, or ""), ``policy`` (``content_security_policy``). nbconvert constructs
    it with the exporter as its parent, whose ``mathjax_url`` is the URL when the template gives
    none; the fallback is nbconvert's default (its CDN).
    """

    def __call__(self, url: str | None = None) -> dict[str, str]:
        trait = self.parent.traits()["mathjax_url"]
        default = trait.default_value
        url = url or getattr(self.parent, "mathjax_url", default)
        other = "" if url == default else default
        return {
            "url": url,
            "fallback": fallback_loader(other) if other else "",
            "policy": content_security_policy((url, other)),
        }
